"""Warm start from an official ZeroShape checkpoint, built here with the official key names and shapes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from backend.model.checkpoint import CheckpointError
from backend.model.convert import DROPPED, convert_zeroshape_checkpoint, map_official_key

pytestmark = pytest.mark.slow

KEYS_FILE = Path(__file__).resolve().parents[3].parent / "shared" / "docs" / "zeroshape_state_dict_keys.tsv"
# The key list travels with the tests too, so they do not depend on a folder outside the repository.
LOCAL_KEYS_FILE = Path(__file__).with_name("zeroshape_state_dict_keys.tsv")


def official_layout() -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    rows = []
    for line in LOCAL_KEYS_FILE.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape, dtype = line.split("\t")
        dims = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
        rows.append((key, dims, getattr(torch, dtype.removeprefix("torch."))))
    return rows


def make_official_state(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape, dtype in official_layout():
        if dtype == torch.int64:
            state[key] = torch.tensor(1000, dtype=dtype)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
            state[key] = torch.randn(shape, generator=generator) / math.sqrt(fan_in)
    return state


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    official = make_official_state()
    path = tmp_path_factory.mktemp("zeroshape") / "shape.ckpt"
    torch.save({"epoch": 15, "iter": 587115, "best_val": 0.1, "best_ep": 14, "graph": official}, path)
    model, report, provenance = convert_zeroshape_checkpoint(path)
    return official, model.eval(), report, provenance, path


def test_key_list_matches_the_reference_document():
    if KEYS_FILE.is_file():
        assert KEYS_FILE.read_text() == LOCAL_KEYS_FILE.read_text()
    assert len(official_layout()) == 813


def test_every_official_tensor_is_loaded_or_dropped_for_a_reason(converted):
    official, _, report, provenance, _ = converted
    assert len(report.loaded) + len(report.dropped) == len(official) == 813
    assert set(report.dropped) == {k for k in official if any(__import__("re").fullmatch(p, k) for p in DROPPED)}
    assert len(report.dropped) == 4 + 1 + 4  # ViT norm and head (weight, bias), pos_embed, unused skip unit
    # What stays fresh is exactly what ZeroShape-W adds.
    new_parts = {k.split(".")[0] for k in report.fresh}
    assert new_parts == {"visible_mask_head", "occluder_mask_head", "decoder"}
    assert {k for k in report.fresh if k.startswith("decoder.")} == {
        "decoder.point_embed.2.weight",
        "decoder.point_embed.2.bias",
        "decoder.text_proj.weight",
        "decoder.text_proj.bias",
    }
    assert provenance["warm_start"] == "zeroshape"
    assert len(provenance["source_sha256"]) == 64


def test_copied_tensors_are_identical(converted):
    official, model, report, _, _ = converted
    ours = model.state_dict()
    checked = 0
    for key, value in official.items():
        if key in report.dropped or "pos_embed" in key or key == "coord_encoder.encoder.conv1.weight":
            continue
        assert torch.equal(ours[map_official_key(key)[0]], value), key
        checked += 1
    assert checked == 813 - len(report.dropped) - 2


def test_position_table_is_resampled_to_the_token_grid(converted):
    official, model, _, _, _ = converted
    source = official["dpt_depth.pretrained.model.pos_embed"]  # [1, 577, 768]: class token + 24×24
    resampled = model.backbone.vit.pos_embed  # [1, 197, 768]: class token + 14×14
    assert resampled.shape == (1, 197, 768)
    assert torch.equal(resampled[:, 0], source[:, 0])
    # A table that is constant over the grid stays that constant after bilinear resampling; a linear ramp
    # along the columns stays a ramp with the same end-to-end span ratio.
    grid = source[0, 1:].reshape(24, 24, 768)
    expected = F.interpolate(grid.permute(2, 0, 1)[None], size=(14, 14), mode="bilinear", align_corners=False)
    assert torch.allclose(resampled[0, 1:].reshape(14, 14, 768), expected[0].permute(1, 2, 0))


def test_coordinate_encoder_first_conv_ignores_the_new_channel(converted):
    official, model, _, _, _ = converted
    source = official["coord_encoder.encoder.conv1.weight"]
    weight = model.coord_encoder.resnet.conv1.weight
    assert weight.shape == (64, 4, 7, 7)
    assert not weight[:, 3].any()
    x = torch.randn(2, 4, 32, 32)
    expected = F.conv2d(x[:, :3], source, stride=2, padding=3)
    assert torch.allclose(model.coord_encoder.resnet.conv1(x), expected, atol=1e-5)


def _batch_norm(x, official, prefix):
    return F.batch_norm(
        x,
        official[f"{prefix}.running_mean"],
        official[f"{prefix}.running_var"],
        official[f"{prefix}.weight"],
        official[f"{prefix}.bias"],
        training=False,
    )


def _residual_block(x, official, prefix, padding):
    """ZeroShape's Bottleneck_Conv weights applied as the supplement describes (one ReLU per block)."""
    h = F.relu(
        _batch_norm(F.conv2d(x, official[f"{prefix}.linear1.weight"], padding=padding), official, f"{prefix}.bn1")
    )
    return x + _batch_norm(
        F.conv2d(h, official[f"{prefix}.linear2.weight"], padding=padding), official, f"{prefix}.bn2"
    )


