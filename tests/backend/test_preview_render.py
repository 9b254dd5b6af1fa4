"""backend.preview_render: Cycles previews of mesh files, rendered in a Blender subprocess.

The rendering tests need bpy and take about a second each (one subprocess: `import bpy`, a 128² render at 4 samples).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from backend import preview_render
from backend.preview_render import PreviewError, render_preview

ROOT = Path(__file__).resolve().parents[2]
SIZE = 128
SAMPLES = 4

needs_bpy = pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed")


@pytest.fixture(scope="module")
def meshes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small test meshes: a sphere red at x > 0 and blue at x < 0 (PLY, uint8 RGBA vertex colours), a box (GLB),
    a PLY with vertices but no faces, and a file of garbage with a .ply name."""
    folder = tmp_path_factory.mktemp("meshes")
    sphere = trimesh.creation.icosphere(subdivisions=3)
    red, blue = np.array([255, 0, 0, 255], np.uint8), np.array([0, 0, 255, 255], np.uint8)
    sphere.visual.vertex_colors = np.where(sphere.vertices[:, :1] > 0, red, blue)
    paths = {
        "sphere": folder / "sphere.ply",
        "box": folder / "box.glb",
        "points": folder / "points.ply",
        "garbage": folder / "garbage.ply",
    }
    sphere.export(paths["sphere"])
    trimesh.creation.box(extents=(1.0, 0.6, 0.4)).export(paths["box"])
    trimesh.PointCloud(np.random.default_rng(0).normal(size=(50, 3))).export(paths["points"])
    paths["garbage"].write_bytes(b"ply\nformat nonsense 9\n" + bytes(range(256)))
    return paths


def _pixels(path: Path) -> np.ndarray:
    """[H, W, 3] int32 sRGB values of an 8-bit RGB PNG."""
    with Image.open(path) as image:
        assert image.mode == "RGB"
        return np.asarray(image, dtype=np.int32)


def _red_and_blue(pixels: np.ndarray) -> tuple[int, int]:
    """Numbers of clearly red (R ≫ B) and clearly blue (B ≫ R) pixels; the grey background counts as neither."""
    r, b = pixels[..., 0], pixels[..., 2]
    return int((r > b + 80).sum()), int((b > r + 80).sum())


@pytest.mark.blender
@needs_bpy
def test_coloured_ply_shows_both_colours(meshes: dict[str, Path], tmp_path: Path) -> None:
    out = render_preview(meshes["sphere"], tmp_path / "sphere.png", size=SIZE, samples=SAMPLES)
    assert out == (tmp_path / "sphere.png").resolve()
    pixels = _pixels(out)
    assert pixels.shape == (SIZE, SIZE, 3)
    assert pixels.std() > 20, "the preview is (nearly) uniform"
    red, blue = _red_and_blue(pixels)
    # The camera looks from +x (azimuth 35°): more red than blue shows, but both must show clearly.
    assert red > 0.05 * SIZE * SIZE, red
    assert blue > 0.01 * SIZE * SIZE, blue
    # The corners are background: light grey, not black (the film is opaque).
    corner = pixels[:4, :4].reshape(-1, 3)
    assert (corner > 180).all(), corner
    assert np.ptp(corner, axis=1).max() < 8, corner


@pytest.mark.blender
@needs_bpy
def test_glb_box_is_framed_in_clay(meshes: dict[str, Path], tmp_path: Path) -> None:
    pixels = _pixels(render_preview(meshes["box"], tmp_path / "box.png", size=SIZE, samples=SAMPLES))
    assert pixels.shape == (SIZE, SIZE, 3)
    assert pixels.std() > 10
    assert _red_and_blue(pixels) == (0, 0), "an uncoloured mesh renders in grey clay"
    # Framed: the object covers a fair part of the picture and touches no border.
    background = pixels[0, 0]
    foreground = np.abs(pixels - background).max(axis=2) > 12
    assert 0.1 < foreground.mean() < 0.8, foreground.mean()
    border = np.concatenate([foreground[0], foreground[-1], foreground[:, 0], foreground[:, -1]])
    assert not border.any(), "the object touches the border of the picture"


