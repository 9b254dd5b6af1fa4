"""The dataset's on-disk layout: what the renderer writes, the readers give back."""

from __future__ import annotations

import numpy as np

from training.data import layout


def test_a_view_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    depth = rng.random((8, 8), dtype=np.float32)
    mask = rng.random((8, 8)) > 0.5
    occluder = ~mask
    view = layout.view_folder(layout.object_folder(tmp_path, "thing"), 3)
    view.mkdir(parents=True)
    layout.write_view(view, rgb, depth, mask, occluder, {"K": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "scene": "occluded"})
    assert view.name == "view_003"
    np.testing.assert_array_equal(layout.read_rgb(view), rgb)
    np.testing.assert_array_equal(layout.read_depth(view), depth)
    np.testing.assert_array_equal(layout.read_mask(view), mask)
    np.testing.assert_array_equal(layout.read_mask_image(view), mask.astype(np.uint8) * 255)
    np.testing.assert_array_equal(layout.read_occluder(view), occluder)
    assert layout.read_camera(view)["scene"] == "occluded"
    assert layout.view_folders(view.parent) == [view]


def test_a_clean_view_has_no_occluder_file(tmp_path):
    view = tmp_path / "view_000"
    view.mkdir()
    mask = np.ones((4, 4), bool)
    layout.write_view(view, np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.float32), mask, None, {})
    assert not (view / layout.OCCLUDER).exists()
    assert layout.read_occluder(view) is None


def test_an_object_is_done_only_once_marked(tmp_path):
    folder = layout.object_folder(tmp_path, "thing")
    folder.mkdir(parents=True)
    layout.write_object_info(folder, {"object_id": "thing", "category": "chair"})
    points = np.random.default_rng(1).random((1001, 3)).astype(np.float32) - 0.5
    occupancy = points[:, 0] > 0
    layout.write_occupancy(folder, points, occupancy)
    assert not layout.is_done(folder)
    layout.mark_done(folder)
    assert layout.is_done(folder)
    assert layout.read_object_info(folder)["category"] == "chair"
    read_points, read_labels = layout.read_occupancy(folder)
    np.testing.assert_allclose(read_points, points, atol=1e-3)  # stored as float16
    np.testing.assert_array_equal(read_labels, occupancy)  # 1001 labels: the packed bits' padding is cut off