def test_intrinsics_head_computes_what_the_source_tensors_say(converted):
    official, model, _, _, _ = converted
    global_map = torch.randn(2, 768, 7, 7)
    x = _residual_block(global_map, official, "intr_head.0", 1)
    x = _residual_block(x, official, "intr_head.1", 1)
    expected = F.linear(x.mean(dim=(2, 3)), official["intr_proj.weight"], official["intr_proj.bias"])
    head = model.intrinsics_head
    with torch.no_grad():
        actual = head.proj(head.blocks(global_map).mean(dim=(2, 3)))
        K = head(global_map)
    assert torch.allclose(actual, expected, atol=1e-4, rtol=1e-4)
    assert torch.allclose(K, head.params_to_matrix(expected), atol=1e-3)


def test_depth_head_computes_what_the_source_tensors_say(converted):
    official, model, _, _, _ = converted
    fine = torch.randn(1, 256, 16, 16)
    s = "dpt_depth.scratch.output_conv"
    x = F.conv2d(fine, official[f"{s}.0.weight"], official[f"{s}.0.bias"], padding=1)
    x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
    x = F.relu(F.conv2d(x, official[f"{s}.2.weight"], official[f"{s}.2.bias"], padding=1))
    expected = F.relu(F.conv2d(x, official[f"{s}.4.weight"], official[f"{s}.4.bias"]))
    with torch.no_grad():
        assert torch.allclose(model.depth_head(fine), expected, atol=1e-5)


def test_occupancy_mlp_computes_what_the_source_tensors_say(converted):
    official, model, _, _, _ = converted
    inputs = torch.randn(5, 259)
    x = inputs
    for index in range(9):
        if index in (2, 4, 6):
            x = torch.cat([x, inputs], dim=-1) / math.sqrt(2)
        x = F.linear(
            x,
            official[f"impl_network.impl_mlp.layers.{index}.weight"],
            official[f"impl_network.impl_mlp.layers.{index}.bias"],
        )
        if index < 8:
            x = F.softplus(x, beta=100)
    with torch.no_grad():
        assert torch.allclose(model.decoder.occupancy_mlp(inputs), x, atol=1e-4, rtol=1e-4)


def test_attention_block_computes_what_the_source_tensors_say(converted):
    """Points attend to the latents and to themselves only, with the official block's weights."""
    official, model, _, _, _ = converted
    p = "impl_network.blocks_attn.0"
    latents, points = torch.randn(1, 197, 256), torch.randn(1, 6, 256)

    def layer_norm(x, name):
        return F.layer_norm(x, (256,), official[f"{p}.{name}.weight"], official[f"{p}.{name}.bias"], eps=1e-6)

    def qkv(x):
        q, k, v = F.linear(x, official[f"{p}.attn.qkv.weight"], official[f"{p}.attn.qkv.bias"]).chunk(3, dim=-1)
        return [t.reshape(x.shape[0], x.shape[1], 8, 32).transpose(1, 2) for t in (q, k, v)]

    _, k_lat, v_lat = qkv(layer_norm(latents, "norm1"))
    q_pt, k_pt, v_pt = qkv(layer_norm(points, "norm1"))
    expected = torch.empty(1, 6, 256)
    for n in range(6):
        keys = torch.cat([k_lat, k_pt[:, :, n : n + 1]], dim=2)
        values = torch.cat([v_lat, v_pt[:, :, n : n + 1]], dim=2)
        weights = (q_pt[:, :, n : n + 1] @ keys.transpose(-1, -2) / math.sqrt(32)).softmax(-1)
        attended = (weights @ values).transpose(1, 2).reshape(1, 1, 256)
        h = points[:, n : n + 1] + F.linear(
            attended, official[f"{p}.attn.proj.weight"], official[f"{p}.attn.proj.bias"]
        )
        mlp = F.linear(
            F.gelu(F.linear(layer_norm(h, "norm2"), official[f"{p}.mlp.fc1.weight"], official[f"{p}.mlp.fc1.bias"])),
            official[f"{p}.mlp.fc2.weight"],
            official[f"{p}.mlp.fc2.bias"],
        )
        expected[:, n] = (h + mlp)[:, 0]
    with torch.no_grad():
        _, actual = model.decoder.blocks[0](latents, points, update_latents=False)
    assert torch.allclose(actual, expected, atol=1e-4, rtol=1e-4)


def test_converted_model_runs(converted):
    _, model, _, _, _ = converted
    with torch.no_grad():
        latent = model.encode(torch.rand(1, 3, 224, 224))
        logits = model.query(torch.rand(1, 10, 3), latent)
    assert torch.isfinite(logits).all()


def test_other_layouts_are_refused_with_the_file_named(tmp_path, converted):
    official = converted[0]
    broken = dict(official)
    broken["impl_network.extra_layer.weight"] = torch.zeros(3)
    path = tmp_path / "other.ckpt"
    torch.save({"graph": broken}, path)
    with pytest.raises(CheckpointError, match=r"other\.ckpt: not the ZeroShape layout.*extra_layer"):
        convert_zeroshape_checkpoint(path)

    reshaped = dict(official)
    reshaped["intr_proj.weight"] = torch.zeros(4, 768)
    torch.save({"graph": reshaped}, path)
    with pytest.raises(CheckpointError, match=r"intr_proj\.weight.*does not fit"):
        convert_zeroshape_checkpoint(path)


def test_files_without_a_graph_or_with_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "depth_only.ckpt"
    torch.save({"model_state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="no 'graph' state dict"):
        convert_zeroshape_checkpoint(path)

    malicious = tmp_path / "evil.ckpt"
    torch.save({"graph": {}, "payload": Path("/etc/passwd")}, malicious)  # an arbitrary Python object
    with pytest.raises(CheckpointError, match=r"evil\.ckpt: not a readable ZeroShape checkpoint"):
        convert_zeroshape_checkpoint(malicious)
