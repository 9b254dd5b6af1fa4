"""The model facade: forward/backward for every config, shapes, point independence."""

from __future__ import annotations

import pytest
import torch

from backend.benchmark import stand_in_loss
from backend.model.config import CONFIGS, get_config
from backend.model.zeroshape import COMPONENTS, ZeroShapeW

from .helpers import make_batch, randomise_zero_parameters

FAST_CONFIGS = ["tiny", "small"]
ALL_CONFIGS = [*FAST_CONFIGS, pytest.param("paper", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_forward_backward_reaches_every_trainable_parameter(name):
    config = get_config(name)
    model = ZeroShapeW(config).train()
    randomise_zero_parameters(model)
    batch = make_batch(config, batch=2, points=64)

    latent, logits = model(batch["image"], batch["points"], ["chair", "object"], visible_mask=batch["visible"])
    outputs = {
        "intrinsics": latent.intrinsics,
        "depth": latent.depth,
        "visible_mask_logits": latent.visible_mask_logits,
        "occluder_mask_logits": latent.occluder_mask_logits,
        "visible_points": latent.visible_points,
        "tokens": latent.tokens,
        "occupancy_logits": logits,
    }
    for label, tensor in outputs.items():
        assert torch.isfinite(tensor).all(), f"{label} has NaN or inf"
    loss = stand_in_loss(latent, logits, batch["occupancy"], batch["visible"], batch["occluder"], batch["depth"])
    loss.backward()

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    no_grad = [n for n, p in trainable if p.grad is None]
    assert not no_grad, f"no gradient reached: {no_grad[:10]}"
    not_finite = [n for n, p in trainable if not torch.isfinite(p.grad).all()]
    assert not not_finite, f"non-finite gradients: {not_finite[:10]}"
    zero = [n for n, p in trainable if not p.grad.any()]
    assert not zero, f"all-zero gradients: {zero[:10]}"


@pytest.mark.parametrize("name", FAST_CONFIGS)
def test_encode_shapes_and_units(name):
    config = get_config(name)
    model = ZeroShapeW(config).eval()
    batch = make_batch(config, batch=3)
    size = config.image_size
    with torch.no_grad():
        latent = model.encode(batch["image"], "mug")
    assert latent.intrinsics.shape == (3, 3, 3)
    # A fresh intrinsics head predicts the default camera: f = 1.3875·W, principal point at the centre.
    assert torch.allclose(latent.intrinsics[:, 0, 0], torch.full((3,), config.default_focal_ratio * size))
    assert torch.allclose(latent.intrinsics[:, :2, 2], torch.full((3, 2), size / 2))
    for field in ("depth", "visible_mask_logits", "occluder_mask_logits"):
        assert getattr(latent, field).shape == (3, 1, size, size), field
    assert (latent.depth >= 0).all()
    assert latent.visible_points.shape == (3, 3, size, size)
    # The visible shape is normalised: centroid at the origin, farthest visible point at distance 1.
    for b in range(3):
        mask = latent.visible[b, 0]
        if mask.any():
            pts = latent.visible_points[b][:, mask]
            assert pts.mean(dim=1).abs().max() < 1e-4
            assert abs(pts.norm(dim=0).max().item() - 1.0) < 1e-4
    grid = config.coord_encoder.input_size // 16
    assert latent.tokens.shape == (3, 1 + grid * grid, config.decoder.width)
    assert latent.text_embedding.shape == (3, config.text.embed_dim)


def test_the_scene_head_predicts_gravity_and_auto_picks_a_confident_category():
    """Models whose scene head also answers the category from the image features (runs v2-a to v2-c)."""
    import dataclasses

    config = dataclasses.replace(get_config("tiny"), shape_category_head=False)
    model = ZeroShapeW(config).eval()
    assert model.category_head is None
    batch = make_batch(config, batch=2)
    with torch.no_grad():
        latent = model.encode(batch["image"], "auto")
        # An untrained head: the gravity prior (looking slightly down), a uniform category → "object".
        assert latent.gravity.shape == (2, 3)
        assert torch.allclose(latent.gravity.norm(dim=1), torch.ones(2))
        assert (latent.gravity[:, 1] > 0.9).all()
        assert latent.prompts == ["object", "object"]
        # A head sure of "chair" for the first image, unsure for the second: auto follows it only when sure.
        categories = config.text.categories
        sure = torch.full((2, len(categories)), -5.0)
        sure[0, categories.index("chair")] = 5.0
        sure[1, categories.index("mug")] = -4.5
        chosen, probability = model.choose_categories(sure)
        assert chosen == ["chair", "object"]
        assert probability[0] > 0.9
        assert probability[1] < 0.5
        model.scene_head.category.bias.copy_(sure[0])
        latent = model.encode(batch["image"], ["auto", "mug"])
        assert latent.prompts == ["chair", "mug"]
        assert torch.allclose(latent.text_embedding, model.embed_text(["chair", "mug"], 2))


def test_the_category_head_reads_the_shape_and_auto_encodes_again_under_its_answer():
    """A category head on the shape tokens: its logits are its answer for the tokens; `auto` encodes under
    "object", and where the head is sure of a category, again under that category (the backbone's maps reused):
    the result equals an encoding under the chosen prompts, with the logits of the "object" pass."""
    config = get_config("tiny")
    model = ZeroShapeW(config).eval()
    assert model.scene_head.category is None  # gravity only: the category comes from the shape
    batch = make_batch(config, batch=2)
    categories = config.text.categories
    with torch.no_grad():
        untrained = model.encode(batch["image"], "auto")
        assert untrained.prompts == ["object", "object"]  # a uniform answer is not sure of anything
        assert torch.allclose(untrained.category_logits, torch.zeros(2, len(categories)))
        torch.nn.init.normal_(model.category_head.category.weight)
        named = model.encode(batch["image"], ["chair", "mug"])
        assert torch.equal(named.category_logits, model.category_head(named.tokens))
        assert not torch.allclose(named.category_logits[0], named.category_logits[1])  # it reads the tokens
        model.category_head.category.bias[categories.index("chair")] = 50.0
        calls = {"backbone": 0, "depth_head": 0, "intrinsics_head": 0, "visible_mask_head": 0}
        hooks = [
            getattr(model, name).register_forward_hook(lambda *_, name=name: calls.update({name: calls[name] + 1}))
            for name in calls
        ]
        chosen = model.encode(batch["image"], ["auto", "mug"])
        for hook in hooks:
            hook.remove()
        assert chosen.prompts == ["chair", "mug"]
        # Only what reads the prompt runs twice: the backbone's maps, camera and depth are reused.
        assert calls == {"backbone": 1, "depth_head": 1, "intrinsics_head": 1, "visible_mask_head": 2}
        direct = model.encode(batch["image"], ["chair", "mug"])
        for field in ("tokens", "depth", "visible_mask_logits", "text_embedding"):
            assert torch.equal(getattr(chosen, field), getattr(direct, field)), field
        first_pass = model.encode(batch["image"], ["object", "mug"])
        assert torch.equal(chosen.category_logits, first_pass.category_logits)


def test_a_model_without_scene_or_category_head_treats_auto_as_object():
    import dataclasses

    config = dataclasses.replace(get_config("tiny"), scene_head=False, shape_category_head=False)
    model = ZeroShapeW(config).eval()
    assert model.scene_head is None
    assert model.category_head is None
    assert model.parameter_counts()["scene_head"] == model.parameter_counts()["category_head"] == 0
    with torch.no_grad():
        latent = model.encode(make_batch(config, batch=1)["image"], "auto")
    assert latent.gravity is None
    assert latent.category_logits is None
    assert latent.prompts == ["object"]


@pytest.mark.parametrize("kind", ["image", "mask", "constant"])
def test_the_body_head_reads_the_mask_it_is_given_and_starts_at_the_round_body(kind, tmp_path):
    import dataclasses

    from backend.model.checkpoint import load_checkpoint, save_checkpoint

    config = dataclasses.replace(get_config("tiny"), body_head=kind)
    model = ZeroShapeW(config).eval()
    batch = make_batch(config, batch=2)
    with torch.no_grad():
        latent = model.encode(batch["image"], "object")
        assert torch.equal(model.body(latent, batch["visible"]), torch.zeros(2, 4))  # zero init: round, upright
        randomise_zero_parameters(model)
        latent = model.encode(batch["image"], "object")
        body = model.body(latent, batch["visible"])
        other = model.body(latent, 1 - batch["visible"])
    assert body.shape == (2, 4)
    # The head reads the mask it is handed, not the latent's own; a constant head reads nothing.
    assert torch.allclose(body, other) == (kind == "constant")
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "body.safetensors"))
    with torch.no_grad():
        assert torch.equal(loaded.body(loaded.encode(batch["image"], "object"), batch["visible"]), body)


