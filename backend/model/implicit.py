"""Occupancy decoder: 3D points attend to the shape tokens and an MLP turns them into occupancy logits.

Follows ZeroShape's `Implicit`: pre-LN transformer blocks with one joint qkv projection, in which every
point attends to all latent tokens *and to itself only*, while latents attend to latents. A point's
output therefore never depends on the other points queried with it, which is what lets mesh
extraction evaluate any subset of points in any chunking. ZeroShape-W's queries concatenate a point
embedding with a projection of the text embedding.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from .config import DecoderConfig
from .pixel_aligned import EvidenceEmbedding, PixelEvidence


def sincos_pos_embed_2d(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2D sine-cosine position codes for a grid×grid token map, laid out as MAE and ZeroShape do.

    Returns:
        [grid·grid, dim], tokens in row-major order: the first half of the channels encodes the column,
        the second half the row, each as [sin | cos] at geometrically spaced frequencies.
    """
    if dim % 4:
        raise ValueError(f"position embedding width must be a multiple of 4, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
    rows, cols = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")

    def encode(positions: np.ndarray) -> np.ndarray:
        angles = positions.reshape(-1)[:, None] * omega[None]
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return torch.from_numpy(np.concatenate([encode(cols), encode(rows)], axis=1)).float()


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class PointLatentAttention(nn.Module):
    """One joint qkv projection; latents attend to latents, each point to the latents and itself."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # [B, N, 3·C] → 3 × [B, heads, N, C/heads]
        B, N, _ = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        return q, k, v

    def forward(
        self, latents: torch.Tensor, points: torch.Tensor, update_latents: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """latents [B, T, C], points [B, N, C] → (new latents [B, T, C] or None, new points [B, N, C])."""
        q_lat, k_lat, v_lat = self._split(latents)
        q_pt, k_pt, v_pt = self._split(points)
        scale = 1.0 / math.sqrt(q_pt.shape[-1])

        latents_out = None
        if update_latents:
            latents_out = F.scaled_dot_product_attention(q_lat, k_lat, v_lat)
            latents_out = self.proj(latents_out.transpose(1, 2).flatten(2))

        # One softmax over [the T latent logits, the point's own logit].
        logits_lat = (q_pt @ k_lat.transpose(-1, -2)) * scale  # [B, h, N, T]
        logit_self = (q_pt * k_pt).sum(-1, keepdim=True) * scale  # [B, h, N, 1]
        weights = torch.cat([logits_lat, logit_self], dim=-1).softmax(dim=-1)
        points_out = weights[..., :-1] @ v_lat + weights[..., -1:] * v_pt  # [B, h, N, C/h]
        points_out = self.proj(points_out.transpose(1, 2).flatten(2))
        return latents_out, points_out


class DecoderBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = PointLatentAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(
        self, latents: torch.Tensor, points: torch.Tensor, update_latents: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        latents_att, points_att = self.attn(self.norm1(latents), self.norm1(points), update_latents)
        points = points + self.drop_path(points_att)
        points = points + self.drop_path(self.mlp(self.norm2(points)))
        if update_latents:
            latents = latents + self.drop_path(latents_att)
            latents = latents + self.drop_path(self.mlp(self.norm2(latents)))
        return latents, points


class OccupancyMLP(nn.Module):
    """DeepSDF/IDR-style MLP: Softplus(β) between linear layers, the input re-concatenated at skips."""

    def __init__(self, in_dim: int, hidden: int, num_layers: int, skips: tuple[int, ...], beta: float):
        super().__init__()
        self.skips = set(skips)
        dims = []
        for index in range(num_layers):
            layer_in = in_dim if index == 0 else hidden
            if index in self.skips:
                layer_in += in_dim
            dims.append((layer_in, 1 if index == num_layers - 1 else hidden))
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in dims)
        for layer in self.layers:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.activation = nn.Softplus(beta=beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., in_dim] → [..., 1] logits."""
        inputs = x
        for index, layer in enumerate(self.layers):
            if index in self.skips:
                # ÷√2 keeps the activation scale after doubling the channel count.
                x = torch.cat([x, inputs], dim=-1) / math.sqrt(2)
            x = layer(x)
            if index < len(self.layers) - 1:
                x = self.activation(x)
        return x


class ImplicitDecoder(nn.Module):
    """tokens [B, T, C], text embedding [B, E], points [B, N, 3] → occupancy logits [B, N].

    With `config.pixel_aligned`, each point's query also carries the embedding of its pixel-aligned evidence
    (backend/model/pixel_aligned.py), added to the point embedding before the cross-attention blocks.
    """

    def __init__(self, config: DecoderConfig, text_dim: int, token_grid: int, feature_channels: int = 0):
        super().__init__()
        width = config.width
        self.latent_proj = nn.Linear(width, width)
        # The global token (index 0) gets no position; the grid tokens get fixed 2D codes.
        pos = torch.cat([torch.zeros(1, width, device="cpu"), sincos_pos_embed_2d(width, token_grid)], dim=0)
        self.register_buffer("pos_embed", pos[None], persistent=False)
        point_dim = width - config.text_query_dim
        self.point_embed = nn.Sequential(nn.Linear(3, width), nn.GELU(), nn.Linear(width, point_dim))
        self.text_proj = nn.Linear(text_dim, config.text_query_dim)
        self.evidence_embed = (
            EvidenceEmbedding(feature_channels, config.evidence_hidden, point_dim) if config.pixel_aligned else None
        )
        self.blocks = nn.ModuleList(
            DecoderBlock(width, config.num_heads, config.mlp_ratio, config.drop_path) for _ in range(config.num_blocks)
        )
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.occupancy_mlp = OccupancyMLP(
            3 + width,
            config.occupancy_hidden,
            config.occupancy_layers,
            config.occupancy_skips,
            config.softplus_beta,
        )

    def forward(
        self,
        tokens: torch.Tensor,
        text_embedding: torch.Tensor,
        points: torch.Tensor,
        evidence: PixelEvidence | None = None,
    ) -> torch.Tensor:
        latents = self.latent_proj(tokens) + self.pos_embed
        text_query = self.text_proj(text_embedding)[:, None].expand(-1, points.shape[1], -1)
        point_query = self.point_embed(points)
        if self.evidence_embed is not None:
            if evidence is None:
                raise ValueError("this decoder reads pixel-aligned evidence: pass the latent's `evidence`")
            point_query = point_query + self.evidence_embed(points, evidence)
        queries = torch.cat([point_query, text_query], dim=-1)
        last = len(self.blocks) - 1
        for index, block in enumerate(self.blocks):
            # The last block's latent update would be thrown away, so it is skipped.
            latents, queries = block(latents, queries, update_latents=index < last)
        features = self.norm(queries)
        return self.occupancy_mlp(torch.cat([points, features], dim=-1)).squeeze(-1)
