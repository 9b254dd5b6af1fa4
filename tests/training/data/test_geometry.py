"""Geometry supervision against analytic truth: winding numbers, occupancy labels and samples.

Meshes live in a normalised-like frame (objects within [-0.5, 0.5]³); query points are uniform in [-0.55, 0.55]³,
the box `sample_occupancy` uses by default.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import trimesh

from training.data import geometry as geo

HALF = 0.55
SPHERE_RADIUS = 0.4
CUBE_HALF = 0.3  # side 0.6


@pytest.fixture(scope="module")
def sphere() -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=4, radius=SPHERE_RADIUS)  # 5,120 faces


@pytest.fixture(scope="module")
def small_sphere() -> trimesh.Trimesh:
    """1,280 faces: keeps the exact O(N·F) path fast."""
    return trimesh.creation.icosphere(subdivisions=3, radius=SPHERE_RADIUS)


@pytest.fixture(scope="module")
def cube() -> trimesh.Trimesh:
    return trimesh.creation.box(extents=(2 * CUBE_HALF,) * 3)


@pytest.fixture(scope="module")
def open_box(cube: trimesh.Trimesh) -> trimesh.Trimesh:
    """The cube without the two triangles of its top (+z) face."""
    keep = cube.face_normals[:, 2] < 0.5
    mesh = trimesh.Trimesh(cube.vertices.copy(), cube.faces[keep], process=False)
    assert len(mesh.faces) == 10
    assert not mesh.is_watertight
    return mesh


def uniform_points(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-HALF, HALF, size=(n, 3))


def in_cube(points: np.ndarray) -> np.ndarray:
    return (np.abs(points) < CUBE_HALF).all(axis=1)


# --------------------------------------------------------------------------------------------------------------------
# Labels against analytic truth
# --------------------------------------------------------------------------------------------------------------------


def test_sphere_labels(sphere: trimesh.Trimesh) -> None:
    points = uniform_points(20_000)
    # The few misses (~0.04%) lie between the inscribed facets and the analytic sphere (< 5e-4 apart).
    truth = np.linalg.norm(points, axis=1) < SPHERE_RADIUS
    accuracy = (geo.occupancy_labels(sphere, points) == truth).mean()
    print(f"\nicosphere(4) r=0.4: {accuracy:.5%} of 20k uniform labels correct")
    assert accuracy >= 0.995


def test_cube_labels(cube: trimesh.Trimesh) -> None:
    points = uniform_points(20_000, seed=1)
    accuracy = (geo.occupancy_labels(cube, points) == in_cube(points)).mean()
    print(f"\ncube side 0.6: {accuracy:.5%} correct")
    assert accuracy >= 0.995


def test_an_inside_out_mesh_is_labelled_as_the_solid(sphere: trimesh.Trimesh) -> None:
    """0 A.D.'s meshes wind clockwise: w = -1 inside. Labelling must not depend on the winding direction."""
    inside_out = trimesh.Trimesh(sphere.vertices, sphere.faces[:, ::-1], process=False)
    points = uniform_points(5_000, seed=3)
    labels = geo.occupancy_labels(inside_out, points)
    assert labels.any()
    assert (labels == geo.occupancy_labels(sphere, points)).all()
    volume = 4 / 3 * np.pi * SPHERE_RADIUS**3
    assert geo.signed_volume(sphere) == pytest.approx(volume, rel=0.01)
    assert geo.signed_volume(inside_out) == pytest.approx(-volume, rel=0.01)


def test_open_box_labels(open_box: trimesh.Trimesh) -> None:
    """Truth for the open box is the box volume; points within 0.02 of the missing face's plane are set aside."""
    points = uniform_points(20_000, seed=2)
    truth = in_cube(points)
    correct = geo.occupancy_labels(open_box, points) == truth
    away = np.abs(points[:, 2] - CUBE_HALF) > 0.02
    print(
        f"\nopen box: {correct[away].mean():.5%} correct away from the opening's plane ({away.sum()} points), "
        f"{correct.mean():.5%} correct on all {len(points)} points"
    )
    assert correct[away].mean() >= 0.995
    # The 0.5 threshold is exact for a planar opening (see occupancy_labels); only the tree's approximation error can
    # flip points, and only right at the opening.
    assert correct.mean() >= 0.995


