"""Pixel-aligned evidence: projection, signed distance to the visible surface, and the decoder that reads it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from backend.model.config import get_config
from backend.model.geometry import normalise_points, unproject_depth
from backend.model.pixel_aligned import GEOMETRY_CHANNELS, PixelEvidence, sample_evidence, surface_maps
from backend.model.zeroshape import ZeroShapeW

from .helpers import make_batch, randomise_zero_parameters

SIZE = 32


def plane_evidence(depth_value: float = 2.0) -> tuple[PixelEvidence, torch.Tensor]:
    """A fronto-parallel square at camera z = depth_value over the middle of a 32² image, occluder on the right."""
    K = torch.tensor([[[40.0, 0.0, 15.5], [0.0, 40.0, 15.5], [0.0, 0.0, 1.0]]])
    visible = torch.zeros(1, 1, SIZE, SIZE, dtype=torch.bool)
    visible[..., 8:24, 8:24] = True
    depth = torch.full((1, 1, SIZE, SIZE), depth_value) * visible
    points, normalisation = normalise_points(unproject_depth(depth, K), visible)
    occluder = torch.zeros(1, 1, SIZE, SIZE)
    occluder[..., 26:] = 1.0
    surface = surface_maps(depth, visible, points, visible.float(), occluder)
    features = torch.arange(4 * 8 * 8, dtype=torch.float32).reshape(1, 4, 8, 8)
    return PixelEvidence(K, normalisation, surface, features), K


def to_normalised(camera_points: torch.Tensor, evidence: PixelEvidence) -> torch.Tensor:
    norm = evidence.normalisation
    return (camera_points - norm.centroid[:, None]) / norm.scale[:, None, None]


def camera_point(K: torch.Tensor, u: float, v: float, z: float) -> torch.Tensor:
    """The camera-frame point that projects to pixel (u, v) at depth z."""
    return torch.linalg.inv(K[0]) @ torch.tensor([u * z, v * z, z])


def test_signed_distance_is_negative_in_front_zero_on_and_positive_behind_the_surface():
    evidence, K = plane_evidence(depth_value=2.0)
    scale = float(evidence.normalisation.scale[0])
    cameras = torch.stack([camera_point(K, 16.0, 15.0, z) for z in (1.8, 2.0, 2.3)])[None]
    values = sample_evidence(to_normalised(cameras, evidence), evidence)
    assert values.shape == (1, 3, GEOMETRY_CHANNELS + 4)
    signed = values[0, :, 0]
    assert signed[0] == pytest.approx(-0.2 / scale, abs=1e-4)
    assert signed[1] == pytest.approx(0.0, abs=1e-4)
    assert signed[2] == pytest.approx(0.3 / scale, abs=1e-4)
    assert torch.equal(values[0, :, 1], torch.tanh(8 * signed))
    # Surface weight 1 and in-image everywhere on the square; the offset to the surface point is along the ray only.
    assert torch.allclose(values[0, :, 5], torch.ones(3))
    assert torch.allclose(values[0, :, 8], torch.ones(3))
    offset = values[0, 1, 2:5]
    assert offset.abs().max() < 1e-4


def test_outside_the_silhouette_there_is_no_surface_and_the_occluder_shows():
    evidence, K = plane_evidence()
    cameras = torch.stack([camera_point(K, 2.0, 2.0, 2.0), camera_point(K, 29.0, 16.0, 2.0)])[None]
    values = sample_evidence(to_normalised(cameras, evidence), evidence)
    signed, weight, occluder, in_image = values[0, :, 0], values[0, :, 5], values[0, :, 7], values[0, :, 8]
    assert torch.equal(signed, torch.zeros(2))
    assert torch.equal(weight, torch.zeros(2))
    assert occluder[0] == 0.0
    assert occluder[1] == pytest.approx(1.0)
    assert torch.equal(in_image, torch.ones(2))
    # Off the image: flagged, and nothing is sampled.
    far = camera_point(K, -40.0, 16.0, 2.0)[None, None]
    values = sample_evidence(to_normalised(far, evidence), evidence)
    assert values[0, 0, 8] == 0.0
    assert values[0, 0, GEOMETRY_CHANNELS:].abs().max() == 0.0


def test_features_are_sampled_at_the_points_pixel():
    evidence, K = plane_evidence()
    # Pixel u of the 32² image is at (u + 0.5) / 4 − 0.5 in the 8² feature map: u = 7.5 → column 1.5, v = 13.5 → row 3.
    point = camera_point(K, 7.5, 13.5, 2.0)[None, None]
    values = sample_evidence(to_normalised(point, evidence), evidence)
    features = evidence.features[0, :, 3, 1] * 0.5 + evidence.features[0, :, 3, 2] * 0.5
    assert torch.allclose(values[0, 0, GEOMETRY_CHANNELS:], features, atol=1e-3)


def test_a_token_only_config_has_no_evidence_layers_and_small_reads_evidence():
    paper_decoder = get_config("paper").decoder
    assert not paper_decoder.pixel_aligned  # ZeroShape's published decoder, which its weights fit
    assert get_config("small").decoder.pixel_aligned
    tiny = get_config("tiny")
    token_only = dataclasses.replace(tiny, decoder=dataclasses.replace(tiny.decoder, pixel_aligned=False))
    names = set(ZeroShapeW(token_only).state_dict())
    assert not any("evidence_embed" in n for n in names)
    assert any("evidence_embed" in n for n in ZeroShapeW(tiny).state_dict())


def test_the_evidence_changes_the_answer_and_starts_silent():
    """A fresh evidence layer adds exactly zero (a warm start from a token-only checkpoint is unchanged); once
    trained, moving the visible surface changes the occupancy of a point that stays where it was."""
    config = get_config("tiny")
    torch.manual_seed(0)
    model = ZeroShapeW(config).eval()
    batch = make_batch(config, batch=1)
    points = torch.rand(1, 40, 3) * 2 - 1
    token_only = dataclasses.replace(config, decoder=dataclasses.replace(config.decoder, pixel_aligned=False))
    reference = ZeroShapeW(token_only).eval()
    reference.load_state_dict({k: v for k, v in model.state_dict().items() if "evidence_embed" not in k})
    with torch.no_grad():
        latent = model.encode(batch["image"], visible_mask=batch["visible"])
        assert torch.allclose(
            model.query(points, latent),
            reference.query(points, reference.encode(batch["image"], visible_mask=batch["visible"])),
            atol=1e-6,
        )
    randomise_zero_parameters(model)
    with torch.no_grad():
        latent = model.encode(batch["image"], visible_mask=batch["visible"])
        # Points near the visible surface: they project inside the silhouette, where the evidence lives (random
        # points of the cube mostly land outside this small silhouette, and whether one lands inside was luck).
        surface = latent.visible_points[0].flatten(1).T[latent.visible[0, 0].flatten() > 0.5]  # [M, 3]
        points = (surface[torch.randperm(len(surface))[:40]] + 0.02 * torch.randn(40, 3))[None]
        before = model.query(points, latent)
        moved = dataclasses.replace(
            latent.evidence,
            surface=latent.evidence.surface * torch.tensor([1, 1.3, 1, 1, 1, 1, 1])[None, :, None, None],
        )
        after = model.query(points, dataclasses.replace(latent, evidence=moved))
    assert not torch.allclose(before, after)


def test_the_shape_half_alone_matches_encode_given_the_same_truth():
    """`forward(None, …)` (the shape stage) builds the same tokens and occupancy as `encode` given the true depth,
    camera and mask, except for the occluder map, which the shape stage takes from the truth too."""
    config = get_config("tiny")
    torch.manual_seed(1)
    model = ZeroShapeW(config).eval()
    batch = make_batch(config, batch=2)
    K = torch.tensor([[50.0, 0.0, 32.0], [0.0, 50.0, 32.0], [0.0, 0.0, 1.0]]).expand(2, 3, 3)
    depth = 1.0 + batch["depth"]
    with torch.no_grad():
        full = model.encode(batch["image"], ["chair", "mug"], visible_mask=batch["visible"], depth=depth, intrinsics=K)
        occluder = torch.sigmoid(full.occluder_mask_logits)
        shape, logits = model(
            None,
            batch["points"],
            ["chair", "mug"],
            visible_mask=batch["visible"],
            depth=depth,
            intrinsics=K,
            occluder_mask=occluder,
        )
        expected = model.query(batch["points"], full)
    assert torch.allclose(shape.tokens, full.tokens, atol=1e-5)
    assert torch.allclose(logits, expected, atol=1e-5)
    with pytest.raises(ValueError, match="without an image"):
        model(None, batch["points"], depth=depth)
