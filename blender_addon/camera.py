"""The camera that saw the photo, as the model estimates it: pure maths, no bpy, so tests import it.

The reconstruction's metadata holds the transform from the model's frame (OpenCV camera axes, normalised) to
the mesh's frame, the normalisation (centroid, scale), and the camera in the photo's own pixels (focal length,
principal point, photo size). From them: a Blender camera (pose, lens, sensor fit, lens shift, render size)
through which the mesh lines up with the photo, and `project`, the same camera's projection in plain numpy.

Blender's camera model, as used here: it looks along its local -Z with +Y up; with sensor fit HORIZONTAL
(VERTICAL) the sensor's width (height) spans the render's width (height); a lens shift of 1 moves the image by
the fitted dimension. Pixel coordinates below are continuous, from the top-left corner of the photo, y down
(the centre of pixel (i, j) is at (i + 0.5, j + 0.5)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SENSOR_MM = 36.0
"""The match camera's sensor size along its fitted dimension (Blender's default sensor width)."""


@dataclass(frozen=True)
class MatchCamera:
    rotation: np.ndarray
    """[3, 3]: the camera's local x (right), y (up) and z (backward) axes, as columns, in the mesh's frame."""
    position: np.ndarray
    """[3] in the mesh's frame."""
    lens_mm: float
    sensor_fit: str
    """"HORIZONTAL" for a landscape (or square) photo, "VERTICAL" for a portrait one."""
    sensor_mm: float
    shift_x: float
    shift_y: float
    resolution: tuple[int, int]
    """The photo's (width, height) in pixels: the render size that matches it."""

    @property
    def focal_px(self) -> float:
        return self.lens_mm / self.sensor_mm * max(self.resolution)


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
    return np.stack([right, up, -forward], axis=1), position


def match_camera(metadata: dict) -> MatchCamera:
    """The Blender camera that sees the mesh as the photo showed it (see the module's notes on conventions)."""
    rotation, position = camera_pose(metadata)
    info = metadata["camera"]
    width, height = (int(v) for v in info["photo_size_px"])
    longest = max(width, height)
    focal = float(info["focal_length_photo_px"])
    cx, cy = (float(v) + 0.5 for v in info["principal_point_photo_px"])  # pixel centre → continuous
    return MatchCamera(
        rotation=rotation,
        position=position,
        lens_mm=focal / longest * SENSOR_MM,
        sensor_fit="HORIZONTAL" if width >= height else "VERTICAL",
        sensor_mm=SENSOR_MM,
        shift_x=(width / 2 - cx) / longest,
        shift_y=(cy - height / 2) / longest,
        resolution=(width, height),
    )


def project(camera: MatchCamera, points: np.ndarray) -> np.ndarray:
    """Points [N, 3] in the mesh's frame → [N, 2] continuous photo pixels (x right, y down from the top-left
    corner), through `camera` as Blender renders it. Points behind the camera come out as NaN."""
    local = (np.asarray(points, dtype=np.float64) - camera.position) @ camera.rotation  # camera's x, y, z
    depth = -local[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x, y = local[:, 0] / depth, local[:, 1] / depth
    width, height = camera.resolution
    longest, focal = max(width, height), camera.focal_px
    u = width / 2 - camera.shift_x * longest + focal * x
    v = height / 2 + camera.shift_y * longest - focal * y
    pixels = np.stack([u, v], axis=1)
    pixels[depth <= 0] = np.nan
    return pixels
