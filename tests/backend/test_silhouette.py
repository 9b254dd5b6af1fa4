"""Shapes from a silhouette: the inflated body is round and smooth, stays inside the visual cone, and carving keeps
a field's outline to the mask."""

from __future__ import annotations

import numpy as np
import pytest

from backend.mesh import extract_mesh
from backend.silhouette import (
    ROUND,
    Thickness,
    ViewCamera,
    carve,
    covering_radius,
    front_surface,
    inflate,
    outline_iou,
    signed_distance,
    silhouette_maps,
)

SIZE = 224
FOCAL = 400.0


def camera(depth: float = 2.0, scale: float = 0.6, focal: float = FOCAL) -> ViewCamera:
    K = np.array([[focal, 0.0, 111.5], [0.0, focal, 111.5], [0.0, 0.0, 1.0]])
    return ViewCamera(K=K, centroid=np.array([0.0, 0.0, depth]), scale=scale)


def disc(radius: float, centre=(111.5, 111.5)) -> np.ndarray:
    rows, columns = np.mgrid[0:SIZE, 0:SIZE]
    return ((columns - centre[0]) ** 2 + (rows - centre[1]) ** 2 <= radius**2).astype(np.float32)


def star(points: int = 5, inner: float = 35.0, outer: float = 90.0) -> np.ndarray:
    rows, columns = np.mgrid[0:SIZE, 0:SIZE]
    angle = np.arctan2(rows - 111.5, columns - 111.5)
    radius = np.hypot(rows - 111.5, columns - 111.5)
    # A pointed star: the outline's radius falls linearly from each tip to the notch between two tips.
    phase = np.abs(((angle * points / (2 * np.pi)) % 1.0) - 0.5) * 2  # 1 at a tip, 0 at a notch
    return (radius <= inner + (outer - inner) * phase).astype(np.float32)


def inflated(mask: np.ndarray, view: ViewCamera, resolution: int = 128, occluder=None, thickness=ROUND):
    body = inflate(silhouette_maps(mask, occluder), view, half_extent=1.5, thickness=thickness)
    mesh, _ = extract_mesh(body.field, resolution, 1.5, level=0.0, band=body.band, chunk_size=1 << 20)
    return mesh, body.camera


def test_signed_distance_is_positive_inside_and_crosses_zero_at_the_outline():
    distance = signed_distance(disc(50.0))
    assert distance[111, 111] == pytest.approx(50.0 - np.sqrt(0.5), abs=1.0)
    assert distance[0, 0] < -80
    # Along a row through the centre the outline sits between columns 161 and 162 (radius 50 from 111.5).
    assert distance[111, 161] > 0 > distance[111, 162]


@pytest.mark.parametrize("focal", [FOCAL, 4000.0])
def test_a_disc_mask_gives_a_sphere_like_solid(focal):
    mesh, fitted = inflated(disc(60.0), camera(focal=focal))
    assert mesh.is_watertight
    points = np.asarray(mesh.vertices) * fitted.scale + fitted.centroid  # camera coordinates
    extent = points.max(axis=0) - points.min(axis=0)
    # As deep as it is wide, and round: its volume is a sphere's. Through a short lens the body fills the disc's
    # cone, whose back is wider than its front (by 1 + 2·60/400 here), so it is a sphere only up to that.
    tolerance = 0.03 if focal > 1000 else 0.06
    assert extent[2] == pytest.approx(extent[0], rel=tolerance)
    assert extent[1] == pytest.approx(extent[0], rel=0.01)
    radius = extent[:2].mean() / 2
    assert mesh.volume * fitted.scale**3 == pytest.approx(4 / 3 * np.pi * radius**3, rel=0.08)
    # Every vertex lies near the sphere about the body's centre: smooth, no voxel steps or flat caps.
    centre = (points.max(axis=0) + points.min(axis=0)) / 2
    distances = np.linalg.norm(points - centre, axis=1)
    assert distances.std() / distances.mean() < (0.015 if focal > 1000 else 0.05)


def test_a_bar_becomes_a_round_rod_and_a_thin_handle_a_thin_tube():
    mask = np.zeros((SIZE, SIZE), np.float32)
    mask[100:124, 20:150] = 1.0  # a bar 24 px thick ...
    mask = np.maximum(mask, disc(45.0, (160.0, 111.5)))  # ... into a disc of radius 45
    distance = signed_distance(mask)
    radius = covering_radius(distance > 0, distance)
    # Far along the bar, the covering disc is the bar's own half-width, not the big disc's radius.
    assert radius[112, 40] == pytest.approx(12.0, abs=1.5)
    assert radius[112, 160] == pytest.approx(45.0, abs=2.0)
    mesh, fitted = inflated(mask, camera(focal=4000.0))
    points = np.asarray(mesh.vertices) * fitted.scale + fitted.centroid
    column = (points[:, 0] / points[:, 2]) * 4000.0 + 111.5
    along_bar = np.abs(column - 50) < 2
    depth = points[along_bar, 2].max() - points[along_bar, 2].min()
    assert depth * 4000.0 / 2.0 == pytest.approx(24.0, rel=0.15)  # as thick as it is wide: round


