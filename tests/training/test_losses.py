"""training/losses.py: the terms' invariances, the weighted total, gradients, and the auxiliary depth teacher."""

from __future__ import annotations

import math
import re

import pytest
import torch

from backend.model.config import get_config
from backend.model.zeroshape import COMPONENTS, ZeroShapeW
from tests.training.conftest import cpu_options, one_torch_thread
from training.losses import (
    IGNORED_TARGET,
    LossWeights,
    align_scale_shift,
    auxiliary_depth_loss,
    camera_loss,
    category_targets,
    category_weights,
    depth_gradient_loss,
    gravity_loss,
    load_auxiliary_depth_model,
    occupancy_loss,
    scale_shift_invariant_loss,
    zeroshape_w_loss,
)
from training.train import train


def depth_pair(batch: int = 2, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """(target depth [B, 1, S, S], a random mask with ~half the pixels on)."""
    generator = torch.Generator().manual_seed(0)
    target = 1.0 + torch.rand(batch, 1, size, size, generator=generator)
    mask = (torch.rand(batch, 1, size, size, generator=generator) > 0.5).float()
    return target, mask


def K_of(focal: float, cx: float, cy: float) -> torch.Tensor:
    return torch.tensor([[[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]]])


# ------------------------------------------------------------------------------------------------------ depth terms
def test_ssi_loss_ignores_scale_and_shift_per_sample():
    target, mask = depth_pair()
    prediction = target.clone()
    prediction[0] = 3.0 * target[0] + 2.0
    prediction[1] = 0.25 * target[1] - 5.0  # another scale and shift: they are fitted per sample
    assert scale_shift_invariant_loss(prediction, target, mask) < 1e-5
    aligned = align_scale_shift(prediction, target, mask)
    assert torch.allclose(aligned * mask, target * mask, atol=1e-4)


def test_ssi_loss_is_large_for_another_shape():
    target, mask = depth_pair()
    other = 1.0 + torch.rand(target.shape, generator=torch.Generator().manual_seed(1))
    assert scale_shift_invariant_loss(other, target, mask) > 0.5
    # A constant prediction explains nothing: the normalised error is then the target's own spread, i.e. 1.
    assert scale_shift_invariant_loss(torch.ones_like(target), target, mask) == pytest.approx(1.0, abs=1e-4)


def test_ssi_loss_ignores_the_masked_out_region():
    target, mask = depth_pair()
    prediction = 2.0 * target + 1.0 + 0.1 * torch.rand(target.shape, generator=torch.Generator().manual_seed(2))
    base = scale_shift_invariant_loss(prediction, target, mask)
    assert base > 1e-3  # not trivially zero, so an equality below means something
    garbage = torch.where(mask > 0, prediction, torch.full_like(prediction, 1e4))
    garbage_target = torch.where(mask > 0, target, torch.full_like(target, -7.0))
    assert scale_shift_invariant_loss(garbage, garbage_target, mask) == pytest.approx(float(base), rel=1e-5)


@pytest.mark.parametrize("loss", [scale_shift_invariant_loss, depth_gradient_loss])
def test_depth_losses_skip_samples_without_pixels(loss):
    target, mask = depth_pair()
    prediction = 1.0 + torch.rand(target.shape, generator=torch.Generator().manual_seed(3))
    only_first = loss(prediction[:1], target[:1], mask[:1])
    mask[1] = 0.0
    both = loss(prediction, target, mask)
    assert torch.isfinite(both)
    assert both == pytest.approx(float(only_first), rel=1e-6)


def test_auxiliary_depth_loss_compares_disparity():
    target, mask = depth_pair()
    # A teacher's disparity is affine in 1/depth: depth that matches the truth scores ~0, whatever a and b.
    pseudo = 4.0 / target + 0.5
    assert auxiliary_depth_loss(target, pseudo, mask) < 1e-5
    # Depth that is affine (not inverse) in the truth is a different disparity: the term notices.
    assert auxiliary_depth_loss(5.0 - 2.0 * target, pseudo, mask) > 0.05


def test_depth_gradient_loss_ignores_scale_and_shift_and_the_masked_out_region():
    target, mask = depth_pair()
    prediction = target.clone()
    prediction[0] = 3.0 * target[0] + 2.0
    prediction[1] = 0.25 * target[1] - 5.0
    assert depth_gradient_loss(prediction, target, mask) < 1e-4

    noisy = prediction + 0.1 * torch.rand(target.shape, generator=torch.Generator().manual_seed(4))
    base = depth_gradient_loss(noisy, target, mask)
    assert base > 1e-2
    # Pixels off the mask, and pairs that straddle its edge, do not count: garbage there changes nothing.
    garbage = torch.where(mask > 0, noisy, torch.full_like(noisy, 1e4))
    garbage_target = torch.where(mask > 0, target, torch.full_like(target, -7.0))
    assert depth_gradient_loss(garbage, garbage_target, mask) == pytest.approx(float(base), rel=1e-5)


def test_depth_gradient_loss_punishes_wrong_slopes_more_than_a_smooth_offset():
    # A tilted plane seen whole: depth rises by 1 per column.
    size = 32
    columns = torch.arange(size, dtype=torch.float32)
    target = (5.0 + columns).expand(1, 1, size, size).clone()
    rows = torch.arange(size, dtype=torch.float32)[:, None].expand(size, size)
    mask = torch.ones_like(target)
    # Two predictions with about the same per-pixel (scale-and-shift invariant) error: the plane plus a gentle
    # ramp along the rows (every slope nearly right), and the plane plus pixel noise (every slope wrong).
    ramp = target + 0.05 * rows
    noise = target + 0.8 * (2.0 * torch.rand(target.shape, generator=torch.Generator().manual_seed(5)) - 1.0)
    ssi_ramp = float(scale_shift_invariant_loss(ramp, target, mask))
    ssi_noise = float(scale_shift_invariant_loss(noise, target, mask))
    assert ssi_noise == pytest.approx(ssi_ramp, rel=0.3)
    assert float(depth_gradient_loss(noise, target, mask)) > 3.0 * float(depth_gradient_loss(ramp, target, mask))


# ------------------------------------------------------------------------------------------------------ camera
def test_camera_loss_is_zero_for_the_truth_and_positive_otherwise():
    truth = K_of(100.0, 32.0, 30.0)
    assert camera_loss(truth, truth, 64) == 0.0
    assert camera_loss(K_of(110.0, 32.0, 30.0), truth, 64) > 0.0
    assert camera_loss(K_of(100.0, 38.4, 30.0), truth, 64) == pytest.approx(6.4 / 2 / 64)  # mean of |Δcx|, |Δcy|


def test_camera_loss_is_symmetric_in_log_focal():
    truth = K_of(100.0, 32.0, 32.0)
    double = camera_loss(K_of(200.0, 32.0, 32.0), truth, 64)
    half = camera_loss(K_of(50.0, 32.0, 32.0), truth, 64)
    assert double == pytest.approx(math.log(2.0), rel=1e-6)
    assert half == pytest.approx(float(double), rel=1e-6)


# ------------------------------------------------------------------------------------------------------ total
def test_gravity_loss_is_about_the_angle_and_zero_for_the_truth():
    down = torch.tensor([[0.0, 1.0, 0.0]])
    assert float(gravity_loss(down, down)) < 1e-3
    tilted = torch.tensor([[0.0, math.cos(0.1), math.sin(0.1)]])  # 0.1 rad off
    assert float(gravity_loss(tilted, down)) == pytest.approx(0.1, rel=0.01)
    assert float(gravity_loss(-down, down)) == pytest.approx(2.0, rel=1e-3)


def test_category_weights_lift_rare_categories_and_keep_the_mean_weight_one():
    table = ("object", "chair", "table", "lamp")
    views = ["object"] * 64 + ["chair"] * 16 + ["table"] * 4
    weights = category_weights(views, table)
    # 1/√share: object 1/8, chair 1/4, table 1/2 (before scaling); lamp has no views and weighs 1.
    assert weights[1] / weights[0] == pytest.approx(2.0)
    assert weights[2] / weights[0] == pytest.approx(4.0)
    assert weights[3] == 1.0
    assert weights[category_targets(views, table)].mean() == pytest.approx(1.0)
    # The weighted cross-entropy of a head that always answers "object" is higher than the plain one.
    logits = torch.tensor([[4.0, 0.0, 0.0, 0.0]]).repeat(len(views), 1)
    rows = category_targets(views, table)
    plain = torch.nn.functional.cross_entropy(logits, rows)
    assert torch.nn.functional.cross_entropy(logits, rows, weight=weights) > plain + 0.5


def test_category_targets_are_table_rows_and_unknown_names_are_object():
    table = ("object", "chair", "table")
    assert category_targets(["table", "chair", "spaceship", "object"], table).tolist() == [2, 1, 0, 0]


def test_the_category_term_skips_ignored_targets_and_vanishes_when_all_are(tiny_model):
    """Samples prompted with their own category are ignored (the prompt would give the answer away through the
    masks): the term is the cross-entropy of the others alone, and a batch of ignored targets has no term."""
    from types import SimpleNamespace

    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]])
    latent = SimpleNamespace(
        category_logits=logits,
        intrinsics=K_of(10.0, 4.0, 4.0).expand(3, 3, 3),
        depth=torch.ones(3, 1, 8, 8),
        visible_mask_logits=torch.zeros(3, 1, 8, 8),
        occluder_mask_logits=torch.zeros(3, 1, 8, 8),
        gravity=None,
    )
    batch = {
        "K": K_of(10.0, 4.0, 4.0).expand(3, 3, 3),
        "depth": torch.ones(3, 1, 8, 8),
        "visible_mask": torch.ones(3, 1, 8, 8),
        "occluder_mask": torch.zeros(3, 1, 8, 8),
    }
    targets = torch.tensor([0, IGNORED_TARGET, 1])
    _, terms = zeroshape_w_loss(latent, batch | {"category_index": targets}, None, LossWeights(), 8)
    expected = torch.nn.functional.cross_entropy(logits[[0, 2]], torch.tensor([0, 1]))
    assert float(terms["category"]) == pytest.approx(float(expected))
    ignored = torch.full((3,), IGNORED_TARGET)
    latent.category_logits = logits.clone().requires_grad_(True)
    total, terms = zeroshape_w_loss(latent, batch | {"category_index": ignored}, None, LossWeights(), 8)
    assert "category" not in terms
    total.backward()  # the head still gets a (zero) gradient: DDP needs every parameter to take part
    assert torch.equal(latent.category_logits.grad, torch.zeros_like(logits))


