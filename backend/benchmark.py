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
    stage: str = "joint"
    precision: str = "fp32"

    @property
    def samples_per_second_median(self) -> float:
        return self.batch_size / statistics.median(self.step_seconds)

    def report(self) -> str:
        times = ", ".join(f"{t:.3f}" for t in self.step_seconds)
        return (
            f"config={self.config} device={self.device} threads={self.threads} batch={self.batch_size} "
            f"points/image={self.query_points} stage={self.stage} precision={self.precision}\n"
            f"step seconds: {times}\n"
            f"training throughput: {self.samples_per_second_median:.2f} samples/s (median step), "
            f"{self.batch_size / min(self.step_seconds):.2f} samples/s (best step)"
        )


def stand_in_loss(latent, logits, occupancy, visible, occluder, depth) -> torch.Tensor:
    """A loss over every output, shaped like the training objective (BCE on masks and occupancy, L1 on
    depth, squared error on the focal length; a scene head's gravity and category logits), so forward and
    backward touch all parts of the model."""
    loss = (
        F.binary_cross_entropy_with_logits(logits, occupancy)
        + F.binary_cross_entropy_with_logits(latent.visible_mask_logits, visible)
        + F.binary_cross_entropy_with_logits(latent.occluder_mask_logits, occluder)
        + (latent.depth - depth).abs().mean()
        + 1e-4 * (latent.intrinsics[:, 0, 0] - 300.0).square().mean()
    )
    if latent.gravity is not None:
        loss = loss + (1 - latent.gravity[:, 1]).mean() + latent.category_logits.logsumexp(dim=1).mean()
    return loss


def train_throughput(
    config_name: str,
    batch_size: int,
    query_points: int,
    steps: int = 5,
    warmup: int = 2,
    device: str = "cpu",
    threads: int | None = None,
    seed: int = 0,
    stage: str = "joint",
    precision: str = "fp32",
    channels_last: bool = False,
) -> ThroughputResult:
    """Time full optimisation steps (forward, backward, AdamW) on random inputs of the right shapes.

    stage: "joint" runs the whole model (image → occupancy); "shape" the 3D half alone on a given visible
    shape, as the shape stage of training does. precision: "fp32", or "bf16" autocast (on CPUs with bf16
    instructions, e.g. AVX512-BF16 or AMX, as on a GPU). channels_last: the image-side tensors in NHWC."""
    if stage not in ("joint", "shape"):
        raise ValueError(f"unknown stage {stage!r}; choose joint or shape")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"training benchmarks run in fp32 or bf16, not {precision!r}")
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
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        image = image.contiguous(memory_format=torch.channels_last)
    K = torch.tensor([[1.4 * size, 0.0, size / 2], [0.0, 1.4 * size, size / 2], [0.0, 0.0, 1.0]], device=device)
    K = K.expand(batch_size, 3, 3)
    autocast_dtype = torch.bfloat16 if precision == "bf16" else None

    def step() -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.split(":")[0], dtype=autocast_dtype, enabled=autocast_dtype is not None):
            if stage == "shape":
                _, logits = model(
                    None, points, prompts, visible_mask=visible, depth=depth + 1.0, intrinsics=K, occluder_mask=occluder
                )
                loss = F.binary_cross_entropy_with_logits(logits.float(), occupancy)
            else:
                latent, logits = model(image, points, prompts, visible_mask=visible)
                loss = stand_in_loss(latent, logits.float(), occupancy, visible, occluder, depth)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(warmup):
        step()
    times = [step() for _ in range(steps)]
    return ThroughputResult(
        config_name, device, torch.get_num_threads(), batch_size, query_points, times, stage, precision
    )


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


@dataclass
class ReconstructBenchmark:
    config: str
    device: str
    resolution: int
    precision: str
    shape: str
    repeats: int
    """image→mesh is the median of this many runs in a warm process (after one untimed run)."""
    stage_seconds: dict[str, float]
    queries: int
    dense_queries: int
    faces: int
    volume_iou_vs_dense: float | None
    peak_memory_mb: float
    """Peak resident memory of the process (CPU) or peak allocated GPU memory (CUDA), in MiB."""

    def row(self) -> str:
        s = self.stage_seconds
        iou = f"{self.volume_iou_vs_dense:.4f}" if self.volume_iou_vs_dense is not None else "-"
        return (
            f"| {self.config} | {self.device} {self.precision} | {self.shape} | {self.resolution} | {s['load']:.2f} | "
            f"{s['preprocess']:.3f} | {s['encode']:.3f} | {s['mask']:.3f} | {s['occupancy']:.2f} | "
            f"{s['marching_cubes']:.2f} | {s['export']:.3f} | "
            f"**{s['image_to_mesh']:.2f}** (median of {self.repeats}) | {self.queries:,} "
            f"({self.queries / self.dense_queries:.1%}) | "
            f"{self.faces:,} | {iou} | {self.peak_memory_mb:,.0f} |"
        )


