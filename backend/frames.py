"""Output frames. The model's frame is OpenCV camera axes (x right, y down, z forward), centred on the
visible centroid with unit visible radius. Everything is a 4×4 similarity applied to those vertices."""

from __future__ import annotations

from typing import Literal

import numpy as np

Frame = Literal["blender", "camera"]

# Camera axes → Blender axes: x stays right, forward (z) becomes +Y (away from the viewer, so the object
# faces the viewer along −Y, as Blender's front view looks), and down (y) becomes −Z (up is +Z).
CAMERA_TO_BLENDER_AXES = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def blender_axes(gravity: np.ndarray | None = None) -> np.ndarray:
    """3×3 rotation from camera axes to Blender axes (rows: Blender's x, y, z in camera axes).

    Without `gravity` up is the camera's up (−y). With the direction of gravity in camera axes [3], +Z is
    against gravity and +Y is the camera's viewing direction laid flat on the ground, so the object stands
    upright and still faces the viewer along −Y.
    """
    if gravity is None:
        return CAMERA_TO_BLENDER_AXES.copy()
    up = -np.asarray(gravity, dtype=np.float64)
    up /= np.linalg.norm(up)
    forward = np.array([0.0, 0.0, 1.0]) - up[2] * up
    if np.linalg.norm(forward) < 1e-6:  # looking straight down or up: keep the image's up as forward
        forward = np.array([0.0, -1.0, 0.0]) - up[1] * up
    forward /= np.linalg.norm(forward)
    return np.stack([np.cross(forward, up), forward, up])


def elevation_deg(gravity: np.ndarray) -> float:
    """How far the camera looks down (positive) or up, in degrees, from the gravity direction in camera axes."""
    down = np.asarray(gravity, dtype=np.float64)
    return float(np.degrees(np.arcsin(np.clip(down[2] / np.linalg.norm(down), -1.0, 1.0))))


def frame_transform(vertices: np.ndarray, frame: Frame, gravity: np.ndarray | None = None) -> np.ndarray:
    """The 4×4 matrix taking model-frame vertices [V, 3] to `frame`.

    camera: identity (the mesh overlays the photo through the predicted intrinsics after undoing the
        normalisation recorded beside it).
    blender: Z-up, facing −Y, scaled to unit height, centred in X and Y, resting on z = 0. "Up" is against
        `gravity` (its direction in camera axes, from the model's scene head) when given; otherwise the camera's
        up, so a photo taken from above gives a mesh tilted by the camera's elevation.
    """
    if frame == "camera":
        return np.eye(4)
    if frame != "blender":
        raise ValueError(f"unknown frame {frame!r}; choose blender or camera")
    axes = blender_axes(gravity)
    rotated = vertices @ axes.T if len(vertices) else np.zeros((1, 3))
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    height = high[2] - low[2]
    scale = 1.0 / height if height > 1e-9 else 1.0
    offset = -np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2]]) * scale
    matrix = np.eye(4)
    matrix[:3, :3] = axes * scale
    matrix[:3, 3] = offset
    return matrix


def apply_transform(vertices: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """[V, 3] → [V, 3] under a 4×4 matrix."""
    return (vertices @ matrix[:3, :3].T + matrix[:3, 3]).astype(np.float32)
