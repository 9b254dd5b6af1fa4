"""build_addon.py: stages, builds and validates the extension zip (with its pyzmq wheels) without touching tracked
files, and the zip installs into Blender with the wheel that matches Blender's Python.

The wheels come from build/wheels-cache/: the first run downloads them from PyPI (about 5 MB), later runs and every
test here reuse them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import build_addon

# Blender platforms each wheel platform tag serves (what Blender's `blender_platforms_from_wheel_platform` says).
WHEEL_PLATFORM_TO_BLENDER = {
    "win_amd64": {"windows-x64"},
    "manylinux_2_26_x86_64.manylinux_2_28_x86_64": {"linux-x64"},
    "macosx_10_15_universal2": {"macos-arm64", "macos-x64"},
}
# (python tag, abi tag) of the two builds: CPython 3.11 only (Blender 4.2-5.0), and the stable ABI from 3.12 on.
PYTHON_BUILDS = {("cp311", "cp311"), ("cp312", "abi3")}
PYZMQ_VERSION = importlib.metadata.version("pyzmq")


def tree_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(build_addon.ADDON.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def wheel_tags(name: str) -> tuple[str, str, str, str, str]:
    """(distribution, version, python tag, abi tag, platform tag) of a wheel file name (no build tags here)."""
    distribution, version, python, abi, platform = name.removesuffix(".whl").split("-")
    return distribution, version, python, abi, platform


def zip_manifest(package: Path) -> dict:
    return tomllib.loads(zipfile.ZipFile(package).read("blender_manifest.toml").decode())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """One build shared by the tests that only read the zip: (zip, tree digest before, tree digest after)."""
    before = tree_digest()
    packages = build_addon.build(tmp_path_factory.mktemp("dist"))
    return packages[0], before, tree_digest()


def test_build_writes_a_validated_extension_zip(built):
    package, before, after = built
    assert after == before
    manifest = build_addon.read_manifest()
    assert package.name == f"{manifest['id']}-{manifest['version']}.zip"
    names = set(zipfile.ZipFile(package).namelist())
    assert {"blender_manifest.toml", "__init__.py", "LICENSE"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # The tracked manifest stays free of generated keys; only the staged copy gets them.
    assert not {"wheels", "platforms"} & manifest.keys()


def test_zip_bundles_pyzmq_for_both_pythons_on_three_platforms(built):
    package, _, _ = built
    names = zipfile.ZipFile(package).namelist()
    wheels = sorted(name for name in names if name.startswith("wheels/"))
    assert len(wheels) == 6
    manifest = zip_manifest(package)
    # Listed with forward slashes, and every listed wheel is in the zip (and nothing else is under wheels/).
    assert sorted(path.removeprefix("./") for path in manifest["wheels"]) == wheels
    assert manifest["platforms"] == ["windows-x64", "macos-arm64", "macos-x64", "linux-x64"]
    tags = [wheel_tags(Path(wheel).name) for wheel in wheels]
    assert {(distribution, version) for distribution, version, *_ in tags} == {("pyzmq", PYZMQ_VERSION)}
    builds = {(python, abi, platform) for _, _, python, abi, platform in tags}
    assert builds == {(*python_abi, platform) for python_abi in PYTHON_BUILDS for platform in WHEEL_PLATFORM_TO_BLENDER}
    covered = set().union(*(WHEEL_PLATFORM_TO_BLENDER[platform] for *_, platform in tags))
    assert covered == set(manifest["platforms"])
    # The generated keys are top-level: the table that follows them in the text is unchanged.
    assert manifest["permissions"] == build_addon.read_manifest()["permissions"]


def test_manifest_with_wheels_puts_the_keys_before_the_first_table():
    text = 'id = "x"\n\n[permissions]\nnetwork = "Talks to a local server"\n'
    result = build_addon.manifest_with_wheels(text, ["./wheels/a-1-py3-none-any.whl"], ("linux-x64",))
    assert tomllib.loads(result) == {
        "id": "x",
        "wheels": ["./wheels/a-1-py3-none-any.whl"],
        "platforms": ["linux-x64"],
        "permissions": {"network": "Talks to a local server"},
    }
    assert result.endswith(text[text.index("[permissions]") :])
    # Without any table the keys simply go at the end.
    no_table = build_addon.manifest_with_wheels('id = "x"', ["./w/a-1-py3-none-any.whl"], ("linux-x64",))
    assert tomllib.loads(no_table) == {"id": "x", "wheels": ["./w/a-1-py3-none-any.whl"], "platforms": ["linux-x64"]}
    with pytest.raises(build_addon.BuildError, match="must not set"):
        build_addon.manifest_with_wheels(text.replace("\n\n", '\nwheels = ["./a.whl"]\n'), [], ())


def test_split_platforms_writes_one_validated_zip_per_platform(tmp_path, capsys):
    assert build_addon.main(["--output-dir", str(tmp_path), "--split-platforms"]) == 0
    manifest = build_addon.read_manifest()
    expected = {
        f"{manifest['id']}-{manifest['version']}-{p.replace('-', '_')}.zip": p for p in build_addon.BLENDER_PLATFORMS
    }
    assert {path.name for path in tmp_path.iterdir()} == set(expected)
    assert capsys.readouterr().out.count("wrote and validated") == 4
    for name, platform in expected.items():
        package = tmp_path / name
        wheels = [Path(n).name for n in zipfile.ZipFile(package).namelist() if n.startswith("wheels/")]
        # Exactly this platform's two wheels: one per Python build.
        assert len(wheels) == 2, wheels
        assert {wheel_tags(w)[2:4] for w in wheels} == PYTHON_BUILDS
        assert all(platform in WHEEL_PLATFORM_TO_BLENDER[wheel_tags(w)[4]] for w in wheels), (platform, wheels)
        generated = zip_manifest(package)["build"]["generated"]
        assert generated["platforms"] == [platform]
        assert sorted(Path(w).name for w in generated["wheels"]) == sorted(wheels)


def test_build_fails_when_a_listed_wheel_is_missing(tmp_path, monkeypatch):
    stage_wheels = build_addon.stage_wheels

    def stage_all_but_the_first(wheels: list[Path], folder: Path) -> list[str]:
        paths = stage_wheels(wheels, folder)
        (folder / paths[0]).unlink()
        return paths

    monkeypatch.setattr(build_addon, "stage_wheels", stage_all_but_the_first)
    with pytest.raises(build_addon.BuildError, match="file not found"):
        build_addon.build(tmp_path)
    assert not list(tmp_path.iterdir())


def test_cached_wheels_are_reused_offline_and_checked(tmp_path, monkeypatch):
    build_addon.fetch_wheels()  # Warm the shared cache (a no-op after the first build).
    cache = tmp_path / "cache"
    shutil.copytree(build_addon.WHEELS_CACHE, cache)
    # pip reads its options from PIP_* variables: with no index, any download attempt fails at once.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    wheels = build_addon.fetch_wheels(cache)
    assert [w.parent for w in wheels] == [cache] * 6
    # A damaged cached wheel no longer matches its recorded digest, so the build tries to download it again.
    wheels[0].write_bytes(wheels[0].read_bytes()[:1000])
    with pytest.raises(build_addon.BuildError, match=f"could not download pyzmq=={PYZMQ_VERSION} for Python 3.11"):
        build_addon.fetch_wheels(cache)


def test_download_failure_is_one_line_that_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setattr(build_addon, "WHEELS_CACHE", tmp_path / "empty-cache")
    assert build_addon.main(["--output-dir", str(tmp_path / "dist")]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith(f"build_addon: error: could not download pyzmq=={PYZMQ_VERSION} for Python")
    assert "run the build once with access to PyPI" in error
    assert not (tmp_path / "dist").exists() or not list((tmp_path / "dist").iterdir())


def test_manifest_declares_license_and_permissions_with_reasons():
    manifest = build_addon.read_manifest()
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert set(manifest["permissions"]) == {"network", "files"}
    assert all(len(reason) > 10 for reason in manifest["permissions"].values())


def test_main_reports_errors_in_one_line(monkeypatch, capsys):
    def missing_tool():
        raise build_addon.BuildError("the bpy module is not installed")

    monkeypatch.setattr(build_addon, "find_extension_tool", missing_tool)
    assert build_addon.main(["--output-dir", "unused"]) == 1
    assert capsys.readouterr().err == "build_addon: error: the bpy module is not installed\n"


# Runs Blender's own wheel selection (bl_pkg 5.0.1) on our wheel list, as Blender would on each system: the
# platform filter, then the Python-version filter, then the de-duplication that keeps one wheel per distribution.
# The de-duplication alone would keep cp312-abi3 (ties go to the greater file name), and that wheel does not load
# on Python 3.11 (its extension needs PyType_FromMetaclass, new in 3.12): the Python filter is what saves us.
SELECTION_PROBE = """
import json, sys, sysconfig
import bpy  # Puts Blender's scripts on sys.path.
from bl_pkg.bl_extension_ops import _extensions_wheel_filter_for_this_system
from _bpy_internal.extensions.wheel_manager import wheel_list_deduplicate_as_skip_set

