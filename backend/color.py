"""Per-vertex colours: projected from the photo where the surface is seen, propagated to hidden parts."""

from __future__ import annotations

import numpy as np


def sample_bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """image [H, W, C], pixel coordinates x, y [N] (pixel centres at integers) → [N, C]; clamped at edges."""
    height, width = image.shape[:2]
    x = np.clip(x, 0, width - 1)
    y = np.clip(y, 0, height - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    tx, ty = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0] * (1 - tx) + image[y0, x1] * tx
    bottom = image[y1, x0] * (1 - tx) + image[y1, x1] * tx
    return top * (1 - ty) + bottom * ty


def vertex_colors(
    vertices: np.ndarray,
    visible_points: np.ndarray,
    visible: np.ndarray,
    K: np.ndarray,
    centroid: np.ndarray,
    scale: float,
    image: np.ndarray,
    image_to_photo: tuple[float, float, float] | None = None,
    photo: np.ndarray | None = None,
    tolerance: float = 0.04,
) -> tuple[np.ndarray, np.ndarray]:
    """Colour every vertex of a mesh in the model's normalised frame.

    A vertex is *seen* when it projects inside the visible mask and lies within `tolerance` (normalised
    units, where the visible part has radius 1; plus three pixel footprints) of the visible shape at that
    pixel: the depth map is then what hides or reveals it. Seen vertices take the photo's colour there;
    hidden ones take the colour of the nearest seen vertex, which continues the visible pattern round the
    back instead of inventing one.

    Args:
        vertices: [V, 3] normalised frame. visible_points: [3, S, S] the visible shape per pixel.
        visible: [S, S] bool. K: [3, 3] intrinsics in network-input pixels.
        centroid: [3], scale: the normalisation (camera = normalised·scale + centroid).
        image: [S, S, 3] the network input in [0, 1].
        image_to_photo: (x0, y0, photo pixels per input pixel) to sample the full-resolution photo instead.
        photo: [H, W, 3] the full photo in [0, 1].

    Returns:
        (colours [V, 4] uint8 RGBA, seen [V] bool).
    """
    count = len(vertices)
    if count == 0:
        return np.zeros((0, 4), np.uint8), np.zeros(0, bool)
    camera = vertices.astype(np.float64) * scale + centroid
    z = np.maximum(camera[:, 2], 1e-9)
    u = K[0, 0] * camera[:, 0] / z + K[0, 2]
    v = K[1, 1] * camera[:, 1] / z + K[1, 2]
    size = visible.shape[0]
    col, row = np.round(u).astype(int), np.round(v).astype(int)
    inside = (camera[:, 2] > 0) & (col >= 0) & (col < size) & (row >= 0) & (row < size)
    seen = np.zeros(count, dtype=bool)
    index = np.flatnonzero(inside)
    surface = visible_points[:, row[index], col[index]].T  # [n, 3]
    # Rounding to the nearest pixel moves the surface point by up to about a pixel's footprint (more on
    # slopes); allow three footprints on top of the tolerance.
    footprint = z[index] / (K[0, 0] * scale)
    close = np.linalg.norm(surface - vertices[index], axis=1) < tolerance + 3 * footprint
    seen[index[close & visible[row[index], col[index]]]] = True

    rgb = np.empty((count, 3), dtype=np.float64)
    if seen.any():
        if photo is not None and image_to_photo is not None:
            x0, y0, step = image_to_photo
            rgb[seen] = sample_bilinear(photo, x0 + (u[seen] + 0.5) * step - 0.5, y0 + (v[seen] + 0.5) * step - 0.5)
        else:
            rgb[seen] = sample_bilinear(image, u[seen], v[seen])
        hidden = ~seen
        if hidden.any():
            from scipy.spatial import cKDTree

            _, nearest = cKDTree(vertices[seen]).query(vertices[hidden])
            rgb[hidden] = rgb[seen][nearest]
    else:
        # Nothing of the mesh lines up with the photo: the object's mean colour is the honest guess.
        rgb[:] = image[visible].mean(axis=0) if visible.any() else 0.7
    rgba = np.concatenate([np.clip(rgb * 255 + 0.5, 0, 255), np.full((count, 1), 255.0)], axis=1)
    return rgba.astype(np.uint8), seen
