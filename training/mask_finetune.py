"""Teach the object-mask head real photos: `finetune_mask(MaskFinetuneOptions(...))`, behind
`zeroshape-w train-mask`.

The pixel stage learned the visible mask on renders only, and on photos its mask is weak (the photo benchmark's
raw mask IoU). This fine-tunes the backbone and the visible-mask head on Tux Paint photo cut-outs pasted on real
backgrounds (`training.cutout_composites`, the stamps' alpha as the target), mixed with rendered views (their
visible mask) so renders are not forgotten. Everything else the backbone feeds (intrinsics, depth, occluder
mask, gravity) is held to what the starting checkpoint predicted on the same images (distillation from a frozen
copy), so the shape half downstream keeps receiving the inputs it was trained on. The shape half itself is not
touched, nor computed.

Resumable: step s draws from `numpy.random.default_rng([seed, s])`; a run started again with the same command
continues from its last saved step (weights, optimiser and step in OUT/state.pt, read with weights_only).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from backend.model.checkpoint import load_checkpoint, save_checkpoint
from backend.model.config import AGNOSTIC_PROMPT
from backend.model.zeroshape import ZeroShapeW

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaskFinetuneOptions:
    init: Path
    """The checkpoint to start from (and to hold the other heads to)."""
    out: Path
    """Run folder: model.safetensors (float32), state.pt, log.jsonl, options.json."""
    steps: int = 1500
    batch_size: int = 8
    learning_rate: float = 3e-4
    """For the visible-mask head; the backbone gets `backbone_rate_scale` times it (0: frozen)."""
    backbone_rate_scale: float = 0.1
    render_data: tuple[Path, ...] = field(default_factory=tuple)
    """Rendered datasets mixed in (their visible masks); none: cut-outs only."""
    render_share: float = 0.3
    distill_weight: float = 1.0
    time_budget_min: float | None = None
    """Stop (and save) after this many minutes of this invocation; the same command resumes."""
    seed: int = 0
    stamps: Path | None = None
    """The Tux Paint stamps folder (default: Debian's, training.photo_benchmark.STAMPS_ROOT)."""
    checkpoint_every: int = 100
    log_every: int = 20


def _pixel_outputs(model: ZeroShapeW, images: torch.Tensor, text: torch.Tensor) -> dict[str, torch.Tensor]:
    """The image side alone (no shape half): intrinsics [B, 3, 3], depth [B, 1, S, S], visible and occluder mask
    logits [B, 1, S, S], and gravity [B, 3] for models with a scene head. images: [B, 3, S, S] in [0, 1]."""
    maps = model.backbone(images * model.preprocess.input_scale + model.preprocess.input_shift)
    visible = model.visible_mask_head(maps[1], text)
    visible_fine = F.interpolate(torch.sigmoid(visible), size=maps[1].shape[-2:], mode="bilinear", align_corners=False)
    outputs = {
        "K": model.intrinsics_head(maps[0]),
        "depth": model.depth_head(maps[1]),
        "visible": visible,
        "occluder": model.occluder_mask_head(maps[1], text, extra=visible_fine),
    }
    if model.scene_head is not None:
        outputs["gravity"] = model.scene_head(maps[0])[0]
    return outputs


def _distillation(student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """How far the student's other outputs moved from the teacher's, each about 1 for a useless prediction."""
    depth_scale = teacher["depth"].mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    terms = {
        "focal": (student["K"][:, 0, 0].log() - teacher["K"][:, 0, 0].log()).abs().mean(),
        "depth": ((student["depth"] - teacher["depth"]).abs() / depth_scale).mean(),
        "occluder": F.binary_cross_entropy_with_logits(student["occluder"], torch.sigmoid(teacher["occluder"])),
    }
    if "gravity" in teacher:
        terms["gravity"] = (1.0 - F.cosine_similarity(student["gravity"], teacher["gravity"], dim=1)).mean()
    return terms


class _Samples:
    """The step's batch: composites and, with render data, rendered views."""

    def __init__(self, model: ZeroShapeW, options: MaskFinetuneOptions):
        from training.cutout_composites import CutoutComposites

        self.composites = CutoutComposites(model.preprocess, options.stamps)
        self.renders = None
        if options.render_data:
            from training.dataset import RenderedViews

            self.renders = RenderedViews(list(options.render_data), model.config.image_size, query_points=1)
        self.options = options

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(images [B, 3, S, S], masks [B, 1, S, S], how many came from renders)."""
        from training.dataset import SampleRequest

        rng = np.random.default_rng([self.options.seed, step])
        images, masks, rendered = [], [], 0
        for _ in range(self.options.batch_size):
            if self.renders is not None and rng.random() < self.options.render_share:
                index = int(rng.integers(len(self.renders.views)))
                sample = self.renders[SampleRequest(index, int(rng.integers(2**31)), occluders=0)]
                images.append(sample["image"].numpy())
                masks.append(sample["visible_mask"].numpy())
                rendered += 1
            else:
                image, mask = self.composites.sample(rng)
                images.append(image)
                masks.append(mask)
        return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks)), rendered


def finetune_mask(options: MaskFinetuneOptions, progress=None) -> Path:
    """Run (or resume) the fine-tuning; returns the path of the float32 checkpoint written last."""
    device = torch.device("cpu")
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "options.json").write_text(json.dumps(asdict(options), indent=2, default=str))
    model = load_checkpoint(options.init, device)
    teacher = load_checkpoint(options.init, device)
    model.eval()  # group norms and no dropout: eval mode trains the same, and keeps the frozen parts as they are
    teacher.eval().requires_grad_(False)
    model.requires_grad_(False)
    model.visible_mask_head.requires_grad_(True)
    groups = [{"params": list(model.visible_mask_head.parameters()), "lr": options.learning_rate}]
    if options.backbone_rate_scale > 0:
        model.backbone.requires_grad_(True)
        groups.append(
            {"params": list(model.backbone.parameters()), "lr": options.learning_rate * options.backbone_rate_scale}
        )
    optimiser = torch.optim.AdamW(groups, weight_decay=1e-4)

    state_path, model_path = options.out / "state.pt", options.out / "model.safetensors"
    step = 0
    if state_path.is_file() and model_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(load_checkpoint(model_path, device).state_dict())
        optimiser.load_state_dict(state["optimiser"])
        step = int(state["step"])
        log.info("resuming %s at step %d", options.out, step)

    samples = _Samples(model, options)
    with torch.no_grad():
        text = model.embed_text([AGNOSTIC_PROMPT], 1).expand(options.batch_size, -1).contiguous()
    started = time.monotonic()
    budget = None if options.time_budget_min is None else options.time_budget_min * 60.0
    log_file = (options.out / "log.jsonl").open("a")
    bar = progress(total=options.steps, initial=step) if progress else None

    def save() -> Path:
        provenance = {
            "finetuned": "visible mask on photo cut-outs (training.mask_finetune)",
            "init": str(options.init),
            "step": step,
            "options": json.loads(json.dumps(asdict(options), default=str)),
        }
        path = save_checkpoint(model, model_path, provenance=provenance)
        torch.save({"optimiser": optimiser.state_dict(), "step": step}, state_path)
        return path

    path = model_path
    while step < options.steps:
        if budget is not None and time.monotonic() - started > budget:
            log.info("time budget reached at step %d: saved; run the same command to continue", step)
            break
        images, masks, rendered = samples.batch(step)
        torch.manual_seed(options.seed * 1_000_003 + step)
        student = _pixel_outputs(model, images, text)
        loss_terms = {"mask": F.binary_cross_entropy_with_logits(student["visible"], masks)}
        if options.backbone_rate_scale > 0 and options.distill_weight > 0:
            with torch.no_grad():
                reference = _pixel_outputs(teacher, images, text)
            loss_terms |= {f"keep_{k}": v for k, v in _distillation(student, reference).items()}
        loss = loss_terms["mask"] + options.distill_weight * sum(v for k, v in loss_terms.items() if k != "mask")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        optimiser.step()
        step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(mask=f"{loss_terms['mask'].item():.3f}", refresh=False)
        if step % options.log_every == 0:
            with torch.no_grad():
                predicted = student["visible"] >= 0
                truth = masks >= 0.5
                iou = float((predicted & truth).sum() / (predicted | truth).sum().clamp_min(1))
            record = {"step": step, "rendered": rendered, "batch_mask_iou": round(iou, 4)}
            record |= {k: round(v.item(), 5) for k, v in loss_terms.items()}
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
        if step % options.checkpoint_every == 0:
            path = save()
    path = save()
    log_file.close()
    if bar is not None:
        bar.close()
    return path


def release_mask_checkpoint(run_model: Path, out: Path) -> Path:
    """Write a fine-tuned checkpoint as a shipped file: float16, with the starting checkpoint's provenance nested
    under this run's (its occupancy level and preprocessing are the starting checkpoint's: the shape half did not
    change)."""
    from backend.model.checkpoint import read_header

    header = read_header(run_model)
    provenance = dict(header.get("provenance", {}))
    init = Path(provenance.get("init", ""))
    if init.is_file():
        provenance["warm_start_provenance"] = read_header(init).get("provenance", {})
    provenance["stored_as"] = "float16"
    model = load_checkpoint(run_model, torch.device("cpu"))
    return save_checkpoint(model, out, provenance, dtype=torch.float16)
