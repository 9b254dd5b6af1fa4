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
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from backend.device import autocast_dtype, resolve_device
from backend.model.checkpoint import load_checkpoint, read_header, save_checkpoint
from backend.model.config import AGNOSTIC_PROMPT, ModelConfig, get_config
from backend.model.text import CategoryTableEncoder, build_text_encoder
from backend.model.zeroshape import PIXEL_COMPONENTS, SHAPE_COMPONENTS, ZeroShapeW
from training.dataset import Augmentation, RenderedViews, SampleRequest, collate
from training.losses import AuxiliaryDepthModel, LossWeights, occupancy_loss, zeroshape_w_loss
from training.recipes import TrainRecipe, get_recipe
from training.shape_augment import ShapeAugmentation, corrupt_visible_shape

log = logging.getLogger(__name__)

STATE_FILE = "train_state.pt"
"""Weights, optimiser and step: what resuming needs. Written by this code only, read with weights_only=True."""
LAST_CHECKPOINT = "last.safetensors"
FINAL_CHECKPOINT = "model.safetensors"


@dataclass(frozen=True)
class TrainOptions:
    data: tuple[str, ...]
    """Rendered dataset folders (`zeroshape-w data render --out`)."""
    out: str
    """Run folder: checkpoints, TensorBoard logs, options.json."""
    config: str = "small"
    max_steps: int | None = None
    """Length of the run (the schedule spans it); default: the recipe's."""
    time_budget_minutes: float | None = None
    """Stop cleanly (checkpoint, exit) before this much wall time has passed; run again to continue."""
    init: str | None = None
    """Warm start: a ZeroShape-W checkpoint of the same config, or an official ZeroShape file (paper only)."""
    init_matching: bool = False
    """Warm start from a checkpoint whose architecture differs (e.g. an older version of the same size): every
    tensor whose name and shape match is copied, the rest keep their fresh initialisation."""
    stage1_fraction: float | None = None
    """Share of the steps in stage 1; default: the recipe's (0 skips it, e.g. after a warm start)."""
    shape_stage_fraction: float | None = None
    """Share of the steps in the shape stage (before stage 1); default: the recipe's."""
    teacher_forcing: tuple[float, float] | None = None
    """Teacher-forcing probability at the start and end of stage 2; default: the recipe's. A warm-started
    decoder already reads clean shapes, so continuing a run wants it low from the start."""
    corrupt_teacher_forcing: bool | None = None
    """Stage-2 teacher forcing with the truth corrupted like predictions; default: the recipe's."""
    loss_weights: tuple[tuple[str, float], ...] = ()
    """(term, weight) pairs that replace the recipe's loss weights, e.g. (("camera", 1.0),)."""
    grad_clip: float | None = None
    """Global gradient-norm clip; default: the recipe's."""
    pixel_aligned: bool | None = None
    """Override the config's decoder: True reads pixel-aligned evidence, False is the token-only decoder."""
    seed: int = 0
    batch_size: int | None = None
    query_points: int | None = None
    learning_rate: float | None = None
    device: str = "auto"
    precision: str = "auto"
    """auto: bf16 autocast on a GPU that supports it, else fp16 with loss scaling; fp32 on the CPU."""
    workers: int | None = None
    """Data-loading processes; default 1 on the CPU (the other core computes), 4 per GPU."""
    threads: int | None = None
    checkpoint_every: int = 250
    log_every: int = 10
    open_clip_weights: str | None = None
    progress: bool = True


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
@dataclass
class _Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> _Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return _Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _training_device(name: str, local_rank: int) -> torch.device:
    """The device of this process: `resolve_device`'s, with each torchrun process on its own GPU."""
    device = resolve_device(name)
    if device.type == "cuda":
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def model_config(options: TrainOptions) -> ModelConfig:
    """`options.config`'s preset with the run's architecture overrides (`pixel_aligned`)."""
    config = get_config(options.config)
    if options.pixel_aligned is not None:
        config = dataclasses.replace(
            config, decoder=dataclasses.replace(config.decoder, pixel_aligned=options.pixel_aligned)
        )
    return config


