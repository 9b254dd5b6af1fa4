"""The 0ad source: the PMD reader, member selection, and `data render` on a zip made by the test."""

from __future__ import annotations

import importlib.util
import json
import struct

import numpy as np
import pytest
import trimesh

from tests.training.conftest import run_cli
from tests.training.data.asset_fixtures import make_zero_ad_zip
from training.data import layout
from training.data.geometry import signed_volume
from training.data.render import load_mesh, prepare_object, unpack_archived
from training.data.sources import zero_ad_objects
from training.data.zero_ad import PmdError, read_pmd, write_pmd


def test_pmd_round_trip():
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    mesh = read_pmd(write_pmd(box.vertices, box.faces))
    np.testing.assert_allclose(mesh.vertices, box.vertices, atol=1e-6)
    np.testing.assert_array_equal(mesh.faces, box.faces)


def test_pmd_version_3_has_one_uv_set_and_no_count():
    """Before version 4 the UV-set count is absent and every vertex has exactly one UV pair."""
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype="<f4")
    faces = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]] * 6, dtype="<u2")
    body = struct.pack("<I", len(vertices))
    for position in vertices:
        body += position.tobytes() + bytes(12) + bytes(8) + bytes([255] * 4) + bytes(16)
    body += struct.pack("<I", len(faces)) + faces.tobytes() + struct.pack("<II", 0, 0)
    mesh = read_pmd(b"PSMD" + struct.pack("<II", 3, len(body)) + body)
    np.testing.assert_array_equal(mesh.vertices, vertices)
    np.testing.assert_array_equal(mesh.faces, faces)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"NOPE" + bytes(40), "no PSMD header"),
        (b"PSMD" + struct.pack("<III", 9, 0, 3) + bytes(40), "version 9"),
        (write_pmd(np.zeros((30, 3)), np.zeros((30, 3), dtype=int))[:200], "truncated"),
        (write_pmd(np.zeros((3, 3)), [[0, 1, 2]] * 19 + [[0, 1, 7]]), "vertex the mesh does not have"),
        (write_pmd(np.eye(3), [[0, 1, 2]]), "not an object"),
        (write_pmd(np.full((3, 3), np.nan), [[0, 1, 2]] * 20), "not finite"),
    ],
)
def test_malformed_pmd_is_refused_with_a_reason(data, message):
    with pytest.raises(PmdError, match=message):
        read_pmd(data)


def test_members_animals_and_a_stride_of_props(tmp_path):
    objects = zero_ad_objects(make_zero_ad_zip(tmp_path / "public.zip"))
    assert [(o.object_id, o.category) for o in objects] == [
        ("0ad-skeletal-animal-horse", "animal"),
        ("0ad-skeletal-fish-shoal", "animal"),
        ("0ad-props-shield-shield-a", "object"),
        ("0ad-props-shield-shield-d", "object"),
    ]
    horse = unpack_archived(objects[0], tmp_path / "horse")
    # Stored Y up, 1.0 high and 1.2 long along z; upright, Z up: 1.2 long along y and 1.0 high.
    np.testing.assert_allclose(load_mesh(horse).extents, (0.4, 1.2, 1.0), atol=1e-6)
    assert signed_volume(load_mesh(horse)) == pytest.approx(-0.4 * 1.2 * 1.0)  # the game's clockwise winding


def test_an_inside_out_object_is_prepared_the_right_way_out(tmp_path):
    """0 A.D.'s triangles wind clockwise; before this was handled, every 0 A.D. object's occupancy was empty."""
    horse = zero_ad_objects(make_zero_ad_zip(tmp_path / "public.zip"))[0]
    folder = tmp_path / "prepared"
    prepare_object(horse, folder, occupancy_points=4000, surface_points=100)
    mesh = trimesh.load(folder / layout.MESH, force="mesh", process=False)
    assert signed_volume(mesh) > 0
    points, inside = layout.read_occupancy(folder)
    uniform = points[:2000]  # the uniform half, in the box [-0.55, 0.55]³; the box fills 0.4/1.2 × 1 × 1.0/1.2
    expected = (0.4 / 1.2) * (1.0 / 1.2) / 1.1**3
    assert inside[:2000].mean() == pytest.approx(expected, abs=0.03)
    assert (inside[:2000] == (np.abs(uniform) < [0.5 / 3, 0.5, 0.5 / 1.2]).all(axis=1)).mean() > 0.98


def test_a_missing_zip_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"public\.zip"):
        zero_ad_objects(tmp_path / "public.zip")


@pytest.mark.blender
@pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed")
def test_render_the_zip(tmp_path):
    archive = make_zero_ad_zip(tmp_path / "0ad" / "public.zip")
    out = tmp_path / "dataset"
    result = run_cli("data", "render", "--source", str(archive), "--out", str(out), "--views", "1", "--samples", "2")
    assert result.returncode == 1  # the one-face marker fails, the rest render
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [m["object_id"] for m in manifest] == [
        "0ad-skeletal-animal-horse",
        "0ad-props-shield-shield-a",
        "0ad-props-shield-shield-d",
    ]
    assert "0ad-skeletal-fish-shoal: cannot prepare: 1 faces" in (out / "errors.log").read_text()
    mesh = trimesh.load(out / "objects" / "0ad-skeletal-animal-horse" / "mesh.ply", force="mesh")
    assert mesh.extents.argmax() == 1  # Y up in the file: the horse's length lies along y once upright


def test_relabel_repairs_a_dataset_rendered_before_inside_out_meshes_were_handled(tmp_path):
    """What such a dataset holds: the game's inside-out mesh and all-empty labels; `data relabel` fixes both."""
    horse = zero_ad_objects(make_zero_ad_zip(tmp_path / "public.zip"))[0]
    good, old = tmp_path / "good", tmp_path / "dataset" / "objects" / horse.object_id
    prepare_object(horse, good, occupancy_points=4000, surface_points=100)
    old.mkdir(parents=True)
    prepared = trimesh.load(good / layout.MESH, force="mesh", process=False)
    trimesh.Trimesh(prepared.vertices, prepared.faces[:, ::-1], process=False).export(old / layout.MESH)
    points, truth = layout.read_occupancy(good)
    layout.write_occupancy(old, points, np.zeros(len(points), dtype=bool))
    (old / "DONE").touch()
    unfinished = tmp_path / "dataset" / "objects" / "not-done-yet"  # still rendering: left alone
    unfinished.mkdir()

    result = run_cli("data", "relabel", str(tmp_path / "dataset"))
    assert result.returncode == 0, result.stderr
    assert f"1 inside-out objects relabelled: {horse.object_id}" in result.stdout
    assert signed_volume(trimesh.load(old / layout.MESH, force="mesh", process=False)) > 0
    assert (layout.read_occupancy(old)[1] == truth).mean() > 0.999
    again = run_cli("data", "relabel", str(tmp_path / "dataset"))
    assert "0 inside-out objects relabelled" in again.stdout


def test_relabel_names_a_folder_that_is_not_a_dataset(tmp_path):
    result = run_cli("data", "relabel", str(tmp_path))
    assert result.returncode != 0
    assert "not a rendered dataset" in result.stderr
