"""The add-on inside real Blender (bpy 5.0.1): installed from the built zip, driven against a live backend."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import build_addon
from backend.model.checkpoint import save_checkpoint
from backend.model.config import get_config
from backend.model.zeroshape import ZeroShapeW

from ..backend.test_server import ServerProcess, free_port

pytestmark = [
    pytest.mark.blender,
    pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed"),
]

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = Path(__file__).with_name("bpy_scenario.py")
PHOTO = ROOT / "examples" / "coffee.jpg"


@pytest.fixture(scope="module")
def addon_zip(tmp_path_factory):
    (package,) = build_addon.build(tmp_path_factory.mktemp("dist"))
    return package


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    # Seed 1: a random tiny network that has a surface for the example photos (see tests/backend/test_server.py).
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("backend")
    checkpoint = save_checkpoint(ZeroShapeW(get_config("tiny")), folder / "tiny.safetensors")
    process = ServerProcess(checkpoint, folder).wait_ready()
    yield process
    process.stop()


def run_scenario(name: str, addon_zip: Path, address: str, *args: str, resources: Path, check: bool = True) -> dict:
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(resources), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, str(SCENARIO), name, str(addon_zip), address, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_reconstruct_operator_imports_one_coloured_object_at_the_cursor(addon_zip, backend, tmp_path):
    report = run_scenario("single", addon_zip, backend.address, str(PHOTO), resources=tmp_path)
    assert report["operator"] == ["FINISHED"]
    assert report["new_objects"] == 1
    assert report["name"] == "coffee"
    assert report["vertices"] > 0
    assert report["location"] == [1.0, 2.0, 3.0]
    assert report["collection"] == "ZeroShape"
    assert report["active"]
    assert report["color_node_linked"]
    assert report["color_attribute"] == "Col"
    assert len(report["undo_steps"]) == 1
    assert report["new_objects"] == 1  # no camera unless asked
    assert report["backend"].startswith("ready: tiny on cpu")


def test_match_photo_adds_a_camera_that_sees_the_mesh(addon_zip, backend, tmp_path):
    report = run_scenario("single", addon_zip, backend.address, str(PHOTO), "match", resources=tmp_path)
    assert report["new_objects"] == 2
    assert report["camera_lens"] > 0
    assert report["camera_background"]
    assert report["mesh_in_front"]


def test_vertex_count_matches_what_the_backend_sent(addon_zip, backend, tmp_path):
    from blender_addon.client import Client
    from blender_addon.protocol import ReconstructOptions

    sent = Client(backend.address).reconstruct(PHOTO.read_bytes(), ReconstructOptions(resolution=64))
    report = run_scenario("single", addon_zip, backend.address, str(PHOTO), resources=tmp_path)
    assert report["vertices"] == len(sent.vertices)
    assert report["faces"] == len(sent.faces)


def test_no_backend_is_reported_quickly(addon_zip, tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    report = run_scenario("no_backend", addon_zip, address, str(PHOTO), resources=tmp_path)
    assert report["seconds"] < 2.0
    assert "no answer from the ZeroShape-W backend at " + address in report["last_error"]
    assert "zeroshape-w serve" in report["last_error"]
    assert report["raised"]  # the operator reported an error


def photo_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    data = PHOTO.read_bytes()
    for name in ("a_cup.jpg", "b_cup.jpg", "c_cup.jpg"):
        (folder / name).write_bytes(data)
    (folder / "broken.jpg").write_bytes(data[: len(data) // 3])
    (folder / "notes.txt").write_text("not a photo")
    return folder


def test_batch_imports_a_grid_and_reports_the_corrupt_file(addon_zip, backend, tmp_path):
    folder = photo_folder(tmp_path)
    report = run_scenario(
        "batch", addon_zip, backend.address, str(folder), str(tmp_path / "s.blend"), resources=tmp_path
    )
    assert report["meshes"] == ["a_cup", "b_cup", "c_cup"]
    assert len({tuple(location) for location in report["locations"]}) == 3  # a grid: no two at one place
    assert "broken.jpg" in report["last_error"]
    assert "damaged or truncated" in report["last_error"]
    assert report["queue"]["items"] == []
    assert report["undo_steps"] == 3


def test_interrupted_batch_resumes_without_duplicates(addon_zip, backend, tmp_path):
    folder = photo_folder(tmp_path)
    blend = tmp_path / "scene.blend"
    first = run_scenario("batch_interrupted", addon_zip, backend.address, str(folder), str(blend), resources=tmp_path)
    assert first["meshes"] == ["a_cup"]
    states = {Path(item["path"]).name: item["state"] for item in first["queue"]["items"]}
    assert states["a_cup.jpg"] == "done"
    second = run_scenario("batch_resume", addon_zip, backend.address, str(folder), str(blend), resources=tmp_path)
    assert second["meshes"] == ["a_cup", "b_cup", "c_cup"]
    assert second["queue"]["items"] == []


def test_import_of_a_200k_face_mesh_is_fast(addon_zip, tmp_path):
    """Benchmark figure (printed), with a generous bound so that only a broken bulk path fails."""
    report = run_scenario("import_benchmark", addon_zip, "tcp://127.0.0.1:1", resources=tmp_path)
    print(f"\nimport of 200,000 faces / 100,000 vertices with colours: {min(report['seconds']):.3f} s (best of 3)")
    assert min(report["seconds"]) < 3.0
