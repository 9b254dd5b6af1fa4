"""Train the body head (`backend.model.heads.BodyHead`) onto a trained model: `zeroshape-w train-body`.

The head says how the silhouette's inflated body stands: its mirror plane's tilt and its depth in front of and
behind that plane (`backend.silhouette.Thickness`). Its targets are fitted per rendered view to the true object
(`training.thickness_targets`). Everything else in the model stays as it was: the backbone's global features are
computed once per view and cached (`examples.safetensors` in the run folder), and only the head trains on them, so
a run takes minutes on a CPU and the meshes of every other `--shape` stay bit for bit the same.

The loss is geometric (`depth_error`): how far the body's front and back, with the predicted tilt and scales, lie
from the true object's over the view's cells, the plane's depth chosen at its best, relative to the body's largest
half-thickness. A first design regressed the four fitted numbers directly; it fitted the training views and
barely beat the round body on held-out objects (docs/experiments/body-head.md), because the fitted numbers are
noisy where they matter least (a scale on a body a few pixels thick, a tilt on a round one).

The masks the head reads are the true visible masks, each step eroded or dilated by up to MASK_JITTER_PX pixels,
because at inference it reads the refined mask, whose outline is a few pixels off.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from backend.model.checkpoint import load_checkpoint, read_header, save_checkpoint
from backend.model.heads import BodyHead
from backend.model.zeroshape import ZeroShapeW
from backend.silhouette import SCALE_RANGE, TILT_RANGE
from training.dataset import load_view, resize_view, scan_dataset
from training.thickness_targets import OBSERVATION_CHANNELS, view_thickness

log = logging.getLogger(__name__)

MASK_JITTER_PX = 3
"""Training masks are eroded or dilated by up to this many pixels (network-input pixels)."""
MONITOR_SHARE = 10
"""One object in this many (by a hash of its id) is kept out of training to monitor the head."""
TARGET_NAMES = ("tilt_u", "tilt_v", "log_front", "log_back")
LOG_SCALE_RANGE = tuple(math.log(scale) for scale in SCALE_RANGE)
"""The body a prediction means has its scales clipped as `Thickness.from_body` clips them, its tilt as fits are."""


@dataclass(frozen=True)
class BodyFitOptions:
    checkpoint: Path
    """The trained model the head is added to (its backbone is read, never changed)."""
    data: tuple[Path, ...]
    """Rendered datasets (`zeroshape-w data render`): only training splits, never the evaluation's."""
    out: Path
    """Run folder: examples.safetensors (the cache), model.safetensors, summary.json."""
    kind: str = "image"
    """"image": global features and the mask; "mask": the mask alone; "constant": one body for all (ablations)."""
    steps: int = 3000
    batch_size: int = 64
    learning_rate: float = 2e-3
    seed: int = 0


def _is_monitor(object_id: str) -> bool:
    return zlib.crc32(object_id.encode()) % MONITOR_SHARE == 0