def build_model(options: TrainOptions) -> tuple[ZeroShapeW, dict[str, Any]]:
    """A fresh model of `options.config`, or the warm start `options.init`; returns (model, provenance)."""
    config = model_config(options)
    if not options.init:
        return ZeroShapeW(config), {}
    init = Path(options.init)
    if not init.is_file():
        raise FileNotFoundError(f"--init {init}: no such file")
    if init.suffix == ".safetensors":
        model = load_checkpoint(init, open_clip_weights=options.open_clip_weights)
        if options.init_matching:
            fresh = ZeroShapeW(config, text_encoder=build_text_encoder(config.text, options.open_clip_weights))
            copied, kept = copy_matching_weights(model, fresh)
            log.info("warm start from %s: %d tensors copied, %d kept fresh (%s)", init, len(copied), len(kept), kept)
            provenance = read_header(init).get("provenance")
            return fresh.train(), {
                "warm_start": str(init),
                "warm_start_provenance": provenance,
                "warm_start_fresh_tensors": kept,
            }
        if model.config != config:
            raise ValueError(
                f"--init {init} holds a {model.config.name!r} model, but --config is {options.config!r}; "
                "warm starts need the same architecture"
            )
        return model.train(), {"warm_start": str(init), "warm_start_provenance": read_header(init).get("provenance")}
    from backend.model.convert import convert_zeroshape_checkpoint

    model, report, provenance = convert_zeroshape_checkpoint(init, open_clip_weights=options.open_clip_weights)
    if model.config != config:
        raise ValueError(f"--init {init} is an official ZeroShape checkpoint: it warm-starts --config paper only")
    log.info("warm start from ZeroShape %s: %s", init, report)
    return model.train(), {"warm_start": str(init), "warm_start_provenance": provenance}


def copy_matching_weights(source: torch.nn.Module, target: torch.nn.Module) -> tuple[list[str], list[str]]:
    """Copy every tensor of `source` into `target` where the name and shape agree.

    Category tables (`CategoryTableEncoder`) are matched by category name instead: a category both know keeps
    its trained row, a new one starts from the trained "object" row (what such samples were trained under).

    Returns (copied names, names of `target` left as they were) so the caller can say what starts fresh.
    """
    theirs = source.state_dict()
    copied, kept = [], []
    tables = _category_tables(source, target)
    with torch.no_grad():
        for name, tensor in target.state_dict().items():
            if name in tables:
                tensor.copy_(tables[name].to(tensor.dtype))
                copied.append(name)
            elif name in theirs and theirs[name].shape == tensor.shape:
                tensor.copy_(theirs[name].to(tensor.dtype))
                copied.append(name)
            else:
                kept.append(name)
    return copied, kept


def _category_tables(source: torch.nn.Module, target: torch.nn.Module) -> dict[str, torch.Tensor]:
    """{state-dict name: the target's category table filled from the source's rows by category name}."""
    mine = dict(source.named_modules())
    tables = {}
    for name, module in target.named_modules():
        old = mine.get(name)
        if not (isinstance(module, CategoryTableEncoder) and isinstance(old, CategoryTableEncoder)):
            continue
        if old.embed_dim != module.embed_dim:
            continue
        rows = module.table.weight.detach().clone()
        for index, category in enumerate(module.categories):
            rows[index] = old.table.weight[old.index.get(category, 0)]
        tables[f"{name}.table.weight" if name else "table.weight"] = rows
    return tables


def _parameter_groups(model: ZeroShapeW) -> list[dict]:
    """Two groups: the stage-1 (pixel) parts plus the text table, and the stage-2 (shape) parts."""
    pixel = [p for name in (*PIXEL_COMPONENTS, "text_encoder") for p in model.component_parameters(name)]
    shape = [p for name in SHAPE_COMPONENTS for p in model.component_parameters(name)]
    return [{"params": pixel, "name": "pixel"}, {"params": shape, "name": "shape"}]


SHAPE_STAGE, PIXEL_STAGE, JOINT_STAGE = 0, 1, 2
"""The stages in the order they run: shape (3D half on corrupted true shapes), pixel (stage 1), joint (stage 2)."""


def stage_of(step: int, recipe: TrainRecipe, max_steps: int) -> tuple[int, int, int]:
    """(stage: SHAPE_STAGE, PIXEL_STAGE or JOINT_STAGE, first step of that stage, its length) for a 0-based step."""
    shape = round(max_steps * recipe.shape_stage_fraction)
    pixel = round(max_steps * recipe.stage1_fraction)
    if step < shape:
        return SHAPE_STAGE, 0, shape
    if step < shape + pixel:
        return PIXEL_STAGE, shape, pixel
    return JOINT_STAGE, shape + pixel, max_steps - shape - pixel


class Schedule(NamedTuple):
    """What the schedule sets at one step."""

    pixel_lr: float
    """Learning rate of the image side (backbone and pixel heads)."""
    shape_lr: float
    """Learning rate of the 3D side (coordinate encoder and decoder)."""
    teacher_forcing: float
    """Probability that a sample's decoder sees the true visible shape instead of the predicted one."""


