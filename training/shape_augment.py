"""Corrupt true depth, camera and masks the way the pixel heads' predictions are wrong.

The shape stage trains the coordinate encoder and decoder on true visible shapes (no backbone: fast). At
inference they read predicted shapes instead, whose errors are of a few known kinds, imitated here so the
decoder learns to complete shapes from evidence that is roughly right rather than exactly right:

* affine depth error: the depth loss is scale-and-shift invariant, so the predicted relief can be stretched
  or flattened about the object's mean depth (thickness error) and shifted (perspective error);
* wrong focal length (the camera head's error), which bends the unprojected shape;
* smooth low-frequency depth error and per-pixel noise; a blurred depth (predictions are smooth);
* a mask eroded or dilated by a pixel or two, and holes in it.

Every draw comes from a `torch.Generator`, so a training step stays a function of (seed, step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ShapeAugmentation:
    probability: float = 0.8
    """Share of samples corrupted at all (the rest stay exact)."""
    relief_log_range: float = 0.5
    """Relief (depth about its mean) scaled by exp(U(-r, r)): 0.5 → ×0.61 … ×1.65."""
    shift_fraction: float = 0.3
    """Depth shifted by U(-f, f) × the object's mean depth (changes perspective, not just scale)."""
    focal_log_std: float = 0.15
    """Focal length × exp(N(0, σ))."""
    smooth_noise: float = 0.05
    """Std of a low-frequency (8×8, upsampled) depth error, in units of the object's depth spread."""
    pixel_noise: float = 0.02
    """Std of per-pixel depth noise, in units of the object's depth spread."""
    blur_probability: float = 0.5
    max_mask_change: int = 2
    """The mask is eroded or dilated by 0..this many pixels."""
    hole_probability: float = 0.3
    """Chance of up to three rectangular holes (each 5–15% of the side) in the visible mask."""


def corrupt_visible_shape(
    depth: torch.Tensor,
    K: torch.Tensor,
    visible: torch.Tensor,
    augmentation: ShapeAugmentation,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Imitate predicted-depth errors on a batch of true visible shapes.

    Args:
        depth: [B, 1, H, W] true camera z (0 off the object); K: [B, 3, 3]; visible: [B, 1, H, W] in {0, 1}.
    Returns:
        (depth, K, visible) of the same shapes; a sample whose mask would become empty is left exact.
    """
    batch = depth.shape[0]
    uniform = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    normal = lambda *shape: torch.randn(*shape, generator=generator)  # noqa: E731
    chosen = (uniform(batch) < augmentation.probability).to(depth.dtype)[:, None, None, None]
    mask = (visible >= 0.5).to(depth.dtype)

    # Mask erosion / dilation by max-pooling; dilated pixels get their neighbours' mean depth.
    new_mask = mask.clone()
    new_depth = depth.clone()
    for index in range(batch):
        radius = int(torch.randint(0, augmentation.max_mask_change + 1, (1,), generator=generator))
        if radius == 0:
            continue
        one = mask[index : index + 1]
        size = 2 * radius + 1
        if uniform(1) < 0.5:
            new_mask[index] = -F.max_pool2d(-one, size, stride=1, padding=radius)[0]
        else:
            grown = F.max_pool2d(one, size, stride=1, padding=radius)
            total = F.avg_pool2d(depth[index : index + 1] * one, size, stride=1, padding=radius)
            count = F.avg_pool2d(one, size, stride=1, padding=radius).clamp_min(1e-6)
            fill = total / count
            new_depth[index] = torch.where(one > 0, depth[index : index + 1], fill)[0]
            new_mask[index] = grown[0]
    height, width = depth.shape[-2:]
    for index in range(batch):
        if uniform(1) >= augmentation.hole_probability:
            continue
        for _ in range(int(torch.randint(1, 4, (1,), generator=generator))):
            h = max(1, int(height * (0.05 + 0.1 * float(uniform(1)))))
            w = max(1, int(width * (0.05 + 0.1 * float(uniform(1)))))
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            new_mask[index, :, top : top + h, left : left + w] = 0

    # Affine depth error about the object's mean depth, smooth and per-pixel noise, blur.
    count = new_mask.flatten(1).sum(1).clamp_min(1.0)
    mean = (new_depth * new_mask).flatten(1).sum(1) / count  # [B]
    spread = ((new_depth - mean[:, None, None, None]).abs() * new_mask).flatten(1).sum(1) / count
    spread = spread.clamp_min(1e-3 * mean.clamp_min(1e-6))[:, None, None, None]
    mean = mean[:, None, None, None]
    relief = torch.exp((uniform(batch) * 2 - 1) * augmentation.relief_log_range)[:, None, None, None]
    shift = (uniform(batch) * 2 - 1)[:, None, None, None] * augmentation.shift_fraction * mean
    smooth = F.interpolate(normal(batch, 1, 8, 8), size=(height, width), mode="bicubic", align_corners=False)
    noisy = (
        mean
        + (new_depth - mean) * relief
        + shift
        + spread * (augmentation.smooth_noise * smooth + augmentation.pixel_noise * normal(batch, 1, height, width))
    )
    blur = (uniform(batch) < augmentation.blur_probability).to(depth.dtype)[:, None, None, None]
    blurred = F.avg_pool2d(noisy * new_mask, 5, stride=1, padding=2) / F.avg_pool2d(
        new_mask, 5, stride=1, padding=2
    ).clamp_min(1e-6)
    noisy = blur * blurred + (1 - blur) * noisy
    # Never behind the camera: at least 10% of the mean depth.
    noisy = torch.maximum(noisy, 0.1 * mean) * new_mask

    focal = torch.exp(normal(batch) * augmentation.focal_log_std)
    new_K = K.clone()
    new_K[:, 0, 0] = K[:, 0, 0] * focal
    new_K[:, 1, 1] = K[:, 1, 1] * focal

    keep = chosen * (new_mask.flatten(1).sum(1) > 16).to(depth.dtype)[:, None, None, None]
    out_depth = keep * noisy + (1 - keep) * depth
    out_mask = keep * new_mask + (1 - keep) * mask
    k = keep[:, :, 0, 0][..., None]  # [B, 1, 1]
    out_K = k * new_K + (1 - k) * K
    return out_depth, out_K, out_mask
