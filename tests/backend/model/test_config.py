"""Model and preprocessing configs: presets, (de)serialisation, immutability."""

from __future__ import annotations

import dataclasses
import json

import pytest

from backend.model.config import (
    AGNOSTIC_PROMPT,
    CONFIGS,
    BackboneConfig,
    ModelConfig,
    PreprocessConfig,
    TextEncoderConfig,
    default_preprocess,
    get_config,
)

PRESETS = sorted(CONFIGS)


def test_presets_are_the_documented_ones():
    assert set(CONFIGS) == {"paper", "small", "medium", "tiny"}
    for name, config in CONFIGS.items():
        assert config.name == name
        assert get_config(name) is config


@pytest.mark.parametrize("name", PRESETS)
def test_to_dict_from_dict_round_trip(name):
    config = CONFIGS[name]
    data = config.to_dict()
    assert isinstance(data["backbone"], dict)
    restored = ModelConfig.from_dict(data)
    assert restored == config
    assert isinstance(restored.backbone, BackboneConfig)


@pytest.mark.parametrize("name", PRESETS)
def test_round_trip_through_json(name):
    config = CONFIGS[name]
    data = json.loads(json.dumps(config.to_dict()))
    assert isinstance(data["backbone"]["resnet_layers"], list)  # JSON really did turn tuples into lists

    restored = ModelConfig.from_dict(data)

    # Equality compares field tuples, and (1, 2) != [1, 2]: this also checks that lists came back as tuples.
    assert restored == config
    assert isinstance(restored.text.categories, tuple)
    assert isinstance(restored.decoder.occupancy_skips, tuple)
    hash(restored)  # frozen and made of tuples, so hashable


def test_round_trip_of_a_non_default_variant():
    config = dataclasses.replace(
        CONFIGS["tiny"],
        name="variant",
        mask_threshold=0.3,
        backbone=dataclasses.replace(CONFIGS["tiny"].backbone, hook_blocks=(1, 0), depth=3),
        text=TextEncoderConfig(kind="category_table", embed_dim=8, categories=("object", "kettle")),
    )
    restored = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert restored.backbone.hook_blocks == (1, 0)
    assert restored.text.categories == ("object", "kettle")


def test_from_dict_keeps_defaults_for_missing_keys():
    restored = ModelConfig.from_dict({"name": "minimal", "image_size": 96})
    assert restored == ModelConfig(name="minimal", image_size=96)


def test_from_dict_rejects_an_unknown_top_level_key():
    data = CONFIGS["tiny"].to_dict()
    data["imag_size"] = 64
    with pytest.raises(ValueError, match="imag_size"):
        ModelConfig.from_dict(data)


@pytest.mark.parametrize("section", ["backbone", "coord_encoder", "decoder", "text"])
def test_from_dict_rejects_an_unknown_nested_key(section):
    data = CONFIGS["small"].to_dict()
    data[section]["bogus_field"] = 1
    with pytest.raises(ValueError, match="bogus_field"):
        ModelConfig.from_dict(data)


def test_from_dict_does_not_modify_its_argument():
    data = CONFIGS["small"].to_dict()
    snapshot = json.loads(json.dumps(data))
    ModelConfig.from_dict(data)
    assert json.loads(json.dumps(data)) == snapshot
    assert isinstance(data["backbone"], dict)


def test_get_config_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="nope") as error:
        get_config("nope")
    for name in ("paper", "small", "medium", "tiny"):
        assert name in str(error.value)


def test_configs_are_frozen():
    config = CONFIGS["small"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.name = "changed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.backbone.depth = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.text.embed_dim = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        PreprocessConfig().image_size = 1  # type: ignore[misc]
    assert config.name == "small"


def test_preprocess_config_round_trip():
    config = PreprocessConfig(
        image_size=96, input_scale=1.0, input_shift=0.0, crop_margin=1.5, background_rgb=(0.5, 0.25, 0.0)
    )
    assert PreprocessConfig.from_dict(config.to_dict()) == config
    via_json = PreprocessConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert via_json == config
    assert via_json.background_rgb == (0.5, 0.25, 0.0)
    assert PreprocessConfig.from_dict(PreprocessConfig().to_dict()) == PreprocessConfig()


def test_preprocess_config_rejects_an_unknown_key():
    with pytest.raises(ValueError, match="crop_margn"):
        PreprocessConfig.from_dict({"crop_margn": 1.0})


@pytest.mark.parametrize("name", PRESETS)
def test_default_preprocess_matches_the_model_input_size(name):
    assert default_preprocess(CONFIGS[name]).image_size == CONFIGS[name].image_size


def test_patch_stride():
    assert BackboneConfig().resnet_layers == (3, 4, 9)
    assert BackboneConfig().patch_stride == 16
    assert BackboneConfig(resnet_layers=(1, 1), resnet_channels=(8, 16)).patch_stride == 8
    assert BackboneConfig(resnet_layers=(2,), resnet_channels=(8,)).patch_stride == 4
    assert CONFIGS["paper"].backbone.patch_stride == 16
    assert CONFIGS["small"].backbone.patch_stride == 8
    assert CONFIGS["tiny"].backbone.patch_stride == 8


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_text_table_starts_with_object(name):
    categories = CONFIGS[name].text.categories
    assert AGNOSTIC_PROMPT == "object"
    assert categories[0] == "object"
    assert len(set(categories)) == len(categories)


def test_paper_preset_uses_openclip_vit_b_32():
    text = CONFIGS["paper"].text
    assert text.kind == "open_clip"
    assert text.open_clip_model == "ViT-B-32"
    assert text.embed_dim == 512


def test_medium_is_small_with_a_larger_image_side():
    """`medium` differs from `small` only in the backbone, so a trained `small`'s 3D half warm-starts it whole."""
    small, medium = get_config("small"), get_config("medium")
    assert medium.backbone != small.backbone
    assert medium.backbone.embed_dim > small.backbone.embed_dim
    assert medium.backbone.depth_head_hidden > small.backbone.depth_head_hidden
    assert max(medium.backbone.hook_blocks) < medium.backbone.depth
    assert medium.backbone.embed_dim % medium.backbone.num_heads == 0
    for part in ("coord_encoder", "decoder", "text", "image_size", "scene_head", "shape_category_head"):
        assert getattr(medium, part) == getattr(small, part), part


def test_every_command_with_a_config_option_offers_every_preset():
    """The commands' choices are written out once, in `backend.cli.CONFIG_NAMES` (importing the model package would
    slow every --help); this keeps them in step with CONFIGS."""
    import argparse

    from zeroshape_w.cli import build_parser

    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    for command in ("train", "benchmark", "benchmark-train", "params", "init-checkpoint"):
        option = next(a for a in subcommands[command]._actions if "--config" in a.option_strings)
        assert set(option.choices) == set(CONFIGS), command
