"""The training loop: `train(TrainOptions(...))`, also behind `zeroshape-w train`.

Two stages (ZeroShape-W's supplement): stage 1 fits the pixel-level parts (backbone, camera, depth and mask
heads) with L; stage 2 trains the whole model with L' = L + L_occupancy, the stage-1 parts at a lower rate.
An optional shape stage runs first: the coordinate encoder and decoder alone learn completion from true visible
shapes corrupted like predictions (training.shape_augment), without the backbone, so its steps are cheap.

Reproducible and resumable by construction: step s draws its batch, augmentation, prompt dropout and teacher
forcing from `numpy.random.default_rng([seed, s])` and seeds torch with (seed, s), so the state to save is
just the weights, the optimiser and the step. A run that is killed and started again with the same command
continues from its last checkpoint and ends with the same weights as an uninterrupted run (CPU; GPU kernels
are not bit-deterministic).

Several GPUs or machines: start the same command under `torchrun`; every process takes its slice of each
step's global batch and DDP averages the gradients. Only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from backend.device import autocast_dtype
from backend.model.checkpoint import save_checkpoint
from backend.model.config import AGNOSTIC_PROMPT
from backend.model.zeroshape import PIXEL_COMPONENTS, SHAPE_COMPONENTS, ZeroShapeW
from training.dataset import Augmentation, RenderedViews, collate
from training.distributed import Distributed, init_distributed, training_device
from training.losses import (
    IGNORED_TARGET,
    AuxiliaryDepthModel,
    category_targets,
    category_weights,
    occupancy_loss,
    zeroshape_w_loss,
)
from training.options import TrainOptions, resolve_recipe
from training.recipes import TrainRecipe
from training.schedule import (
    JOINT_STAGE,
    PIXEL_STAGE,
    SHAPE_STAGE,
    Schedule,
    StepBatches,
    schedule,
    stage_of,
    step_requests,
)
from training.shape_augment import ShapeAugmentation, corrupt_visible_shape
from training.warm_start import build_model

log = logging.getLogger(__name__)

STATE_FILE = "train_state.pt"
"""Weights, optimiser and step: what resuming needs. Written by this code only, read with weights_only=True."""
LAST_CHECKPOINT = "last.safetensors"
FINAL_CHECKPOINT = "model.safetensors"


@dataclass
class TrainResult:
    step: int
    """Steps completed (equal to max_steps when the run finished)."""
    finished: bool
    checkpoint: Path
    """The last checkpoint written (final model when finished)."""
    samples_per_second: float
    seconds: float
    last_losses: dict[str, float]
    stopped_because: str


# --------------------------------------------------------------------------------------------------- set-up
def _parameter_groups(model: ZeroShapeW) -> list[dict]:
    """Two groups: the stage-1 (pixel) parts plus the text table, and the stage-2 (shape) parts."""
    pixel = [p for name in (*PIXEL_COMPONENTS, "text_encoder") for p in model.component_parameters(name)]
    shape = [p for name in SHAPE_COMPONENTS for p in model.component_parameters(name)]
    return [{"params": pixel, "name": "pixel"}, {"params": shape, "name": "shape"}]


# --------------------------------------------------------------------------------------------------- state
def _save_state(path: Path, model: ZeroShapeW, optimiser, scaler, step: int, elapsed: float, options: dict) -> None:
    state = {
        "step": step,
        "elapsed_seconds": elapsed,
        "options": json.dumps(options),
        "model": model.state_dict(),
        "optimiser": optimiser.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
    }
    temporary = path.with_name(path.name + ".partial")
    torch.save(state, temporary)
    os.replace(temporary, path)  # atomic: a kill mid-write leaves the previous state intact


def _load_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------------------------------- loop
def _corrupted_truth(tensors: dict[str, torch.Tensor], seed: int, step: int) -> dict[str, torch.Tensor]:
    """The step's true depth, K and visible mask corrupted like predictions (training.shape_augment), as the
    keyword arguments `ZeroShapeW.forward` takes them."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step + 7)
    depth, K, visible = corrupt_visible_shape(
        tensors["depth"].cpu(), tensors["K"].cpu(), tensors["visible_mask"].cpu(), ShapeAugmentation(), generator
    )
    device = tensors["depth"].device
    return {"visible_mask": visible.to(device), "depth": depth.to(device), "intrinsics": K.to(device)}


