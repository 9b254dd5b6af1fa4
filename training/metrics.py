"""ZeroShape's evaluation protocol for single-image 3D shape: Chamfer distance and F-score on normalised point clouds.

The protocol (ZeroShape, Huang et al. 2024, `utils/eval_3D.py` of github.com/zxhuang1698/ZeroShape):

1. Sample points on the predicted and the ground-truth surfaces (ZeroShape uses 10,000 each, see `surface_cloud`).
   Both clouds are in the same *camera* frame (OpenCV axes: x right, y down, z forward), so the prediction is
   compared in the viewer-centred frame without any pose search.
2. Normalise each cloud on its own (`normalise_cloud`): subtract its centroid (mean point) and divide by the larger of
   its x and y extents. Only the image-plane axes set the scale because depth is the axis a single image leaves
   ambiguous; a depth-squashed prediction is therefore penalised rather than rescaled away.
3. Compare with nearest-neighbour distances (`chamfer_and_fscore`): Chamfer distance is the mean of the two directed
   mean distances (plain Euclidean distances, not squared), F-score@τ is the harmonic mean of precision (prediction
   points within τ of the ground truth) and recall (ground-truth points within τ of the prediction).

Units: after normalisation one unit is the larger image-plane extent of the object, so normalised clouds span about
1 unit and thresholds τ are fractions of the object's size. ZeroShape's own config reports τ in
{0.005, 0.01, 0.02, 0.05, 0.1, 0.2}; this module's default `THRESHOLDS` is the project's choice and any sequence can
be passed.

`evaluate_clouds(..., rotation_search=True)` is an optional, more forgiving variant (in the spirit of ZeroShape's
brute-force evaluation, but only about the vertical axis): it rotates the prediction about the camera's y axis and
keeps the best angle, which hides azimuth errors. Results with and without it must not be mixed in one table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import trimesh
from scipy.spatial import cKDTree

THRESHOLDS: tuple[float, ...] = (0.05, 0.1, 0.15, 0.25)
"""Default F-score thresholds τ, in normalised units (fractions of the object's larger image-plane extent)."""

EMPTY_CHAMFER: float = 1.0
"""Chamfer distance reported for an empty (or entirely non-finite) prediction.

Both normalised clouds are centred at the origin and span about 1 unit across the image plane, so a nearest-neighbour
distance between them, and hence a realistic Chamfer distance, stays well below 1. 1.0 is therefore a penalty worse
than any real prediction, and keeps a failed reconstruction from silently improving an average by being skipped."""

_MIN_EXTENT = 1e-9
"""Floor on the normalisation extent: a cloud that is a single point or a line along z would otherwise divide by 0."""

ROTATION_STEP_DEG = 15
"""Angular step of the optional rotation search about the camera's y axis, in degrees (24 angles, 0°..345°)."""


def _as_cloud(points: np.ndarray | Sequence[Sequence[float]] | None, name: str) -> np.ndarray:
    """Return `points` as a float64 [N, 3] array ([0, 3] for None); raise ValueError on any other shape."""
    if points is None:
        return np.zeros((0, 3), dtype=np.float64)
    cloud = np.asarray(points, dtype=np.float64)
    if cloud.size == 0:
        return np.zeros((0, 3), dtype=np.float64)
    if cloud.ndim != 2 or cloud.shape[1] != 3:
        raise ValueError(f"{name} must be a point cloud of shape [N, 3], got shape {cloud.shape}")
    return cloud


def _finite_rows(cloud: np.ndarray) -> np.ndarray:
    """Drop the rows of a [N, 3] cloud that contain NaN or ±inf (a broken prediction must not poison the KD-tree)."""
    return cloud[np.isfinite(cloud).all(axis=1)]


def _fscore_key(tau: float) -> str:
    return f"fscore@{tau:g}"


def _empty_result(thresholds: Iterable[float]) -> dict[str, float]:
    """Worst possible scores: Chamfer distance `EMPTY_CHAMFER` and F = 0 at every threshold."""
    result = {"cd": EMPTY_CHAMFER}
    result.update({_fscore_key(tau): 0.0 for tau in thresholds})
    return result


def normalise_cloud(points: np.ndarray) -> np.ndarray:
    """Centre a cloud on its centroid and scale it so that its larger image-plane extent is 1 (ZeroShape's protocol).

    Args:
        points: [N, 3] float points in camera axes (x, y in the image plane, z along the optical axis), any unit.

    Returns:
        [N, 3] float64 points: `(points - mean) / max(extent_x, extent_y)`, where extent = max − min along the axis.
        The z extent is deliberately ignored (see the module docstring). Unitless; an empty input gives [0, 3].
    """
    cloud = _as_cloud(points, "points")
    if len(cloud) == 0:
        return cloud.copy()
    centred = cloud - cloud.mean(axis=0)
    extents = np.ptp(centred[:, :2], axis=0)
    return centred / max(float(extents.max()), _MIN_EXTENT)


def chamfer_and_fscore(
    pred: np.ndarray | None, gt: np.ndarray, thresholds: Sequence[float] = THRESHOLDS
) -> dict[str, float]:
    """Chamfer distance and F-scores between two clouds that the caller has already normalised.

    Args:
        pred: [N, 3] predicted points, or None. Rows with NaN/inf are dropped; if nothing is left the prediction
            counts as empty and gets the worst scores (cd = `EMPTY_CHAMFER`, every F = 0).
        gt: [M, 3] ground-truth points, M ≥ 1, all finite.
        thresholds: distance thresholds τ for the F-score, in the clouds' units.

    Returns:
        {"cd": (mean d(pred→gt) + mean d(gt→pred)) / 2, "fscore@τ": 2PR / (P + R) for each τ}, where d is the
        Euclidean nearest-neighbour distance, P the fraction of pred points with d(pred→gt) < τ and R the fraction of
        gt points with d(gt→pred) < τ (F = 0 when P + R = 0). Keys use `f"fscore@{tau:g}"`, e.g. "fscore@0.05".

    Raises:
        ValueError: gt is empty or not finite (the reference must be valid; only predictions are allowed to fail).
    """
    gt_cloud = _as_cloud(gt, "gt")
    if len(gt_cloud) == 0:
        raise ValueError("gt is empty: the ground-truth cloud needs at least one point")
    if not np.isfinite(gt_cloud).all():
        raise ValueError("gt contains NaN or inf: the ground-truth cloud must be finite")
    pred_cloud = _finite_rows(_as_cloud(pred, "pred"))
    if len(pred_cloud) == 0:
        return _empty_result(thresholds)

    # One tree per direction: each query is O(log M) instead of the O(N·M) pairwise matrix, which for the
    # protocol's 10k × 10k points would be 800 MB of float64.
    d_pred_to_gt, _ = cKDTree(gt_cloud).query(pred_cloud, k=1)
    d_gt_to_pred, _ = cKDTree(pred_cloud).query(gt_cloud, k=1)

    result = {"cd": float((d_pred_to_gt.mean() + d_gt_to_pred.mean()) / 2.0)}
    for tau in thresholds:
        precision = float(np.mean(d_pred_to_gt < tau))
        recall = float(np.mean(d_gt_to_pred < tau))
        total = precision + recall
        result[_fscore_key(tau)] = 2.0 * precision * recall / total if total > 0 else 0.0
    return result


def surface_cloud(mesh: trimesh.Trimesh | None, count: int = 10000, seed: int = 0) -> np.ndarray:
    """Area-weighted random points on a mesh surface, reproducible for a given seed.

    Args:
        mesh: a triangle mesh, or None.
        count: number of points to draw (ZeroShape's protocol uses 10,000).
        seed: seed of the random generator; the same mesh, count and seed give the same points.

    Returns:
        [count, 3] float64 points in the mesh's units, or [0, 3] when the mesh is None, has no faces or has zero
        total area (nothing to sample; the caller's metric then scores it as empty).
    """
    if mesh is None or len(mesh.faces) == 0 or not math.isfinite(mesh.area) or mesh.area <= 0.0:
        return np.zeros((0, 3), dtype=np.float64)
    points, _ = trimesh.sample.sample_surface(mesh, int(count), seed=seed)
    return np.asarray(points, dtype=np.float64).reshape(-1, 3)


def _rotation_about_y(angle_deg: float) -> np.ndarray:
    """[3, 3] rotation by `angle_deg` degrees about the y axis (right-handed: z turns towards x for positive angles)."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def evaluate_clouds(
    pred_points: np.ndarray | None,
    gt_points: np.ndarray,
    rotation_search: bool = False,
    thresholds: Sequence[float] = THRESHOLDS,
) -> dict[str, float]:
    """Score a predicted cloud against the ground truth with ZeroShape's protocol: normalise both, then compare.

    Args:
        pred_points: [N, 3] predicted surface points in camera axes (OpenCV: x right, y down, z forward), any unit,
            or None. NaN/inf rows are dropped; an empty prediction scores cd = `EMPTY_CHAMFER` and F = 0.
        gt_points: [M, 3] ground-truth surface points in the same camera axes, any unit.
        rotation_search: optional, more forgiving variant. Rotate the normalised prediction about the camera's y
            axis (the image's vertical axis) by 0°, 15°, …, 345°, re-normalise after each rotation (a rotation
            changes the x extent) and keep the angle with the lowest Chamfer distance. This forgives azimuth errors,
            so its numbers are not comparable with the default protocol.
        thresholds: F-score thresholds τ in normalised units.

    Returns:
        `chamfer_and_fscore`'s dict on the normalised clouds; with `rotation_search` also "rotation_deg", the angle
        in degrees (about +y, see `_rotation_about_y`) applied to the prediction that gave the reported scores.
    """
    gt_norm = normalise_cloud(gt_points)
    pred_norm = normalise_cloud(_finite_rows(_as_cloud(pred_points, "pred_points")))
    if not rotation_search:
        return chamfer_and_fscore(pred_norm, gt_norm, thresholds)

    if len(pred_norm) == 0:
        return {**chamfer_and_fscore(pred_norm, gt_norm, thresholds), "rotation_deg": 0.0}
    best: dict[str, float] | None = None
    for angle in range(0, 360, ROTATION_STEP_DEG):
        rotated = normalise_cloud(pred_norm @ _rotation_about_y(angle).T)
        scores = chamfer_and_fscore(rotated, gt_norm, thresholds)
        # Strict `<` keeps the smallest angle on ties, so an already aligned prediction reports 0°.
        if best is None or scores["cd"] < best["cd"]:
            best = {**scores, "rotation_deg": float(angle)}
    assert best is not None
    return best


def summarise(
    rows: Sequence[Mapping[str, object]], group_key: str | None = None, keys: Sequence[str] | None = None
) -> dict[str, dict[str, float]]:
    """Average per-sample metric rows, overall and optionally per value of a grouping key.

    Args:
        rows: one dict per evaluated sample, e.g. `evaluate_clouds`'s result plus {"category": "chair",
            "occluded": False}.
        group_key: a row key to group by (e.g. "category" or "occluded"); each group is named `str(value)`
            ("True", "chair", …; "None" for rows that lack the key).
        keys: metric keys to average; by default every key whose value is a real number (not a bool) in some row,
            except `group_key`.

    Returns:
        {"all": {...}, <group>: {...}, ...}: per group, the mean of each metric over the rows that have it, and
        "n", the number of rows in the group (as a float). No rows gives {"all": {"n": 0.0}}.
    """

    def is_metric(value: object) -> bool:
        return isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)

    if keys is None:
        found: dict[str, None] = {}  # an ordered set: keeps the first row's key order in the output
        for row in rows:
            for key, value in row.items():
                if key != group_key and is_metric(value):
                    found[key] = None
        keys = list(found)

    def average(group: Sequence[Mapping[str, object]]) -> dict[str, float]:
        summary: dict[str, float] = {}
        for key in keys:
            values = [float(row[key]) for row in group if key in row and is_metric(row[key])]
            if values:
                summary[key] = float(np.mean(values))
        summary["n"] = float(len(group))
        return summary

    result = {"all": average(rows)}
    if group_key is not None:
        groups: dict[str, list[Mapping[str, object]]] = {}
        for row in rows:
            groups.setdefault(str(row.get(group_key)), []).append(row)
        for name in sorted(groups):
            result[name] = average(groups[name])
    return result
