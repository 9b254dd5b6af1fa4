"""Assets only Blender reads (FBX, .blend) → GLB, in a Blender process of their own.

    python -m training.data.convert_blender INPUT.fbx|INPUT.blend OUTPUT.glb

Every mesh object of the file is exported with its modifiers and transforms applied, in Blender's own axes
(Z up, no glTF Y-up conversion), so the result loads with trimesh in the Z-up convention of the dataset.
Runs in a subprocess because it imports bpy (see `convert_to_glb`); nothing else in `training.data` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

BLENDER_ONLY_SUFFIXES = (".fbx", ".blend")
ROOT = Path(__file__).resolve().parents[2]


class ConversionError(RuntimeError):
    """The asset could not be converted; the message names the file and the reason."""


def convert_to_glb(source: str | Path, target: str | Path, timeout_s: float = 300.0) -> Path:
    """Convert an FBX or .blend file to GLB with Blender (bpy) in a subprocess; returns `target`."""
    source, target = Path(source).resolve(), Path(target).resolve()
    if source.suffix.lower() not in BLENDER_ONLY_SUFFIXES:
        raise ConversionError(f"{source}: only {', '.join(BLENDER_ONLY_SUFFIXES)} files need Blender to convert")
    command = [sys.executable, "-m", "training.data.convert_blender", str(source), str(target)]
    with tempfile.TemporaryDirectory(prefix="zeroshape-convert-") as resources:
        # Keeps bpy from writing its user configuration under ~/.config/blender.
        env = {**os.environ, "BLENDER_USER_RESOURCES": resources}
        try:
            result = subprocess.run(
                command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise ConversionError(f"{source}: Blender did not finish converting it in {timeout_s:g} s") from None
    if result.returncode != 0 or not target.is_file():
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {result.returncode}"
        raise ConversionError(f"{source}: Blender cannot convert it ({reason})")
    return target


def _convert(bpy, source: Path, target: Path) -> int:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    if source.suffix.lower() == ".blend":
        bpy.ops.wm.open_mainfile(filepath=str(source), load_ui=False)
    else:
        bpy.ops.import_scene.fbx(filepath=str(source))
    meshes = [obj for obj in bpy.context.scene.objects if obj.type == "MESH"]
    if not meshes:
        print(f"{source}: no mesh objects in the file", file=sys.stderr)
        return 2
    bpy.ops.object.select_all(action="DESELECT")
    for obj in meshes:
        obj.hide_set(False)
        obj.select_set(True)
    bpy.ops.export_scene.gltf(
        filepath=str(target),
        export_format="GLB",
        use_selection=True,
        export_apply=True,
        export_yup=False,
        export_materials="EXPORT",
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        print("usage: python -m training.data.convert_blender INPUT.fbx|INPUT.blend OUTPUT.glb", file=sys.stderr)
        return 2
    import bpy

    return _convert(bpy, Path(args[0]), Path(args[1]))


if __name__ == "__main__":
    sys.exit(main())
