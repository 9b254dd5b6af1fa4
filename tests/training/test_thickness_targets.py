"""The body fitted to an object's depth along every ray (training.thickness_targets) recovers a known body."""

from __future__ import annotations

import numpy as np
import pytest

from backend.mesh import extract_mesh
from backend.silhouette import Thickness, ViewCamera, front_surface, inflate, silhouette_maps
from training.thickness_targets import fit_thickness

SIZE = 224
FOCAL = 4000.0


def _ellipse(rows_radius: float, columns_radius: float) -> np.ndarray:
    rows, columns = np.mgrid[0:SIZE, 0:SIZE]
    return ((rows - 111.5) / rows_radius) ** 2 + ((columns - 111.5) / columns_radius) ** 2 <= 1.0


def _render(mask: np.ndarray, body: Thickness, view: ViewCamera):
    """A synthetic 'object': the inflated body with `body`, as the renderer gives it: the depth map of its front
    and surface samples in camera coordinates."""
    maps = silhouette_maps(mask)
    inflated = inflate(maps, view, 1.5, thickness=body)
    mesh, _ = extract_mesh(inflated.field, 128, 1.5, level=0.0, band=inflated.band, chunk_size=1 << 20)
    fitted = inflated.camera
    surface = np.asarray(mesh.sample(60000)) * fitted.scale + fitted.centroid
    front, visible = front_surface(maps, fitted, body)
    depth = np.where(visible, front[2] * fitted.scale + fitted.centroid[2], 0.0)
    return maps, depth, surface


@pytest.mark.parametrize(
    "body", [Thickness(), Thickness(front=0.4, back=1.6), Thickness(front=1.0, back=0.5, tilt=(0.0, -0.6))]
)
def test_the_fit_recovers_the_body_an_object_was_made_with(body):
    K = np.array([[FOCAL, 0.0, 111.5], [0.0, FOCAL, 111.5], [0.0, 0.0, 1.0]])
    view = ViewCamera(K=K, centroid=np.array([0.0, 0.0, 20.0]), scale=1.0)
    mask = _ellipse(70.0, 40.0)
    maps, depth, surface = _render(mask, body, view)
    fit = fit_thickness(maps, mask, depth, K, surface, view.centre_pixel)
    assert fit is not None
    assert fit.cells > 50
    assert fit.thickness.front == pytest.approx(body.front, abs=0.12)
    assert fit.thickness.back == pytest.approx(body.back, abs=0.12)
    assert fit.thickness.tilt == pytest.approx(body.tilt, abs=0.08)


def test_a_view_with_too_few_usable_cells_has_no_fit():
    K = np.array([[FOCAL, 0.0, 111.5], [0.0, FOCAL, 111.5], [0.0, 0.0, 1.0]])
    view = ViewCamera(K=K, centroid=np.array([0.0, 0.0, 20.0]), scale=1.0)
    mask = _ellipse(6.0, 6.0)  # a dot: a cell or two
    maps, depth, surface = _render(mask, Thickness(), view)
    assert fit_thickness(maps, mask, depth, K, surface, view.centre_pixel) is None
