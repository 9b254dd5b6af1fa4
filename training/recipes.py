"""Training recipes: one frozen dataclass per model size, next to the model configs they train."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from training.losses import LossWeights


@dataclass(frozen=True)
class TrainRecipe:
    config_name: str
    batch_size: int
    """Images per optimisation step (per process)."""
    query_points: int
    """Occupancy query points sampled per image and step."""
    learning_rate: float
    """Peak learning rate of the parts a stage trains from scratch."""
    max_steps: int
    """Default length of a run (both stages); the learning-rate schedule spans it."""
    stage1_fraction: float
    """Share of the steps in stage 1 (pixel-level parts only: backbone, camera, depth and mask heads)."""
    stage2_pixel_lr_ratio: float
    """Stage 2 trains everything; the stage-1 parts at this fraction of the learning rate (paper: 1e-6 / 1e-5)."""
    warmup_steps: int = 100
    """Linear warm-up at the start of each stage; then cosine decay to `final_lr_ratio` at the stage's end."""
    shape_stage_fraction: float = 0.0
    """Share of the steps in the shape stage, before stage 1: the coordinate encoder and decoder alone, on true
    visible shapes corrupted like predictions (training.shape_augment), without running the backbone."""
    final_lr_ratio: float = 0.05
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    teacher_forcing: tuple[float, float] = (0.0, 0.0)
    """Probability (start, end of stage 2, linear) that a step builds the visible shape from the true depth,
    camera and mask instead of the predicted ones: a from-scratch shape decoder first learns from clean
    shapes, then from the predictions it will see at inference."""
    corrupt_teacher_forcing: bool = False
    """Stage-2 teacher forcing gives the true shape corrupted like predictions (training.shape_augment) instead of
    the exact truth, so a decoder that learned to read evidence in the shape stage keeps reading it."""
    prompt_dropout: float = 0.3
    """Probability that a sample's category prompt is replaced by "object" (keeps the agnostic setting working)."""
    box_fraction: float = 0.125
    """Share of query points drawn uniformly in the whole query box outside the object (all empty)."""
    loss_weights: LossWeights = field(default_factory=LossWeights)
    grad_clip: float = 1.0


RECIPES: dict[str, TrainRecipe] = {
    # ZeroShape-W's recipe for warm-starting from ZeroShape: batch 28, 4096 points, AdamW (0.9, 0.95),
    # weight decay 0.05, 1e-5 for the new parts and 1e-6 for the pretrained ones.
    "paper": TrainRecipe(
        "paper",
        batch_size=28,
        query_points=4096,
        learning_rate=1e-5,
        max_steps=100_000,
        stage1_fraction=0.3,
        stage2_pixel_lr_ratio=0.1,
        warmup_steps=1000,
    ),
    # From scratch on a 2-core CPU: 2048 points keep a step of 8 images near one second (`zeroshape-w
    # benchmark`); larger learning rates because nothing is pretrained; pixel parts keep learning in stage 2
    # (ratio 0.3) since a short stage 1 cannot finish them; teacher forcing lets the shape decoder start on
    # clean visible shapes.
    "small": TrainRecipe(
        "small",
        batch_size=8,
        query_points=2048,
        learning_rate=1e-3,
        max_steps=3000,
        stage1_fraction=0.15,
        stage2_pixel_lr_ratio=0.3,
        warmup_steps=100,
        teacher_forcing=(0.8, 0.2),
    ),
    "tiny": TrainRecipe(
        "tiny",
        batch_size=2,
        query_points=256,
        learning_rate=1e-3,
        max_steps=200,
        stage1_fraction=0.25,
        stage2_pixel_lr_ratio=0.3,
        warmup_steps=10,
        teacher_forcing=(0.8, 0.2),
    ),
}

# `medium` trains on `small`'s recipe (same batch, points and stages), so the two compare at equal samples.
RECIPES["medium"] = dataclasses.replace(RECIPES["small"], config_name="medium")


def get_recipe(config_name: str) -> TrainRecipe:
    try:
        return RECIPES[config_name]
    except KeyError:
        raise ValueError(f"no training recipe for {config_name!r}; choose one of {sorted(RECIPES)}") from None
