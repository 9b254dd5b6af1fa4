"""Pixel-aligned evidence: what the camera saw along a query point's ray.

The token decoder alone sees the visible shape through a 7×7 grid of tokens, too coarse to know whether a
point lies in front of the visible surface (empty), just behind it (inside) or outside the silhouette
(empty unless something hides the object there). Each query point is therefore projected through the
intrinsics the visible shape was built with, and the maps of that shape are sampled at its pixel:

* the signed distance along the ray from the visible surface to the point, in normalised units (negative:
  in front of the surface, where the camera saw through to it, so the point is empty);
* the offset from the visible surface point at that pixel to the query point (3 numbers);
* the visible-shape weight (is there visible surface at this pixel), the visible-mask and occluder-mask
  probabilities, and whether the point projects into the image at all;
* the coordinate encoder's fine feature map (local geometry context: thickness, edges).

Sampling is bilinear and mask-aware (the visible-surface values are averaged over visible pixels only), so
values never mix the object's depth with the background's zeros. The projection itself carries no gradient:
the evidence teaches the decoder to read the maps, not the camera head to move points.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .geometry import Normalisation

GEOMETRY_CHANNELS = 9
"""Per point: signed distance, its tanh, offset (3), surface weight, visible prob, occluder prob, in-image."""

SURFACE_CHANNELS = 7
"""Channels of `PixelEvidence.surface`: weight w, w·z, w·(x, y, z) normalised, visible prob, occluder prob."""


@dataclass
class PixelEvidence:
    """The maps a query point reads at its pixel, and the camera that maps points to pixels."""

    intrinsics: torch.Tensor
    """[B, 3, 3] K in pixels of the maps below (the K the visible shape was built with)."""
    normalisation: Normalisation
    """camera coordinates → normalised frame (the visible shape's)."""
    surface: torch.Tensor
    """[B, 7, H, W]: visible weight w ∈ {0, 1}; w·camera z; w·normalised x, y, z; visible-mask and occluder-mask
    probabilities. Camera z is in the depth map's units."""
    features: torch.Tensor
    """[B, C, h, w] the coordinate encoder's fine features (any h, w: sampled in normalised image coordinates)."""


def surface_maps(
    depth: torch.Tensor,
    visible: torch.Tensor,
    visible_points: torch.Tensor,
    visible_prob: torch.Tensor,
    occluder_prob: torch.Tensor,
) -> torch.Tensor:
    """Stack the visible shape's maps into `PixelEvidence.surface` [B, 7, H, W].

    Args:
        depth: [B, 1, H, W] camera z used for the visible shape.
        visible: [B, 1, H, W] bool, the pixels of the visible shape.
        visible_points: [B, 3, H, W] normalised visible shape (zero outside `visible`).
        visible_prob, occluder_prob: [B, 1, H, W] in [0, 1].
    """
    weight = visible.to(depth.dtype)
    return torch.cat([weight, depth * weight, visible_points * weight, visible_prob, occluder_prob], dim=1)


def project_to_grid(points: torch.Tensor, evidence: PixelEvidence) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised-frame points → grid_sample coordinates, camera z and an in-image flag.

    Args:
        points: [B, N, 3] in the normalised frame.
    Returns:
        grid [B, N, 1, 2] in [-1, 1] (align_corners=False; pixel u's centre is at u, as in geometry.py),
        camera z [B, N] in depth units, in_image [B, N] in {0, 1}.
    """
    norm = evidence.normalisation
    camera = points * norm.scale[:, None, None] + norm.centroid[:, None, :]  # [B, N, 3]
    z = camera[..., 2]
    pixels = camera @ evidence.intrinsics.transpose(1, 2)  # [B, N, 3] = (K x)ᵀ
    safe_z = torch.where(z.abs() < 1e-6, torch.full_like(z, 1e-6), z)
    u, v = pixels[..., 0] / safe_z, pixels[..., 1] / safe_z
    height, width = evidence.surface.shape[-2:]
    gx = (u + 0.5) / width * 2 - 1
    gy = (v + 0.5) / height * 2 - 1
    in_image = ((gx.abs() <= 1) & (gy.abs() <= 1) & (z > 1e-6)).to(points.dtype)
    # Points behind the camera (never in practice: the box is in front) are sent off the image.
    gx = torch.where(z > 1e-6, gx, torch.full_like(gx, 3.0)).clamp(-3, 3)
    gy = torch.where(z > 1e-6, gy, torch.full_like(gy, 3.0)).clamp(-3, 3)
    return torch.stack([gx, gy], dim=-1)[:, :, None], z, in_image


def sample_evidence(points: torch.Tensor, evidence: PixelEvidence) -> torch.Tensor:
    """Per-point evidence [B, N, GEOMETRY_CHANNELS + C] for points [B, N, 3] in the normalised frame, float32.

    Runs in float32 even under autocast: a bf16 pixel coordinate can be a pixel off, a bf16 depth difference
    loses the relief of a far object, and CPU grid_sample is slower in bf16 than in float32."""
    with torch.autocast(points.device.type, enabled=False):
        return _sample_evidence(points.float(), _float_camera(evidence))


def _sample_evidence(points: torch.Tensor, evidence: PixelEvidence) -> torch.Tensor:
    with torch.no_grad():
        grid, z, in_image = project_to_grid(points, evidence)
    surface = F.grid_sample(evidence.surface, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    surface = surface[..., 0].transpose(1, 2)  # [B, N, 7]
    weight = surface[..., 0:1]
    has_surface = (weight > 1e-3).to(surface.dtype)
    inverse = has_surface / weight.clamp_min(1e-3)
    surface_z = surface[..., 1] * inverse[..., 0]
    surface_point = surface[..., 2:5] * inverse
    scale = evidence.normalisation.scale[:, None]
    signed = ((z - surface_z) / scale * has_surface[..., 0]).clamp(-2.0, 2.0)
    offset = (points - surface_point) * has_surface
    geometry = torch.cat(
        [
            signed[..., None],
            torch.tanh(8.0 * signed)[..., None],
            offset,
            weight,
            surface[..., 5:7],
            in_image[..., None],
        ],
        dim=-1,
    )
    features = F.grid_sample(evidence.features, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return torch.cat([geometry, features[..., 0].transpose(1, 2)], dim=-1)


def _float_camera(evidence: PixelEvidence) -> PixelEvidence:
    norm = evidence.normalisation
    return PixelEvidence(
        intrinsics=evidence.intrinsics.float(),
        normalisation=Normalisation(centroid=norm.centroid.float(), scale=norm.scale.float()),
        surface=evidence.surface.float(),
        features=evidence.features.float(),
    )


class EvidenceEmbedding(nn.Module):
    """Per-point evidence → an embedding added to the point's query.

    The last layer starts at zero, so a decoder warm-started from a token-only checkpoint begins exactly where
    that checkpoint was and learns how much to trust the evidence.
    """

    def __init__(self, feature_channels: int, hidden: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(GEOMETRY_CHANNELS + feature_channels, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, out_dim),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, points: torch.Tensor, evidence: PixelEvidence) -> torch.Tensor:
        """points [B, N, 3] normalised → [B, N, out_dim]."""
        return self.net(sample_evidence(points, evidence))
