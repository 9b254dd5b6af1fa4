"""Camera geometry: from a depth map and intrinsics to the normalised visible 3D shape.

Frames: OpenCV camera axes (x right, y down, z forward). Pixel (u, v) = (column, row), with no half-pixel
offset, as ZeroShape does. The normalised frame puts the visible points' centroid at the origin and their
largest distance from it at 1, so the network never sees metric scale or translation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Normalisation:
    """Similarity that maps camera coordinates to the normalised frame: x_n = (x_cam − centroid) / scale."""

    centroid: torch.Tensor
    """[B, 3], in the units of the depth map."""
    scale: torch.Tensor
    """[B], in the units of the depth map."""


def pixel_rays(K: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """K⁻¹ [u, v, 1]ᵀ for every pixel.

    Args:
        K: [B, 3, 3] intrinsics in pixels.
    Returns:
        [B, 3, H, W] rays with z = 1.
    """
    v, u = torch.meshgrid(
        torch.arange(height, dtype=K.dtype, device=K.device),
        torch.arange(width, dtype=K.dtype, device=K.device),
        indexing="ij",
    )
    pixels = torch.stack([u, v, torch.ones_like(u)], dim=0).reshape(3, -1)  # [3, H·W]
    rays = torch.linalg.inv(K) @ pixels  # [B, 3, H·W]
    return rays.reshape(K.shape[0], 3, height, width)


def unproject_depth(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """depth [B, 1, H, W] (camera z), K [B, 3, 3] → points [B, 3, H, W] in camera coordinates."""
    return depth * pixel_rays(K, depth.shape[-2], depth.shape[-1])


def normalise_points(
    points: torch.Tensor, valid: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, Normalisation]:
    """Centre the valid points on their centroid and scale them into the unit ball.

    Args:
        points: [B, 3, H, W] camera coordinates.
        valid: [B, 1, H, W] bool or {0, 1}; a sample with no valid pixel uses all of its pixels, so a
            blank prediction still gives finite numbers.
        eps: smallest scale, so a degenerate (single-point) shape cannot divide by zero.

    Returns:
        (normalised points [B, 3, H, W], zero where not valid; the normalisation used).
    """
    weight = valid.to(points.dtype)
    empty = weight.flatten(1).sum(1) == 0
    weight = torch.where(empty[:, None, None, None], torch.ones_like(weight), weight)
    count = weight.flatten(1).sum(1)  # [B]
    centroid = (points * weight).flatten(2).sum(2) / count[:, None]  # [B, 3]
    centred = points - centroid[:, :, None, None]
    # Written out rather than .norm(dim=1): the channel-dim reduction is ~10× slower on CPU.
    distance = centred.square().sum(dim=1, keepdim=True).clamp_min(1e-20).sqrt() * weight  # [B, 1, H, W]
    scale = distance.flatten(1).amax(1).clamp(min=eps)  # [B]
    normalised = centred / scale[:, None, None, None] * weight
    return normalised, Normalisation(centroid=centroid, scale=scale)


def resize_coordinate_map(points: torch.Tensor, mask: torch.Tensor, size: int) -> torch.Tensor:
    """Mask-aware bilinear resize of a point map: background pixels do not pull points toward 0.

    Args:
        points: [B, C, H, W] map that is zero outside the mask.
        mask: [B, 1, H, W] weights in [0, 1].
        size: output side.
    Returns:
        [B, C, size, size]; unchanged when the size already matches.
    """
    if points.shape[-1] == size and points.shape[-2] == size:
        return points
    summed = F.interpolate(points * mask, size=(size, size), mode="bilinear", align_corners=False)
    weight = F.interpolate(mask, size=(size, size), mode="bilinear", align_corners=False)
    return summed / weight.clamp(min=1e-6) * (weight > 1e-6)
