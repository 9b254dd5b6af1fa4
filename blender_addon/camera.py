"""The camera that saw the photo, as the model estimates it: pure maths, no bpy, so tests import it.

The reconstruction's metadata holds the transform from the model's frame (OpenCV camera axes, normalised) to
the mesh's frame, the normalisation (centroid, scale) and the network's intrinsics; from them, the camera's
pose in the mesh's frame and a lens for a Blender camera.
"""

from __future__ import annotations

import numpy as np

SENSOR_WIDTH_MM = 36.0
"""The match camera's sensor width (Blender's default), with sensor fit HORIZONTAL."""


def camera_pose(metadata: dict) -> tuple[np.ndarray, np.ndarray]:
    """(rotation [3, 3], position [3]) of a Blender camera (looking along its local -Z, +Y up) placed where the
    photo's camera was, in the mesh's frame."""
    transform = np.asarray(metadata["frame_transform"], dtype=np.float64)  # model frame → mesh frame
    normalisation = metadata["normalisation"]
    centroid, scale = np.asarray(normalisation["centroid"]), float(normalisation["scale"])
    camera_model = -centroid / scale  # the camera sits at the camera-frame origin
    position = transform[:3, :3] @ camera_model + transform[:3, 3]
    forward = transform[:3, :3] @ np.array([0.0, 0.0, 1.0])
    down = transform[:3, :3] @ np.array([0.0, 1.0, 0.0])
    forward /= np.linalg.norm(forward)
    up = -down / np.linalg.norm(down)
    right = np.cross(forward, up)
    # Blender cameras look along their local -Z with +Y up.
    return np.stack([right, up, -forward], axis=1), position


def lens_mm(metadata: dict, sensor_width_mm: float = SENSOR_WIDTH_MM) -> float:
    """The focal length in millimetres for a camera of this sensor width, from the network input's focal length."""
    info = metadata["camera"]
    return info["focal_length_px"] / info["image_size_px"] * sensor_width_mm