def _shape_step(
    network: torch.nn.Module,
    model: ZeroShapeW,
    tensors: dict[str, torch.Tensor],
    prompts: list[str],
    recipe: TrainRecipe,
    seed: int,
    step: int,
    autocast: contextlib.AbstractContextManager,
    dist: Distributed,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One shape-stage loss: occupancy from true visible shapes corrupted like predictions, no backbone."""
    with autocast:
        _, logits = network(
            None,
            tensors["points"],
            prompts,
            occluder_mask=tensors["occluder_mask"],
            **_corrupted_truth(tensors, seed, step),
        )
    occupancy = occupancy_loss(logits, tensors["occupancy"])
    loss = recipe.loss_weights.occupancy * occupancy
    if dist.world > 1:  # DDP expects a gradient for every parameter; the pixel parts get zeros
        loss = loss + 0.0 * sum(p.sum() for name in PIXEL_COMPONENTS for p in model.component_parameters(name))
    return loss, {"occupancy": occupancy.detach()}


class StopRequest:
    """Why a run should stop before its last step: "" while it should not, else a signal's name or "time budget".
    `on_signals()` turns SIGINT and SIGTERM into a request (the step in progress finishes and is saved)."""

    def __init__(self) -> None:
        self.reason = ""

    @contextlib.contextmanager
    def on_signals(self):
        def request(signum, frame) -> None:
            self.reason = f"signal {signal.Signals(signum).name}"

        previous = {}
        with contextlib.suppress(ValueError):  # not the main thread: no signal handling, the caller owns it
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, request)
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


@dataclass
class _Run:
    """Everything a run holds while it trains; `step` counts the steps done."""

    options: TrainOptions
    recipe: TrainRecipe
    max_steps: int
    batch_size: int
    base_lr: float
    dist: Distributed
    device: torch.device
    amp_dtype: torch.dtype | None
    out: Path
    model: ZeroShapeW
    provenance: dict[str, Any]
    dataset: RenderedViews
    optimiser: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    record: dict[str, Any]
    """options.json: the options, the recipe and the resolved sizes."""
    started: float
    step: int = 0
    elapsed_before: float = 0.0
    """Wall time of the earlier sessions of this run (resumed runs)."""


def _open_run(options: TrainOptions, started: float) -> _Run:
    """Resolve the recipe and sizes, build the model, data and optimiser, and resume from the run folder's state
    if it has one (a state of another config is refused before anything large is built)."""
    if options.init_matching and not options.init:
        raise ValueError("--init-matching needs --init FILE (the checkpoint to copy matching tensors from)")
    if options.train_only and not options.init:
        raise ValueError("--train-only freezes the rest of the model as initialised: give --init FILE")
    if options.freeze and not options.init:
        raise ValueError("--freeze keeps parts of the model as initialised: give --init FILE")
    if options.freeze and options.train_only:
        raise ValueError("give --train-only (the parts to train) or --freeze (the parts to keep), not both")
    recipe = resolve_recipe(options)
    max_steps = options.max_steps or recipe.max_steps
    batch_size = options.batch_size or recipe.batch_size
    query_points = options.query_points or recipe.query_points
    base_lr = options.learning_rate or recipe.learning_rate
    dist = init_distributed(torch.device("cuda" if options.device != "cpu" and torch.cuda.is_available() else "cpu"))
    device = training_device(options.device, dist.local_rank)
    if options.threads:
        torch.set_num_threads(options.threads)
    amp_dtype = autocast_dtype(options.precision, device)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    state = _load_state(out / STATE_FILE) if (out / STATE_FILE).is_file() else None
    if state is not None:
        saved_config = json.loads(state["options"]).get("config")
        if saved_config != options.config:
            raise ValueError(
                f"{out} holds a run of the {saved_config!r} config, not {options.config!r}: "
                "pick another --out, or delete that folder to start over"
            )
    torch.manual_seed(options.seed)  # the initial weights are part of the run: same seed, same start
    model, provenance = build_model(options)
    model.to(device).train()
    if options.train_only:
        frozen = model.freeze_all_but(options.train_only)
        provenance = {**provenance, "trained_only": list(options.train_only)}
        if dist.main:
            log.info("training only %s; frozen: %s", ", ".join(options.train_only), ", ".join(frozen))
    if options.freeze:
        frozen = model.freeze(options.freeze)
        provenance = {**provenance, "frozen": list(frozen)}
        if dist.main:
            log.info("frozen as initialised: %s", ", ".join(frozen))
    dataset = RenderedViews(
        options.data,
        model.config.image_size,
        query_points,
        Augmentation(),
        box_half_extent=model.preprocess.query_box_half_extent,
        box_fraction=recipe.box_fraction,
        skip_sheets=True,
    )
    optimiser = torch.optim.AdamW(
        _parameter_groups(model), lr=base_lr, betas=recipe.betas, weight_decay=recipe.weight_decay
    )
    record = {
        **dataclasses.asdict(options),
        "recipe": dataclasses.asdict(recipe),
        "resolved": {"max_steps": max_steps, "batch_size": batch_size, "query_points": query_points, "lr": base_lr},
    }
    run = _Run(
        options, recipe, max_steps, batch_size, base_lr, dist, device, amp_dtype, out, model, provenance, dataset,
        optimiser, torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None, record, started,
    )  # fmt: skip
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        if run.scaler is not None and state["scaler"]:
            run.scaler.load_state_dict(state["scaler"])
        run.step, run.elapsed_before = int(state["step"]), float(state["elapsed_seconds"])
        if dist.main:
            log.info("resuming %s at step %d of %d", out, run.step, max_steps)
    elif dist.main:
        (out / "options.json").write_text(json.dumps(record, indent=2, default=str))
    return run


def _network(run: _Run) -> torch.nn.Module:
    """The model, wrapped for DistributedDataParallel under torchrun."""
    if run.model.body_head is not None:  # trained by `train-body` alone; the loop keeps it as it is
        run.model.body_head.requires_grad_(False)
    if run.dist.world <= 1:
        return run.model
    # Every parameter takes part in every step (stage 1 queries one point per image with weight 0), so DDP needs
    # no search for unused parameters, which cannot see inside the Latent dataclass.
    return torch.nn.parallel.DistributedDataParallel(
        run.model, device_ids=[run.device.index] if run.device.type == "cuda" else None, find_unused_parameters=False
    )


def _loader(run: _Run) -> torch.utils.data.DataLoader:
    """Batches of the remaining steps (from `run.step`), the same on resume as in an uninterrupted run."""
    options = run.options
    workers = options.workers if options.workers is not None else (4 if run.device.type == "cuda" else 1)
    return torch.utils.data.DataLoader(
        run.dataset,
        batch_sampler=StepBatches(options.seed, run.step, run.max_steps, run.batch_size, run.dist, len(run.dataset)),
        num_workers=workers,
        collate_fn=collate,
        pin_memory=run.device.type == "cuda",
        persistent_workers=False,
    )


def _save(run: _Run, final: bool) -> Path:
    """The resumable state and a checkpoint (the final model, or `last`); only the main process writes."""
    if not run.dist.main:
        return run.out / LAST_CHECKPOINT
    record = {
        **run.provenance,
        "trained_with": "zeroshape-w train",
        "config": run.model.config.name,
        "steps": run.step,
        "max_steps": run.max_steps,
        "data": [str(d) for d in run.options.data],
        "views": len(run.dataset),
        "categories": run.dataset.categories,
        "seed": run.options.seed,
        "finished": final,
    }
    elapsed = run.elapsed_before + time.perf_counter() - run.started
    _save_state(run.out / STATE_FILE, run.model, run.optimiser, run.scaler, run.step, elapsed, run.record)
    name = FINAL_CHECKPOINT if final else LAST_CHECKPOINT
    return save_checkpoint(run.model, run.out / name, provenance=record)


def _step_loss(
    run: _Run,
    network: torch.nn.Module,
    tensors: dict[str, torch.Tensor],
    prompts: list[str],
    stage: int,
    teacher: bool,
    aux_depth_model: AuxiliaryDepthModel | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One step's loss and its terms, for the step's stage: the shape stage on corrupted true shapes; the pixel
    stage (the image side alone, one query point per image); the joint stage, its decoder fed the truth
    (exact or corrupted like predictions) when `teacher`, else the model's own predictions."""
    recipe, step, seed = run.recipe, run.step, run.options.seed
    autocast = (
        torch.autocast(run.device.type, dtype=run.amp_dtype) if run.amp_dtype is not None else contextlib.nullcontext()
    )
    if stage == SHAPE_STAGE:
        return _shape_step(network, run.model, tensors, prompts, recipe, seed, step, autocast, run.dist)
    given = {}
    if teacher and stage == JOINT_STAGE and recipe.corrupt_teacher_forcing:
        given = _corrupted_truth(tensors, seed, step)
    elif teacher:
        given = {"visible_mask": tensors["visible_mask"], "depth": tensors["depth"], "intrinsics": tensors["K"]}
    with autocast:
        points = tensors["points"] if stage == JOINT_STAGE else tensors["points"][:, :1]
        latent, logits = network(tensors["image"], points, prompts, **given)
        pseudo = None
        if aux_depth_model is not None:
            with torch.no_grad():
                pseudo = aux_depth_model(tensors["image"]).float()
    joint_logits = logits if stage == JOINT_STAGE else None
    loss, terms = zeroshape_w_loss(
        latent, tensors, joint_logits, recipe.loss_weights, run.model.config.image_size, pseudo
    )
    if stage == PIXEL_STAGE:  # the shape parts get zero gradients (and a zero learning rate) here
        loss = loss + 0.0 * logits.sum()
    return loss, terms


def _optimise(run: _Run, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """Backward, clip and step (with loss scaling for fp16). Returns the gradient norm before clipping."""
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"loss became {loss.item()} at step {run.step} ({ {k: float(v) for k, v in terms.items()} }); "
            "lower --learning-rate, or resume from the last checkpoint"
        )
    optimiser, scaler = run.optimiser, run.scaler
    optimiser.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimiser)
    else:
        loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.recipe.grad_clip)
    if scaler is not None:
        scaler.step(optimiser)
        scaler.update()
    else:
        optimiser.step()
    return grad_norm


