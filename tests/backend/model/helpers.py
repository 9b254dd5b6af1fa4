"""Builders shared by the model tests."""

from __future__ import annotations

import torch

from backend.model.config import ModelConfig
from backend.model.zeroshape import ZeroShapeW


def make_batch(config: ModelConfig, batch: int = 2, points: int = 64) -> dict[str, torch.Tensor]:
    size = config.image_size
    visible = torch.zeros(batch, 1, size, size)
    visible[:, :, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1.0
    return {
        "image": torch.rand(batch, 3, size, size),
        "points": torch.rand(batch, points, 3) * 3 - 1.5,
        "occupancy": (torch.rand(batch, points) > 0.5).float(),
        "visible": visible,
        "occluder": torch.flip(visible, dims=[-1]) * (1 - visible),
        "depth": torch.rand(batch, 1, size, size),
    }


def randomise_zero_parameters(model: ZeroShapeW, std: float = 0.02) -> None:
    """Give zero-initialised layers (intrinsics projection, FiLM) random values, so that every gradient
    path is live and a zero gradient really means a disconnected parameter."""
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad and not parameter.any():
                parameter.normal_(0.0, std)
