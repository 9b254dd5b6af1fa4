"""Training recipes: one frozen dataclass per model size, next to the model configs they train."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainRecipe:
    config_name: str
    batch_size: int
    """Images per optimisation step (per process)."""
    query_points: int
    """Occupancy query points sampled per image and step."""
    learning_rate: float
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)


RECIPES: dict[str, TrainRecipe] = {
    # ZeroShape's shape stage: batch 28, 4096 points, AdamW (0.9, 0.95), weight decay 0.05.
    "paper": TrainRecipe("paper", batch_size=28, query_points=4096, learning_rate=1e-5),
    # Sized for a 2-core CPU: 2048 points per image keep a step of 8 images near one second
    # (see `zeroshape-w benchmark train`); the decoder cost is linear in this number.
    "small": TrainRecipe("small", batch_size=8, query_points=2048, learning_rate=3e-4),
    "tiny": TrainRecipe("tiny", batch_size=2, query_points=256, learning_rate=1e-3),
}


def get_recipe(config_name: str) -> TrainRecipe:
    try:
        return RECIPES[config_name]
    except KeyError:
        raise ValueError(f"no training recipe for {config_name!r}; choose one of {sorted(RECIPES)}") from None