@torch.inference_mode()
def build_examples(model: ZeroShapeW, data: tuple[Path, ...], progress=None) -> dict[str, torch.Tensor]:
    """Per view with a fitted body, and again for its mirror image: global features [N, C, h, w], true visible mask
    [N, 1, S, S] (uint8), the fitted body [N, 4] (see TARGET_NAMES), the cells it was fitted to [N, 7, C, C]
    (`CellObservations.stacked`) and monitor [N] (bool: held out from training)."""
    views, _ = scan_dataset(data)
    size = model.config.image_size
    mirror = torch.tensor([-1.0, 1.0, 1.0, 1.0])  # a mirror image turns the plane's tilt across the image around
    mirror_cells = torch.ones(len(OBSERVATION_CHANNELS), 1, 1)
    mirror_cells[OBSERVATION_CHANNELS.index("u")] = -1.0
    columns: dict[str, list[torch.Tensor]] = {"features": [], "masks": [], "targets": [], "cells": [], "monitor": []}
    batch: dict[str, list] = {"images": [], "masks": [], "targets": [], "cells": [], "monitor": []}

    def finish_batch() -> None:
        if not batch["images"]:
            return
        images = torch.from_numpy(np.stack(batch["images"])).permute(0, 3, 1, 2)
        masks, targets, cells = (torch.stack(batch[name]) for name in ("masks", "targets", "cells"))
        monitor = torch.tensor(batch["monitor"])
        for flip in (False, True):
            seen = images.flip(-1) if flip else images
            network_input = seen * model.preprocess.input_scale + model.preprocess.input_shift
            columns["features"].append(model.backbone(network_input)[0].float())
            columns["masks"].append(masks.flip(-1) if flip else masks)
            columns["targets"].append(targets * mirror if flip else targets)
            columns["cells"].append(cells.flip(-1) * mirror_cells if flip else cells)
            columns["monitor"].append(monitor)
        for values in batch.values():
            values.clear()

    for view in progress(views) if progress else views:
        fit = view_thickness(view.folder, view.object_folder)
        if fit is None:
            continue
        sample = load_view(view)
        if sample["mask"].shape != (size, size):
            sample = resize_view(sample, size)
        body = fit.thickness
        batch["images"].append(sample["rgb"])
        batch["masks"].append(torch.from_numpy(sample["mask"].astype(np.uint8))[None])
        batch["targets"].append(torch.tensor([*body.tilt, math.log(body.front), math.log(body.back)]))
        batch["cells"].append(torch.from_numpy(fit.observations.stacked()))
        batch["monitor"].append(_is_monitor(view.object_id))
        if len(batch["images"]) == 16:
            finish_batch()
    finish_batch()
    if not columns["masks"]:
        raise ValueError(f"no view of {', '.join(map(str, data))} had a body to fit; are these rendered datasets?")
    return {name: torch.cat(values) for name, values in columns.items()}


def _jitter(masks: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each mask [B, 1, S, S] in {0, 1} eroded or dilated by a random 0..MASK_JITTER_PX pixels."""
    out = []
    for mask in masks.float():
        radius = int(torch.randint(-MASK_JITTER_PX, MASK_JITTER_PX + 1, (1,), generator=generator))
        if radius:
            kernel = 2 * abs(radius) + 1
            grown = F.max_pool2d(mask[None] * (1 if radius > 0 else -1), kernel, stride=1, padding=abs(radius))
            mask = grown[0] * (1 if radius > 0 else -1)
        out.append(mask)
    return torch.stack(out)


def depth_error(prediction: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """[B] the mean distance between the body of each prediction [B, 4] (TARGET_NAMES) and the true object's front
    and back over the usable cells [B, 7, C, C] (OBSERVATION_CHANNELS), the plane's depth at its best (the mean
    offset), in units of the body's largest half-thickness."""
    usable, h, h_max, u, v, front, back = cells.float().unbind(1)
    tilt = prediction[:, :2].clamp(-TILT_RANGE, TILT_RANGE)
    scales = prediction[:, 2:].clamp(*LOG_SCALE_RANGE).exp()
    plane = tilt[:, 0, None, None] * u + tilt[:, 1, None, None] * v
    front_offset = front - (plane - scales[:, 0, None, None] * h)
    back_offset = back - (plane + scales[:, 1, None, None] * h_max)
    count = usable.sum(dim=(1, 2)).clamp(min=1)
    depth = ((front_offset + back_offset) * usable).sum(dim=(1, 2)) / (2 * count)
    misses = ((front_offset - depth[:, None, None]).abs() + (back_offset - depth[:, None, None]).abs()) * usable
    size = (h * usable).amax(dim=(1, 2)).clamp(min=1.0)
    return misses.sum(dim=(1, 2)) / (2 * count) / size


