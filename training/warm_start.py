"""Where a training run's weights start: fresh, a checkpoint of the same architecture, a checkpoint of another
one (matching tensors copied, category tables matched by name), or an official ZeroShape file (`paper`)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from backend.model.checkpoint import load_checkpoint, read_header
from backend.model.config import ModelConfig, get_config
from backend.model.text import CategoryTableEncoder, build_text_encoder
from backend.model.zeroshape import ZeroShapeW

if TYPE_CHECKING:
    from training.options import TrainOptions

log = logging.getLogger(__name__)


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
            config = without_heads_left_untrained(config, model, options.train_only)
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


def without_heads_left_untrained(config: ModelConfig, source: ZeroShapeW, train_only: tuple[str, ...]) -> ModelConfig:
    """`config` without the optional heads that `--train-only` would leave at their fresh initialisation: those the
    `source` model lacks and the run does not train. Shipped untrained, a scene head would answer its constant
    prior and tilt every mesh by it; a model without it keeps the camera's up, as its source did."""
    if not train_only:
        return config
    changes = {}
    if config.scene_head and source.scene_head is None and "scene_head" not in train_only:
        changes["scene_head"] = False
    if config.shape_category_head and source.category_head is None and "category_head" not in train_only:
        changes["shape_category_head"] = False
    if changes:
        log.info("left out of the model, as --init lacks them and --train-only does not train them: %s", changes)
    return dataclasses.replace(config, **changes)


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
