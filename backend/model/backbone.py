"""DPT-Hybrid backbone: ResNetV2 + ViT (timm) reassembled into a fine feature map by DPT fusion.

For the `paper` config this is exactly timm's `vit_base_r50_s16_384` (built at the model's image size)
read out as DPT does (Ranftl et al., "Vision Transformers for Dense Prediction", 2021):
  L1 = ResNet stage 0 (H/4), L2 = ResNet stage 1 (H/8), L3 = ViT block 8 (H/16),
  L4 = ViT block 11 then a stride-2 conv (H/32, the *global* feature map the intrinsics head reads).
Four fusion blocks then walk back up to the *fine* feature map at H/2 that the depth and mask heads read.
Smaller configs keep the same structure with fewer blocks and channels.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from backend._torchvision_compat import ensure_torchvision

from .config import BackboneConfig

ensure_torchvision()

from timm.layers import GroupNormAct, HybridEmbed, StdConv2dSame  # noqa: E402 - needs the torchvision fallback first
from timm.models.resnetv2 import ResNetV2  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402


class ReadoutProject(nn.Module):
    """DPT's "project" readout: each patch token is concatenated with the class token and projected.

    Tokens [B, 1+N, C] → [B, C, h, w].
    """

    def __init__(self, dim: int):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        cls_token, patches = tokens[:, :1], tokens[:, 1:]
        fused = self.project(torch.cat([patches, cls_token.expand_as(patches)], dim=-1))
        return fused.transpose(1, 2).reshape(fused.shape[0], fused.shape[2], *grid)


class ResidualConvUnit(nn.Module):
    """DPT's pre-activation residual unit: x + conv(relu(conv(relu(x))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """DPT feature fusion: add the (refined) skip feature, refine, upsample ×2, 1×1 conv.

    The deepest block has no skip input and therefore no `skip_unit` (DPT creates one and never uses
    it; leaving it out keeps every parameter trainable).
    """

    def __init__(self, channels: int, has_skip: bool):
        super().__init__()
        self.skip_unit = ResidualConvUnit(channels) if has_skip else None
        self.refine_unit = ResidualConvUnit(channels)
        self.out_conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_unit is not None:
            x = x + self.skip_unit(skip)
        x = self.refine_unit(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTHybridBackbone(nn.Module):
    """Image [B, 3, H, W] (normalised to [-1, 1]) → global map [B, C_vit, H/32, W/32] and fine map
    [B, C_fuse, H/2, W/2]."""

    def __init__(self, config: BackboneConfig, image_size: int):
        super().__init__()
        if len(config.resnet_layers) not in (2, 3):
            raise ValueError("the DPT-Hybrid readout needs 2 or 3 ResNet stages")
        if image_size % 32:
            raise ValueError(f"image size must be a multiple of 32, got {image_size}")
        self.config = config
        self.grid = image_size // 16
        resnet = ResNetV2(
            layers=config.resnet_layers,
            channels=config.resnet_channels,
            stem_chs=config.resnet_stem_channels,
            num_classes=0,
            global_pool="",
            preact=False,
            stem_type="same",
            conv_layer=partial(StdConv2dSame, eps=1e-8),
            norm_layer=partial(GroupNormAct, num_groups=config.norm_groups),
        )
        # Tokens sit at H/16, as in DPT-Hybrid; with only two ResNet stages (stride 8) the patch
        # projection makes up the last factor of 2.
        token_patch = 16 // config.patch_stride
        self.vit = VisionTransformer(
            img_size=image_size,
            patch_size=token_patch,
            embed_layer=partial(HybridEmbed, backbone=resnet),
            embed_dim=config.embed_dim,
            depth=config.depth,
            num_heads=config.num_heads,
            num_classes=0,
            global_pool="token",
        )
        # DPT reads block outputs before the final norm; the classifier side of the ViT is unused.
        self.vit.norm = nn.Identity()
        self.vit.fc_norm = nn.Identity()
        self.vit.head = nn.Identity()
        del self.vit.blocks[max(config.hook_blocks) + 1 :]

        dim, fuse = config.embed_dim, config.fusion_channels
        self.readout3 = ReadoutProject(dim)
        self.readout4 = ReadoutProject(dim)
        self.post3 = nn.Conv2d(dim, dim, 1)
        self.post4 = nn.Conv2d(dim, dim, 1)
        self.down4 = nn.Conv2d(dim, dim, 3, stride=2, padding=1)
        in_channels = (config.resnet_channels[0], config.resnet_channels[1], dim, dim)
        self.layer_rn = nn.ModuleList(nn.Conv2d(c, fuse, 3, padding=1, bias=False) for c in in_channels)
        # fusion[0] produces the fine map (H/2) from L1; fusion[3] starts from L4 and has no skip.
        self.fusion = nn.ModuleList(FusionBlock(fuse, has_skip=i < 3) for i in range(4))

    @property
    def global_channels(self) -> int:
        return self.config.embed_dim

    @property
    def fine_channels(self) -> int:
        return self.config.fusion_channels

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: image [B, 3, H, W], values in [-1, 1].
        Returns: (global_map [B, C_vit, H/32, W/32], fine_map [B, C_fuse, H/2, W/2])."""
        resnet = self.vit.patch_embed.backbone
        x = resnet.stem(image)
        layer1 = resnet.stages[0](x)
        layer2 = resnet.stages[1](layer1)
        x = layer2
        for stage in resnet.stages[2:]:
            x = stage(x)
        x = self.vit.patch_embed.proj(x).flatten(2).transpose(1, 2)  # [B, N, C]
        x = self.vit._pos_embed(x)
        hooks = {}
        for index, block in enumerate(self.vit.blocks):
            x = block(x)
            hooks[index] = x
        grid = (self.grid, self.grid)
        layer3 = self.post3(self.readout3(hooks[self.config.hook_blocks[0]], grid))
        layer4 = self.down4(self.post4(self.readout4(hooks[self.config.hook_blocks[1]], grid)))

        rn = [conv(f) for conv, f in zip(self.layer_rn, (layer1, layer2, layer3, layer4), strict=True)]
        path = self.fusion[3](rn[3])
        path = self.fusion[2](path, rn[2])
        path = self.fusion[1](path, rn[1])
        fine = self.fusion[0](path, rn[0])
        return layer4, fine