def _log(writer, run: _Run, terms: dict[str, float], rates: Schedule, stage: int, grad_norm, seconds: float) -> None:
    """TensorBoard scalars of the step just done."""
    step = run.step
    for name, value in terms.items():
        writer.add_scalar(f"loss/{name}", value, step)
    writer.add_scalar("lr/pixel", rates.pixel_lr, step)
    writer.add_scalar("lr/shape", rates.shape_lr, step)
    writer.add_scalar("train/teacher_forcing", rates.teacher_forcing if stage == JOINT_STAGE else 1.0, step)
    writer.add_scalar("train/stage", stage, step)
    writer.add_scalar("train/grad_norm", float(grad_norm), step)
    writer.add_scalar("train/samples_per_second", run.batch_size * run.dist.world / seconds, step)


def train(
    options: TrainOptions,
    aux_depth_model: AuxiliaryDepthModel | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train (or continue training) the run in `options.out`.

    Args:
        aux_depth_model: the auxiliary pseudo-depth teacher (Depth Anything V2 in the paper): images
            [B, 3, H, W] in [0, 1] → disparity [B, 1, H, W]. None switches the 0.1·L_depth_aux term off.
        on_step: called on rank 0 after every step with (steps done, loss terms).
    """
    started = time.perf_counter()
    run = _open_run(options, started)
    recipe, dist, max_steps = run.recipe, run.dist, run.max_steps
    network = _network(run)
    loader = _loader(run)
    writer = None
    if dist.main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run.out / "tensorboard"))
    bar = None
    if dist.main and options.progress:
        from tqdm import tqdm

        bar = tqdm(
            total=max_steps, initial=run.step, unit="step", desc=f"train {run.model.config.name}", dynamic_ncols=True
        )
    budget_s = options.time_budget_minutes * 60 if options.time_budget_minutes else None
    stop = StopRequest()
    last_terms: dict[str, float] = {}
    step_times: list[float] = []
    last_checkpoint = run.out / LAST_CHECKPOINT
    first_step = run.step
    table = run.model.config.text.categories
    balance = category_weights([view.category for view in run.dataset.views], table).to(run.device)
    previous = time.perf_counter()
    try:
        with stop.on_signals():
            for batch in loader:
                # What this step is: its stage, rates, the prompts (some dropped to the agnostic one) and whether
                # the decoder is fed the truth; every draw comes from the seed and the step, so resuming repeats it.
                _, extra = step_requests(options.seed, run.step, run.batch_size * dist.world, len(run.dataset))
                stage, _, _ = stage_of(run.step, recipe, max_steps)
                rates = schedule(run.step, recipe, max_steps, run.base_lr)
                run.optimiser.param_groups[0]["lr"], run.optimiser.param_groups[1]["lr"] = (
                    rates.pixel_lr,
                    rates.shape_lr,
                )
                torch.manual_seed(options.seed * 1_000_003 + run.step)
                own = extra[dist.rank * run.batch_size : (dist.rank + 1) * run.batch_size]
                prompts = [
                    AGNOSTIC_PROMPT if drop < recipe.prompt_dropout else category
                    for drop, category in zip(own, batch["category"], strict=True)
                ]
                tensors = {
                    k: v.to(run.device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)
                }
                targets = category_targets(batch["category"], table)
                if run.model.category_head is not None:  # a true prompt would tell it the answer through the masks
                    targets[[prompt != AGNOSTIC_PROMPT for prompt in prompts]] = IGNORED_TARGET
                tensors["category_index"] = targets.to(run.device)
                tensors["category_weights"] = balance
                teacher = stage == PIXEL_STAGE or extra[-1] < rates.teacher_forcing

                loss, terms = _step_loss(run, network, tensors, prompts, stage, teacher, aux_depth_model)
                grad_norm = _optimise(run, loss, terms)
                run.step += 1

                now = time.perf_counter()
                step_times.append(now - previous)  # wall time per step, data loading and checkpoints included
                previous = now
                last_terms = {k: float(v) for k, v in terms.items()} | {"total": float(loss.detach())}
                if dist.main:
                    if writer is not None and (run.step % options.log_every == 0 or run.step == max_steps):
                        _log(writer, run, last_terms, rates, stage, grad_norm, step_times[-1])
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(stage=stage, loss=f"{last_terms['total']:.3f}", refresh=False)
                    if on_step is not None:
                        on_step(run.step, last_terms)
                if run.step % options.checkpoint_every == 0 and run.step < max_steps:
                    last_checkpoint = _save(run, final=False)
                if budget_s is not None and not stop.reason:
                    mean_step = sum(step_times[-20:]) / len(step_times[-20:])
                    if time.perf_counter() - started + 2 * mean_step > budget_s:
                        stop.reason = "time budget"
                if stop.reason and run.step < max_steps:
                    break
    finally:
        if bar is not None:
            bar.close()

    finished = run.step >= max_steps
    if run.step > first_step or finished:
        last_checkpoint = _save(run, final=finished)
    if writer is not None:
        writer.close()
    # Wall-clock throughput; the first two steps (start-up of workers, caches) are left out.
    timed = step_times[2:] or step_times
    throughput = run.batch_size * dist.world * len(timed) / sum(timed) if timed else 0.0
    return TrainResult(
        step=run.step,
        finished=finished,
        checkpoint=last_checkpoint,
        samples_per_second=throughput,
        seconds=time.perf_counter() - started,
        last_losses=last_terms,
        stopped_because="finished" if finished else (stop.reason or "stopped"),
    )