def test_open_box_analytic_values(open_box: trimesh.Trimesh) -> None:
    """From the centre each cube face subtends 4π/6, so w = 5/6 without the top; from (0, 0, 0.6) the missing top
    subtends 4π/6 too (it is the face of the cube of side 0.6 centred there), so w = 1/6; beside the box w < 0."""
    w = geo.winding_number(open_box.vertices, open_box.faces, [[0, 0, 0], [0, 0, 0.6], [0.5, 0, 0.1]])
    np.testing.assert_allclose(w[:2], [5 / 6, 1 / 6], atol=1e-12)
    assert -0.5 < w[2] < 0
    # Just below the opening w is barely above ½, just above it barely below: the threshold still separates them.
    near = geo.winding_number(open_box.vertices, open_box.faces, [[0, 0, CUBE_HALF - 1e-3], [0, 0, CUBE_HALF + 1e-3]])
    assert 0.5 < near[0] < 0.51
    assert 0.49 < near[1] < 0.5


# --------------------------------------------------------------------------------------------------------------------
# Winding number values
# --------------------------------------------------------------------------------------------------------------------


def test_closed_mesh_winding_is_integer_far_from_surface(small_sphere: trimesh.Trimesh) -> None:
    points = uniform_points(2_000, seed=3)
    r = np.linalg.norm(points, axis=1)
    points = points[np.abs(r - SPHERE_RADIUS) > 0.05]
    w = geo.winding_number(small_sphere.vertices, small_sphere.faces, points)  # exact sum
    truth = (np.linalg.norm(points, axis=1) < SPHERE_RADIUS).astype(float)
    np.testing.assert_allclose(w, truth, atol=1e-6)


def test_fast_winding_number_matches_exact_sum(sphere: trimesh.Trimesh) -> None:
    """libigl's hierarchical approximation, used for the labels, stays within 1e-2 of the exact sum near the
    surface and gives the same labels."""
    rng = np.random.default_rng(4)
    surface = geo.sample_surface(sphere, 500, rng)
    points = np.concatenate([uniform_points(500, seed=4), surface + rng.normal(0.0, 0.01, surface.shape)])
    exact = geo.winding_number(sphere.vertices, sphere.faces, points)
    fast = geo.fast_winding_number(sphere.vertices, sphere.faces, points)
    assert np.abs(fast - exact).max() < 1e-2
    assert np.array_equal(fast > 0.5, exact > 0.5)
    # Far from the origin the same mesh gives the same numbers (the mesh is centred before the expansion).
    far = geo.fast_winding_number(sphere.vertices + 1000.0, sphere.faces, points + 1000.0)
    assert np.abs(far - fast).max() < 1e-6


def test_overlapping_copies_wind_twice(small_sphere: trimesh.Trimesh) -> None:
    shifted = small_sphere.copy()
    shifted.apply_translation([0.1, 0.0, 0.0])
    both = trimesh.util.concatenate([small_sphere, shifted])
    points = np.array([[0.05, 0, 0], [-0.35, 0, 0], [0.45, 0, 0], [0, 0.5, 0]])  # both, first only, second only, none
    np.testing.assert_allclose(geo.winding_number(both.vertices, both.faces, points), [2, 1, 1, 0], atol=1e-6)
    assert geo.occupancy_labels(both, points).tolist() == [True, True, True, False]


@pytest.mark.parametrize("winding", [geo.winding_number, geo.fast_winding_number])
def test_no_nan_at_vertices(
    small_sphere: trimesh.Trimesh, cube: trimesh.Trimesh, open_box: trimesh.Trimesh, winding
) -> None:
    for mesh in (small_sphere, cube, open_box):
        w = winding(mesh.vertices, mesh.faces, mesh.vertices)
        assert np.isfinite(w).all()
    # At a cube corner the incident faces contribute 0 and the three opposite faces subtend an octant: w = 1/8.
    w_corner = winding(cube.vertices, cube.faces, [[CUBE_HALF] * 3])
    np.testing.assert_allclose(w_corner, [1 / 8], atol=1e-3)


def test_chunking_does_not_change_results(small_sphere: trimesh.Trimesh) -> None:
    rng = np.random.default_rng(5)
    surface = geo.sample_surface(small_sphere, 150, rng)
    points = np.concatenate([uniform_points(150, seed=5), surface + rng.normal(0.0, 0.01, surface.shape)])
    results = [
        geo.winding_number(small_sphere.vertices, small_sphere.faces, points, chunk=chunk)
        for chunk in (1, 7, 64, 10_000)
    ]
    for other in results[1:]:
        assert np.array_equal(results[0], other)


