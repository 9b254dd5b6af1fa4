"""The match camera (blender_addon/camera.py), without Blender: the visible surface the model sees, seen through
the match camera, lands on the photo pixels it came from, for photos of several shapes and sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from backend.model.checkpoint import save_checkpoint
from backend.model.config import get_config
from backend.model.zeroshape import ZeroShapeW
from backend.pipeline import ReconstructOptions, Reconstructor
from backend.preprocess import load_photo
from blender_addon.camera import SENSOR_MM, camera_pose, match_camera, project


@pytest.fixture(scope="module")
def reconstructor(tmp_path_factory):
    torch.manual_seed(1)
    path = save_checkpoint(ZeroShapeW(get_config("tiny")), tmp_path_factory.mktemp("m") / "tiny.safetensors")
    return Reconstructor(path, device="cpu")


def visible_surface(metadata: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Points of a visible surface as the model builds one (crop pixels unprojected with its intrinsics at some
    depth, normalised, moved to the mesh's frame), and the photo pixels they came from (continuous coordinates)."""
    camera = metadata["camera"]
    focal = camera["focal_length_px"]
    cx, cy = camera["principal_point_px"]
    size = camera["image_size_px"]
    u, v = rng.uniform(0, size - 1, (2, 500))
    depth = rng.uniform(1.5, 3.0, 500)
    in_camera = np.stack([(u - cx) / focal * depth, (v - cy) / focal * depth, depth], axis=1)
    normalisation = metadata["normalisation"]
    model = (in_camera - np.asarray(normalisation["centroid"])) / normalisation["scale"]
    transform = np.asarray(metadata["frame_transform"])
    in_mesh = model @ transform[:3, :3].T + transform[:3, 3]
    x0, y0, x1, _ = camera["crop_box_photo_px"]
    per_input = (x1 - x0) / size
    photo = np.stack([x0 + (u + 0.5) * per_input, y0 + (v + 0.5) * per_input], axis=1)
    return in_mesh, photo


@pytest.mark.parametrize("frame", ["blender", "camera"])
@pytest.mark.parametrize("size", [(600, 400), (400, 600), (500, 500), (3000, 2000)])
def test_the_visible_surface_lands_where_it_was_seen(reconstructor, sphere_model, tmp_path, size, frame):
    width, height = size
    rng = np.random.default_rng(width + height)
    pixels = (rng.random((height // 10, width // 10, 3)) * 80 + 120).astype(np.uint8)
    pixels[height // 40 : height // 15, width // 30 : width // 14] = (200, 40, 40)  # an off-centre object
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).resize((width, height), Image.Resampling.NEAREST).save(path)
    metadata = reconstructor.reconstruct(load_photo(path), ReconstructOptions(resolution=32, frame=frame)).metadata
    assert metadata["camera"]["photo_size_px"] == [width, height]
    camera = match_camera(metadata)
    assert camera.resolution == (width, height)
    assert camera.sensor_fit == ("HORIZONTAL" if width >= height else "VERTICAL")
    points, seen_at = visible_surface(metadata, rng)
    landed = project(camera, points)
    # Within a hundredth of a pixel, at any photo size: the IoU of the visible mask is 1 up to rasterisation.
    np.testing.assert_allclose(landed, seen_at, atol=0.01 * max(1.0, width / 600))


def test_in_the_camera_frame_the_camera_sits_at_the_origin_of_the_photo():
    metadata = {
        "frame_transform": np.eye(4).tolist(),
        "normalisation": {"centroid": [0.0, 0.0, 2.0], "scale": 0.5},
    }
    rotation, position = camera_pose(metadata)
    np.testing.assert_allclose(position, [0.0, 0.0, -4.0])  # -centroid / scale
    # A Blender camera looks along its local -Z with +Y up; OpenCV's looks along +Z with +Y down.
    np.testing.assert_allclose(rotation @ [0.0, 0.0, -1.0], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(rotation @ [0.0, 1.0, 0.0], [0.0, -1.0, 0.0])
    assert np.linalg.det(rotation) == pytest.approx(1.0)


def test_lens_and_shift_from_the_photo_camera():
    metadata = {
        "frame_transform": np.eye(4).tolist(),
        "normalisation": {"centroid": [0.0, 0.0, 2.0], "scale": 0.5},
        "camera": {
            "focal_length_photo_px": 900.0,
            "principal_point_photo_px": [299.5, 199.5],
            "photo_size_px": [800, 400],
        },
    }
    camera = match_camera(metadata)
    assert camera.lens_mm == pytest.approx(900.0 / 800 * SENSOR_MM)
    assert camera.shift_x == pytest.approx((400 - 300) / 800)  # the axis 100 px left of the centre
    assert camera.shift_y == pytest.approx(0.0)
    assert project(camera, np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -9.0]]))[0] == pytest.approx([300.0, 200.0])
    assert np.isnan(project(camera, np.array([[0.0, 0.0, -9.0]]))).all()  # behind the camera