def test_the_star_outline_comes_back_through_the_camera():
    mask = star()
    view = camera()
    mesh, fitted = inflated(mask, view)
    assert mesh.is_watertight
    assert outline_iou(np.asarray(mesh.vertices), np.asarray(mesh.faces), fitted, mask) >= 0.95


def test_the_body_reaches_behind_an_occluder_but_not_into_it_far():
    mask = disc(50.0)
    occluder = np.zeros_like(mask, dtype=bool)
    occluder[:, 140:] = True  # something hides the disc's right side
    mask[:, 140:] = 0.0
    maps = silhouette_maps(mask, occluder)
    assert maps.cone[111, 150] > 0  # the cone keeps the occluded pixels
    assert maps.distance[111, 150] > 0  # the body continues just behind the occluder ...
    assert maps.distance[111, 220] < 0  # ... but is not the occluder's own shape


def test_front_surface_is_in_front_of_the_mirror_plane_and_inside_the_mask():
    maps = silhouette_maps(disc(40.0))
    view = camera()
    points, visible = front_surface(maps, view)
    assert visible.sum() == pytest.approx(np.pi * 40**2, rel=0.03)
    assert (points[2][visible] <= 1e-6).all()  # z ≤ the centroid's depth: facing the camera
    assert (points[:, ~visible] == 0).all()


def test_carving_keeps_a_field_inside_the_cone_and_skips_points_far_outside():
    mask = star()
    view = camera()

    def ball(points):
        return 20.0 * (0.9 - np.linalg.norm(points, axis=1))  # a ball much larger than the star's cone

    field = carve(ball, silhouette_maps(mask), view)
    mesh, result = extract_mesh(field, 64, 1.5, level=0.0, chunk_size=1 << 20)
    assert field.queried < result.queries / 2  # most points never reached the field
    assert outline_iou(np.asarray(mesh.vertices), np.asarray(mesh.faces), view, mask) >= 0.9
    uncarved, _ = extract_mesh(ball, 64, 1.5, level=0.0)
    assert outline_iou(np.asarray(uncarved.vertices), np.asarray(uncarved.faces), view, mask) < 0.7


def _camera_points(mesh, fitted: ViewCamera) -> np.ndarray:
    return np.asarray(mesh.vertices) * fitted.scale + fitted.centroid


def test_thickness_scales_the_body_in_front_of_and_behind_its_plane_apart():
    view = camera(focal=4000.0)  # a long lens: depth offsets are pixels at the plane without perspective
    mesh, fitted = inflated(disc(60.0), view, thickness=Thickness(front=0.25, back=1.5))
    assert mesh.is_watertight
    points = _camera_points(mesh, fitted)
    plane = view.centroid[2]
    pixels = 4000.0 / plane
    assert (plane - points[:, 2].min()) * pixels == pytest.approx(0.25 * 60.0, rel=0.1)
    assert (points[:, 2].max() - plane) * pixels == pytest.approx(1.5 * 60.0, rel=0.05)
    extent = points.max(axis=0) - points.min(axis=0)
    assert extent[0] == pytest.approx(120.0 / pixels, rel=0.03)  # the outline is the mask's, whatever the depth


def test_a_tilted_plane_puts_the_top_of_the_body_farther_than_its_bottom():
    view = camera(focal=4000.0)
    mask = np.zeros((SIZE, SIZE), np.float32)
    mask[40:184, 90:134] = 1.0  # a tall post 44 px wide
    mesh, fitted = inflated(mask, view, thickness=Thickness(tilt=(0.0, -0.5)))
    points = _camera_points(mesh, fitted)
    row = points[:, 1] / points[:, 2] * 4000.0 + 111.5
    top, bottom = points[row < 60], points[row > 164]
    # The plane's depth changes by 0.5 px per image row.
    difference = (top[:, 2].mean() - bottom[:, 2].mean()) * 4000.0 / view.centroid[2]
    assert difference == pytest.approx(0.5 * (174 - 50), rel=0.15)  # mean rows of the two ends: 50 and 174
    assert outline_iou(np.asarray(mesh.vertices), np.asarray(mesh.faces), fitted, mask) >= 0.93


def test_front_surface_follows_the_thickness():
    maps = silhouette_maps(disc(40.0))
    view = camera(focal=4000.0)
    round_points, visible = front_surface(maps, view)
    thin_points, _ = front_surface(maps, view, Thickness(front=0.5))
    ratio = thin_points[2][visible].min() / round_points[2][visible].min()
    assert ratio == pytest.approx(0.5, rel=0.05)  # the nearest point is half as far in front of the plane


def test_thickness_from_a_body_head_row_is_clipped_to_the_fitted_range():
    body = Thickness.from_body(np.array([0.2, -0.4, np.log(0.5), 10.0]))
    assert body.tilt == pytest.approx((0.2, -0.4))
    assert body.front == pytest.approx(0.5)
    assert body.back == pytest.approx(4.0)  # e^10 clipped
    with pytest.raises(ValueError, match="positive"):
        Thickness(front=0.0)