def test_a_model_without_a_body_head_has_no_body_estimate():
    model = ZeroShapeW(get_config("tiny")).eval()
    batch = make_batch(get_config("tiny"), batch=1)
    with torch.no_grad():
        latent = model.encode(batch["image"], "object")
    assert model.body_head is None
    assert model.body(latent, batch["visible"]) is None


def test_freezing_keeps_the_frozen_parts_exactly_as_they_were():
    """freeze_all_but: only the named part gets gradients, and training-mode passes leave the frozen parts'
    batch-norm statistics alone, so they compute what they did before."""
    config = get_config("tiny")
    model = ZeroShapeW(config)
    frozen = model.freeze_all_but(["scene_head"])
    assert "scene_head" not in frozen
    assert {"backbone", "decoder", "text_encoder"} <= set(frozen)
    model.train()
    assert model.scene_head.training
    assert not model.backbone.training
    assert not model.coord_encoder.training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = make_batch(config, batch=2, points=16)
    latent, logits = model(batch["image"], batch["points"], "object")
    (latent.gravity.sum() + latent.category_logits.sum() + latent.depth.sum() + logits.sum()).backward()
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("scene_head."))
    assert all(p.grad is not None for p in model.scene_head.parameters())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a frozen part changed in a training pass"
    with pytest.raises(ValueError, match="unknown model component"):
        model.freeze_all_but(["wings"])
    import dataclasses

    plain = ZeroShapeW(dataclasses.replace(config, scene_head=False))
    with pytest.raises(ValueError, match="has no scene_head"):
        plain.freeze_all_but(["scene_head"])


