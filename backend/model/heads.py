"""Pixel-level heads of ZeroShape-W: intrinsics, depth, visible mask and occluder mask."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualConvBlock(nn.Module):
    """conv → BN → ReLU → conv → BN, plus the input.

    ZeroShape's `Bottleneck_Conv` has the same layers (and so the same weights) and applies a second
    ReLU after the sum; ZeroShape-W's supplement counts one ReLU per block ("4 conv, 2 ReLU" for two
    blocks of the intrinsics head, "9 extra conv and 4 ReLU" for the coordinate encoder), which is
    what is built here.
    """

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        padding = kernel_size // 2
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=padding, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=padding, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))


class IntrinsicsHead(nn.Module):
    """Global feature map [B, C, h, w] → camera intrinsics K [B, 3, 3] in pixels of the input image.

    Parametrised as ZeroShape does: f = f₀·4^(r·tanh p₀) with f₀ = ratio·W, and the principal point
    c = W/2·(1 + tanh p₁,₂), so any output is a valid camera and a zero output is the default one.
    """

    def __init__(self, channels: int, num_blocks: int, image_size: int, default_focal_ratio: float, log4_range: float):
        super().__init__()
        self.blocks = nn.Sequential(*(ResidualConvBlock(channels, 3) for _ in range(num_blocks)))
        self.proj = nn.Linear(channels, 3)
        # Zero init: training starts from the default camera instead of a random one.
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.image_size = image_size
        self.default_focal = default_focal_ratio * image_size
        self.log4_range = log4_range

    def forward(self, global_map: torch.Tensor) -> torch.Tensor:
        pooled = self.blocks(global_map).mean(dim=(2, 3))
        return self.params_to_matrix(self.proj(pooled))

    def params_to_matrix(self, params: torch.Tensor) -> torch.Tensor:
        """Raw head output [B, 3] → K [B, 3, 3]."""
        squashed = torch.tanh(params)
        focal = self.default_focal * 4.0 ** (self.log4_range * squashed[:, 0])
        half = self.image_size / 2
        cx, cy = half + half * squashed[:, 1], half + half * squashed[:, 2]
        K = torch.zeros(params.shape[0], 3, 3, dtype=params.dtype, device=params.device)
        K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = focal, focal, cx, cy, 1.0
        return K


class DepthHead(nn.Module):
    """Fine map [B, C, H/2, W/2] → depth [B, 1, H, W] (≥ 0; scale and shift are not metric).

    DPT's head: conv 3×3 → ×2 bilinear → conv 3×3 → ReLU → conv 1×1 → ReLU (3 conv, 2 ReLU).
    """

    def __init__(self, channels: int, hidden: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels // 2, 3, padding=1)
        self.conv2 = nn.Conv2d(channels // 2, hidden, 3, padding=1)
        self.conv3 = nn.Conv2d(hidden, 1, 1)
        # A small positive bias keeps the final ReLU alive at initialisation (as in ZeroShape).
        nn.init.constant_(self.conv3.bias, 0.05)

    def forward(self, fine_map: torch.Tensor) -> torch.Tensor:
        x = self.conv1(fine_map)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return F.relu(self.conv3(F.relu(self.conv2(x))))


class FiLM(nn.Module):
    """Feature-wise modulation by the text embedding: x̄ = (1 + γ)·x + β with (γ, β) = Linear(SiLU(t))."""

    def __init__(self, text_dim: int, channels: int):
        super().__init__()
        self.to_scale_shift = nn.Linear(text_dim, 2 * channels)
        # Zero init: an untrained FiLM is the identity, so a new prompt cannot wreck the features.
        nn.init.zeros_(self.to_scale_shift.weight)
        nn.init.zeros_(self.to_scale_shift.bias)

    def forward(self, x: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
        """x [B, C, h, w], text_embedding [B, E] → [B, C, h, w]."""
        gamma, beta = self.to_scale_shift(F.silu(text_embedding)).chunk(2, dim=-1)
        return x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


class MaskHead(nn.Module):
    """Fine map (optionally with extra channels) → mask logits [B, 1, H, W].

    FiLM on the fine map → concat extra input → conv 3×3 → ReLU → conv 1×1 → ×2 bilinear.
    The visible-mask head has no extra input; the occluder head gets the visible mask.
    """

    def __init__(self, channels: int, text_dim: int, extra_channels: int = 0):
        super().__init__()
        self.film = FiLM(text_dim, channels)
        self.conv1 = nn.Conv2d(channels + extra_channels, channels // 2, 3, padding=1)
        self.conv2 = nn.Conv2d(channels // 2, 1, 1)

    def forward(
        self, fine_map: torch.Tensor, text_embedding: torch.Tensor, extra: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.film(fine_map, text_embedding)
        if extra is not None:
            x = torch.cat([x, extra], dim=1)
        logits = self.conv2(F.relu(self.conv1(x)))
        return F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)


class SceneHead(nn.Module):
    """Global feature map [B, C, h, w] → the direction of gravity in the camera frame and the category.

    Not part of the published model: model v2 predicts both so a mesh can stand upright and `--category auto`
    needs no separate recognition model. Both read the pooled global features, before any prompt is applied, so
    the category can be chosen before the prompt-conditioned heads run.
    """

    # A camera looking slightly down (OpenCV axes: y down, z forward): the prior at a zero output.
    GRAVITY_PRIOR = (0.0, 1.0, 0.3)

    def __init__(self, channels: int, num_categories: int, hidden: int):
        """num_categories 0: gravity only (models whose category comes from `ShapeCategoryHead`)."""
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(2 * channels, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.gravity = nn.Linear(hidden, 3)
        self.category = nn.Linear(hidden, num_categories) if num_categories else None
        # Zero init: an untrained head predicts the prior and a uniform category.
        for layer in (self.gravity, self.category):
            if layer is not None:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.register_buffer("prior", torch.tensor(self.GRAVITY_PRIOR), persistent=False)

    def forward(self, global_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """→ (gravity [B, 3] unit vectors in camera axes, pointing down; category logits [B, num_categories], or
        None for a gravity-only head)."""
        pooled = torch.cat([global_map.mean(dim=(2, 3)), global_map.amax(dim=(2, 3))], dim=1)
        features = self.trunk(pooled)
        gravity = F.normalize(self.gravity(features) + self.prior.to(features.dtype), dim=1)
        return gravity, self.category(features) if self.category is not None else None


class ShapeCategoryHead(nn.Module):
    """Shape tokens [B, T, C] (global token first) → category logits [B, num_categories].

    Not part of the published model. A linear probe found the category in the shape tokens, which the coordinate
    encoder makes from the visible 3D shape (22–39% balanced accuracy over 19 categories on val2), and almost none
    in the backbone's pooled image features (7–10%; chance 5%): a backbone trained from scratch on renders learns
    geometry, not semantics. So `--category auto` reads the geometry: the global token and the mean of the others.
    """

    def __init__(self, channels: int, num_categories: int, hidden: int):
        super().__init__()
        self.trunk = nn.Sequential(nn.LayerNorm(2 * channels), nn.Linear(2 * channels, hidden), nn.ReLU())
        self.category = nn.Linear(hidden, num_categories)
        nn.init.zeros_(self.category.weight)  # an untrained head answers a uniform category, so auto = "object"
        nn.init.zeros_(self.category.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([tokens[:, 0], tokens[:, 1:].mean(dim=1)], dim=1)
        return self.category(self.trunk(pooled))


class BodyHead(nn.Module):
    """Global feature map [B, C, h, w] and the visible mask → how the silhouette's inflated body should stand.

    Not part of the published model. The no-network body (`backend.silhouette`) mirrors a round profile about a
    plane facing the camera; on renders, fitting that plane's tilt and the body's depth in front of and behind it
    to the true object is worth more FS@τ than any decoder this project trained (docs/experiments/body-head.md). The
    head predicts those four numbers per image: the mirror plane's slope (∂depth/∂u, ∂depth/∂v, depth pixels per
    image pixel) and the log of the front and back scales of the profile. Zero init: an untrained head gives the round,
    camera-facing body.
    """

    MASK_SIDE = 56
    """The mask is read at this side: enough for its outline's shape, cheap."""

    def __init__(self, channels: int, hidden: int, reads: str = "image"):
        """reads: "image" (global features and mask), "mask" (the mask alone) or "constant" (nothing: one body for
        every image, the training mean; the ablation's floor)."""
        super().__init__()
        if reads not in ("image", "mask", "constant"):
            raise ValueError(f"a body head reads 'image', 'mask' or 'constant', not {reads!r}")
        self.reads = reads
        self.use_image = reads == "image"
        widths = (8, 16, 32)
        layers, previous = [], 1
        for width in widths:  # 56 → 28 → 14 → 7
            layers += [nn.Conv2d(previous, width, 3, stride=2, padding=1), nn.GroupNorm(4, width), nn.ReLU()]
            previous = width
        self.mask_branch = nn.Sequential(*layers)
        inputs = previous + (channels + 1 if self.use_image else 0)
        self.fuse = nn.Sequential(nn.Conv2d(inputs, hidden, 3, padding=1), nn.GroupNorm(4, hidden), nn.ReLU())
        self.out = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 4))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, global_map: torch.Tensor, visible_prob: torch.Tensor) -> torch.Tensor:
        """global_map [B, C, h, w], visible_prob [B, 1, H, W] in [0, 1] → [B, 4]: (tilt_u, tilt_v, log front scale,
        log back scale)."""
        if self.reads == "constant":  # the last layer's bias alone
            return self.out[-1].bias.expand(global_map.shape[0], 4)
        side = self.MASK_SIDE
        mask = F.interpolate(visible_prob.float(), size=(side, side), mode="bilinear", align_corners=False)
        features = self.mask_branch(mask.to(global_map.dtype))
        grid = features.shape[-2:]
        if self.use_image:
            image = F.interpolate(global_map, size=grid, mode="bilinear", align_corners=False)
            coarse = F.interpolate(mask, size=grid, mode="area").to(global_map.dtype)
            features = torch.cat([features, image, coarse], dim=1)
        fused = self.fuse(features)
        pooled = torch.cat([fused.mean(dim=(2, 3)), fused.amax(dim=(2, 3))], dim=1)
        return self.out(pooled)