def _loss(prediction: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    return depth_error(prediction, cells).mean()


def _dataset_identity(data: tuple[Path, ...]) -> str:
    """What the cache was built from: the finished view folders of the datasets (a render that went on since, or
    other datasets, make another identity)."""
    views, _ = scan_dataset(data)
    listing = "\n".join(str(view.folder.resolve()) for view in views)
    return f"{len(views)}:{zlib.crc32(listing.encode()):08x}"


def _cached_examples(model: ZeroShapeW, options: BodyFitOptions, progress=None) -> dict[str, torch.Tensor]:
    """The examples of `options.data`, read from the run folder's cache when it was built from the same views."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    cache = options.out / "examples.safetensors"
    identity = _dataset_identity(options.data)
    if cache.is_file():
        with safe_open(str(cache), framework="pt") as handle:
            built_from = (handle.metadata() or {}).get("views")
        if built_from == identity:
            return load_file(str(cache))
        log.warning("%s was built from other views (%s, now %s): building it again", cache, built_from, identity)
    examples = build_examples(model, options.data, progress)
    temporary = cache.with_name(cache.name + ".partial")
    save_file({k: v.contiguous() for k, v in examples.items()}, str(temporary), metadata={"views": identity})
    temporary.replace(cache)
    return examples


def fit_body_head(options: BodyFitOptions, progress=None) -> dict:
    """Cache the examples (once), train the head, write model.safetensors and summary.json; returns the summary."""
    torch.manual_seed(options.seed)
    options.out.mkdir(parents=True, exist_ok=True)
    base = load_checkpoint(options.checkpoint)
    examples = _cached_examples(base, options, progress)
    monitor = examples["monitor"].bool()
    train_index = torch.nonzero(~monitor).squeeze(1)
    held_index = torch.nonzero(monitor).squeeze(1)
    config = dataclasses.replace(base.config, body_head=options.kind)
    head = BodyHead(base.backbone.global_channels, config.body_head_hidden, options.kind)
    optimiser = torch.optim.AdamW(head.parameters(), lr=options.learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, options.learning_rate, total_steps=options.steps)
    generator = torch.Generator().manual_seed(options.seed)
    targets = examples["targets"]
    started = time.monotonic()
    steps = range(options.steps)
    for _ in progress(steps) if progress else steps:
        pick = train_index[torch.randint(len(train_index), (options.batch_size,), generator=generator)]
        masks = _jitter(examples["masks"][pick], generator)
        loss = _loss(head(examples["features"][pick], masks), examples["cells"][pick])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    head.eval()

    def scores(index: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            prediction = head(examples["features"][index], examples["masks"][index].float())
        truth, cells = targets[index], examples["cells"][index]
        return {
            "head": float(_loss(prediction, cells)),
            "round": float(_loss(torch.zeros_like(truth), cells)),
            "fitted": float(_loss(truth, cells)),
            **{
                f"abs_error_{name}": float((prediction - truth)[:, i].abs().mean())
                for i, name in enumerate(TARGET_NAMES)
            },
        }

    summary = {
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(options).items()},
        "examples": {"train": len(train_index), "monitor": len(held_index)},
        "seconds": round(time.monotonic() - started, 1),
        "train_loss": scores(train_index),
        "monitor_loss": scores(held_index) if len(held_index) else None,
    }
    summary["options"]["data"] = [str(p) for p in options.data]
    model = ZeroShapeW(config, base.preprocess, base.text_encoder)
    state = base.own_state_dict() | {f"body_head.{k}": v for k, v in head.state_dict().items()}
    model.load_own_state_dict(state, source="base model and body head")
    # The base model's provenance stays: the head is an addition to it.
    head = {"from": str(options.checkpoint), **summary["examples"], "kind": options.kind, "steps": options.steps}
    provenance = read_header(options.checkpoint).get("provenance", {}) | {"body_head": head}
    save_checkpoint(model, options.out / "model.safetensors", provenance)
    (options.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