@pytest.mark.blender
@needs_bpy
def test_photo_side_by_side(meshes: dict[str, Path], tmp_path: Path) -> None:
    # A wide green photo: letterboxed into the left half, grey above and below it.
    photo = tmp_path / "photo.png"
    Image.new("RGB", (200, 100), (0, 200, 0)).save(photo)
    out = render_preview(meshes["sphere"], tmp_path / "pair.png", size=SIZE, samples=SAMPLES, photo_path=photo)
    pixels = _pixels(out)
    assert pixels.shape == (SIZE, 2 * SIZE, 3)
    left, right = pixels[:, :SIZE], pixels[:, SIZE:]
    assert (left[SIZE // 2, SIZE // 2] == (0, 200, 0)).all()
    assert abs(left[2, SIZE // 2] - right[2, 2]).max() <= 3, "letterbox and render background are the same grey"
    red, blue = _red_and_blue(right)
    assert red > 0
    assert blue > 0
    assert _red_and_blue(left) == (0, 0)


@pytest.mark.blender
@needs_bpy
def test_match_photo_draws_the_mesh_where_its_camera_sees_it(meshes: dict[str, Path], tmp_path: Path) -> None:
    """A reconstruction JSON whose camera looks at the unit sphere from 4 units away, its principal point off to the
    right of a 300 × 200 green photo: the sphere is drawn over the photo around that point, the photo elsewhere."""
    import json

    photo = tmp_path / "photo.png"
    Image.new("RGB", (300, 200), (0, 200, 0)).save(photo)
    metadata = {
        "frame_transform": np.eye(4).tolist(),
        "normalisation": {"centroid": [0.0, 0.0, 4.0], "scale": 1.0},  # the sphere's centre, 4 units ahead
        "camera": {
            "focal_length_photo_px": 150.0,
            "principal_point_photo_px": [219.5, 99.5],
            "photo_size_px": [300, 200],
        },
    }
    (tmp_path / "sphere.json").write_text(json.dumps(metadata))
    out = tmp_path / "over.png"
    command = [sys.executable, "-m", "backend.preview_render", str(meshes["sphere"]), str(out), "--size", "150"]
    command += ["--samples", "2", "--photo", str(photo), "--match-photo", str(tmp_path / "sphere.json")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    pixels = _pixels(out)
    assert pixels.shape == (100, 150, 3)  # the photo's aspect, its longer side --size
    # The sphere (radius 1 at 4 units, focal 150 px at full size) covers about ±19 px around (110, 50) here.
    assert abs(pixels[50, 110] - (0, 200, 0)).max() > 30
    for corner in (pixels[5, 5], pixels[95, 5], pixels[50, 60]):
        assert (abs(corner - (0, 200, 0)) <= 3).all()


@pytest.mark.blender
@needs_bpy
@pytest.mark.parametrize(("name", "expected"), [("garbage", "cannot read the mesh"), ("points", "no faces")])
def test_unreadable_or_empty_mesh_raises(meshes: dict[str, Path], tmp_path: Path, name: str, expected: str) -> None:
    out = tmp_path / f"{name}.png"
    with pytest.raises(PreviewError) as raised:
        render_preview(meshes[name], out, size=SIZE, samples=SAMPLES)
    message = str(raised.value)
    assert str(meshes[name]) in message
    assert expected in message
    assert "\n" not in message
    assert not out.exists()


def test_missing_mesh_raises(tmp_path: Path) -> None:
    missing = tmp_path / "missing.ply"
    with pytest.raises(PreviewError, match=r"missing\.ply: no such file"):
        render_preview(missing, tmp_path / "out.png")


def test_missing_bpy_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    mesh = tmp_path / "mesh.ply"
    mesh.write_bytes(b"ply\n")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        preview_render.importlib.util, "find_spec", lambda name, *a: None if name == "bpy" else real_find_spec(name, *a)
    )
    with pytest.raises(PreviewError, match=r"mesh\.ply.*install the blender extra: make setup"):
        render_preview(mesh, tmp_path / "out.png")


def test_module_imports_without_bpy() -> None:
    """The parent side must not pull Blender into the pipeline's process."""
    code = "import sys, backend.preview_render; assert 'bpy' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_last_error_line_prefers_our_line() -> None:
    mesh = Path("/data/m.ply")
    stderr = f"noise\n{preview_render.ERROR_PREFIX}{mesh}: the mesh has no faces\nBlender quit\n"
    assert preview_render._last_error_line(stderr, 1, mesh) == "the mesh has no faces"
    assert preview_render._last_error_line("a\nsegfault here\n\n", -11, mesh) == "segfault here"
    assert preview_render._last_error_line("", 1, mesh) == "exit status 1"


def test_cli_without_bpy_exits_with_install_hint(tmp_path: Path) -> None:
    # `sys.modules["bpy"] = None` makes `import bpy` raise ImportError, as on a machine without the extra.
    code = (
        "import sys; sys.modules['bpy'] = None; from backend.preview_render import main; "
        f"sys.exit(main([{str(tmp_path / 'm.ply')!r}, {str(tmp_path / 'o.png')!r}]))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == preview_render.EXIT_NO_BPY, result.stderr
    assert "install the blender extra: make setup" in result.stderr
