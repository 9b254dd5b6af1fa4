"""Text encoders: prompt normalisation, the learned category table, and the frozen OpenCLIP text tower loaded
from local files (never from a hub)."""

from __future__ import annotations

import copy
import hashlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from backend._torchvision_compat import ensure_torchvision
from backend.model.config import DEFAULT_CATEGORIES, TextEncoderConfig
from backend.model.text import (
    CategoryTableEncoder,
    OpenCLIPTextEncoder,
    build_text_encoder,
    load_text_tower_weights,
    normalise_prompt,
    read_state_dict,
)

LOGGER = "backend.model.text"


# --- normalise_prompt ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("chair", "chair"),
        ("CHAIR", "chair"),
        ("  Office   Chair \t", "office chair"),
        ("coffee\nmug", "coffee mug"),
        ("", "object"),
        ("   ", "object"),
        ("\t\n", "object"),
        ("Object", "object"),
    ],
)
def test_normalise_prompt(prompt, expected):
    assert normalise_prompt(prompt) == expected


# --- CategoryTableEncoder --------------------------------------------------------------------------------------


def test_category_table_maps_known_prompts_to_their_rows():
    encoder = CategoryTableEncoder(("object", "chair", "table"), embed_dim=8)
    embeddings = encoder(["chair", "table", "object", " Chair ", ""])

    assert embeddings.shape == (5, 8)
    weight = encoder.table.weight
    torch.testing.assert_close(embeddings[0], weight[1])
    torch.testing.assert_close(embeddings[1], weight[2])
    torch.testing.assert_close(embeddings[2], weight[0])
    torch.testing.assert_close(embeddings[3], weight[1])  # normalised before lookup
    torch.testing.assert_close(embeddings[4], weight[0])  # empty prompt = "object"
    assert not torch.allclose(embeddings[0], embeddings[1])
    assert not torch.allclose(embeddings[0], embeddings[2])
    assert not torch.allclose(embeddings[1], embeddings[2])
    assert encoder.indices(["table", "chair", "object"]).tolist() == [2, 1, 0]


def test_category_table_is_trainable():
    encoder = CategoryTableEncoder(("object", "chair"), embed_dim=4)
    encoder(["chair"]).sum().backward()
    grad = encoder.table.weight.grad
    assert grad is not None
    torch.testing.assert_close(grad[1], torch.ones(4))
    torch.testing.assert_close(grad[0], torch.zeros(4))
    assert not encoder.frozen_external


def test_unknown_prompt_falls_back_to_object_and_warns_once_per_name(caplog):
    encoder = CategoryTableEncoder(("object", "chair"), embed_dim=4)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        embedding = encoder(["spaceship"])
        torch.testing.assert_close(embedding[0], encoder.table.weight[0])
        assert len(caplog.records) == 1
        assert caplog.records[0].levelno == logging.WARNING
        assert "spaceship" in caplog.records[0].getMessage()

        # The same unknown name again (also spelled differently, and twice in one batch): no new warning.
        encoder(["spaceship", "  SPACESHIP ", "chair"])
        assert len(caplog.records) == 1

        # A different unknown name warns once more.
        encoder(["rocket", "rocket"])
        assert len(caplog.records) == 2
        assert "rocket" in caplog.records[1].getMessage()

        # Known names never warn.
        encoder(["chair", "object", ""])
        assert len(caplog.records) == 2


@pytest.mark.parametrize(
    ("categories", "message"),
    [
        ((), "must start with"),
        (("chair", "object"), "must start with"),
        (("chair",), "must start with"),
        (("object", "chair", "chair"), "twice"),
        (("object", "chair", " Chair"), "twice"),  # a duplicate once normalised
        (("object", "Object"), "twice"),
    ],
)
def test_category_table_rejects_bad_tables(categories, message):
    with pytest.raises(ValueError, match=message):
        CategoryTableEncoder(categories, embed_dim=4)


def test_category_table_normalises_its_categories():
    encoder = CategoryTableEncoder(("Object", "Office  Chair"), embed_dim=4)
    assert encoder.categories == ("object", "office chair")
    assert encoder.indices(["office chair"]).tolist() == [1]
    assert encoder.identity() == {"kind": "category_table", "categories": "object,office chair"}


def test_build_text_encoder_category_table():
    encoder = build_text_encoder(TextEncoderConfig(kind="category_table", embed_dim=16))
    assert type(encoder) is CategoryTableEncoder
    assert encoder.embed_dim == 16
    assert encoder.categories == DEFAULT_CATEGORIES
    assert encoder(["chair", "object"]).shape == (2, 16)


# --- OpenCLIPTextEncoder ---------------------------------------------------------------------------------------

MODEL = "ViT-B-32"
PROMPTS = ["object", "chair", "a red mug"]


