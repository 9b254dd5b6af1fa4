"""Self-describing checkpoints: one safetensors file whose header carries the JSON config.

Layout: the tensors of `ZeroShapeW.own_state_dict()` (float32, or float16 for shipping) and, in the
safetensors metadata under `zeroshape_w`, a JSON document:

    {"format": "zeroshape-w-checkpoint", "format_version": 1,
     "model_config": {...}, "preprocess": {...},
     "text_encoder": {"kind": ..., ...identity},
     "provenance": {...free-form: how it was trained or converted...}}

One file cannot lose its config, and loading needs nothing but the file (and, for a model conditioned
on OpenCLIP, the local OpenCLIP weights file that the config names by checksum). safetensors never
executes code on load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from .config import ModelConfig, PreprocessConfig
from .text import build_text_encoder
from .zeroshape import ZeroShapeW

FORMAT = "zeroshape-w-checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "zeroshape_w"


class CheckpointError(Exception):
    """A checkpoint file is missing, damaged or does not fit; the message names the file."""


def save_checkpoint(
    model: ZeroShapeW,
    path: str | Path,
    provenance: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write `model` to `path` atomically (a crash never leaves a half-written checkpoint).

    Args:
        dtype: storage type of floating-point tensors; float16 halves the file, loading upcasts.
    """
    from safetensors.torch import save_file

    path = Path(path)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": model.config.to_dict(),
        "preprocess": model.preprocess.to_dict(),
        "text_encoder": model.text_encoder.identity(),
        "provenance": provenance or {},
    }
    tensors = {
        key: (value.to(dtype) if value.is_floating_point() else value).detach().cpu().contiguous()
        for key, value in model.own_state_dict().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    save_file(tensors, str(temporary), metadata={METADATA_KEY: json.dumps(header)})
    os.replace(temporary, path)
    return path


def read_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a checkpoint, without reading its tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({error})") from error
    if METADATA_KEY not in metadata:
        raise CheckpointError(f"{path}: a safetensors file, but not a ZeroShape-W checkpoint (no config in it)")
    try:
        header = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: the checkpoint's config is not valid JSON ({error})") from error
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {header.get('format')!r}")
    if header.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {header['format_version']} is newer than this program "
            f"understands ({FORMAT_VERSION}); update ZeroShape-W"
        )
    return header


def load_checkpoint(
    path: str | Path,
    device: str | torch.device = "cpu",
    open_clip_weights: str | Path | None = None,
) -> ZeroShapeW:
    """Rebuild the model from the file alone and load its weights strictly. Returns it in eval mode.

    Args:
        open_clip_weights: local OpenCLIP weights, needed only by models conditioned on OpenCLIP.
    """
    from safetensors.torch import load_file

    path = Path(path)
    header = read_header(path)
    try:
        config = ModelConfig.from_dict(header["model_config"])
        preprocess = PreprocessConfig.from_dict(header["preprocess"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: the checkpoint's config is incomplete or invalid ({error})") from error

    identity = header.get("text_encoder", {})
    if config.text.kind == "open_clip" and open_clip_weights is None:
        raise CheckpointError(
            f"{path}: this model is conditioned on OpenCLIP {config.text.open_clip_model}; pass the local "
            f"OpenCLIP weights file (sha256 {identity.get('weights_sha256') or 'not recorded'})"
        )
    text_encoder = build_text_encoder(config.text, open_clip_weights)
    expected_sha = identity.get("weights_sha256")
    if expected_sha and getattr(text_encoder, "weights_sha256", expected_sha) != expected_sha:
        raise CheckpointError(
            f"{path}: it was trained with OpenCLIP weights {expected_sha[:12]}…, "
            f"but {open_clip_weights} is {text_encoder.weights_sha256[:12]}…"
        )
    model = ZeroShapeW(config, preprocess, text_encoder)
    try:
        state = load_file(str(path))
    except Exception as error:
        raise CheckpointError(f"{path}: the checkpoint's tensors cannot be read ({error}); is it truncated?") from error
    reference = model.own_state_dict()
    state = {k: v.to(reference[k].dtype) if k in reference else v for k, v in state.items()}
    try:
        model.load_own_state_dict(state, source=path)
    except ValueError as error:
        raise CheckpointError(str(error)) from error
    return model.to(device).eval()
