"""Output frames. The model's frame is OpenCV camera axes (x right, y down, z forward), centred on the
visible centroid with unit visible radius. Everything is a 4×4 similarity applied to those vertices."""

from __future__ import annotations

from typing import Literal

import numpy as np

Frame = Literal["blender", "camera"]

# Camera axes → Blender axes: x stays right, forward (z) becomes +Y (away from the viewer, so the object
# faces the viewer along −Y, as Blender's front view looks), and down (y) becomes −Z (up is +Z).
CAMERA_TO_BLENDER_AXES = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def frame_transform(vertices: np.ndarray, frame: Frame) -> np.ndarray:
    """The 4×4 matrix taking model-frame vertices [V, 3] to `frame`.

    camera: identity (the mesh overlays the photo through the predicted intrinsics after undoing the
        normalisation recorded beside it).
    blender: Z-up, facing −Y, scaled to unit height, centred in X and Y, resting on z = 0. "Up" is the
        camera's up: a photo taken from above gives a mesh tilted by the camera's elevation.
    """
    if frame == "camera":
        return np.eye(4)
    if frame != "blender":
        raise ValueError(f"unknown frame {frame!r}; choose blender or camera")
    rotated = vertices @ CAMERA_TO_BLENDER_AXES.T if len(vertices) else np.zeros((1, 3))
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    height = high[2] - low[2]
    scale = 1.0 / height if height > 1e-9 else 1.0
    offset = -np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2]]) * scale
    matrix = np.eye(4)
    matrix[:3, :3] = CAMERA_TO_BLENDER_AXES * scale
    matrix[:3, 3] = offset
    return matrix


def apply_transform(vertices: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """[V, 3] → [V, 3] under a 4×4 matrix."""
    return (vertices @ matrix[:3, :3].T + matrix[:3, 3]).astype(np.float32)
