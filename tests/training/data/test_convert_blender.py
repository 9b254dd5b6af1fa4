"""Asset formats and axes: FBX and .blend through Blender, Y-up files turned upright."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import trimesh

from training.data.convert_blender import ConversionError, convert_to_glb
from training.data.render import load_mesh
from training.data.sources import ObjectSource, folder_objects

ROOT = Path(__file__).resolve().parents[3]
needs_bpy = pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed")

# A tall, narrow, shallow box: 0.2 wide (x), 0.3 deep, 0.9 tall, so "which axis is up" is unambiguous.
WIDTH, DEPTH, HEIGHT = 0.2, 0.3, 0.9


def _blender_assets(folder: Path) -> tuple[Path, Path]:
    """An FBX and a .blend holding the tall box (Blender axes: Z up), written by Blender itself."""
    fbx, blend = folder / "tall.fbx", folder / "tall.blend"
    script = textwrap.dedent(
        f"""
        import bpy
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.ops.mesh.primitive_cube_add(size=1.0)
        box = bpy.context.active_object
        box.scale = ({WIDTH}, {DEPTH}, {HEIGHT})
        bpy.ops.export_scene.fbx(filepath={str(fbx)!r}, use_selection=True)
        bpy.ops.wm.save_as_mainfile(filepath={str(blend)!r})
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=300, cwd=ROOT)
    return fbx, blend


@pytest.mark.blender
@needs_bpy
def test_fbx_and_blend_assets_load_upright(tmp_path):
    fbx, blend = _blender_assets(tmp_path)
    for path in (fbx, blend):
        source = ObjectSource(f"asset-{path.stem}", "box", "test", str(path), 0, "z")
        mesh = load_mesh(source)
        assert mesh.extents == pytest.approx([WIDTH, DEPTH, HEIGHT], abs=1e-3), path.suffix
        assert len(mesh.faces) == 12


@pytest.mark.blender
@needs_bpy
def test_conversion_errors_name_the_file(tmp_path):
    broken = tmp_path / "broken.fbx"
    broken.write_bytes(b"not an fbx file")
    with pytest.raises(ConversionError, match=r"broken\.fbx"):
        convert_to_glb(broken, tmp_path / "out.glb")
    with pytest.raises(ConversionError, match="only"):
        convert_to_glb(tmp_path / "mesh.obj", tmp_path / "out.glb")


def test_y_up_formats_are_turned_upright(tmp_path):
    # The same tall box written Y up (as glTF specifies and most OBJ exporters do) and Z up (as PLY from CAD).
    y_up = trimesh.creation.box(extents=(WIDTH, HEIGHT, DEPTH))
    y_up.export(tmp_path / "tall.glb")
    y_up.export(tmp_path / "tall.obj")
    trimesh.creation.box(extents=(WIDTH, DEPTH, HEIGHT)).export(tmp_path / "tall.ply")
    objects = {Path(o.path).suffix: o for o in folder_objects(tmp_path)}
    assert {suffix: o.up_axis for suffix, o in objects.items()} == {".glb": "y", ".obj": "y", ".ply": "z"}
    for suffix, source in objects.items():
        assert load_mesh(source).extents == pytest.approx([WIDTH, DEPTH, HEIGHT], abs=1e-6), suffix

    # Forcing the axis overrides the per-format guess; a wrong guess lays the box on its side.
    forced = {Path(o.path).suffix: o for o in folder_objects(tmp_path, up_axis="z")}
    assert np.argmax(load_mesh(forced[".glb"]).extents) == 1
    with pytest.raises(ValueError, match="up axis"):
        folder_objects(tmp_path, up_axis="x")


def test_y_up_rotation_is_proper_and_keeps_the_front():
    from training.data.render import Y_UP_TO_Z_UP

    rotation = Y_UP_TO_Z_UP[:3, :3]
    assert np.allclose(rotation @ rotation.T, np.eye(3))
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    # Y up becomes Z up; glTF's front (+Z) becomes the dataset's front (−Y).
    assert np.allclose(rotation @ [0, 1, 0], [0, 0, 1])
    assert np.allclose(rotation @ [0, 0, 1], [0, -1, 0])
