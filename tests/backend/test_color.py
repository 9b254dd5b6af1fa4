"""Vertex colours projected from the photo: a sphere seen by a pinhole camera, rendered analytically."""

from __future__ import annotations

import numpy as np

from backend.color import sample_bilinear, vertex_colors


def test_bilinear_sampling_interpolates_between_pixel_centres():
    image = np.array([[[0.0], [1.0]], [[2.0], [3.0]]])
    values = sample_bilinear(image, np.array([0.0, 0.5, 1.0, 0.5, 5.0]), np.array([0.0, 0.0, 1.0, 0.5, -3.0]))
    assert np.allclose(values[:, 0], [0.0, 0.5, 3.0, 1.5, 1.0])


def render_sphere(size=64, focal=80.0, distance=3.0):
    """A unit sphere at (0, 0, distance) in camera axes: its visible surface per pixel, as the model's
    normalised visible shape would hold it (here the normalisation is the identity about the centre)."""
    K = np.array([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1.0]])
    v, u = np.mgrid[0:size, 0:size].astype(float)
    rays = np.stack([(u - size / 2) / focal, (v - size / 2) / focal, np.ones_like(u)], axis=-1)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    centre = np.array([0, 0, distance])
    b = rays @ centre
    disc = b**2 - (distance**2 - 1.0)
    visible = disc > 0
    t = b - np.sqrt(np.maximum(disc, 0))
    points = rays * t[..., None] - centre  # relative to the centre = "normalised frame"
    points[~visible] = 0
    return K, points.transpose(2, 0, 1), visible, centre


def test_seen_vertices_take_the_photo_colour_and_hidden_ones_continue_it():
    size = 64
    K, visible_points, visible, centre = render_sphere(size)
    image = np.zeros((size, size, 3))
    image[:, : size // 2] = [1.0, 0.0, 0.0]  # left half red
    image[:, size // 2 :] = [0.0, 0.0, 1.0]  # right half blue
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(2000, 3))
    vertices = directions / np.linalg.norm(directions, axis=1, keepdims=True)

    colors, seen = vertex_colors(vertices, visible_points, visible, K, centre, 1.0, image)

    assert colors.shape == (2000, 4)
    assert colors.dtype == np.uint8
    assert (colors[:, 3] == 255).all()
    front = vertices[:, 2] < -0.6  # well inside the visible cap (its rim is at z = -1/3)
    back = vertices[:, 2] > 0.3
    assert seen[front].mean() > 0.97
    assert not seen[back].any()
    left, right = vertices[:, 0] < -0.2, vertices[:, 0] > 0.2
    red, blue = colors[:, 0] > 200, colors[:, 2] > 200
    assert red[seen & left].all()
    assert blue[seen & right].all()
    # The back continues the visible pattern: left side red, right side blue.
    assert red[back & left].mean() > 0.9
    assert blue[back & right].mean() > 0.9


def test_full_resolution_photo_is_sampled_when_given():
    size = 64
    K, visible_points, visible, centre = render_sphere(size)
    image = np.full((size, size, 3), 0.5)
    photo = np.zeros((4 * size, 4 * size, 3))
    photo[..., 1] = 1.0  # green: only the photo is green, the network input is grey
    vertices = np.array([[0.0, 0.0, -1.0]])
    colors, seen = vertex_colors(
        vertices, visible_points, visible, K, centre, 1.0, image, image_to_photo=(0.0, 0.0, 4.0), photo=photo
    )
    assert seen.all()
    assert tuple(colors[0, :3]) == (0, 255, 0)


def test_nothing_seen_falls_back_to_the_mean_object_colour():
    size = 32
    K, visible_points, visible, centre = render_sphere(size)
    image = np.full((size, size, 3), 0.2)
    vertices = np.array([[0.0, 0.0, 5.0], [0.0, 5.0, 0.0]])  # far from the visible surface
    colors, seen = vertex_colors(vertices, visible_points, visible, K, centre, 1.0, image)
    assert not seen.any()
    assert (colors[:, :3] == 51).all()


def test_empty_mesh():
    K, visible_points, visible, centre = render_sphere(16)
    colors, seen = vertex_colors(np.zeros((0, 3)), visible_points, visible, K, centre, 1.0, np.zeros((16, 16, 3)))
    assert colors.shape == (0, 4)
    assert seen.shape == (0,)
