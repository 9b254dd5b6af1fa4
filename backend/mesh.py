"""Mesh extraction from an occupancy field. Knows nothing about the network: it calls `query_fn`.

Coarse-to-fine evaluation in the spirit of Occupancy Networks' MISE (Mescheder et al., 2019): the field is
evaluated on a coarse grid of cells, only cells near the surface are subdivided, and so on up to the
requested resolution; then marching cubes (scikit-image) runs on the finest grid and the vertices are
mapped back to the query box. Because every fine cell that touches the surface has all its corners
evaluated, the mesh is the one a dense grid would give, at a fraction of the queries.

Which cells count as "near the surface": a cell whose corner values straddle the level, or whose closest
corner value lies within `band` of it (a thin part can fit between coarse corners without any sign change,
but the field next to it is then close to the level), dilated by one cell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

QueryFn = Callable[[np.ndarray], np.ndarray]
"""points [N, 3] float32 in the query box → field values [N] (e.g. occupancy logits)."""


@dataclass
class FieldGrid:
    """Values on the vertices of a regular grid over [-h, h]³; NaN where not evaluated."""

    values: np.ndarray
    """[R+1, R+1, R+1] float32, indexed [i, j, k] along x, y, z."""
    half_extent: float
    queries: int
    """How many points were evaluated to fill it."""

    @property
    def resolution(self) -> int:
        return self.values.shape[0] - 1

    def coordinates(self, index: np.ndarray) -> np.ndarray:
        """Integer vertex indices [N, 3] → points [N, 3] in the query box."""
        return (index.astype(np.float32) / self.resolution * 2.0 - 1.0) * self.half_extent


def _evaluate(query_fn: QueryFn, points: np.ndarray, chunk_size: int) -> np.ndarray:
    values = np.empty(len(points), dtype=np.float32)
    for start in range(0, len(points), chunk_size):
        values[start : start + chunk_size] = np.asarray(query_fn(points[start : start + chunk_size])).reshape(-1)
    return values


def _near_surface_cells(values: np.ndarray, level: float, band: float) -> np.ndarray:
    """[R+1]³ vertex values → [R]³ bool: cells to subdivide."""
    corners = np.stack(
        [values[i : i + values.shape[0] - 1, j : j + values.shape[1] - 1, k : k + values.shape[2] - 1]
         for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    )  # fmt: skip
    above = corners > level
    crossing = above.any(axis=0) & ~above.all(axis=0)
    close = np.abs(corners - level).min(axis=0) <= band
    active = crossing | close
    # Dilate by one cell, so a surface that leaves a cell through a face is followed into the neighbour.
    dilated = active.copy()
    for axis in range(3):
        dilated |= np.roll(active, 1, axis=axis) & _not_first(active.shape, axis)
        dilated |= np.roll(active, -1, axis=axis) & _not_last(active.shape, axis)
    return dilated


def _not_first(shape: tuple[int, ...], axis: int) -> np.ndarray:
    mask = np.ones(shape, dtype=bool)
    index = [slice(None)] * 3
    index[axis] = 0
    mask[tuple(index)] = False
    return mask


def _not_last(shape: tuple[int, ...], axis: int) -> np.ndarray:
    mask = np.ones(shape, dtype=bool)
    index = [slice(None)] * 3
    index[axis] = -1
    mask[tuple(index)] = False
    return mask


def evaluate_grid(
    query_fn: QueryFn,
    resolution: int = 128,
    half_extent: float = 1.5,
    level: float = 0.0,
    initial_resolution: int = 32,
    band: float | None = None,
    chunk_size: int = 65536,
    dense: bool = False,
) -> FieldGrid:
    """Evaluate the field coarse-to-fine up to `resolution` cells per side.

    Args:
        resolution: cells per side of the final grid; `initial_resolution`·2^k for some k ≥ 0.
        level: the iso-value (0 for logits, i.e. probability 0.5).
        band: cells whose nearest corner value is within this of `level` are refined even without a sign
            change (the thin-part guard). Default: 2.0 (logit units).
        chunk_size: points per `query_fn` call; bounds peak memory of the caller's network.
        dense: evaluate every vertex of the final grid (the reference MISE is compared against).
    """
    if resolution < 2 or initial_resolution < 2:
        raise ValueError("resolutions must be at least 2")
    if dense:
        initial_resolution = resolution
    levels = np.log2(resolution / initial_resolution)
    if levels < 0 or not float(levels).is_integer():
        raise ValueError(f"resolution {resolution} must be {initial_resolution}·2^k")
    band = 2.0 if band is None else band

    size = initial_resolution
    axis = np.arange(size + 1)
    index = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    grid = FieldGrid(np.empty((size + 1,) * 3, dtype=np.float32), half_extent, 0)
    grid.values[...] = _evaluate(query_fn, grid.coordinates(index), chunk_size).reshape((size + 1,) * 3)
    grid.queries = len(index)

    while size < resolution:
        active = _near_surface_cells(grid.values, level, band)
        fine_size = size * 2
        fine = np.full((fine_size + 1,) * 3, np.nan, dtype=np.float32)
        fine[::2, ::2, ::2] = grid.values  # coarse vertices are fine vertices: keep what is known
        # Every vertex of every fine cell inside an active coarse cell: upsample the cell mask, then mark
        # the 8 corners of each fine cell (slicing, not index lists, to stay fast at 512³).
        fine_cells = active.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
        needed = np.zeros((fine_size + 1,) * 3, dtype=bool)
        for i in (0, 1):
            for j in (0, 1):
                for k in (0, 1):
                    needed[i : i + fine_size, j : j + fine_size, k : k + fine_size] |= fine_cells
        wanted = np.argwhere(needed & np.isnan(fine))
        grid_fine = FieldGrid(fine, half_extent, grid.queries + len(wanted))
        if len(wanted):
            fine[wanted[:, 0], wanted[:, 1], wanted[:, 2]] = _evaluate(
                query_fn, grid_fine.coordinates(wanted), chunk_size
            )
        _fill_from_coarse(fine, grid.values)
        grid, size = grid_fine, fine_size
    return grid


def _fill_from_coarse(fine: np.ndarray, coarse: np.ndarray) -> None:
    """Give unevaluated fine vertices (far from the surface) the value of the coarse vertex at or before them
    on each axis. Far from the surface all coarse corners of a cell agree in sign, so the sign, which is all
    marching cubes reads there, is right; copying is a tenth of the time trilinear interpolation took."""
    missing = np.isnan(fine)
    if not missing.any():
        return
    size = fine.shape[0]
    upsampled = coarse.repeat(2, axis=0)[:size].repeat(2, axis=1)[:, :size].repeat(2, axis=2)[:, :, :size]
    np.copyto(fine, upsampled, where=missing)


@dataclass
class ExtractedMesh:
    vertices: np.ndarray
    """[V, 3] float32 in the query box's frame."""
    faces: np.ndarray
    """[F, 3] int64, counter-clockwise seen from outside (normals point out of the occupied region)."""
    queries: int
    """Field evaluations spent."""
    dense_queries: int
    """What a dense grid of the same resolution would have spent: (R+1)³."""