wheels = json.loads(sys.argv[1])
real_version, chosen = sys.version_info, {}
for system in ("linux-x86_64", "win-amd64", "macosx-11.2-arm64", "macosx-10.15-x86_64"):
    for python in ((3, 11), (3, 13)):
        sysconfig.get_platform = lambda system=system: system
        sys.version_info = (*python, 0, "final", 0)
        try:
            compatible = _extensions_wheel_filter_for_this_system(wheels)
        finally:
            sys.version_info = real_version
        skip = wheel_list_deduplicate_as_skip_set([("zeroshape_w", compatible)])
        chosen[f"{system} {python[0]}.{python[1]}"] = [w for w in compatible if w not in skip]
print(json.dumps(chosen))
"""


@pytest.mark.blender
def test_blender_picks_the_wheel_built_for_its_python(built):
    package, _, _ = built
    wheels = zip_manifest(package)["wheels"]
    result = subprocess.run(
        [sys.executable, "-c", SELECTION_PROBE, json.dumps(wheels)], capture_output=True, text=True, check=True
    )
    chosen = json.loads(result.stdout.splitlines()[-1])
    platform_tags = {"linux": "manylinux", "win": "win_amd64", "macosx": "universal2"}
    for key, picked in chosen.items():
        system, python = key.split()
        assert len(picked) == 1, (key, picked)
        _, _, python_tag, abi, platform = wheel_tags(Path(picked[0]).name)
        assert (python_tag, abi) == (("cp311", "cp311") if python == "3.11" else ("cp312", "abi3")), key
        assert platform_tags[system.split("-")[0]] in platform, key


# Installs the zip the way Blender's "Install from Disk" does, into a throwaway user folder, then imports zmq.
# This venv has its own pyzmq, so a finder hides every zmq that is not in Blender's extension site-packages:
# the import succeeds only through the wheel Blender extracted.
INSTALL_PROBE = """
import importlib, json, sys
from importlib.machinery import PathFinder

