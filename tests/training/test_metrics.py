"""Hand-checkable cases for training/metrics.py: Chamfer distance, F-score, normalisation and the rotation search."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from training.metrics import (
    EMPTY_CHAMFER,
    THRESHOLDS,
    chamfer_and_fscore,
    evaluate_clouds,
    normalise_cloud,
    summarise,
    surface_cloud,
)


def _grid(spacing: float = 1.0, n: int = 4) -> np.ndarray:
    """[n³, 3] points on a cubic grid: nearest neighbours are `spacing` apart."""
    axis = np.arange(n, dtype=np.float64) * spacing
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)


def _l_shape() -> np.ndarray:
    """An asymmetric cloud: a long arm along x, a short arm along z, some height along y."""
    arm_x = [(x, y, 0.0) for x in np.linspace(0.0, 2.0, 21) for y in (0.0, 0.5)]
    arm_z = [(0.0, y, z) for z in np.linspace(0.1, 1.0, 10) for y in (0.0, 0.5)]
    return np.array(arm_x + arm_z)


def _rot_y(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])


def test_identical_clouds_are_perfect() -> None:
    cloud = _grid()
    result = chamfer_and_fscore(cloud, cloud)
    assert result["cd"] == 0.0
    assert set(result) == {"cd"} | {f"fscore@{tau:g}" for tau in THRESHOLDS}
    assert all(result[f"fscore@{tau:g}"] == 1.0 for tau in THRESHOLDS)


def test_shifted_grid_has_known_distance() -> None:
    # Grid spacing 1 ≫ 0.03: every point's nearest neighbour is its own shifted copy, 0.03 away, both ways.
    gt = _grid(spacing=1.0)
    pred = gt + np.array([0.03, 0.0, 0.0])
    result = chamfer_and_fscore(pred, gt, thresholds=(0.05, 0.02))
    assert result["cd"] == pytest.approx(0.03)
    assert result["fscore@0.05"] == 1.0
    assert result["fscore@0.02"] == 0.0


def test_half_missing_prediction_has_recall_one_half() -> None:
    gt = _grid(spacing=1.0)
    pred = gt[: len(gt) // 2]  # every pred point is on gt (P = 1), half of gt is covered (R = 1/2)
    result = chamfer_and_fscore(pred, gt, thresholds=(0.5,))
    assert result["fscore@0.5"] == pytest.approx(2.0 / 3.0)
    # gt→pred: half the points at 0, the other half (the upper x layers) 1 or 2 grid steps from x = 1.
    d_gt_to_pred = np.concatenate([np.zeros(32), np.full(16, 1.0), np.full(16, 2.0)])
    assert result["cd"] == pytest.approx((0.0 + d_gt_to_pred.mean()) / 2.0)


def test_normalise_cloud_uses_larger_image_plane_extent() -> None:
    corners = np.array([[x, y, z] for x in (0.0, 4.0) for y in (0.0, 2.0) for z in (0.0, 10.0)])
    normalised = normalise_cloud(corners)
    np.testing.assert_allclose(normalised.mean(axis=0), 0.0, atol=1e-12)
    # x extent 4 sets the scale; the much larger z extent (10) is ignored by design.
    np.testing.assert_allclose(np.ptp(normalised, axis=0), [1.0, 0.5, 2.5])


def test_normalise_cloud_guards_degenerate_input() -> None:
    assert np.isfinite(normalise_cloud(np.array([[1.0, 2.0, 3.0]]))).all()
    assert normalise_cloud(np.zeros((0, 3))).shape == (0, 3)


def test_evaluate_is_invariant_to_scale_and_offset() -> None:
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(200, 3))
    pred = gt + rng.normal(scale=0.05, size=gt.shape)
    reference = evaluate_clouds(pred, gt)
    moved = evaluate_clouds(pred * 3.0 + np.array([5.0, -2.0, 7.0]), gt)
    assert reference["cd"] > 0.0
    assert moved == pytest.approx(reference)


@pytest.mark.parametrize("pred", [None, np.zeros((0, 3)), np.full((5, 3), np.nan)], ids=["none", "empty", "all_nan"])
def test_empty_prediction_scores_worst(pred: np.ndarray | None) -> None:
    gt = _grid()
    for result in (chamfer_and_fscore(pred, gt), evaluate_clouds(pred, gt), evaluate_clouds(pred, gt, True)):
        assert result["cd"] == EMPTY_CHAMFER
        assert all(result[f"fscore@{tau:g}"] == 0.0 for tau in THRESHOLDS)


def test_nan_rows_are_dropped() -> None:
    gt = _grid()
    pred = np.vstack([gt, [[np.nan, 0.0, 0.0], [np.inf, 1.0, 1.0]]])
    assert chamfer_and_fscore(pred, gt)["cd"] == 0.0


def test_invalid_ground_truth_is_an_error() -> None:
    with pytest.raises(ValueError, match="gt is empty"):
        chamfer_and_fscore(_grid(), np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        chamfer_and_fscore(_grid(), np.zeros((4, 2)))


def test_surface_cloud_on_unit_sphere() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    points = surface_cloud(sphere, count=500, seed=3)
    assert points.shape == (500, 3)
    assert points.dtype == np.float64
    # Points lie on the flat facets, inside the unit sphere by at most the chord sagitta (< 1 % here).
    radii = np.linalg.norm(points, axis=1)
    assert radii.max() <= 1.0 + 1e-9
    assert radii.min() > 0.99
    np.testing.assert_array_equal(points, surface_cloud(sphere, count=500, seed=3))
    assert not np.array_equal(points, surface_cloud(sphere, count=500, seed=4))


def test_surface_cloud_of_nothing_is_empty() -> None:
    assert surface_cloud(None).shape == (0, 3)
    assert surface_cloud(trimesh.Trimesh()).shape == (0, 3)
    flat = trimesh.Trimesh(vertices=[[0, 0, 0], [1, 0, 0], [2, 0, 0]], faces=[[0, 1, 2]], process=False)
    assert surface_cloud(flat, count=10).shape == (0, 3)


def test_rotation_search_undoes_a_quarter_turn() -> None:
    gt = _l_shape()
    pred = gt @ _rot_y(90.0).T
    plain = evaluate_clouds(pred, gt)
    searched = evaluate_clouds(pred, gt, rotation_search=True)
    assert plain["cd"] > 0.05
    # Normalisation removes translation and scale, so rotating back by 270° (= −90°) reproduces gt exactly.
    assert searched["cd"] < 1e-6
    assert searched["rotation_deg"] == 270.0
    assert searched["fscore@0.05"] == 1.0


def test_rotation_search_keeps_zero_for_aligned_prediction() -> None:
    gt = _l_shape()
    assert evaluate_clouds(gt, gt, rotation_search=True)["rotation_deg"] == 0.0


def test_summarise_groups_rows() -> None:
    rows = [
        {"cd": 0.1, "fscore@0.1": 0.8, "category": "chair", "occluded": False},
        {"cd": 0.3, "fscore@0.1": 0.4, "category": "chair", "occluded": True},
        {"cd": 0.2, "fscore@0.1": 0.6, "category": "sofa", "occluded": False},
    ]
    overall = summarise(rows)
    assert set(overall) == {"all"}
    assert overall["all"] == pytest.approx({"cd": 0.2, "fscore@0.1": 0.6, "n": 3.0})

    by_category = summarise(rows, group_key="category")
    assert by_category["chair"] == pytest.approx({"cd": 0.2, "fscore@0.1": 0.6, "n": 2.0})
    assert by_category["sofa"] == pytest.approx({"cd": 0.2, "fscore@0.1": 0.6, "n": 1.0})

    by_occlusion = summarise(rows, group_key="occluded")
    assert by_occlusion["True"] == pytest.approx({"cd": 0.3, "fscore@0.1": 0.4, "n": 1.0})
    assert by_occlusion["False"]["n"] == 2.0
    assert summarise([]) == {"all": {"n": 0.0}}