BENCHMARK_HEADER = (
    "| config | device | shape | res | load s | preprocess s | encode s | mask s | occupancy s | marching cubes s | "
    "export s | image→mesh s | field queries (of dense) | faces | IoU vs dense | peak MiB |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def reconstruct_benchmark(
    config_name: str,
    image_path: str,
    resolution: int = 128,
    device: str = "auto",
    compare_dense: bool = True,
    checkpoint: str | None = None,
    seed: int = 0,
    precision: str = "fp32",
    shape: str = "inflate",
    repeats: int = 5,
) -> ReconstructBenchmark:
    """Time each stage of photo → mesh file for one config (random weights unless `checkpoint` is given): one untimed
    run warms the process, then image→mesh (and each stage) is the median of `repeats` runs.

    The occupancy field of an untrained network is near its level almost everywhere, so coarse-to-fine
    refinement saves little on it: query counts are only representative with trained weights. "occupancy" is the
    whole shape stage as the pipeline timed it (the field, inflated or the carved decoder's, and marching cubes;
    "marching cubes" is then 0). With `learned` and `compare_dense`, the decoder's coarse-to-fine grid is checked
    against the dense one (uncarved).
    """
    import tempfile
    from pathlib import Path

    import numpy as np

    from .export import write_reconstruction
    from .mesh import evaluate_grid
    from .model.checkpoint import save_checkpoint
    from .pipeline import ReconstructOptions, Reconstructor
    from .preprocess import load_photo

    with tempfile.TemporaryDirectory() as folder:
        open_clip_weights = None
        if checkpoint is None:
            torch.manual_seed(seed)
            model = ZeroShapeW(get_config(config_name))
            checkpoint = save_checkpoint(model, Path(folder) / "model.safetensors", provenance={"untrained": True})
            if model.text_encoder.frozen_external:
                # The random OpenCLIP tower goes to a file of its own, as real OpenCLIP weights would.
                from safetensors.torch import save_file

                open_clip_weights = Path(folder) / "open_clip_text.safetensors"
                save_file(model.text_encoder.tower.state_dict(), str(open_clip_weights))
            del model
        stages: dict[str, float] = {}
        start = time.perf_counter()
        reconstructor = Reconstructor(checkpoint, device, open_clip_weights)
        stages["load"] = time.perf_counter() - start

        options = ReconstructOptions(resolution=resolution, frame="camera", precision=precision, shape=shape)
        reconstructor.reconstruct(load_photo(image_path), options)  # warm-up: caches, allocator, lazy imports
        runs = []
        for _ in range(max(1, repeats)):
            photo_start = time.perf_counter()
            photo = load_photo(image_path)
            result = reconstructor.reconstruct(photo, options)
            export_start = time.perf_counter()
            write_reconstruction(result, Path(folder) / "mesh.glb", "glb")
            done = time.perf_counter()
            timings = result.metadata["timings_s"]
            runs.append(
                {
                    "preprocess": timings["preprocess"] + (export_start - photo_start - sum(timings.values())),
                    "encode": timings["encode"],
                    "mask": timings["mask"],
                    "shape": timings["occupancy_and_meshing"],
                    "export": done - export_start,
                    "image_to_mesh": done - photo_start,
                }
            )
        stages |= {key: statistics.median(run[key] for run in runs) for key in runs[0]}

        model = reconstructor.model
        iou = None
        # The shape stage as the pipeline timed it: the field (inflated, or the decoder carved by the cone) and
        # marching cubes together.
        stages["occupancy"], stages["marching_cubes"] = stages["shape"], 0.0
        if shape == "learned" and compare_dense:
            # The coarse-to-fine grid against the dense one, on the decoder's own (uncarved) field, in fp32.
            from .preprocess import crop_photo

            box = reconstructor.locate(photo, options.category)
            crop = crop_photo(photo, box, reconstructor.preprocess)
            with torch.inference_mode():
                latent = model.encode(reconstructor._to_tensor(crop.rgb), [options.category])

                def query(points: np.ndarray) -> np.ndarray:
                    batch = torch.from_numpy(points).to(reconstructor.device)[None]
                    return model.query(batch, latent)[0].float().cpu().numpy()

                chunk = 262144 if reconstructor.device.type == "cuda" else 16384
                half = reconstructor.preprocess.query_box_half_extent
                grid = evaluate_grid(query, resolution, half, chunk_size=chunk)
                dense = evaluate_grid(query, resolution, half, chunk_size=chunk, dense=True)
                inside, dense_inside = grid.values > 0, dense.values > 0
                union = (inside | dense_inside).sum()
                iou = float((inside & dense_inside).sum() / union) if union else 1.0
        return ReconstructBenchmark(
            config=config_name,
            device=str(reconstructor.device),
            resolution=resolution,
            precision=precision,
            shape=shape,
            repeats=max(1, repeats),
            stage_seconds=stages,
            queries=result.metadata["queries"],
            dense_queries=result.metadata["dense_grid_queries"],
            faces=result.metadata["faces"],
            volume_iou_vs_dense=iou,
            peak_memory_mb=_peak_memory_mb(reconstructor.device),
        )
