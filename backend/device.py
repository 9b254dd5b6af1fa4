"""Where the network runs and in what arithmetic: one rule for inference (the pipeline) and training.

`resolve_device` turns "auto", "cpu", "cuda" or "cuda:N" into a device that exists; `autocast_dtype` and
`autocast` turn a precision ("fp32", "bf16", "fp16"; training also takes "auto") into torch's autocast.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(name: str) -> torch.device:
    """'auto' → the first CUDA GPU when there is one, else the CPU; 'cuda[:N]' must exist (ValueError)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(name)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested, but this machine has no CUDA GPU (use --device cpu)")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} requested, but only {torch.cuda.device_count()} CUDA GPU(s) exist")
    return resolved


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a precision on `device`; None for plain fp32. "auto": bf16 (or fp16) on a GPU
    that has it, fp32 on the CPU. fp16 needs a GPU (ValueError)."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision not in ("bf16", "fp16"):
        raise ValueError(f"unknown precision {precision!r}; choose fp32, bf16 or fp16")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 needs a CUDA GPU; on the CPU use fp32 or bf16")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def autocast(precision: str, device: torch.device):
    """A context in which the network computes in `precision` (fp32: plain)."""
    dtype = autocast_dtype(precision, device)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
