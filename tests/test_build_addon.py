"""build_addon.py: stages, builds and validates the extension zip without touching tracked files."""

from __future__ import annotations

import hashlib
import zipfile

import build_addon


def tree_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(build_addon.ADDON.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def test_build_writes_a_validated_extension_zip(tmp_path):
    before = tree_digest()
    package = build_addon.build(tmp_path)
    assert tree_digest() == before
    manifest = build_addon.read_manifest()
    assert package.name == f"{manifest['id']}-{manifest['version']}.zip"
    names = set(zipfile.ZipFile(package).namelist())
    assert {"blender_manifest.toml", "__init__.py", "LICENSE"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


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
