"""Warm start from an official ZeroShape checkpoint (Huang et al., 2024), as ZeroShape-W's authors did.

The official `shape.ckpt` (or `depth.ckpt`) is a `torch.save` dict whose `graph` entry is the state dict
(key layout: shared/docs/zeroshape_state_dict_keys.tsv). It is read with `weights_only=True`: tensors
only, never arbitrary pickled objects. Every official key is either mapped onto the `paper` model or
dropped for a stated reason; anything else is an error, so a different layout cannot half-load.

What changes on the way:
- the ViT position table is resampled from 24² (trained at 384 px) to the model's token grid;
- the coordinate encoder's first conv gains a fourth input channel (the occluder mask), zero-initialised
  so the converted encoder computes exactly what ZeroShape's did on the xyz channels;
- ZeroShape's point projection becomes the first layer of ZeroShape-W's point embedding;
- the mask heads, FiLM layers, the second point-embedding layer and the text projection are new and keep
  their fresh initialisation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from backend.files import file_sha256

from .checkpoint import CheckpointError
from .config import PAPER, ModelConfig
from .zeroshape import ZeroShapeW

# Official keys that have no counterpart, with the reason (shown in the conversion report).
_VIT_HEAD = r"dpt_depth\.pretrained\.model\.(norm|head)\..*"
_DPT_SKIP_UNIT = r"dpt_depth\.scratch\.refinenet4\.resConfUnit1\..*"
DROPPED = {
    _VIT_HEAD: "ViT classifier norm/head: DPT never reads them",
    _DPT_SKIP_UNIT: "DPT's deepest fusion block has no skip input",
    r"impl_network\.pos_embed": "fixed sine-cosine codes, recomputed by the model",
}
UNBUILT_PARAMETER_COUNTS = {
    DROPPED[_DPT_SKIP_UNIT]: 2 * (256 * 256 * 9 + 256),
    DROPPED[_VIT_HEAD]: 1000 * 768 + 1000 + 2 * 768,
    "the 384 px position table's tokens beyond the 14×14 grid (resampled on conversion)": (577 - 197) * 768,
}
"""Parameters in ZeroShape's own count (so, presumably, in the published 193.7M) that this implementation does
not build because nothing reads them; `zeroshape-w params` adds them back to compare with the paper."""

Transform = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _same(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return source


def _resample_pos_embed(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[1, 1 + g², C] → [1, 1 + G², C]: bilinear on the grid part, class token kept (as DPT does)."""
    cls_token, grid_part = source[:, :1], source[:, 1:]
    old, new = math.isqrt(grid_part.shape[1]), math.isqrt(target.shape[1] - 1)
    grid_part = grid_part.reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid_part = F.interpolate(grid_part, size=(new, new), mode="bilinear", align_corners=False)
    return torch.cat([cls_token, grid_part.permute(0, 2, 3, 1).reshape(1, new * new, -1)], dim=1)