def test_a_frozen_3d_half_passes_the_occupancy_gradient_on_to_the_image_side():
    """freeze(3D half): the occupancy logits of predicted inputs alone give the depth, mask and intrinsics heads
    and the backbone gradients through the frozen coordinate encoder and decoder, which get none and keep their
    batch-norm statistics."""
    config = get_config("tiny")
    model = ZeroShapeW(config)
    randomise_zero_parameters(model)
    assert model.freeze(["coord_encoder", "decoder"]) == ("coord_encoder", "decoder")
    model.train()
    assert model.backbone.training
    assert not model.decoder.training
    assert not model.coord_encoder.training
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("coord_encoder.", "decoder."))}
    batch = make_batch(config, batch=2, points=32)
    _, logits = model(batch["image"], batch["points"], "object")
    logits.square().mean().backward()
    for name in ("coord_encoder", "decoder"):
        assert all(p.grad is None for p in getattr(model, name).parameters()), name
    for name in ("backbone", "depth_head", "visible_mask_head", "intrinsics_head"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.grad is not None]
        assert grads, f"no occupancy gradient reached the {name}"
        assert any(g.any() for g in grads), f"only zero occupancy gradients reached the {name}"
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a frozen part changed in a training pass"
    with pytest.raises(ValueError, match="unknown model component"):
        model.freeze(["wings"])