class _NotATensor:
    """A python object that a weights-only load must refuse to unpickle."""

    def __init__(self):
        self.payload = "anything"


def build_reference_tower() -> torch.nn.Module:
    """The text tower exactly as `OpenCLIPTextEncoder.__init__` builds it."""
    ensure_torchvision()
    import open_clip
    from open_clip.model import CLIPTextCfg, _build_text_tower

    model_config = open_clip.get_model_config(MODEL)
    return _build_text_tower(
        model_config["embed_dim"],
        CLIPTextCfg(**model_config["text_cfg"]),
        quick_gelu=model_config.get("quick_gelu", False),
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A reference tower (tower build 1 of 4 in this file), its embeddings of PROMPTS, and weight files."""
    from safetensors.torch import save_file

    ensure_torchvision()
    import open_clip

    # A seed the function-scoped autouse fixture never uses, so an encoder that failed to load its weights would
    # keep a random initialisation that differs from the reference.
    torch.manual_seed(1234)
    tower = build_reference_tower().eval()
    state = {k: v.detach().clone().contiguous() for k, v in tower.state_dict().items()}
    assert "token_embedding.weight" in state

    folder = tmp_path_factory.mktemp("clip")
    full = folder / "open_clip_full.safetensors"
    junk = {
        "visual.conv1.weight": torch.randn(8, 3, 4, 4),
        "visual.proj": torch.randn(16, 8),
        "visual.transformer.resblocks.0.ln_1.weight": torch.randn(16),
        "logit_scale": torch.tensor(4.6052),
    }
    save_file({**state, **junk}, str(full))

    wrapped = folder / "open_clip_text.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, wrapped)

    wrong_shape = folder / "wrong_vocab.safetensors"
    bad = dict(state)
    bad["token_embedding.weight"] = torch.randn(1000, state["token_embedding.weight"].shape[1])
    save_file(bad, str(wrong_shape))

    pickled_object = folder / "pickled_object.pt"
    torch.save(_NotATensor(), pickled_object)

    pickled_in_dict = folder / "pickled_in_dict.pt"
    torch.save(
        {"state_dict": {"positional_embedding": state["positional_embedding"], "x": _NotATensor()}}, pickled_in_dict
    )

    tokenizer = open_clip.get_tokenizer(MODEL)
    with torch.no_grad():
        reference = F.normalize(tower(tokenizer(PROMPTS)), dim=-1)

    yield {
        "tower": tower,
        "reference": reference,
        "full": full,
        "wrapped": wrapped,
        "wrong_shape": wrong_shape,
        "pickled_object": pickled_object,
        "pickled_in_dict": pickled_in_dict,
        "folder": folder,
    }
    # Each weights file holds the whole text tower (about 250 MB): do not leave them in pytest's kept temp dirs.
    for path in folder.iterdir():
        path.unlink()


@pytest.fixture(scope="module")
def safetensors_encoder(clip):
    """Tower build 2: loaded from the full OpenCLIP safetensors checkpoint."""
    return OpenCLIPTextEncoder(MODEL, clip["full"])


@pytest.fixture(scope="module")
def torch_file_encoder(clip):
    """Tower build 3: loaded from a wrapped torch file, through `build_text_encoder`."""
    return build_text_encoder(
        TextEncoderConfig(kind="open_clip", embed_dim=512, open_clip_model=MODEL), clip["wrapped"]
    )


@pytest.fixture(params=["safetensors", "torch"])
def encoder_and_file(request, clip, safetensors_encoder, torch_file_encoder):
    if request.param == "safetensors":
        return safetensors_encoder, clip["full"]
    return torch_file_encoder, clip["wrapped"]


def test_openclip_encoder_matches_the_reference_tower(clip, encoder_and_file):
    encoder, _ = encoder_and_file
    embeddings = encoder(PROMPTS)
    assert embeddings.shape == (len(PROMPTS), 512)
    torch.testing.assert_close(embeddings, clip["reference"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(len(PROMPTS)), atol=1e-5, rtol=0)
    # The prompts really are told apart.
    assert not torch.allclose(embeddings[0], embeddings[1], atol=1e-3)


def test_openclip_encoder_normalises_prompts(clip, encoder_and_file):
    encoder, _ = encoder_and_file
    torch.testing.assert_close(encoder(["  CHAIR ", ""]), clip["reference"][[1, 0]], atol=1e-5, rtol=1e-5)


def test_openclip_encoder_records_the_weights_file(encoder_and_file):
    encoder, path = encoder_and_file
    assert encoder.weights_sha256 == sha256(path)
    assert encoder.identity() == {"kind": "open_clip", "model": MODEL, "weights_sha256": sha256(path)}
    assert encoder.embed_dim == 512
    assert encoder.frozen_external


def test_openclip_encoder_is_frozen(encoder_and_file):
    encoder, _ = encoder_and_file
    parameters = list(encoder.parameters())
    assert parameters
    assert not any(p.requires_grad for p in parameters)
    assert not encoder(["chair"]).requires_grad


def test_openclip_encoder_stays_in_eval_mode(encoder_and_file):
    encoder, _ = encoder_and_file
    try:
        assert encoder.train() is encoder
        assert encoder.training
        assert not encoder.tower.training
        assert not any(module.training for module in encoder.tower.modules())
    finally:
        encoder.eval()
    assert not encoder.tower.training


def test_openclip_encoder_caches_prompts(safetensors_encoder):
    # The cache is the same code whatever the weights file; each new prompt costs a tower run, so test it once.
    encoder = safetensors_encoder
    calls = []
    handle = encoder.tower.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    try:
        first = encoder(["cache probe lamp", "cache probe vase"])
        assert calls == [2]
        again = encoder(["cache probe vase", "Cache Probe Lamp", "cache probe vase"])
        assert calls == [2]  # served from the cache: the tower did not run again
        torch.testing.assert_close(again, first[[1, 0, 1]], atol=0, rtol=0)
        assert torch.equal(again[0], again[2])
        # A batch mixing cached and new prompts runs the tower on the new one only.
        mixed = encoder(["cache probe lamp", "cache probe bowl"])
        assert calls == [2, 1]
        assert torch.equal(mixed[0], first[0])
    finally:
        handle.remove()


def test_wrong_shape_is_a_value_error_naming_the_file(clip):
    tower = copy.deepcopy(clip["tower"])
    with pytest.raises(ValueError, match="does not match") as error:
        load_text_tower_weights(tower, clip["wrong_shape"])
    assert str(clip["wrong_shape"]) in str(error.value)
    assert "size mismatch for token_embedding.weight" in str(error.value)


def test_missing_and_unexpected_keys_are_a_value_error(clip):
    # Loading is strict: a file that lacks text-tower keys, or carries keys other than the visual tower's and
    # `logit_scale`, is not silently half-loaded.
    from safetensors.torch import save_file

    state = clip["tower"].state_dict()
    partial = clip["folder"] / "partial.safetensors"
    save_file({"positional_embedding": state["positional_embedding"].clone()}, str(partial))
    extra = clip["folder"] / "extra.pt"
    torch.save(
        {"positional_embedding": state["positional_embedding"].clone(), "text_adapter.weight": torch.zeros(2)}, extra
    )

    tower = copy.deepcopy(clip["tower"])
    with pytest.raises(ValueError, match="ln_final") as error:
        load_text_tower_weights(tower, partial)
    assert str(partial) in str(error.value)
    with pytest.raises(ValueError, match="text_adapter") as error:
        load_text_tower_weights(tower, extra)
    assert str(extra) in str(error.value)


def test_missing_file_is_file_not_found(clip):
    missing = clip["folder"] / "missing.safetensors"
    with pytest.raises(FileNotFoundError):
        read_state_dict(missing)
    with pytest.raises(FileNotFoundError):
        load_text_tower_weights(clip["tower"], clip["folder"] / "missing.pt")


@pytest.mark.parametrize("name", ["pickled_object", "pickled_in_dict"])
def test_torch_file_with_python_objects_is_refused(clip, name):
    with pytest.raises(ValueError, match="not a readable weights file") as error:
        read_state_dict(clip[name])
    assert str(clip[name]) in str(error.value)


def test_damaged_safetensors_file_is_a_value_error_naming_the_file(clip):
    path = clip["folder"] / "damaged.safetensors"
    path.write_bytes(b"this is not a safetensors file")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_state_dict(path)


def test_torch_file_that_is_not_a_dict_is_refused(clip):
    path = clip["folder"] / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ValueError, match="expected a dict"):
        read_state_dict(path)


def test_read_state_dict_unwraps_and_keeps_tensors(clip):
    state = read_state_dict(clip["wrapped"])
    assert all(key.startswith("module.") for key in state)
    key = "module.token_embedding.weight"
    torch.testing.assert_close(state[key], clip["tower"].state_dict()["token_embedding.weight"], atol=0, rtol=0)


def test_unknown_openclip_model_is_a_value_error():
    with pytest.raises(ValueError, match="no-such-model"):
        OpenCLIPTextEncoder("no-such-model", None)


def test_build_text_encoder_checks_the_embedding_width():
    # Tower build 4 (random weights: no file given).
    with pytest.raises(ValueError, match="512"):
        build_text_encoder(TextEncoderConfig(kind="open_clip", embed_dim=64, open_clip_model=MODEL))


def test_build_text_encoder_returns_openclip_for_open_clip_kind(torch_file_encoder):
    assert type(torch_file_encoder) is OpenCLIPTextEncoder
    assert torch_file_encoder.model_name == MODEL