def _add_zero_input_channel(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """conv weight [O, 3, k, k] → [O, 4, k, k]; the new occluder channel starts at zero."""
    extra = target.shape[1] - source.shape[1]
    return torch.cat([source, source.new_zeros(source.shape[0], extra, *source.shape[2:])], dim=1)


# (official pattern, our replacement, transform); the first matching rule wins.
RULES: list[tuple[str, str, Transform]] = [
    (r"dpt_depth\.pretrained\.model\.pos_embed", "backbone.vit.pos_embed", _resample_pos_embed),
    (r"dpt_depth\.pretrained\.model\.(.*)", r"backbone.vit.\1", _same),
    (
        r"dpt_depth\.pretrained\.act_postprocess([34])\.0\.project\.0\.(.*)",
        r"backbone.readout\1.project.0.\2",
        _same,
    ),
    (r"dpt_depth\.pretrained\.act_postprocess([34])\.3\.(.*)", r"backbone.post\1.\2", _same),
    (r"dpt_depth\.pretrained\.act_postprocess4\.4\.(.*)", r"backbone.down4.\1", _same),
    (
        r"dpt_depth\.scratch\.layer([1-4])_rn\.(.*)",
        lambda m: f"backbone.layer_rn.{int(m[1]) - 1}.{m[2]}",
        _same,
    ),
    (
        r"dpt_depth\.scratch\.refinenet([1-4])\.resConfUnit1\.(.*)",
        lambda m: f"backbone.fusion.{int(m[1]) - 1}.skip_unit.{m[2]}",
        _same,
    ),
    (
        r"dpt_depth\.scratch\.refinenet([1-4])\.resConfUnit2\.(.*)",
        lambda m: f"backbone.fusion.{int(m[1]) - 1}.refine_unit.{m[2]}",
        _same,
    ),
    (
        r"dpt_depth\.scratch\.refinenet([1-4])\.out_conv\.(.*)",
        lambda m: f"backbone.fusion.{int(m[1]) - 1}.out_conv.{m[2]}",
        _same,
    ),
    (
        r"dpt_depth\.scratch\.output_conv\.([024])\.(.*)",
        lambda m: f"depth_head.conv{int(m[1]) // 2 + 1}.{m[2]}",
        _same,
    ),
    (r"intr_head\.(\d+)\.linear([12])\.(.*)", r"intrinsics_head.blocks.\1.conv\2.\3", _same),
    (r"intr_head\.(\d+)\.bn([12])\.(.*)", r"intrinsics_head.blocks.\1.bn\2.\3", _same),
    (r"intr_proj\.(.*)", r"intrinsics_head.proj.\1", _same),
    (r"coord_encoder\.encoder\.conv1\.weight", "coord_encoder.resnet.conv1.weight", _add_zero_input_channel),
    (
        r"coord_encoder\.encoder\.fc\.([01])\.linear([12])\.(.*)",
        r"coord_encoder.global_blocks.\1.conv\2.\3",
        _same,
    ),
    (r"coord_encoder\.encoder\.fc\.([01])\.bn([12])\.(.*)", r"coord_encoder.global_blocks.\1.bn\2.\3", _same),
    (r"coord_encoder\.encoder\.fc\.2\.(.*)", r"coord_encoder.global_proj.\1", _same),
    (r"coord_encoder\.encoder\.(.*)", r"coord_encoder.resnet.\1", _same),
    (
        r"coord_encoder\.depth_feat_proj\.([01])\.linear([12])\.(.*)",
        r"coord_encoder.local_blocks.\1.conv\2.\3",
        _same,
    ),
    (
        r"coord_encoder\.depth_feat_proj\.([01])\.bn([12])\.(.*)",
        r"coord_encoder.local_blocks.\1.bn\2.\3",
        _same,
    ),
    (r"coord_encoder\.depth_feat_proj\.2\.(.*)", r"coord_encoder.local_proj.\1", _same),
    (r"impl_network\.point_proj\.proj\.(.*)", r"decoder.point_embed.0.\1", _same),
    (r"impl_network\.blocks_attn\.(.*)", r"decoder.blocks.\1", _same),
    (r"impl_network\.impl_mlp\.(.*)", r"decoder.occupancy_mlp.\1", _same),
    (r"impl_network\.(latent_proj|norm)\.(.*)", r"decoder.\1.\2", _same),
]


@dataclass
class ConversionReport:
    loaded: list[str] = field(default_factory=list)
    """Our keys filled from the official checkpoint."""
    fresh: list[str] = field(default_factory=list)
    """Our keys with no official counterpart (new in ZeroShape-W), left at their initialisation."""
    dropped: dict[str, str] = field(default_factory=dict)
    """Official key → why it has no counterpart."""

    def summary(self) -> str:
        fresh_parts = sorted({".".join(k.split(".")[:2]) for k in self.fresh})
        return (
            f"{len(self.loaded)} tensors loaded from ZeroShape, {len(self.fresh)} new in ZeroShape-W "
            f"({', '.join(fresh_parts)}), {len(self.dropped)} official tensors unused"
        )


def map_official_key(key: str) -> tuple[str, Transform] | None:
    """Our key and value transform for an official key; None when the key is dropped or unknown."""
    for pattern, replacement, transform in RULES:
        match = re.fullmatch(pattern, key)
        if match:
            target = replacement(match) if callable(replacement) else match.expand(replacement)
            return target, transform
    return None


def read_official_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The `graph` state dict of an official ZeroShape checkpoint, read without unpickling objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: ZeroShape checkpoint not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged or non-tensor files
        raise CheckpointError(f"{path}: not a readable ZeroShape checkpoint ({error})") from error
    graph = data.get("graph") if isinstance(data, dict) else None
    if not isinstance(graph, dict):
        raise CheckpointError(f"{path}: no 'graph' state dict inside; is this ZeroShape's shape.ckpt?")
    return {k.removeprefix("module."): v for k, v in graph.items()}


def convert_zeroshape_state(
    official: dict[str, torch.Tensor], model: ZeroShapeW, source: str = "<state>"
) -> ConversionReport:
    """Copy the official tensors into `model` in place (strictly checked) and report what happened."""
    ours = model.own_state_dict()
    report = ConversionReport()
    updated: dict[str, torch.Tensor] = {}
    problems: list[str] = []
    for key, value in official.items():
        reason = next((why for pattern, why in DROPPED.items() if re.fullmatch(pattern, key)), None)
        if reason is not None:
            report.dropped[key] = reason
            continue
        mapped = map_official_key(key)
        if mapped is None or mapped[0] not in ours:
            problems.append(f"unexpected official tensor {key}")
            continue
        target_key, transform = mapped
        converted = transform(value, ours[target_key]).to(ours[target_key].dtype)
        if converted.shape != ours[target_key].shape:
            problems.append(f"{key} {tuple(value.shape)} does not fit {target_key} {tuple(ours[target_key].shape)}")
            continue
        updated[target_key] = converted
    if problems:
        shown = "; ".join(problems[:5]) + (f"; … ({len(problems)} in all)" if len(problems) > 5 else "")
        raise CheckpointError(f"{source}: not the ZeroShape layout this converter knows: {shown}")
    report.loaded = sorted(updated)
    report.fresh = sorted(set(ours) - set(updated))
    model.load_own_state_dict({**ours, **updated}, source=source)
    return report


def convert_zeroshape_checkpoint(
    path: str | Path,
    config: ModelConfig = PAPER,
    open_clip_weights: str | Path | None = None,
) -> tuple[ZeroShapeW, ConversionReport, dict[str, str]]:
    """Build a ZeroShape-W model warm-started from an official checkpoint.

    Returns:
        (model, report, provenance for the checkpoint header).
    """
    from .text import build_text_encoder

    official = read_official_checkpoint(path)
    model = ZeroShapeW(config, text_encoder=build_text_encoder(config.text, open_clip_weights))
    report = convert_zeroshape_state(official, model, source=str(path))
    provenance = {
        "warm_start": "zeroshape",
        "source_file": Path(path).name,
        "source_sha256": file_sha256(Path(path)),
        "summary": report.summary(),
    }
    return model, report, provenance
