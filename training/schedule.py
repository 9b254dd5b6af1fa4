"""The training schedule: which stage a step is in, its learning rates, its teacher-forcing probability, and the
samples it uses (drawn from the seed and the step, so a resumed run repeats an uninterrupted one exactly).

Stages, in order: the shape stage (the 3D half alone, on true visible shapes corrupted like predictions), the
pixel stage (the image side alone) and the joint stage (everything; the decoder is fed the truth with the
teacher-forcing probability). Each stage warms its learning rate up, then decays it on a cosine.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch

from training.dataset import SampleRequest
from training.distributed import Distributed
from training.recipes import TrainRecipe

SHAPE_STAGE, PIXEL_STAGE, JOINT_STAGE = 0, 1, 2
"""The stages in the order they run: shape (3D half on corrupted true shapes), pixel (stage 1), joint (stage 2)."""


def stage_of(step: int, recipe: TrainRecipe, max_steps: int) -> tuple[int, int, int]:
    """(stage: SHAPE_STAGE, PIXEL_STAGE or JOINT_STAGE, first step of that stage, its length) for a 0-based step."""
    shape = round(max_steps * recipe.shape_stage_fraction)
    pixel = round(max_steps * recipe.stage1_fraction)
    if step < shape:
        return SHAPE_STAGE, 0, shape
    if step < shape + pixel:
        return PIXEL_STAGE, shape, pixel
    return JOINT_STAGE, shape + pixel, max_steps - shape - pixel


class Schedule(NamedTuple):
    """What the schedule sets at one step."""

    pixel_lr: float
    """Learning rate of the image side (backbone and pixel heads)."""
    shape_lr: float
    """Learning rate of the 3D side (coordinate encoder and decoder)."""
    teacher_forcing: float
    """Probability that a sample's decoder sees the true visible shape instead of the predicted one."""


def schedule(step: int, recipe: TrainRecipe, max_steps: int, base: float) -> Schedule:
    """The learning rates and teacher-forcing probability at a 0-based step."""
    stage, start, length = stage_of(step, recipe, max_steps)
    position = step - start
    warmup = min(recipe.warmup_steps, max(1, length // 4))
    if position < warmup:
        factor = (position + 1) / warmup
    else:
        progress = (position - warmup) / max(1, length - warmup)
        factor = recipe.final_lr_ratio + (1 - recipe.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if stage == SHAPE_STAGE:
        return Schedule(0.0, base * factor, 1.0)
    if stage == PIXEL_STAGE:
        return Schedule(base * factor, 0.0, 1.0)
    start_p, end_p = recipe.teacher_forcing
    forcing = start_p + (end_p - start_p) * position / max(1, length - 1)
    return Schedule(base * recipe.stage2_pixel_lr_ratio * factor, base * factor, forcing)


def step_requests(seed: int, step: int, global_batch: int, dataset_size: int) -> tuple[list[SampleRequest], np.ndarray]:
    """The global batch of a step and the step's own random numbers (prompt dropout, teacher forcing)."""
    rng = np.random.default_rng([seed, step])
    indices = rng.integers(0, dataset_size, size=global_batch)
    seeds = rng.integers(0, 2**63 - 1, size=global_batch)
    extra = rng.random(global_batch + 1)  # one per sample (prompt dropout), one for the step (teacher forcing)
    return [SampleRequest(int(i), int(s)) for i, s in zip(indices, seeds, strict=True)], extra


class StepBatches(torch.utils.data.Sampler):
    """Batch sampler: this process's slice of every step's global batch, from `first_step` on."""

    def __init__(self, seed: int, first_step: int, last_step: int, batch: int, dist: Distributed, size: int):
        self.seed, self.first, self.last, self.batch, self.dist, self.size = (
            seed,
            first_step,
            last_step,
            batch,
            dist,
            size,
        )

    def __iter__(self) -> Iterator[list[SampleRequest]]:
        for step in range(self.first, self.last):
            requests, _ = step_requests(self.seed, step, self.batch * self.dist.world, self.size)
            yield requests[self.dist.rank * self.batch : (self.dist.rank + 1) * self.batch]

    def __len__(self) -> int:
        return self.last - self.first
