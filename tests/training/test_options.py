"""training/options.py: the run's overrides of its recipe, and the reasons bad ones are refused."""

from __future__ import annotations

import pytest

from training.cli_train import parse_loss_weights
from training.options import TrainOptions, resolve_recipe
from training.recipes import get_recipe


def test_loss_weight_and_grad_clip_overrides_replace_the_recipes():
    """--loss-weight TERM=WEIGHT and --grad-clip change only what they name; bad values are refused with a reason."""
    base = get_recipe("small")
    options = TrainOptions(
        data=("unused",),
        out="unused",
        config="small",
        loss_weights=parse_loss_weights(["camera=1", "depth=2.5"]),
        grad_clip=50.0,
    )
    recipe = resolve_recipe(options)
    assert (recipe.loss_weights.camera, recipe.loss_weights.depth) == (1.0, 2.5)
    assert recipe.loss_weights.occupancy == base.loss_weights.occupancy
    assert recipe.grad_clip == 50.0
    assert base.grad_clip == 1.0
    assert resolve_recipe(TrainOptions(data=("unused",), out="unused", config="small")) == base

    def refused(**overrides):
        return resolve_recipe(TrainOptions(data=("unused",), out="unused", config="small", **overrides))

    with pytest.raises(ValueError, match="unknown loss term 'camra'"):
        refused(loss_weights=(("camra", 1.0),))
    with pytest.raises(ValueError, match="must be a finite number"):
        refused(loss_weights=(("camera", -1.0),))
    with pytest.raises(ValueError, match="grad_clip must be a positive"):
        refused(grad_clip=0.0)
    for bad in (["camera"], ["camera=one"], ["=1"]):
        with pytest.raises(ValueError, match="expected TERM=WEIGHT"):
            parse_loss_weights(bad)


def test_fitting_heads_alone_trains_them_as_auto_uses_them():
    """--train-only of the heads that read no prompt: every prompt is "object"; the category head (on the shape
    tokens) gets joint steps on the model's own predictions; the scene head alone, pixel steps; any other part
    keeps the recipe's prompts."""

    def resolved(*parts: str):
        return resolve_recipe(TrainOptions(data=("unused",), out="unused", config="small", train_only=parts))

    base = get_recipe("small")
    category = resolved("category_head")
    assert (category.stage1_fraction, category.shape_stage_fraction) == (0.0, 0.0)
    assert category.teacher_forcing == (0.0, 0.0)
    assert category.prompt_dropout == 1.0
    assert resolved("scene_head", "category_head") == category
    scene = resolved("scene_head")
    assert (scene.stage1_fraction, scene.shape_stage_fraction, scene.prompt_dropout) == (1.0, 0.0, 1.0)
    backbone = resolved("backbone")
    assert backbone.stage1_fraction == 1.0
    assert backbone.prompt_dropout == base.prompt_dropout < 1.0
    assert resolved("decoder").stage1_fraction == base.stage1_fraction
