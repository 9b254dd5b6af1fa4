"""Benchmarks that print figures (never timed tests): training throughput of a model config."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .model.config import get_config
from .model.zeroshape import ZeroShapeW


@dataclass(frozen=True)
class ThroughputResult:
    config: str
    device: str
    threads: int
    batch_size: int
    query_points: int
    step_seconds: list[float]

    @property
    def samples_per_second_median(self) -> float:
        return self.batch_size / statistics.median(self.step_seconds)

    def report(self) -> str:
        times = ", ".join(f"{t:.3f}" for t in self.step_seconds)
        return (
            f"config={self.config} device={self.device} threads={self.threads} batch={self.batch_size} "
            f"points/image={self.query_points}\n"
            f"step seconds: {times}\n"
            f"training throughput: {self.samples_per_second_median:.2f} samples/s (median step), "
            f"{self.batch_size / min(self.step_seconds):.2f} samples/s (best step)"
        )


def stand_in_loss(latent, logits, occupancy, visible, occluder, depth) -> torch.Tensor:
    """A loss over every output, shaped like the training objective (BCE on masks and occupancy, L1 on
    depth, squared error on the focal length), so forward and backward touch all parts of the model."""
    return (
        F.binary_cross_entropy_with_logits(logits, occupancy)
        + F.binary_cross_entropy_with_logits(latent.visible_mask_logits, visible)
        + F.binary_cross_entropy_with_logits(latent.occluder_mask_logits, occluder)
        + (latent.depth - depth).abs().mean()
        + 1e-4 * (latent.intrinsics[:, 0, 0] - 300.0).square().mean()
    )


def train_throughput(
    config_name: str,
    batch_size: int,
    query_points: int,
    steps: int = 5,
    warmup: int = 2,
    device: str = "cpu",
    threads: int | None = None,
    seed: int = 0,
) -> ThroughputResult:
    """Time full optimisation steps (forward, backward, AdamW) on random inputs of the right shapes."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    config = get_config(config_name)
    model = ZeroShapeW(config).to(device).train()
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    size = config.image_size
    image = torch.rand(batch_size, 3, size, size, device=device)
    points = torch.rand(batch_size, query_points, 3, device=device) * 3 - 1.5
    occupancy = (torch.rand(batch_size, query_points, device=device) > 0.5).float()
    visible = (torch.rand(batch_size, 1, size, size, device=device) > 0.5).float()
    occluder = (torch.rand(batch_size, 1, size, size, device=device) > 0.8).float()
    depth = torch.rand(batch_size, 1, size, size, device=device)
    prompts = ["object"] * batch_size

    def step() -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        latent, logits = model(image, points, prompts, visible_mask=visible)
        loss = stand_in_loss(latent, logits, occupancy, visible, occluder, depth)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(warmup):
        step()
    times = [step() for _ in range(steps)]
    return ThroughputResult(config_name, device, torch.get_num_threads(), batch_size, query_points, times)


def forward_latency(
    config_name: str,
    query_points: int = 4096,
    repeats: int = 5,
    device: str = "cpu",
    threads: int | None = None,
    seed: int = 0,
) -> list[float]:
    """Seconds per inference forward pass of one image: `encode` plus `query` of `query_points` points."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    config = get_config(config_name)
    model = ZeroShapeW(config).to(device).eval()
    image = torch.rand(1, 3, config.image_size, config.image_size, device=device)
    points = torch.rand(1, query_points, 3, device=device) * 3 - 1.5
    times = []
    with torch.inference_mode():
        for index in range(repeats + 1):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            model.query(points, model.encode(image))
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if index:  # the first call pays for allocator warm-up
                times.append(time.perf_counter() - start)
    return times
