"""Self-describing checkpoints: bitwise round trips and clear errors on bad files."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from backend.model.checkpoint import CheckpointError, load_checkpoint, read_header, save_checkpoint
from backend.model.config import get_config
from backend.model.zeroshape import ZeroShapeW

from .helpers import make_batch, randomise_zero_parameters


def trained_looking(name: str) -> ZeroShapeW:
    """A model whose weights and BatchNorm statistics are all non-default, so a round trip that
    dropped or re-initialised anything would show."""
    model = ZeroShapeW(get_config(name))
    randomise_zero_parameters(model)
    with torch.no_grad():
        for key, buffer in model.named_buffers():
            if key.endswith("running_mean"):
                buffer.normal_()
            elif key.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
            elif key.endswith("num_batches_tracked"):
                buffer.fill_(123)
    return model.eval()


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_round_trip_is_bitwise(tmp_path, name):
    model = trained_looking(name)
    path = save_checkpoint(model, tmp_path / "model.safetensors", provenance={"note": "test"})
    loaded = load_checkpoint(path)

    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert original[key].dtype == restored[key].dtype, key
        assert torch.equal(original[key], restored[key]), key
    assert loaded.config == model.config
    assert loaded.preprocess == model.preprocess
    assert not loaded.training

    batch = make_batch(model.config, batch=2, points=100)
    with torch.no_grad():
        _, expected = model(batch["image"], batch["points"], ["chair", "object"])
        _, actual = loaded(batch["image"], batch["points"], ["chair", "object"])
    assert torch.equal(expected, actual)


def test_half_precision_storage_halves_the_file_and_loads_as_float32(tmp_path):
    model = trained_looking("small")
    full = save_checkpoint(model, tmp_path / "full.safetensors")
    half = save_checkpoint(model, tmp_path / "half.safetensors", dtype=torch.float16)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded = load_checkpoint(half)
    for key, value in model.state_dict().items():
        restored = loaded.state_dict()[key]
        assert restored.dtype == value.dtype, key
        if value.is_floating_point():
            assert torch.equal(restored, value.half().float()), key


def test_header_describes_the_model(tmp_path):
    model = trained_looking("tiny")
    path = save_checkpoint(model, tmp_path / "m.safetensors", provenance={"steps": 7})
    header = read_header(path)
    assert header["format"] == "zeroshape-w-checkpoint"
    assert header["model_config"]["name"] == "tiny"
    assert header["preprocess"]["image_size"] == 64
    assert header["text_encoder"]["kind"] == "category_table"
    assert header["provenance"] == {"steps": 7}
    # Nothing but the final file remains (the write goes through a temporary name).
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"nothing\.safetensors: checkpoint not found"):
        load_checkpoint(tmp_path / "nothing.safetensors")


def test_truncated_file_is_named(tmp_path):
    path = save_checkpoint(trained_looking("tiny"), tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"m\.safetensors") as error:
        load_checkpoint(path)
    assert "truncated" in str(error.value) or "not a readable" in str(error.value)


def test_garbage_file_is_named(tmp_path):
    path = tmp_path / "photo.jpg.safetensors"
    path.write_bytes(b"\xff\xd8\xff\xe0 definitely not a checkpoint")
    with pytest.raises(CheckpointError, match=r"photo\.jpg\.safetensors: not a readable safetensors checkpoint"):
        load_checkpoint(path)


def test_plain_safetensors_without_config_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a ZeroShape-W checkpoint"):
        load_checkpoint(path)


def _rewrite_header(path, edit):
    """Edit the JSON config inside a safetensors file in place (same tensors)."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    config = json.loads(header["__metadata__"]["zeroshape_w"])
    edit(config)
    header["__metadata__"]["zeroshape_w"] = json.dumps(config)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data[8 + length :])


def test_weights_that_do_not_match_the_config_are_refused(tmp_path):
    path = save_checkpoint(trained_looking("tiny"), tmp_path / "m.safetensors")

    def widen_decoder(config):
        config["model_config"]["decoder"]["occupancy_hidden"] = 48

    _rewrite_header(path, widen_decoder)
    with pytest.raises(CheckpointError, match=r"m\.safetensors: weights do not match the 'tiny' model.*wrong shape"):
        load_checkpoint(path)


def test_unknown_config_field_is_refused(tmp_path):
    path = save_checkpoint(trained_looking("tiny"), tmp_path / "m.safetensors")
    _rewrite_header(path, lambda c: c["model_config"].update(colour="blue"))
    with pytest.raises(CheckpointError, match=r"config is incomplete or invalid.*colour"):
        load_checkpoint(path)


def test_newer_format_is_refused_with_advice(tmp_path):
    path = save_checkpoint(trained_looking("tiny"), tmp_path / "m.safetensors")
    _rewrite_header(path, lambda c: c.update(format_version=99))
    with pytest.raises(CheckpointError, match="newer than this program understands"):
        load_checkpoint(path)


def test_open_clip_model_needs_its_weights_file(tmp_path):
    from dataclasses import replace

    from backend.model.config import TextEncoderConfig

    config = replace(get_config("tiny"), text=TextEncoderConfig(kind="open_clip", embed_dim=512))
    model = ZeroShapeW(config)
    path = save_checkpoint(model, tmp_path / "clip.safetensors")
    header = read_header(path)
    assert header["text_encoder"]["kind"] == "open_clip"
    # The frozen OpenCLIP tower is external: none of its tensors are in the file.
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        assert not [k for k in handle.keys() if k.startswith("text_encoder.")]  # noqa: SIM118
    with pytest.raises(CheckpointError, match="pass the local OpenCLIP weights file"):
        load_checkpoint(path)
