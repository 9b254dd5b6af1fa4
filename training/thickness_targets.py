"""The body an inflated silhouette should have, measured on rendered views: the targets of the body head.

The inflated body (`backend.silhouette`) reaches h(p) = sqrt(d(2R − d)) pixels in front of its mirror plane and
as far behind it. The true object, seen through the same pixel, spans camera depths [front(p), back(p)]. Per view
we fit, by least squares over the mask's cells (depths in pixels: z · f / z0),

    front(p) = P(p) − s_front · h(p),      back(p) = P(p) + s_back · h(p),

with one mirror plane P(p) = P0 + a·(u − cu) + b·(v − cv), tilted as the object lies (a bed seen from above
recedes towards the top of the image, a bookcase's top leans towards the camera), and two scales.
`Thickness(s_front, s_back, (a, b))` is then the body that best matches the object's depth along every ray.

The front depth is the rendered depth map. The back depth is the farthest of the object's surface samples
(`surface.npy`) that land in the cell, compared with the thickest profile over the cell. A cell counts only
where enough samples land. Everything here is measured on the true mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.silhouette import (
    SCALE_RANGE,
    TILT_RANGE,
    SilhouetteMaps,
    Thickness,
    ViewCamera,
    half_thickness,
    silhouette_maps,
)
from training.data import layout
from training.dataset import visible_frame

CELL_PX = 8
"""Side of the cells (network-input pixels) over which front and back depths are compared."""
MIN_SAMPLES_PER_CELL = 3
"""Surface samples a cell needs before its farthest one is taken as the back of the object."""
MIN_CELLS = 6
"""Cells a view needs before its fit counts."""


@dataclass(frozen=True)
class ThicknessFit:
    thickness: Thickness
    cells: int
    """Cells the fit used."""
    residual_px: float
    """Root-mean-square depth error of the fit over those cells, in pixels."""
    observations: CellObservations
    """The cells it was fitted to (what the body head's geometric loss compares its bodies with)."""


def camera_surface(object_folder: Path, world_to_camera: np.ndarray) -> np.ndarray:
    """The object's surface samples [N, 3] in camera coordinates."""
    points = np.load(object_folder / layout.SURFACE).astype(np.float64)
    return points @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]


def cell_depth_range(points: np.ndarray, K: np.ndarray, size: int, cell: int = CELL_PX):
    """Nearest and farthest camera z of points [N, 3] per cell of a size² image: (near, far, count), each
    [size // cell, size // cell]; cells without points hold inf, −inf and 0."""
    z = points[:, 2]
    ahead = z > 1e-6
    points, z = points[ahead], z[ahead]
    u = K[0, 0] * points[:, 0] / z + K[0, 1] * points[:, 1] / z + K[0, 2]
    v = K[1, 1] * points[:, 1] / z + K[1, 2]
    cells = size // cell
    column = np.floor((u + 0.5) / cell).astype(int)
    row = np.floor((v + 0.5) / cell).astype(int)
    inside = (column >= 0) & (column < cells) & (row >= 0) & (row < cells)
    index = row[inside] * cells + column[inside]
    near = np.full(cells * cells, np.inf)
    far = np.full(cells * cells, -np.inf)
    np.minimum.at(near, index, z[inside])
    np.maximum.at(far, index, z[inside])
    count = np.bincount(index, minlength=cells * cells)
    return near.reshape(cells, cells), far.reshape(cells, cells), count.reshape(cells, cells)


def _cell_mean(image: np.ndarray, cell: int) -> np.ndarray:
    cells = image.shape[0] // cell
    return image[: cells * cell, : cells * cell].reshape(cells, cell, cells, cell).mean(axis=(1, 3))


OBSERVATION_CHANNELS = ("usable", "h", "h_max", "u", "v", "front", "back")
"""The per-cell arrays of `CellObservations.stacked`, in this order."""


@dataclass(frozen=True)
class CellObservations:
    """What one view's cells say about the object's depth, as [C, C] arrays (C = S / CELL_PX), in pixels."""

    usable: np.ndarray
    """bool: the cell is inside the mask and enough surface samples landed in it."""
    h: np.ndarray
    """the round profile's mean half-thickness over the cell."""
    h_max: np.ndarray
    """its largest over the cell (the back is compared with it)."""
    u: np.ndarray
    v: np.ndarray
    """the cell centre's pixel coordinates relative to the plane's pivot."""
    front: np.ndarray
    back: np.ndarray
    """the true object's nearest (depth map, mean over the cell) and farthest (surface samples) depth."""

    def stacked(self) -> np.ndarray:
        """[7, C, C] float32 in the order of OBSERVATION_CHANNELS; front and back are 0 where not usable."""
        usable = self.usable
        arrays = [usable, self.h, self.h_max, self.u, self.v, np.where(usable, self.front, 0.0)]
        return np.stack([*arrays, np.where(usable, self.back, 0.0)]).astype(np.float32)


