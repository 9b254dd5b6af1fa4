"""What a training run is asked to do (`TrainOptions`, the CLI's options as data) and the recipe it resolves to:
the config's recipe with the run's overrides, each checked with a reason when refused."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from backend.model.zeroshape import SHAPE_COMPONENTS
from training.losses import LossWeights
from training.recipes import TrainRecipe, get_recipe

# Heads that read no prompt; fitted alone onto a frozen model, they are trained as `auto` uses them.
HEADS_READING_NO_PROMPT = ("scene_head", "category_head")


@dataclass(frozen=True)
class TrainOptions:
    data: tuple[str, ...]
    """Rendered dataset folders (`zeroshape-w data render --out`)."""
    out: str
    """Run folder: checkpoints, TensorBoard logs, options.json."""
    config: str = "small"
    max_steps: int | None = None
    """Length of the run (the schedule spans it); default: the recipe's."""
    time_budget_minutes: float | None = None
    """Stop cleanly (checkpoint, exit) before this much wall time has passed; run again to continue."""
    init: str | None = None
    """Warm start: a ZeroShape-W checkpoint of the same config, or an official ZeroShape file (paper only)."""
    init_matching: bool = False
    """Warm start from a checkpoint whose architecture differs (e.g. an older version of the same size): every
    tensor whose name and shape match is copied, the rest keep their fresh initialisation."""
    stage1_fraction: float | None = None
    """Share of the steps in stage 1; default: the recipe's (0 skips it, e.g. after a warm start)."""
    shape_stage_fraction: float | None = None
    """Share of the steps in the shape stage (before stage 1); default: the recipe's."""
    teacher_forcing: tuple[float, float] | None = None
    """Teacher-forcing probability at the start and end of stage 2; default: the recipe's. A warm-started
    decoder already reads clean shapes, so continuing a run wants it low from the start."""
    corrupt_teacher_forcing: bool | None = None
    """Stage-2 teacher forcing with the truth corrupted like predictions; default: the recipe's."""
    loss_weights: tuple[tuple[str, float], ...] = ()
    """(term, weight) pairs that replace the recipe's loss weights, e.g. (("camera", 1.0),)."""
    grad_clip: float | None = None
    """Global gradient-norm clip; default: the recipe's."""
    train_only: tuple[str, ...] = ()
    """Train only these components (`backend.model.zeroshape.COMPONENTS`), the rest frozen as initialised, e.g.
    ("scene_head",) to fit the gravity and category head onto a shipped model without changing its meshes. When
    it names no part of the 3D half, every step is a pixel-stage step (the frozen decoder is not run for nothing);
    when it names only the scene and category heads, every prompt is "object", and with the category head every
    step is a joint step on the model's own predictions (see `resolve_recipe`)."""
    freeze: tuple[str, ...] = ()
    """The complement of `train_only`: freeze these components as initialised and train the rest, with the
    recipe's stages unchanged. E.g. ("coord_encoder", "decoder") keeps a 3D half that reads its evidence while
    joint steps pass the occupancy loss through it into the image side."""
    pixel_aligned: bool | None = None
    """Override the config's decoder: True reads pixel-aligned evidence, False is the token-only decoder."""
    seed: int = 0
    batch_size: int | None = None
    query_points: int | None = None
    learning_rate: float | None = None
    device: str = "auto"
    precision: str = "auto"
    """auto: bf16 autocast on a GPU that supports it, else fp16 with loss scaling; fp32 on the CPU."""
    workers: int | None = None
    """Data-loading processes; default 1 on the CPU (the other core computes), 4 per GPU."""
    threads: int | None = None
    checkpoint_every: int = 250
    log_every: int = 10
    open_clip_weights: str | None = None
    progress: bool = True


def resolve_recipe(options: TrainOptions) -> TrainRecipe:
    """The config's recipe with the run's overrides (stage split, teacher forcing, loss weights, clipping)."""
    recipe = get_recipe(options.config)
    if options.stage1_fraction is not None:
        if not 0.0 <= options.stage1_fraction < 1.0:
            raise ValueError(f"stage1_fraction must be in [0, 1), got {options.stage1_fraction}")
        recipe = dataclasses.replace(recipe, stage1_fraction=options.stage1_fraction)
    if options.shape_stage_fraction is not None:
        if not 0.0 <= options.shape_stage_fraction <= 1.0:
            raise ValueError(f"shape_stage_fraction must be in [0, 1], got {options.shape_stage_fraction}")
        recipe = dataclasses.replace(recipe, shape_stage_fraction=options.shape_stage_fraction)
    if recipe.shape_stage_fraction + recipe.stage1_fraction > 1.0:
        raise ValueError(
            f"the shape stage ({recipe.shape_stage_fraction}) and stage 1 ({recipe.stage1_fraction}) "
            "together take more than the whole run"
        )
    if options.teacher_forcing is not None:
        start_p, end_p = options.teacher_forcing
        if not (0.0 <= start_p <= 1.0 and 0.0 <= end_p <= 1.0):
            raise ValueError(f"teacher_forcing probabilities must be in [0, 1], got {options.teacher_forcing}")
        recipe = dataclasses.replace(recipe, teacher_forcing=(float(start_p), float(end_p)))
    if options.corrupt_teacher_forcing is not None:
        recipe = dataclasses.replace(recipe, corrupt_teacher_forcing=options.corrupt_teacher_forcing)
    if options.loss_weights:
        known = [f.name for f in dataclasses.fields(LossWeights)]
        weights = {}
        for name, value in options.loss_weights:
            if name not in known:
                raise ValueError(f"unknown loss term {name!r} in loss_weights; choose from {known}")
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"loss weight {name}={value} must be a finite number ≥ 0")
            weights[name] = float(value)
        recipe = dataclasses.replace(recipe, loss_weights=dataclasses.replace(recipe.loss_weights, **weights))
    if options.grad_clip is not None:
        if not (math.isfinite(options.grad_clip) and options.grad_clip > 0.0):
            raise ValueError(f"grad_clip must be a positive number, got {options.grad_clip}")
        recipe = dataclasses.replace(recipe, grad_clip=float(options.grad_clip))
    trained = set(options.train_only)
    if trained and trained <= set(HEADS_READING_NO_PROMPT):
        # Heads fitted onto a frozen model see what `auto` gives them at inference: the "object" prompt (a true
        # prompt would tell a category head the answer through the masks) and, for the category head, which reads
        # the shape tokens, the model's own predictions (the joint stage, no teacher forcing), not the truth the
        # pixel stage feeds the 3D half.
        recipe = dataclasses.replace(recipe, prompt_dropout=1.0, shape_stage_fraction=0.0)
        if "category_head" in trained:
            recipe = dataclasses.replace(recipe, stage1_fraction=0.0, teacher_forcing=(0.0, 0.0))
        else:
            recipe = dataclasses.replace(recipe, stage1_fraction=1.0)
    elif trained and not trained & set(SHAPE_COMPONENTS):
        recipe = dataclasses.replace(recipe, shape_stage_fraction=0.0, stage1_fraction=1.0)
    return recipe