class OnlyExtensionZmq:
    def find_spec(self, name, path=None, target=None):
        if name != "zmq":
            return None
        spec = PathFinder.find_spec(name, [p for p in sys.path if "/extensions/.local/" in p.replace("\\\\", "/")])
        if spec is None:
            raise ImportError("zmq is not in the extensions' site-packages")
        return spec

sys.meta_path.insert(0, OnlyExtensionZmq())
import bpy
result = bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo="user_default", enable_on_install=True)
addon = importlib.import_module("bl_ext.user_default.zeroshape_w")
import zmq
print(json.dumps({
    "result": sorted(result),
    "addon": addon.__file__,
    "enabled": "bl_ext.user_default.zeroshape_w" in bpy.context.preferences.addons,
    "zmq": zmq.__file__,
    "pyzmq": zmq.pyzmq_version(),
    "libzmq": zmq.zmq_version(),
}))
"""


@pytest.mark.blender
def test_zip_installs_and_zmq_imports_from_the_cp311_wheel(built, tmp_path):
    package, _, _ = built
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", INSTALL_PROBE, str(package)], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    extensions = tmp_path / "extensions"
    assert report["result"] == ["FINISHED"]
    assert Path(report["addon"]) == extensions / "user_default" / "zeroshape_w" / "__init__.py"
    assert report["enabled"]
    site_packages = (
        extensions / ".local" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    )
    assert Path(report["zmq"]).is_relative_to(site_packages), report["zmq"]
    assert report["pyzmq"] == PYZMQ_VERSION
    # Blender extracted the cp311 build (not the abi3 one) for its Python 3.11.
    wheel_info = (site_packages / f"pyzmq-{PYZMQ_VERSION}.dist-info" / "WHEEL").read_text()
    tags = [line.removeprefix("Tag: ") for line in wheel_info.splitlines() if line.startswith("Tag: ")]
    assert tags, wheel_info
    assert all(tag.startswith("cp311-cp311-") for tag in tags), tags


def test_the_add_on_carries_the_project_version():
    """The version is written once in Python (backend.__version__, which pyproject reads); Blender needs it as a
    literal in the extension manifest and in the legacy bl_info, so those two are checked against it."""
    import ast
    import tomllib

    from backend import __version__

    addon = Path(__file__).resolve().parents[1] / "blender_addon"
    manifest = tomllib.loads((addon / "blender_manifest.toml").read_text())
    assert manifest["version"] == __version__
    tree = ast.parse((addon / "__init__.py").read_text())
    bl_info = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "bl_info"
    )
    assert ".".join(map(str, bl_info["version"])) == __version__