def marching_cubes(grid: FieldGrid, level: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Triangulate the level set of a field grid (inside = values above `level`).

    The grid's outermost layer of vertices is set to "outside", so a shape that reaches the query box is
    closed just inside it instead of left open: the mesh is always watertight and within the box.

    Returns:
        vertices [V, 3] float32 in the query box, faces [F, 3] int64 (empty arrays when there is no surface).
    """
    from skimage import measure

    values = np.nan_to_num(grid.values, nan=level - 1.0)
    outside = min(float(values.min()), level) - 1.0
    closed = np.full_like(values, outside)
    closed[1:-1, 1:-1, 1:-1] = values[1:-1, 1:-1, 1:-1]
    if not (closed > level).any():
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    # skimage orients faces along the gradient's descent, i.e. outward for an inside-positive field.
    vertices, faces, _, _ = measure.marching_cubes(closed, level=level, allow_degenerate=False)
    spacing = 2.0 * grid.half_extent / grid.resolution
    vertices = vertices * spacing - grid.half_extent  # vertex index → box coordinates
    return vertices.astype(np.float32), faces.astype(np.int64)


def clean_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    largest_component: bool = False,
    max_faces: int | None = None,
):
    """Merge duplicate vertices, orient faces consistently outward, optionally keep the largest connected
    part and decimate to a face budget. Returns a `trimesh.Trimesh`."""
    import trimesh

    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=True)
    if len(mesh.faces) == 0:
        return mesh
    if largest_component:
        parts = mesh.split(only_watertight=False)
        if len(parts) > 1:
            mesh = max(parts, key=lambda part: part.area)
    if max_faces is not None and len(mesh.faces) > max_faces:
        mesh = mesh.simplify_quadric_decimation(face_count=max_faces)
    trimesh.repair.fix_normals(mesh, multibody=True)
    return mesh


def extract_mesh(
    query_fn: QueryFn,
    resolution: int = 128,
    half_extent: float = 1.5,
    level: float = 0.0,
    initial_resolution: int = 32,
    band: float | None = None,
    chunk_size: int = 65536,
    dense: bool = False,
    largest_component: bool = False,
    max_faces: int | None = None,
):
    """Occupancy field → cleaned triangle mesh.

    Args:
        query_fn: points [N, 3] float32 in [-half_extent, half_extent]³ → values [N]; inside where > level.
        resolution: cells per side of the finest grid (default 128, at most 512).
        initial_resolution: the coarse grid MISE starts from (32; `resolution` must be it times 2^k).
        band, chunk_size, dense: see `evaluate_grid`.
        largest_component, max_faces: see `clean_mesh`.

    Returns:
        (trimesh.Trimesh, ExtractedMesh with the raw arrays and query counts).
    """
    if not 2 <= resolution <= 512:
        raise ValueError(f"resolution must be between 2 and 512, got {resolution}")
    initial_resolution = min(initial_resolution, resolution)
    grid = evaluate_grid(query_fn, resolution, half_extent, level, initial_resolution, band, chunk_size, dense)
    vertices, faces = marching_cubes(grid, level)
    mesh = clean_mesh(vertices, faces, largest_component, max_faces)
    result = ExtractedMesh(
        np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64), grid.queries, (resolution + 1) ** 3
    )
    return mesh, result