def test_encode_rejects_wrong_image_size():
    config = get_config("tiny")
    model = ZeroShapeW(config)
    with pytest.raises(ValueError, match=r"\[B, 3, 64, 64\]"):
        model.encode(torch.rand(1, 3, 32, 32))


def test_prompt_count_must_match_batch():
    model = ZeroShapeW(get_config("tiny"))
    with pytest.raises(ValueError, match="2 prompts for 3 images"):
        model.encode(torch.rand(3, 3, 64, 64), ["chair", "mug"])


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_point_occupancy_does_not_depend_on_other_points(name):
    """Mesh extraction evaluates arbitrary subsets of points in arbitrary chunks; a point's value must not
    change with the company it is queried in."""
    config = get_config(name)
    model = ZeroShapeW(config).eval()
    randomise_zero_parameters(model)
    if name == "paper":
        # Only the decoder matters here; random tokens skip the 190M-parameter image side.
        grid = config.coord_encoder.input_size // 16
        from backend.model.zeroshape import Latent

        tokens = torch.randn(2, 1 + grid * grid, config.decoder.width)
        latent = Latent(*([None] * 7), tokens=tokens, text_embedding=torch.randn(2, config.text.embed_dim))
    else:
        with torch.no_grad():
            latent = model.encode(make_batch(config, batch=2)["image"], ["chair", "object"])
    points = torch.rand(2, 500, 3) * 3 - 1.5
    with torch.no_grad():
        all_at_once = model.query(points, latent)
        chunked = torch.cat([model.query(points[:, i : i + 37], latent) for i in range(0, 500, 37)], dim=1)
        order = torch.randperm(500)
        permuted = model.query(points[:, order], latent)
        alone = model.query(points[:, :1], latent)
        with_others = model.query(torch.cat([points[:, :1], torch.randn(2, 99, 3)], dim=1), latent)[:, :1]
    assert torch.allclose(all_at_once, chunked, atol=1e-5, rtol=1e-5)
    assert torch.allclose(all_at_once[:, order], permuted, atol=1e-5, rtol=1e-5)
    assert torch.allclose(alone, with_others, atol=1e-5, rtol=1e-5)
    # And the output does depend on the point itself (the test would pass on a constant otherwise).
    assert all_at_once.std() > 0


def test_text_conditions_the_masks_and_the_queries():
    config = get_config("tiny")
    model = ZeroShapeW(config).eval()
    randomise_zero_parameters(model)
    image = torch.rand(1, 3, 64, 64)
    points = torch.rand(1, 50, 3)
    with torch.no_grad():
        chair, chair_logits = model(image, points, ["chair"])
        mug, mug_logits = model(image, points, ["mug"])
    assert not torch.allclose(chair.visible_mask_logits, mug.visible_mask_logits)
    assert not torch.allclose(chair_logits, mug_logits)


def test_visible_mask_override_selects_the_visible_shape():
    config = get_config("tiny")
    model = ZeroShapeW(config).eval()
    batch = make_batch(config, batch=1)
    with torch.no_grad():
        latent = model.encode(batch["image"], visible_mask=batch["visible"])
    assert torch.equal(latent.visible, batch["visible"] >= 0.5)
    assert (latent.visible_points[:, :, ~latent.visible[0, 0]] == 0).all()


def test_components_cover_every_parameter():
    model = ZeroShapeW(get_config("tiny"))
    counted = sum(sum(p.numel() for p in getattr(model, c).parameters()) for c in COMPONENTS)
    assert counted == sum(p.numel() for p in model.parameters())


def test_parameter_budgets():
    """`paper` within 2% of the published 193.7M (text encoder excluded), `small` at most 15M."""
    counts = {}
    for name, config in CONFIGS.items():
        with torch.device("meta"):
            counts[name] = sum(ZeroShapeW(config).parameter_counts().values())
    assert abs(counts["paper"] - 193.7e6) / 193.7e6 <= 0.02, counts["paper"]
    assert counts["small"] <= 15e6
    assert counts["tiny"] < counts["small"] < counts["paper"]