def synthetic_batch(batch: int = 2, size: int = 64, points: int = 96) -> dict:
    generator = torch.Generator().manual_seed(0)
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disk = (((rows - size / 2) ** 2 + (cols - size / 2) ** 2) < (size / 3) ** 2).float()[None, None]
    occluder = torch.zeros(batch, 1, size, size)
    occluder[:, :, : size // 4] = 1.0
    K = torch.tensor([[1.5 * size, 0.0, size / 2], [0.0, 1.5 * size, size / 2], [0.0, 0.0, 1.0]])
    return {
        "image": torch.rand(batch, 3, size, size, generator=generator),
        "depth": (2.0 + torch.rand(batch, 1, size, size, generator=generator)) * disk,
        "visible_mask": disk.expand(batch, -1, -1, -1) * (1 - occluder),
        "occluder_mask": occluder,
        "K": K.expand(batch, 3, 3).clone(),
        "points": torch.rand(batch, points, 3, generator=generator) * 2 - 1,
        "occupancy": (torch.rand(batch, points, generator=generator) > 0.7).float(),
        "category": ["chair", "table"][:batch],
        "gravity": torch.nn.functional.normalize(torch.tensor([[0.0, 1.0, 0.5]]).expand(batch, 3), dim=1),
        "category_index": category_targets(["chair", "table"][:batch], get_config("tiny").text.categories),
    }


@pytest.fixture(scope="module")
def tiny_model() -> ZeroShapeW:
    torch.manual_seed(0)
    return ZeroShapeW(get_config("tiny")).train()


def test_total_is_the_papers_weighted_sum(tiny_model):
    batch = synthetic_batch()
    with one_torch_thread():
        latent, logits = tiny_model(batch["image"], batch["points"], batch["category"])
    pseudo = 1.0 / (batch["depth"] + 1.0)

    total, terms = zeroshape_w_loss(latent, batch, logits, LossWeights(), 64, pseudo)
    assert set(terms) == {
        "camera",
        "depth",
        "depth_aux",
        "visible_mask",
        "occluder_mask",
        "occupancy",
        "gravity",
        "category",
    }
    assert all(not value.requires_grad and value.ndim == 0 for value in terms.values())
    # The supplement's weights, written out rather than read from LossWeights so a changed default is caught.
    expected = (
        10 * terms["camera"]
        + terms["depth"]
        + 0.1 * terms["depth_aux"]
        + terms["visible_mask"]
        + terms["occluder_mask"]
        + terms["occupancy"]
        + terms["gravity"]
        + 0.2 * terms["category"]
    )
    assert float(total.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert float(terms["occupancy"]) == pytest.approx(
        float(occupancy_loss(logits.detach(), batch["occupancy"])), rel=1e-6
    )

    # Without a teacher there is no depth_aux term; without logits (stage 1) no occupancy term.
    # Nor gravity and category terms for a batch without those labels.
    plain = {k: v for k, v in batch.items() if k not in ("gravity", "category_index")}
    total, terms = zeroshape_w_loss(latent, plain, None, LossWeights(), 64)
    assert set(terms) == {"camera", "depth", "visible_mask", "occluder_mask"}
    expected = 10 * terms["camera"] + terms["depth"] + terms["visible_mask"] + terms["occluder_mask"]
    assert float(total.detach()) == pytest.approx(float(expected), rel=1e-5)

    # Custom weights are honoured (each term distinguishable by a different prime weight).
    weights = LossWeights(
        camera=2.0,
        depth=3.0,
        depth_aux=5.0,
        visible_mask=7.0,
        occluder_mask=11.0,
        occupancy=13.0,
        gravity=17.0,
        category=19.0,
        depth_gradient=23.0,
    )
    total, terms = zeroshape_w_loss(latent, batch, logits, weights, 64, pseudo)
    # The depth-gradient term is computed only when it is weighted (it is off by default, above).
    assert float(terms["depth_gradient"]) == pytest.approx(
        float(depth_gradient_loss(latent.depth.detach().float(), batch["depth"], batch["visible_mask"])), rel=1e-5
    )
    expected = sum(getattr(weights, name) * value for name, value in terms.items())
    assert float(total.detach()) == pytest.approx(float(expected), rel=1e-5)


def test_gradients_reach_every_component(tiny_model):
    batch = synthetic_batch()
    tiny_model.zero_grad(set_to_none=True)
    with one_torch_thread():
        latent, logits = tiny_model(batch["image"], batch["points"], batch["category"])
        total, _ = zeroshape_w_loss(latent, batch, logits, LossWeights(), 64, 1.0 / (batch["depth"] + 1.0))
        total.backward()
    for name in COMPONENTS:
        grads = [p.grad for p in tiny_model.component_parameters(name)]
        assert grads, name
        assert any(g is not None and g.abs().sum() > 0 for g in grads), f"no gradient reaches {name}"
        assert all(g is None or torch.isfinite(g).all() for g in grads), name


# ------------------------------------------------------------------------------------------------------ teacher
class MeanDisparity(torch.nn.Module):
    """A stand-in for Depth Anything V2: disparity = 1 / (mean of the image's channels + 1)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return 1.0 / (images.mean(dim=1, keepdim=True) + 1.0)


class FlatDisparity(torch.nn.Module):
    """The same, returning [B, H, W] (some depth models drop the channel)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return 1.0 / (images.mean(dim=1) + 1.0)


def export(module: torch.nn.Module, path) -> None:
    example = (torch.rand(2, 3, 64, 64),)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(module, example, dynamic_shapes={"images": {0: batch}})
    torch.export.save(program, str(path))


def test_auxiliary_depth_model_loads_an_exported_program(tmp_path):
    export(MeanDisparity(), tmp_path / "teacher.pt2")
    export(FlatDisparity(), tmp_path / "flat.pt2")
    images = torch.rand(3, 3, 64, 64)
    expected = 1.0 / (images.mean(dim=1, keepdim=True) + 1.0)
    for name in ("teacher.pt2", "flat.pt2"):
        disparity = load_auxiliary_depth_model(tmp_path / name)(images)
        assert disparity.shape == (3, 1, 64, 64), name
        assert torch.allclose(disparity, expected, atol=1e-6), name


def test_auxiliary_depth_model_errors_name_the_file(tmp_path):
    missing = tmp_path / "nowhere.pt2"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_auxiliary_depth_model(missing)
    broken = tmp_path / "broken.pt2"
    broken.write_bytes(b"not a program")
    with pytest.raises(ValueError, match=re.escape(str(broken))):
        load_auxiliary_depth_model(broken)


@pytest.mark.blender
def test_training_step_with_the_auxiliary_depth_term(rendered_dataset, tmp_path):
    export(MeanDisparity(), tmp_path / "teacher.pt2")
    teacher = load_auxiliary_depth_model(tmp_path / "teacher.pt2")
    seen: list[tuple[int, ...]] = []

    def recording_teacher(images: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(images.shape))
        return teacher(images)

    reported: list[tuple[int, dict]] = []
    options = cpu_options(rendered_dataset, tmp_path / "run", max_steps=1)
    with one_torch_thread():
        result = train(options, aux_depth_model=recording_teacher, on_step=lambda step, t: reported.append((step, t)))
    assert result.finished
    assert result.step == 1
    assert seen == [(2, 3, 64, 64)]  # the tiny recipe's batch, at the tiny model's input size
    assert [step for step, _ in reported] == [1]
    terms = reported[0][1]
    assert terms == result.last_losses
    assert math.isfinite(terms["depth_aux"])
    assert terms["depth_aux"] > 0
    parts = 10 * terms["camera"] + terms["depth"] + 0.1 * terms["depth_aux"] + terms["visible_mask"]
    parts += terms["occluder_mask"] + terms["occupancy"]  # one step of 1: already stage 2
    parts += terms["gravity"] + 0.2 * terms["category"]  # the tiny model has a scene head
    assert terms["total"] == pytest.approx(parts, rel=1e-5)
