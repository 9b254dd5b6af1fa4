"""Package the Blender add-on: `python build_addon.py` writes dist/<id>-<version>.zip.

A small pipeline of pure steps: collect the add-on's files, fetch the pyzmq wheels it bundles (cached under
build/wheels-cache/), stage everything in a temporary folder with a generated manifest (tracked files are never
edited), build the zip with Blender's own extension tool, then validate the zip with it. The extension tool ships
inside the `bpy` wheel, so no Blender binary is needed.

Bundled wheels: pyzmq for CPython 3.11 (Blender 4.2-5.0) and the cp312-abi3 build (Blender 5.1+, Python 3.13) on
Windows x64, Linux x64 and macOS (universal2, both architectures), pinned to the pyzmq installed here, so what the
tests exercise is what ships.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON = ROOT / "blender_addon"
# What goes into the package besides the add-on's Python files.
EXTRA_FILES = {ROOT / "LICENSE": "LICENSE"}
# Downloaded wheels live here between builds (build/ is gitignored), so only the first build needs PyPI.
WHEELS_CACHE = ROOT / "build" / "wheels-cache"
WHEELS_DIR = "wheels"
# The distribution the add-on bundles; its version is pinned to the one installed in this environment.
BUNDLED_DISTRIBUTION = "pyzmq"
# Blender's bundled Python: 3.11 for Blender 4.2-5.0, 3.13 from 5.1 (pip picks pyzmq's cp312-abi3 wheel for 3.13).
PYTHON_VERSIONS = ("3.11", "3.13")
# pip `--platform` values, one per wheel. pip also accepts older tags of the same family, so manylinux_2_28 finds
# the `manylinux_2_26_x86_64.manylinux_2_28_x86_64` wheel; universal2 serves both Mac architectures.
WHEEL_PLATFORMS = ("win_amd64", "manylinux_2_28_x86_64", "macosx_10_15_universal2")
# What those wheels cover, in Blender's names (the manifest's `platforms`, and the zips of `--split-platforms`).
BLENDER_PLATFORMS = ("windows-x64", "macos-arm64", "macos-x64", "linux-x64")
# A table header at the start of a line: top-level manifest keys must come before the first one.
TABLE_HEADER = re.compile(r"^[ \t]*\[", re.MULTILINE)


class BuildError(Exception):
    pass


@dataclass(frozen=True)
class WheelTarget:
    """One wheel to bundle: a pinned requirement for one Python version on one platform."""

    requirement: str  # e.g. "pyzmq==27.3.0"
    python_version: str  # e.g. "3.11"
    platform: str  # a pip `--platform` tag, e.g. "win_amd64"

    @property
    def key(self) -> str:
        """The target's entry in the cache index."""
        return f"{self.requirement} python{self.python_version} {self.platform}"


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


# --- Wheels -------------------------------------------------------------------------------------------------------


def pinned_requirement(distribution: str = BUNDLED_DISTRIBUTION) -> str:
    """`name==version` of the installed distribution: the bundled wheels match what the tests ran against."""
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise BuildError(
            f"{distribution} is not installed, so its version cannot be pinned; run `make setup`"
        ) from None
    return f"{distribution}=={version}"


