"""Make `import torchvision` (and so `import timm` / `import open_clip`) work on CPU-only torch.

Why this exists: torchvision 0.28.0 is the only release that matches torch 2.13, and its only wheel is
CUDA-built. On a CPU build of torch its compiled extension (`_C.so`) cannot load, because it links
against `libtorch_cuda.so`, so no `torchvision::*` operator is registered; torchvision's Python side
then fails at import with "operator torchvision::nms does not exist".

What it does: if, and only if, `torchvision::nms` is missing, it defines the operator schemas that
torchvision checks at import in the `torchvision` library namespace and registers pure-PyTorch CPU
implementations for `nms` (the only one the project's dependencies call). A torchvision whose
compiled ops load (any CUDA install, or a future CPU wheel) is left untouched.

Call `ensure_torchvision()` before importing torchvision, timm or open_clip. It is idempotent.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

_installed = False


def _nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression.

    Args:
        boxes: [N, 4] boxes as (x1, y1, x2, y2).
        scores: [N] scores.
        iou_threshold: boxes overlapping a kept box by more than this IoU are dropped.

    Returns:
        [K] int64 indices of the kept boxes, by decreasing score (torchvision's contract).
    """
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.long, device=boxes.device)
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    keep: list[int] = []
    for i in scores.argsort(descending=True).tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        inter_w = (torch.minimum(x2[i], x2) - torch.maximum(x1[i], x1)).clamp(min=0)
        inter_h = (torch.minimum(y2[i], y2) - torch.maximum(y1[i], y1)).clamp(min=0)
        inter = inter_w * inter_h
        suppressed |= inter / (area[i] + area - inter).clamp(min=1e-12) > iou_threshold
    return torch.tensor(keep, dtype=torch.long, device=boxes.device)


def _compiled_ops_loaded() -> bool:
    # Loading torchvision's extension is what registers its ops; importing torchvision.extension
    # alone would fail for the same reason as the package, so ask the op registry directly.
    return hasattr(torch.ops.torchvision, "nms")


def ensure_torchvision() -> bool:
    """Register pure-PyTorch torchvision ops when the compiled ones are absent.

    Returns:
        True when the fallback is in use, False when it was not needed (the compiled ops load, or
        torchvision is not installed at all).
    """
    global _installed
    if _installed:
        return True
    if importlib.util.find_spec("torchvision") is None:
        return False
    if not _compiled_ops_loaded() and not _load_compiled_extension():
        _register_fallback_ops()
        _installed = True
        return True
    return False


def _load_compiled_extension() -> bool:
    """Try to load torchvision's own compiled ops, as `import torchvision` would.

    This must happen before any fallback is defined: on a working (CUDA) install the real library
    registers `torchvision::nms`, and defining it ourselves first would make that registration fail.
    """
    spec = importlib.util.find_spec("torchvision")
    for folder in spec.submodule_search_locations or []:
        for library_file in sorted(Path(folder).glob("_C*.so")) + sorted(Path(folder).glob("_C*.pyd")):
            try:
                torch.ops.load_library(str(library_file))
            except (OSError, RuntimeError):
                return False
            return _compiled_ops_loaded()
    return False


def _register_fallback_ops() -> None:
    """Define the torchvision schemas checked at import and pure-PyTorch CPU kernels."""
    library = torch.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.impl("nms", _nms, "CPU")
    # torchvision's Python code references these schemas at import time (meta registrations);
    # they only need to exist. Calling them raises "no kernel", which nothing in this project does.
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    # Keep the Library object alive: dropping it would unregister the ops.
    globals()["_library"] = library

    import torchvision.ops.boxes as boxes_module

    # torchvision.ops.nms asserts that the compiled extension is present before dispatching; our
    # registered op is a valid dispatch target, so the assertion is the only thing in the way.
    boxes_module._assert_has_ops = lambda: None