def cell_observations(
    maps: SilhouetteMaps,
    mask: np.ndarray,
    depth: np.ndarray,
    K: np.ndarray,
    surface: np.ndarray,
    centre: tuple[float, float],
    cell: int = CELL_PX,
) -> CellObservations | None:
    """One view's cells (see `fit_thickness` for the arguments); None when the view gives no depth scale."""
    size = mask.shape[0]
    z0 = float(depth[mask].mean()) if mask.any() else 0.0
    if z0 <= 0:
        return None
    pixels_per_unit = float(np.sqrt(K[0, 0] * K[1, 1])) / z0
    _, far, count = cell_depth_range(surface, K, size, cell)
    coverage = _cell_mean(mask.astype(np.float64), cell)
    thickness_px = half_thickness(maps).astype(np.float64)
    profile = _cell_mean(thickness_px, cell)
    # The back is the farthest sample over the cell: compared with the thickest profile over it, not the mean.
    cells_per_side = size // cell
    crop = thickness_px[: cells_per_side * cell, : cells_per_side * cell]
    profile_max = crop.reshape(cells_per_side, cell, cells_per_side, cell).max(axis=(1, 3))
    front = _cell_mean(np.where(mask, depth, 0.0), cell) / np.maximum(coverage, 1e-9)
    usable = (coverage >= 0.99) & (count >= MIN_SAMPLES_PER_CELL) & (profile > 0.5) & (far > front)
    rows, columns = np.mgrid[0:cells_per_side, 0:cells_per_side]
    return CellObservations(
        usable=usable,
        h=profile,
        h_max=profile_max,
        u=(columns + 0.5) * cell - 0.5 - centre[0],
        v=(rows + 0.5) * cell - 0.5 - centre[1],
        front=front * pixels_per_unit,
        back=np.where(np.isfinite(far), far, 0.0) * pixels_per_unit,
    )


def fit_thickness(
    maps: SilhouetteMaps,
    mask: np.ndarray,
    depth: np.ndarray,
    K: np.ndarray,
    surface: np.ndarray,
    centre: tuple[float, float],
    cell: int = CELL_PX,
    tilt: bool = True,
) -> ThicknessFit | None:
    """The least-squares `Thickness` of one view (see the module's docstring); None when too few cells qualify.

    Args:
        maps: the silhouette maps of `mask` (and the occluder) the body is inflated from.
        mask: [S, S] bool, the visible object; depth: [S, S] camera z (0 off the object); K: [3, 3] in pixels.
        surface: [N, 3] the object's surface samples in camera coordinates.
        centre: (u, v) where the plane's tilt pivots (`ViewCamera.centre_pixel`).
        tilt: fit the plane's tilt (else it faces the camera).
    """
    seen = cell_observations(maps, mask, depth, K, surface, centre, cell)
    if seen is None:
        return None
    usable = seen.usable
    cells = int(usable.sum())
    if cells < MIN_CELLS:
        return None
    h, h_max = seen.h[usable], seen.h_max[usable]
    u, v = seen.u[usable], seen.v[usable]
    zeros = np.zeros(cells)
    plane = np.stack([np.ones(cells), u, v] if tilt else [np.ones(cells)], axis=1)
    # Unknowns (P0, [a, b,] s_front, s_back): front = P − s_front·h, back = P + s_back·h_max.
    design = np.block([[plane, -h[:, None], zeros[:, None]], [plane, zeros[:, None], h_max[:, None]]])
    observed = np.concatenate([seen.front[usable], seen.back[usable]])
    solution, *_ = np.linalg.lstsq(design, observed, rcond=None)
    residual = float(np.sqrt(np.mean((design @ solution - observed) ** 2)))
    low, high = SCALE_RANGE
    slope = tuple(float(np.clip(x, -TILT_RANGE, TILT_RANGE)) for x in solution[1:3]) if tilt else (0.0, 0.0)
    scales = np.clip(solution[-2:], low, high)
    thickness = Thickness(float(scales[0]), float(scales[1]), slope)
    return ThicknessFit(thickness=thickness, cells=cells, residual_px=residual, observations=seen)


def view_thickness(view_folder: Path, object_folder: Path, tilt: bool = True) -> ThicknessFit | None:
    """`fit_thickness` of one rendered view, inflated from its true visible mask and occluder mask, the plane
    pivoting about the visible surface's centroid."""
    camera = layout.read_camera(view_folder)
    mask = layout.read_mask(view_folder)
    occluder = layout.read_occluder(view_folder)
    depth = layout.read_depth(view_folder)
    K = np.asarray(camera["K"], dtype=np.float64)
    surface = camera_surface(object_folder, np.asarray(camera["world_to_camera"], dtype=np.float64))
    maps = silhouette_maps(mask, occluder)
    centroid, _ = visible_frame(depth, mask, K)
    centre = ViewCamera(K=K, centroid=centroid, scale=1.0).centre_pixel
    return fit_thickness(maps, mask, depth, K, surface, centre, tilt=tilt)
