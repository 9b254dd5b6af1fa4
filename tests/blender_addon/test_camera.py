"""The match camera's maths (blender_addon/camera.py), without Blender."""

from __future__ import annotations

import numpy as np
import pytest

from blender_addon.camera import SENSOR_WIDTH_MM, camera_pose, lens_mm


def metadata(transform: np.ndarray, centroid=(0.0, 0.0, 2.0), scale: float = 0.5) -> dict:
    return {
        "frame_transform": transform.tolist(),
        "normalisation": {"centroid": list(centroid), "scale": scale},
        "camera": {"focal_length_px": 280.0, "image_size_px": 224},
    }


def test_in_the_camera_frame_the_camera_sits_at_the_origin_of_the_photo():
    rotation, position = camera_pose(metadata(np.eye(4)))
    # The normalised object is centred: the camera, at the camera frame's origin, is at -centroid / scale.
    np.testing.assert_allclose(position, [0.0, 0.0, -4.0])
    # A Blender camera looks along its local -Z with +Y up; OpenCV's camera looks along +Z with +Y down.
    np.testing.assert_allclose(rotation @ [0.0, 0.0, -1.0], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(rotation @ [0.0, 1.0, 0.0], [0.0, -1.0, 0.0])
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)


def test_the_pose_follows_the_frame_transform():
    turn = np.eye(4)
    turn[:3, :3] = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]  # a quarter turn about x
    turn[:3, 3] = [0.0, 0.0, 0.5]
    rotation, position = camera_pose(metadata(turn))
    np.testing.assert_allclose(position, turn[:3, :3] @ [0.0, 0.0, -4.0] + [0.0, 0.0, 0.5])
    np.testing.assert_allclose(rotation @ [0.0, 0.0, -1.0], turn[:3, :3] @ [0.0, 0.0, 1.0])


def test_lens_from_the_network_focal_length():
    assert lens_mm(metadata(np.eye(4))) == pytest.approx(280.0 / 224 * SENSOR_WIDTH_MM)
