"""Coordinate encoder: visible 3D shape + occluder mask (4 channels) → key/value tokens.

ZeroShape's `CoordEncRes` with a fourth input channel: a ResNet (timm's, which names its weights as
torchvision does) reads the map; layer3's feature grid becomes the local tokens (residual 1×1 blocks and
a 1×1 projection), layer4's pooled feature becomes one global token (residual blocks and a linear
projection). Global token first.
"""

from __future__ import annotations

import torch
from torch import nn

from backend._torchvision_compat import ensure_torchvision

from .config import CoordEncoderConfig
from .heads import ResidualConvBlock

ensure_torchvision()

from timm.models.resnet import BasicBlock, Bottleneck, ResNet  # noqa: E402 - needs the fallback first

IN_CHANNELS = 4
"""x, y, z of the normalised visible shape and the occluder-mask probability."""


class CoordEncoder(nn.Module):
    """[B, 4, S, S] → tokens [B, 1 + (S/16)², width]."""

    def __init__(self, config: CoordEncoderConfig, width: int, num_blocks: int):
        super().__init__()
        block = Bottleneck if config.block == "bottleneck" else BasicBlock
        self.resnet = ResNet(
            block,
            list(config.layers),
            in_chans=IN_CHANNELS,
            channels=tuple(config.channels),
            stem_width=config.stem_width,
            num_classes=0,
            global_pool="",
        )
        local_channels = config.channels[2] * block.expansion
        global_channels = config.channels[3] * block.expansion
        self.local_blocks = nn.Sequential(*(ResidualConvBlock(local_channels, 1) for _ in range(num_blocks)))
        self.local_proj = nn.Conv2d(local_channels, width, 1)
        self.global_blocks = nn.Sequential(*(ResidualConvBlock(global_channels, 1) for _ in range(num_blocks)))
        self.global_proj = nn.Linear(global_channels, width)
        self.grid = config.input_size // 16
        self.fine_channels = config.channels[0] * block.expansion
        """Channels of layer1's map [B, C1, S/4, S/4], the fine features pixel-aligned queries sample."""

    def forward(self, coord_map: torch.Tensor) -> torch.Tensor:
        """[B, 4, S, S] → tokens [B, 1 + (S/16)², width]."""
        return self.forward_with_features(coord_map)[0]

    def forward_with_features(self, coord_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 4, S, S] → (tokens [B, 1 + (S/16)², width], layer1 features [B, C1, S/4, S/4])."""
        r = self.resnet
        x = r.maxpool(r.act1(r.bn1(r.conv1(coord_map))))
        fine = r.layer1(x)
        local_features = r.layer3(r.layer2(fine))  # [B, C3, S/16, S/16]
        global_features = r.layer4(local_features).mean(dim=(2, 3), keepdim=True)  # [B, C4, 1, 1]
        local_tokens = self.local_proj(self.local_blocks(local_features)).flatten(2).transpose(1, 2)
        global_token = self.global_proj(self.global_blocks(global_features).flatten(1))[:, None]
        return torch.cat([global_token, local_tokens], dim=1), fine