def wheel_targets(requirement: str) -> list[WheelTarget]:
    return [WheelTarget(requirement, python, platform) for python in PYTHON_VERSIONS for platform in WHEEL_PLATFORMS]


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_cache_index(cache: Path) -> dict[str, dict[str, str]]:
    """Target key → {"file": wheel name, "sha256": digest}; an unreadable index just means a cold cache."""
    try:
        index = json.loads((cache / "index.json").read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def write_cache_index(cache: Path, index: dict[str, dict[str, str]]) -> None:
    # Write then rename, so a concurrent build never reads half an index.
    temporary = cache / f".index.{os.getpid()}.json"
    temporary.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    os.replace(temporary, cache / "index.json")


def cached_wheel(cache: Path, entry: dict[str, str] | None) -> Path | None:
    """The cached wheel an index entry names, if it is still there and still has the digest recorded at download."""
    if not entry or "/" in entry.get("file", "/") or "\\" in entry["file"]:
        return None
    path = cache / entry["file"]
    if path.is_file() and sha256_of(path) == entry.get("sha256"):
        return path
    return None


def download_wheel(target: WheelTarget, cache: Path) -> Path:
    """Download one wheel with pip into the cache; return its path."""
    # A private folder per download tells us which file pip chose (the tags are pip's call, e.g. abi3 for 3.13),
    # and the final rename is atomic, so an interrupted download never leaves a truncated wheel in the cache.
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as scratch:
        command = [
            sys.executable, "-m", "pip", "download", target.requirement,
            "--only-binary=:all:", "--no-deps", "--disable-pip-version-check", "--quiet",
            "--python-version", target.python_version, "--platform", target.platform, "--dest", scratch,
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = sorted(Path(scratch).glob("*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
            reason = lines[-1] if lines else f"pip exited with status {result.returncode}"
            raise BuildError(
                f"could not download {target.requirement} for Python {target.python_version} ({target.platform}): "
                f"{reason} -- run the build once with access to PyPI (the wheels are then cached in {cache})"
            )
        final = cache / wheels[0].name
        os.replace(wheels[0], final)
    return final


def fetch_wheels(cache: Path | None = None, requirement: str | None = None) -> list[Path]:
    """The wheels to bundle, one per Python version × platform, from the cache (default WHEELS_CACHE) or PyPI."""
    cache = cache or WHEELS_CACHE
    requirement = requirement or pinned_requirement()
    cache.mkdir(parents=True, exist_ok=True)
    index = read_cache_index(cache)
    targets = wheel_targets(requirement)
    found = {target: cached_wheel(cache, index.get(target.key)) for target in targets}
    missing = [target for target, path in found.items() if path is None]
    if missing:
        # pip spends most of its time starting up and asking the index, so the downloads run side by side.
        with ThreadPoolExecutor(max_workers=len(missing)) as pool:
            futures = {target: pool.submit(download_wheel, target, cache) for target in missing}
        errors = [error for future in futures.values() if (error := future.exception()) is not None]
        for target, future in futures.items():
            if future.exception() is None:
                found[target] = path = future.result()
                index[target.key] = {"file": path.name, "sha256": sha256_of(path)}
        # Record what did arrive even if something failed, so the next attempt fetches only the rest.
        write_cache_index(cache, index)
        if errors:
            raise errors[0]
    wheels = [found[target] for target in targets]
    for wheel in wheels:
        # Cheap insurance against a wheel that was copied in by hand and got truncated.
        if not zipfile.is_zipfile(wheel):
            raise BuildError(f"{wheel} is not a valid wheel; delete it and build again")
    if len(set(wheels)) != len(wheels):
        raise BuildError(f"pip picked the same wheel for two targets: {sorted(w.name for w in wheels)}")
    return wheels


def stage_wheels(wheels: list[Path], folder: Path) -> list[str]:
    """Copy the wheels into the staging folder; return their manifest paths (`./wheels/…`, forward slashes)."""
    (folder / WHEELS_DIR).mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        shutil.copy2(wheel, folder / WHEELS_DIR / wheel.name)
    return [f"./{WHEELS_DIR}/{wheel.name}" for wheel in wheels]


def toml_array(key: str, values: list[str] | tuple[str, ...]) -> str:
    # A JSON string is a valid TOML basic string for the plain ASCII names used here.
    return f"{key} = [\n" + "".join(f"  {json.dumps(value)},\n" for value in values) + "]\n"


def manifest_with_wheels(text: str, wheels: list[str], platforms: tuple[str, ...] = BLENDER_PLATFORMS) -> str:
    """The manifest text with top-level `wheels` and `platforms` keys added.

    They go before the first `[table]` header: appended at the end they would belong to `[permissions]`. The
    result is parsed back and compared, so an unusual layout fails the build instead of shipping a wrong manifest.
    """
    original = tomllib.loads(text)
    if clash := {"wheels", "platforms"} & original.keys():
        raise BuildError(f"blender_manifest.toml must not set {sorted(clash)}: build_addon.py generates them")
    generated = (
        "# Generated by build_addon.py: bundled pyzmq wheels (cp311: Blender 4.2-5.0; abi3: Blender 5.1+).\n"
        + toml_array("wheels", wheels)
        + toml_array("platforms", platforms)
    )
    header = TABLE_HEADER.search(text)
    if header is None:
        result = text.rstrip("\n") + "\n\n" + generated
    else:
        result = text[: header.start()] + generated + "\n" + text[header.start() :]
    try:
        parsed = tomllib.loads(result)
    except tomllib.TOMLDecodeError as error:
        raise BuildError(f"the generated manifest is not valid TOML ({error}); check blender_manifest.toml") from None
    if parsed != {**original, "wheels": wheels, "platforms": list(platforms)}:
        raise BuildError("adding wheels to blender_manifest.toml changed other keys; check its layout")
    return result


# --- Build --------------------------------------------------------------------------------------------------------


def run_tool(tool: Path, *args: str) -> None:
    result = subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(f"blender_ext {args[0]} failed:\n{result.stdout}{result.stderr}")


def split_package_path(package: Path, platform: str) -> Path:
    """Where `blender_ext build --split-platforms` writes a platform's zip (it appends `-windows_x64` and so on)."""
    return package.with_name(f"{package.stem}-{platform.replace('-', '_')}{package.suffix}")


def build(output_dir: Path, *, split_platforms: bool = False, cache: Path | None = None) -> list[Path]:
    """Build and validate the package (one zip, or one per platform); return the zips' paths."""
    manifest = read_manifest()
    tool = find_extension_tool()
    wheels = fetch_wheels(cache)
    output_dir.mkdir(parents=True, exist_ok=True)
    package = output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    packages = [split_package_path(package, p) for p in BLENDER_PLATFORMS] if split_platforms else [package]
    with tempfile.TemporaryDirectory(prefix="zeroshape_addon_") as staging:
        folder = Path(staging)
        stage(collect_files(), folder)
        manifest_text = (ADDON / "blender_manifest.toml").read_text(encoding="utf-8")
        wheel_paths = stage_wheels(wheels, folder)
        (folder / "blender_manifest.toml").write_text(manifest_with_wheels(manifest_text, wheel_paths), "utf-8")
        split = ["--split-platforms"] if split_platforms else []
        run_tool(tool, "build", "--source-dir", staging, "--output-filepath", str(package), *split)
    for path in packages:
        if not path.is_file():
            raise BuildError(f"blender_ext build did not write {path}")
        # `validate` does not check that the listed wheels exist; `build` does (it fails on a missing file).
        run_tool(tool, "validate", str(path))
    return packages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=ROOT / "dist", help="where the zip goes (default dist/)")
    parser.add_argument(
        "--split-platforms", action="store_true", help="write one zip per platform, each with only its own wheels"
    )
    args = parser.parse_args(argv)
    try:
        packages = build(args.output_dir, split_platforms=args.split_platforms)
    except BuildError as error:
        print(f"build_addon: error: {error}", file=sys.stderr)
        return 1
    for package in packages:
        print(f"wrote and validated {package}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
