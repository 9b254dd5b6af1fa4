"""Package the Blender add-on: `python build_addon.py` writes dist/<id>-<version>.zip.

A small pipeline of pure steps: collect the add-on's files, stage them in a temporary folder (tracked files
are never edited), build the zip with Blender's own extension tool, then validate the zip with it. The
extension tool ships inside the `bpy` wheel, so no Blender binary is needed.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON = ROOT / "blender_addon"
# What goes into the package besides the add-on's Python files.
EXTRA_FILES = {ROOT / "LICENSE": "LICENSE"}


class BuildError(Exception):
    pass


def find_extension_tool() -> Path:
    """Blender's `blender_ext.py`, from the installed bpy module."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("the bpy module is not installed; run `make setup` (it installs bpy==5.0.1)")
    package = Path(next(iter(spec.submodule_search_locations)))
    candidates = sorted(package.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not candidates:
        raise BuildError(f"Blender's extension tool was not found under {package}")
    return candidates[-1]


def collect_files(addon: Path = ADDON) -> dict[Path, str]:
    """Source file → path inside the package."""
    files = {path: path.relative_to(addon).as_posix() for path in sorted(addon.rglob("*")) if path.is_file()}
    files = {src: dst for src, dst in files.items() if "__pycache__" not in dst and not dst.endswith(".pyc")}
    files.update(EXTRA_FILES)
    return files


def stage(files: dict[Path, str], folder: Path) -> None:
    for source, relative in files.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def read_manifest(addon: Path = ADDON) -> dict:
    with (addon / "blender_manifest.toml").open("rb") as handle:
        return tomllib.load(handle)


def run_tool(tool: Path, *args: str) -> None:
    result = subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(f"blender_ext {args[0]} failed:\n{result.stdout}{result.stderr}")


def build(output_dir: Path) -> Path:
    """Build and validate the package; return the zip's path."""
    manifest = read_manifest()
    tool = find_extension_tool()
    output_dir.mkdir(parents=True, exist_ok=True)
    package = output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    with tempfile.TemporaryDirectory(prefix="zeroshape_addon_") as staging:
        stage(collect_files(), Path(staging))
        run_tool(tool, "build", "--source-dir", staging, "--output-filepath", str(package))
    run_tool(tool, "validate", str(package))
    return package


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=ROOT / "dist", help="where the zip goes (default dist/)")
    args = parser.parse_args(argv)
    try:
        package = build(args.output_dir)
    except BuildError as error:
        print(f"build_addon: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote and validated {package}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
