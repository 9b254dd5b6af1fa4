"""The sweethome3d source: catalogue parsing, upright models, categories, and `data render` on a test catalogue."""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from backend.model.config import DEFAULT_CATEGORIES
from tests.training.conftest import run_cli
from tests.training.data.asset_fixtures import CATALOGUE_MESHES, check_own_red_texture, make_catalogue
from training.data.render import load_mesh, unpack_archived
from training.data.sources import sweethome3d_objects
from training.data.sweethome3d import catalogue_files, extract_model, read_catalogue, read_properties


def test_properties_escapes_continuations_and_comments():
    text = "# comment\n! also a comment\na=1\nb : two words\nc\\u00e9=caf\\u00e9\nd=one \\\n   line\ne\n"
    assert read_properties(text) == {"a": "1", "b": "two words", "cé": "café", "d": "one line", "e": ""}


def test_catalogue_entries_and_skipped_doors(tmp_path):
    models = read_catalogue(make_catalogue(tmp_path))
    assert [m.name for m in models] == ["Café chair", "Front door", "Teddy bear"]
    assert [m.skipped for m in models] == [False, True, False]
    assert models[0].rotation == (1, 0, 0, 0, 0, 1, 0, -1, 0)
    assert models[0].size_cm == (50, 40, 90)
    assert models[0].licence == "CC0"
    objects = sweethome3d_objects(tmp_path)
    assert [(o.object_id, o.category, o.name) for o in objects] == [
        ("sh3d-test-cc0-chair", "chair", "Café chair"),
        ("sh3d-test-cc0-teddy", "toy", "Teddy bear"),
    ]
    assert all(o.category in DEFAULT_CATEGORIES for o in objects)


def test_models_are_unpacked_and_stand_upright(tmp_path):
    """Whatever axes a model is stored in (Z up with a modelRotation, or Sweet Home 3D's Y up), it loads Z up
    with the catalogue's width, depth and height along x, y and z."""
    make_catalogue(tmp_path / "catalogues")
    for source in sweethome3d_objects(tmp_path / "catalogues"):
        unpacked = unpack_archived(source, tmp_path / source.object_id)
        assert Path(unpacked.path).is_file()
        assert unpacked.archive is None
        assert list(Path(unpacked.path).parent.glob("*.mtl"))
        assert list(Path(unpacked.path).parent.glob("*.png"))
        upright = CATALOGUE_MESHES["test/" + source.object_id.rsplit("-", 1)[1]][1]
        np.testing.assert_allclose(load_mesh(unpacked).extents, upright, atol=1e-6)


def test_unsafe_or_missing_members_are_refused(tmp_path):
    path = tmp_path / "evil.sh3f"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("PluginFurnitureCatalog.properties", "model#1=/x/a.obj\n")
        archive.writestr("x/a.obj", "v 0 0 0\n")
        archive.writestr("x/../../escape.txt", "no")
    with pytest.raises(ValueError, match="unsafe member"):
        extract_model(path, "x/a.obj", tmp_path / "out")
    with pytest.raises(ValueError, match="not in it"):
        extract_model(path, "y/b.obj", tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_a_folder_without_catalogues_says_what_it_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"\*\.sh3f"):
        catalogue_files(tmp_path)


@pytest.mark.blender
@pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed")
def test_render_a_catalogue_with_its_own_textures(tmp_path):
    """`data render --source FOLDER-OF-CATALOGUES`: every model but the door rendered, with its own red texture,
    depth on the normalised mesh, and object.json keeping the catalogue's name."""

    make_catalogue(tmp_path / "catalogues")
    out = tmp_path / "dataset"
    options = ["--views", "2", "--samples", "2", "--own-appearance", "1", "--clutter", "0", "--occlusion", "0"]
    result = run_cli("data", "render", "--source", str(tmp_path / "catalogues"), "--out", str(out), *options)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [(m["object_id"], m["category"], m["source"]) for m in manifest] == [
        ("sh3d-test-cc0-chair", "chair", "sweethome3d"),
        ("sh3d-test-cc0-teddy", "toy", "sweethome3d"),
    ]
    for record in manifest:
        folder = out / "objects" / record["object_id"]
        info = json.loads((folder / "object.json").read_text())
        assert info["name"] in ("Café chair", "Teddy bear")
        assert info["textured"]["format"] == "obj"
        check_own_red_texture(folder)