@pytest.mark.parametrize("winding", [geo.winding_number, geo.fast_winding_number])
def test_empty_inputs(cube: trimesh.Trimesh, winding) -> None:
    assert winding(cube.vertices, np.zeros((0, 3), int), uniform_points(3)).tolist() == [0, 0, 0]
    assert winding(cube.vertices, cube.faces, np.zeros((0, 3))).shape == (0,)


# --------------------------------------------------------------------------------------------------------------------
# Normalisation and sampling
# --------------------------------------------------------------------------------------------------------------------


def test_normalise_mesh() -> None:
    mesh = trimesh.creation.box(extents=(20.0, 40.0, 10.0))  # e.g. millimetres
    mesh.apply_translation([100.0, -50.0, 30.0])
    original = mesh.vertices.copy()
    normalised, centre, scale = geo.normalise_mesh(mesh)
    np.testing.assert_allclose(centre, [100.0, -50.0, 30.0])
    assert scale == pytest.approx(1 / 40)
    np.testing.assert_allclose(normalised.bounds, [[-0.25, -0.5, -0.125], [0.25, 0.5, 0.125]], atol=1e-12)
    np.testing.assert_allclose(normalised.vertices, (original - centre) * scale)
    np.testing.assert_array_equal(mesh.vertices, original)  # the input is untouched
    with pytest.raises(ValueError, match="longest side"):
        geo.normalise_mesh(trimesh.Trimesh(np.ones((3, 3)), [[0, 1, 2]], process=False))


def test_sample_surface(sphere: trimesh.Trimesh) -> None:
    a = geo.sample_surface(sphere, 1_000, np.random.default_rng(6))
    b = geo.sample_surface(sphere, 1_000, np.random.default_rng(6))
    assert a.dtype == np.float32
    assert a.shape == (1_000, 3)
    np.testing.assert_array_equal(a, b)
    r = np.linalg.norm(a, axis=1)
    assert ((r > SPHERE_RADIUS - 1e-3) & (r < SPHERE_RADIUS + 1e-6)).all()  # on the inscribed facets
    assert geo.sample_surface(sphere, 0, np.random.default_rng(6)).shape == (0, 3)


def test_sample_occupancy(sphere: trimesh.Trimesh, cube: trimesh.Trimesh) -> None:
    n_uniform, n_near = 2_000, 2_000
    points, occupancy = geo.sample_occupancy(sphere, n_uniform, n_near, rng=np.random.default_rng(7))
    assert points.shape == (n_uniform + n_near, 3)
    assert points.dtype == np.float32
    assert occupancy.shape == (n_uniform + n_near,)
    assert occupancy.dtype == np.bool_
    assert (np.abs(points[:n_uniform]) <= HALF).all()

    again = geo.sample_occupancy(sphere, n_uniform, n_near, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(points, again[0])
    np.testing.assert_array_equal(occupancy, again[1])
    other = geo.sample_occupancy(sphere, n_uniform, n_near, rng=np.random.default_rng(8))
    assert not np.array_equal(points, other[0])

    # Labels agree with the analytic sphere, and the near-surface half straddles the surface evenly.
    truth = np.linalg.norm(points, axis=1) < SPHERE_RADIUS
    assert (occupancy == truth).mean() >= 0.995
    for mesh in (sphere, cube):
        _, occ = geo.sample_occupancy(mesh, 0, n_near, rng=np.random.default_rng(9))
        assert 0.3 <= occ.mean() <= 0.7


def test_labelling_speed(sphere: trimesh.Trimesh) -> None:
    """Not asserted: prints labelling throughput for training-sized samples on a ~5k-face mesh (run with -s)."""
    rng = np.random.default_rng(10)
    uniform = rng.uniform(-HALF, HALF, size=(50_000, 3))
    surface = geo.sample_surface(sphere, 50_000, rng)
    sigma = np.where(np.arange(50_000) % 2 == 0, 0.01, 0.05)[:, None]
    points = np.concatenate([uniform, surface + rng.standard_normal(surface.shape) * sigma])
    start = time.perf_counter()
    labels = geo.occupancy_labels(sphere, points)
    seconds = time.perf_counter() - start
    print(
        f"\noccupancy_labels: {len(points)} points (50k uniform + 50k near), {len(sphere.faces)} faces: "
        f"{seconds:.2f} s, {len(points) / seconds:,.0f} points/s"
    )
    assert labels.shape == (len(points),)