def schedule(step: int, recipe: TrainRecipe, max_steps: int, base: float) -> Schedule:
    """The learning rates and teacher-forcing probability at a 0-based step."""
    stage, start, length = stage_of(step, recipe, max_steps)
    position = step - start
    warmup = min(recipe.warmup_steps, max(1, length // 4))
    if position < warmup:
        factor = (position + 1) / warmup
    else:
        progress = (position - warmup) / max(1, length - warmup)
        factor = recipe.final_lr_ratio + (1 - recipe.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if stage == SHAPE_STAGE:
        return Schedule(0.0, base * factor, 1.0)
    if stage == PIXEL_STAGE:
        return Schedule(base * factor, 0.0, 1.0)
    start_p, end_p = recipe.teacher_forcing
    forcing = start_p + (end_p - start_p) * position / max(1, length - 1)
    return Schedule(base * recipe.stage2_pixel_lr_ratio * factor, base * factor, forcing)


def step_requests(seed: int, step: int, global_batch: int, dataset_size: int) -> tuple[list[SampleRequest], np.ndarray]:
    """The global batch of a step and the step's own random numbers (prompt dropout, teacher forcing)."""
    rng = np.random.default_rng([seed, step])
    indices = rng.integers(0, dataset_size, size=global_batch)
    seeds = rng.integers(0, 2**63 - 1, size=global_batch)
    extra = rng.random(global_batch + 1)  # one per sample (prompt dropout), one for the step (teacher forcing)
    return [SampleRequest(int(i), int(s)) for i, s in zip(indices, seeds, strict=True)], extra


class _StepBatches(torch.utils.data.Sampler):
    """Batch sampler: this process's slice of every step's global batch, from `first_step` on."""

    def __init__(self, seed: int, first_step: int, last_step: int, batch: int, dist: _Distributed, size: int):
        self.seed, self.first, self.last, self.batch, self.dist, self.size = (
            seed,
            first_step,
            last_step,
            batch,
            dist,
            size,
        )

    def __iter__(self) -> Iterator[list[SampleRequest]]:
        for step in range(self.first, self.last):
            requests, _ = step_requests(self.seed, step, self.batch * self.dist.world, self.size)
            yield requests[self.dist.rank * self.batch : (self.dist.rank + 1) * self.batch]

    def __len__(self) -> int:
        return self.last - self.first


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
    dist: _Distributed,
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


def resolve_recipe(options: TrainOptions) -> TrainRecipe:
    """The config's recipe with the run's overrides (stage split, teacher forcing, loss weights, clipping)."""
    recipe = get_recipe(options.config)
    if options.stage1_fraction is not None:
        if not 0.0 <= options.stage1_fraction < 1.0:
            raise ValueError(f"stage1_fraction must be in [0, 1), got {options.stage1_fraction}")
        recipe = dataclasses.replace(recipe, stage1_fraction=options.stage1_fraction)
    if options.shape_stage_fraction is not None:
        if not 0.0 <= options.shape_stage_fraction <= 1.0:
            raise ValueError(f"shape_stage_fraction must be in [0, 1], got {options.shape_stage_fraction}")
        recipe = dataclasses.replace(recipe, shape_stage_fraction=options.shape_stage_fraction)
    if recipe.shape_stage_fraction + recipe.stage1_fraction > 1.0:
        raise ValueError(
            f"the shape stage ({recipe.shape_stage_fraction}) and stage 1 ({recipe.stage1_fraction}) "
            "together take more than the whole run"
        )
    if options.teacher_forcing is not None:
        start_p, end_p = options.teacher_forcing
        if not (0.0 <= start_p <= 1.0 and 0.0 <= end_p <= 1.0):
            raise ValueError(f"teacher_forcing probabilities must be in [0, 1], got {options.teacher_forcing}")
        recipe = dataclasses.replace(recipe, teacher_forcing=(float(start_p), float(end_p)))
    if options.corrupt_teacher_forcing is not None:
        recipe = dataclasses.replace(recipe, corrupt_teacher_forcing=options.corrupt_teacher_forcing)
    if options.loss_weights:
        known = [f.name for f in dataclasses.fields(LossWeights)]
        weights = {}
        for name, value in options.loss_weights:
            if name not in known:
                raise ValueError(f"unknown loss term {name!r} in loss_weights; choose from {known}")
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"loss weight {name}={value} must be a finite number ≥ 0")
            weights[name] = float(value)
        recipe = dataclasses.replace(recipe, loss_weights=dataclasses.replace(recipe.loss_weights, **weights))
    if options.grad_clip is not None:
        if not (math.isfinite(options.grad_clip) and options.grad_clip > 0.0):
            raise ValueError(f"grad_clip must be a positive number, got {options.grad_clip}")
        recipe = dataclasses.replace(recipe, grad_clip=float(options.grad_clip))
    return recipe


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
    if options.init_matching and not options.init:
        raise ValueError("--init-matching needs --init FILE (the checkpoint to copy matching tensors from)")
    recipe = resolve_recipe(options)
    max_steps = options.max_steps or recipe.max_steps
    batch_size = options.batch_size or recipe.batch_size
    query_points = options.query_points or recipe.query_points
    base_lr = options.learning_rate or recipe.learning_rate
    dist = _init_distributed(torch.device("cuda" if options.device != "cpu" and torch.cuda.is_available() else "cpu"))
    device = _training_device(options.device, dist.local_rank)
    if options.threads:
        torch.set_num_threads(options.threads)
    amp_dtype = autocast_dtype(options.precision, device)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)

    state_path = out / STATE_FILE
    state = _load_state(state_path) if state_path.is_file() else None
    if state is not None:  # refuse another config's run folder before building anything large
        saved_config = json.loads(state["options"]).get("config")
        if saved_config != options.config:
            raise ValueError(
                f"{out} holds a run of the {saved_config!r} config, not {options.config!r}: "
                "pick another --out, or delete that folder to start over"
            )
    torch.manual_seed(options.seed)  # the initial weights are part of the run: same seed, same start
    model, provenance = build_model(options)
    model.to(device).train()
    config = model.config
    dataset = RenderedViews(
        options.data,
        config.image_size,
        query_points,
        Augmentation(),
        box_half_extent=model.preprocess.query_box_half_extent,
        box_fraction=recipe.box_fraction,
    )
    groups = _parameter_groups(model)
    optimiser = torch.optim.AdamW(groups, lr=base_lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    options_record = {
        **dataclasses.asdict(options),
        "recipe": dataclasses.asdict(recipe),
        "resolved": {"max_steps": max_steps, "batch_size": batch_size, "query_points": query_points, "lr": base_lr},
    }
    step = 0
    elapsed_before = 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        if scaler is not None and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        step, elapsed_before = int(state["step"]), float(state["elapsed_seconds"])
        if dist.main:
            log.info("resuming %s at step %d of %d", out, step, max_steps)
    elif dist.main:
        (out / "options.json").write_text(json.dumps(options_record, indent=2, default=str))

    network: torch.nn.Module = model
    if dist.world > 1:
        # Every parameter takes part in every step (stage 1 queries one point per image with weight 0), so
        # DDP needs no search for unused parameters, which cannot see inside the Latent dataclass.
        network = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=False
        )

    workers = options.workers if options.workers is not None else (4 if device.type == "cuda" else 1)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=_StepBatches(options.seed, step, max_steps, batch_size, dist, len(dataset)),
        num_workers=workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )

    writer = None
    if dist.main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"))

    stop_reason = {"why": ""}

    def request_stop(signum, frame) -> None:
        stop_reason["why"] = f"signal {signal.Signals(signum).name}"

    previous_handlers = {}
    with contextlib.suppress(ValueError):  # not the main thread: no signal handling, the caller owns it
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous_handlers[signum] = signal.signal(signum, request_stop)

    budget_s = options.time_budget_minutes * 60 if options.time_budget_minutes else None
    bar = None
    if dist.main and options.progress:
        from tqdm import tqdm

        bar = tqdm(total=max_steps, initial=step, unit="step", desc=f"train {config.name}", dynamic_ncols=True)
    last_terms: dict[str, float] = {}
    step_times: list[float] = []
    last_checkpoint = out / LAST_CHECKPOINT
    first_step = step

    def checkpoint(final: bool) -> Path:
        if not dist.main:
            return last_checkpoint
        record = {
            **provenance,
            "trained_with": "zeroshape-w train",
            "config": config.name,
            "steps": step,
            "max_steps": max_steps,
            "data": [str(d) for d in options.data],
            "views": len(dataset),
            "categories": dataset.categories,
            "seed": options.seed,
            "finished": final,
        }
        _save_state(
            state_path,
            model,
            optimiser,
            scaler,
            step,
            elapsed_before + time.perf_counter() - started,
            options_record,
        )
        return save_checkpoint(model, out / (FINAL_CHECKPOINT if final else LAST_CHECKPOINT), provenance=record)

    previous = time.perf_counter()
    try:
        for batch in loader:
            _, extra = step_requests(options.seed, step, batch_size * dist.world, len(dataset))
            stage, _, _ = stage_of(step, recipe, max_steps)
            pixel_lr, shape_lr, forcing = schedule(step, recipe, max_steps, base_lr)
            optimiser.param_groups[0]["lr"], optimiser.param_groups[1]["lr"] = pixel_lr, shape_lr
            torch.manual_seed(options.seed * 1_000_003 + step)
            own = extra[dist.rank * batch_size : (dist.rank + 1) * batch_size]
            prompts = [
                AGNOSTIC_PROMPT if drop < recipe.prompt_dropout else category
                for drop, category in zip(own, batch["category"], strict=True)
            ]
            tensors = {k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            teacher = stage == PIXEL_STAGE or extra[-1] < forcing
            autocast = (
                torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
            )
            if stage == SHAPE_STAGE:
                loss, terms = _shape_step(network, model, tensors, prompts, recipe, options.seed, step, autocast, dist)
            else:
                given = {}
                if teacher and stage == JOINT_STAGE and recipe.corrupt_teacher_forcing:
                    given = _corrupted_truth(tensors, options.seed, step)
                elif teacher:
                    given = {
                        "visible_mask": tensors["visible_mask"],
                        "depth": tensors["depth"],
                        "intrinsics": tensors["K"],
                    }
                with autocast:
                    latent, logits = network(
                        tensors["image"],
                        tensors["points"] if stage == JOINT_STAGE else tensors["points"][:, :1],
                        prompts,
                        **given,
                    )
                    pseudo = None
                    if aux_depth_model is not None:
                        with torch.no_grad():
                            pseudo = aux_depth_model(tensors["image"]).float()
                loss, terms = zeroshape_w_loss(
                    latent,
                    tensors,
                    logits if stage == JOINT_STAGE else None,
                    recipe.loss_weights,
                    config.image_size,
                    pseudo,
                )
            if stage == PIXEL_STAGE:  # the shape parts get zero gradients (and a zero learning rate) here
                loss = loss + 0.0 * logits.sum()
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} at step {step} ({ {k: float(v) for k, v in terms.items()} }); "
                    "lower --learning-rate, or resume from the last checkpoint"
                )
            optimiser.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimiser)
            else:
                loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            if scaler is not None:
                scaler.step(optimiser)
                scaler.update()
            else:
                optimiser.step()
            step += 1
            now = time.perf_counter()
            step_times.append(now - previous)  # wall time per step, data loading and checkpoints included
            previous = now
            last_terms = {k: float(v) for k, v in terms.items()} | {"total": float(loss.detach())}

            if dist.main:
                if writer is not None and (step % options.log_every == 0 or step == max_steps):
                    for name, value in last_terms.items():
                        writer.add_scalar(f"loss/{name}", value, step)
                    writer.add_scalar("lr/pixel", pixel_lr, step)
                    writer.add_scalar("lr/shape", shape_lr, step)
                    writer.add_scalar("train/teacher_forcing", forcing if stage == JOINT_STAGE else 1.0, step)
                    writer.add_scalar("train/stage", stage, step)
                    writer.add_scalar("train/grad_norm", float(grad_norm), step)
                    writer.add_scalar("train/samples_per_second", batch_size * dist.world / step_times[-1], step)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(stage=stage, loss=f"{last_terms['total']:.3f}", refresh=False)
                if on_step is not None:
                    on_step(step, last_terms)
            if step % options.checkpoint_every == 0 and step < max_steps:
                last_checkpoint = checkpoint(final=False)
            if budget_s is not None and not stop_reason["why"]:
                mean_step = sum(step_times[-20:]) / len(step_times[-20:])
                if time.perf_counter() - started + 2 * mean_step > budget_s:
                    stop_reason["why"] = "time budget"
            if stop_reason["why"] and step < max_steps:
                break
    finally:
        if bar is not None:
            bar.close()
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)

    finished = step >= max_steps
    if step > first_step or finished:
        last_checkpoint = checkpoint(final=finished)
    if writer is not None:
        writer.close()
    seconds = time.perf_counter() - started
    # Wall-clock throughput; the first two steps (start-up of workers, caches) are left out.
    timed = step_times[2:] or step_times
    throughput = batch_size * dist.world * len(timed) / sum(timed) if timed else 0.0
    return TrainResult(
        step=step,
        finished=finished,
        checkpoint=last_checkpoint,
        samples_per_second=throughput,
        seconds=seconds,
        last_losses=last_terms,
        stopped_because="finished" if finished else (stop_reason["why"] or "stopped"),
    )
