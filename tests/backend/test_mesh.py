"""Mesh extraction on analytic fields: coarse-to-fine equals the dense grid, thin parts survive."""

from __future__ import annotations

import numpy as np
import pytest

from backend.mesh import evaluate_grid, extract_mesh, marching_cubes


def sphere(points: np.ndarray, radius: float = 0.8) -> np.ndarray:
    return 10.0 * (radius - np.linalg.norm(points, axis=1))


def torus(points: np.ndarray) -> np.ndarray:
    ring = np.stack([np.linalg.norm(points[:, :2], axis=1) - 0.8, points[:, 2]], axis=1)
    return 10.0 * (0.3 - np.linalg.norm(ring, axis=1))


def thin_plate(points: np.ndarray, half_thickness: float = 0.01) -> np.ndarray:
    """A 2 × 2 plate 0.02 thick, between two planes of the 32³ grid (z = 0 and 0.094): no coarse vertex
    lies inside it."""
    inside_xy = (np.abs(points[:, 0]) < 1) & (np.abs(points[:, 1]) < 1)
    return np.where(inside_xy, 10.0 * (half_thickness - np.abs(points[:, 2] - 0.045)), -10.0)


def sorted_rows(array: np.ndarray) -> np.ndarray:
    return array[np.lexsort(array.T[::-1])]


@pytest.mark.parametrize("field", [sphere, torus, thin_plate])
@pytest.mark.parametrize("resolution", [64, 128])
def test_coarse_to_fine_equals_the_dense_grid(field, resolution):
    mesh, result = extract_mesh(field, resolution)
    dense, dense_result = extract_mesh(field, resolution, dense=True)
    assert dense_result.queries == (resolution + 1) ** 3
    assert result.queries < 0.4 * dense_result.queries
    assert len(mesh.faces) == len(dense.faces) > 0
    assert np.allclose(sorted_rows(mesh.vertices), sorted_rows(dense.vertices))
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(dense.volume, rel=1e-9)


def test_thin_plate_survives_only_thanks_to_the_guard():
    mesh, _ = extract_mesh(thin_plate, 128)
    assert mesh.volume == pytest.approx(2 * 2 * 0.02, rel=0.25)  # 0.02 thick at 0.023 per cell
    # Without the band guard, no coarse corner sees the plate and it vanishes.
    grid = evaluate_grid(thin_plate, 128, band=0.0)
    vertices, _ = marching_cubes(grid)
    assert len(vertices) == 0


def test_sphere_is_accurate_and_outward_facing():
    mesh, _ = extract_mesh(sphere, 128)
    assert mesh.volume > 0  # positive volume: normals point out
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert np.abs(radii - 0.8).max() < 0.01
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * 0.8**3, rel=0.01)


def test_shape_touching_the_box_is_closed():
    mesh, _ = extract_mesh(lambda p: 10.0 * (2.0 - np.linalg.norm(p, axis=1)), 32)
    assert mesh.is_watertight
    assert 1.5 - 3 / 32 <= np.abs(mesh.vertices).max() <= 1.5


def test_empty_field_gives_an_empty_mesh():
    mesh, result = extract_mesh(lambda p: np.full(len(p), -5.0), 64)
    assert len(mesh.faces) == 0
    assert result.queries < (64 + 1) ** 3


def test_queries_are_chunked():
    sizes = []

    def counting(points):
        sizes.append(len(points))
        return sphere(points)

    extract_mesh(counting, 64, chunk_size=1000)
    assert max(sizes) <= 1000


def test_largest_component_and_decimation():
    def two_spheres(points):
        big = 10.0 * (0.6 - np.linalg.norm(points - np.array([0.7, 0, 0]), axis=1))
        small = 10.0 * (0.2 - np.linalg.norm(points + np.array([0.9, 0, 0]), axis=1))
        return np.maximum(big, small)

    both, _ = extract_mesh(two_spheres, 64)
    assert len(both.split(only_watertight=False)) == 2
    main, _ = extract_mesh(two_spheres, 64, largest_component=True)
    assert len(main.split(only_watertight=False)) == 1
    assert main.volume == pytest.approx(4 / 3 * np.pi * 0.6**3, rel=0.03)
    light, _ = extract_mesh(sphere, 64, max_faces=2000)
    assert len(light.faces) <= 2000
    assert light.volume > 0


@pytest.mark.parametrize(("resolution", "initial"), [(100, 32), (1024, 32), (1, 32)])
def test_bad_resolutions_are_refused(resolution, initial):
    with pytest.raises(ValueError, match="resolution"):
        extract_mesh(sphere, resolution, initial_resolution=initial)
