"""training/pix3d.py on a tiny Pix3D-layout fixture written by the test itself."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from training.pix3d import (
    PIX3D_TO_OPENCV,
    intrinsics,
    load_image_and_mask,
    load_pix3d,
    model_in_camera_frame,
)

# 90° about the model's z axis: x → y, y → −x.
ROT_Z90 = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
TRANS = [0.1, -0.2, 2.5]

CUBE_VERTICES = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.25, 0.25) for z in (-0.1, 0.1)])
CUBE_FACES = [
    (0, 1, 3), (0, 3, 2), (4, 6, 7), (4, 7, 5), (0, 4, 5), (0, 5, 1),
    (2, 3, 7), (2, 7, 6), (0, 2, 6), (0, 6, 4), (1, 5, 7), (1, 7, 3),
]  # fmt: skip


def _write_cube_obj(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"v {x} {y} {z}" for x, y, z in CUBE_VERTICES]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in CUBE_FACES]  # OBJ indices are 1-based
    path.write_text("\n".join(lines) + "\n")


def _write_images(root: Path, category: str, name: str) -> None:
    (root / "img" / category).mkdir(parents=True, exist_ok=True)
    (root / "mask" / category).mkdir(parents=True, exist_ok=True)
    rgb = np.zeros((32, 32, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red, so the value range is checkable
    Image.fromarray(rgb).save(root / "img" / category / f"{name}.png")
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[8:24, 4:20] = 255
    mask[0, 0] = 100  # below the 127 threshold: background
    Image.fromarray(mask).save(root / "mask" / category / f"{name}.png")


def _record(category: str, name: str, model: str, rot_mat: list, **flags: bool) -> dict:
    return {
        "img": f"img/{category}/{name}.png",
        "mask": f"mask/{category}/{name}.png",
        "model": f"model/{category}/{model}/model.obj",
        "category": category,
        "img_size": [32, 32],
        "bbox": [4, 8, 19, 23],
        "rot_mat": rot_mat,
        "trans_mat": TRANS,
        "focal_length": 40.0,
        "truncated": flags.get("truncated", False),
        "occluded": flags.get("occluded", False),
        "slightly_occluded": flags.get("slightly_occluded", False),
    }


@pytest.fixture
def pix3d_root(tmp_path: Path) -> Path:
    records = [
        _record("chair", "0001", "IKEA_A", ROT_Z90),
        _record("sofa", "0002", "IKEA_B", np.eye(3).tolist(), occluded=True),
        _record("chair", "0003", "IKEA_MISSING", np.eye(3).tolist(), truncated=True),
        _record("table", "0004", "IKEA_A", np.eye(3).tolist(), slightly_occluded=True, truncated=True),
    ]
    records[3]["model"] = "model/chair/IKEA_A/model.obj"  # models may be shared across categories' records
    for record in records:
        category, name = record["img"].split("/")[1:]
        _write_images(tmp_path, category, Path(name).stem)
    _write_cube_obj(tmp_path / "model/chair/IKEA_A/model.obj")
    _write_cube_obj(tmp_path / "model/sofa/IKEA_B/model.obj")
    (tmp_path / "pix3d.json").write_text(json.dumps(records))
    return tmp_path


def test_loads_records_and_skips_missing_models(pix3d_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="training.pix3d"):
        samples = load_pix3d(pix3d_root)
    assert [s.category for s in samples] == ["chair", "sofa", "table"]
    assert "skipped 1 of 4" in caplog.text

    chair, sofa, table = samples
    assert (chair.occluded, chair.truncated) == (False, False)
    assert (sofa.occluded, sofa.truncated) == (True, False)
    assert (table.occluded, table.truncated) == (True, True)  # slightly_occluded counts as occluded
    assert chair.image_path == pix3d_root / "img/chair/0001.png"
    assert chair.bbox == (4.0, 8.0, 19.0, 23.0)
    assert chair.img_size == (32, 32)
    assert chair.focal_length_mm == 40.0
    np.testing.assert_array_equal(chair.rotation, ROT_Z90)
    np.testing.assert_array_equal(chair.translation, TRANS)


def test_category_filter_and_truncation(pix3d_root: Path) -> None:
    assert [s.category for s in load_pix3d(pix3d_root, categories=["sofa", "table"])] == ["sofa", "table"]
    assert load_pix3d(pix3d_root, categories=["bed"]) == []
    assert [s.category for s in load_pix3d(pix3d_root, skip_truncated=True)] == ["chair", "sofa"]


def test_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"pix3d\.json"):
        load_pix3d(tmp_path)


def test_model_is_moved_into_opencv_camera_frame(pix3d_root: Path) -> None:
    chair = load_pix3d(pix3d_root, categories=["chair"])[0]
    mesh = model_in_camera_frame(chair)
    # Pix3D's renderer: X = rot_mat · X_obj + trans_mat in a camera frame with x left, y up, z forward.
    expected = (CUBE_VERTICES @ np.array(ROT_Z90).T + TRANS) * np.array([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(mesh.vertices, expected, atol=1e-12)
    np.testing.assert_array_equal(mesh.faces, CUBE_FACES)
    np.testing.assert_array_equal(PIX3D_TO_OPENCV, np.diag([-1.0, -1.0, 1.0]))
    # A proper rotation keeps the (outward) winding: the signed volume keeps its sign.
    source = trimesh.Trimesh(vertices=CUBE_VERTICES, faces=CUBE_FACES, process=False)
    assert abs(source.volume) == pytest.approx(1.0 * 0.5 * 0.2)
    assert mesh.volume == pytest.approx(source.volume)


def test_canonical_view_matches_pix3d_model_axes(pix3d_root: Path) -> None:
    # README: model axes are "+x leftward, +y upward, +z inward, in canonical view" (rot_mat = I).
    sofa = load_pix3d(pix3d_root, categories=["sofa"])[0]
    mesh = model_in_camera_frame(sofa)
    K = intrinsics(sofa)
    uvw = mesh.vertices @ K.T
    pixels = uvw[:, :2] / uvw[:, 2:]
    right = CUBE_VERTICES[:, 0] > 0  # model +x
    up = CUBE_VERTICES[:, 1] > 0  # model +y
    inward = CUBE_VERTICES[:, 2] > 0  # model +z
    assert pixels[right, 0].max() < pixels[~right, 0].min()  # +x lands on the image's left
    assert pixels[up, 1].max() < pixels[~up, 1].min()  # +y lands higher in the image (smaller row)
    assert mesh.vertices[inward, 2].min() > mesh.vertices[~inward, 2].max()  # +z is farther from the camera
    assert K[0, 0] == pytest.approx(40.0 * 32 / 32.0)  # f_px = focal_mm · width / 32 mm sensor
    np.testing.assert_allclose(K[:2, 2], [16.0, 16.0])


def test_image_and_mask(pix3d_root: Path) -> None:
    rgb, mask = load_image_and_mask(load_pix3d(pix3d_root)[0])
    assert rgb.shape == (32, 32, 3)
    assert rgb.dtype == np.float32
    assert mask.shape == (32, 32)
    assert mask.dtype == np.float32
    assert rgb.min() == 0.0
    assert rgb.max() == 1.0
    np.testing.assert_array_equal(rgb[0, 0], [1.0, 0.0, 0.0])
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert mask.sum() == 16 * 16
    assert mask[0, 0] == 0.0
