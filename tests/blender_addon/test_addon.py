"""The add-on inside real Blender (bpy 5.0.1): installed from the built zip, driven against a live backend."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from backend.model.checkpoint import save_checkpoint
from backend.model.config import get_config
from backend.model.zeroshape import ZeroShapeW

from ..backend.test_server import free_port

pytestmark = [
    pytest.mark.blender,
    pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed"),
]

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = Path(__file__).with_name("bpy_scenario.py")
PHOTO = ROOT / "examples" / "coffee.jpg"


def run_scenario(
    name: str, addon_zip: Path, address: str, *args: str, resources: Path, check: bool = True, script: Path = SCENARIO
) -> dict:
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(resources), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, str(script), name, str(addon_zip), address, *args],
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
    # The panel's defaults: Auto category (an untrained head is unsure: "object"), upright on the predicted ground.
    assert report["category"] == ["object", "auto"]
    assert report["up"] == "gravity head"


def test_match_photo_adds_a_camera_that_sees_the_mesh(addon_zip, backend, tmp_path):
    report = run_scenario("single", addon_zip, backend.address, str(PHOTO), "match", resources=tmp_path)
    assert report["new_objects"] == 2
    assert report["camera_lens"] > 0
    assert report["camera_background"]
    assert report["mesh_in_front"]
    assert report["scene_camera"]  # the match camera is the scene's camera
    assert report["render_size"] == report["photo_size"]  # the photo's size and aspect, not 1920 × 1080
    assert report["projected"] > 100
    # Blender projects as camera.py does (once the camera sat off by the 3D cursor's position: the object's
    # matrix_world was read before the view layer had moved it to the cursor).
    assert report["projection_max_px"] < 0.5


def test_a_baked_texture_survives_fbx_and_gltf_export_with_the_same_colours(addon_zip, backend, tmp_path):
    report = run_scenario(
        "bake_export", addon_zip, backend.address, str(PHOTO), str(tmp_path / "out"), "operator", resources=tmp_path
    )
    assert report["operator"] == ["FINISHED"]
    assert report["status"].startswith("baked 1 texture(s) of 1024 px")
    assert report["colour_spread_255"] > 5  # the photo's colours vary over the mesh: a real comparison
    # The colours now live in the texture alone (glTF would multiply a texture by vertex colours).
    assert report["color_attributes_after_bake"] == []
    assert report["uv_maps"] == ["ZeroShape UV"]
    assert report["packed"]
    assert "already baked" in report["second_bake"]
    for kind in ("glb", "fbx"):
        entry = report[kind]
        assert entry["base_colour_from"] == ["TEX_IMAGE"], kind
        assert entry["color_attributes"] == 0, kind
        assert entry["image_size"] == [1024, 1024], kind
        assert entry["max_position_error"] < 1e-4, kind
        # What the re-imported texture shows at every corner and inside every triangle is the colour the backend
        # sent: mean difference under 2/255.
        assert entry["vertex_mean_error_255"] < 2.0, (kind, entry)
        assert entry["centroid_mean_error_255"] < 2.0, (kind, entry)


def test_bake_on_import(addon_zip, backend, tmp_path):
    report = run_scenario(
        "bake_export", addon_zip, backend.address, str(PHOTO), str(tmp_path / "out"), "on_import", resources=tmp_path
    )
    assert report["color_attributes_after_bake"] == []
    assert report["uv_maps"] == ["ZeroShape UV"]
    assert report["packed"]
    assert "faces imported" in report["status"]


def test_face_budget_and_real_height(addon_zip, backend, tmp_path):
    report = run_scenario("single", addon_zip, backend.address, str(PHOTO), "budget", resources=tmp_path)
    assert 0 < report["faces"] <= 500
    assert report["scale"] == pytest.approx([0.3, 0.3, 0.3])
    assert report["height"] == pytest.approx(0.3, rel=0.02)  # the mesh arrives 1 unit tall
    assert report["up"] == "camera (upright off)"  # the Upright switch reaches the request
    assert report["category"] == ["mug", "mug"]


def test_an_object_box_from_the_panel_reaches_the_crop(addon_zip, backend, tmp_path):
    report = run_scenario("single", addon_zip, backend.address, str(PHOTO), "box", resources=tmp_path)
    x0, y0, x1, y1 = report["crop_box"]
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx((300.0, 200.0))  # the box's centre, in photo pixels
    assert x1 - x0 == pytest.approx(200.0 * 1.2)  # the box, with the checkpoint's crop margin


def cutout_photo(path: Path) -> Path:
    """A 320 × 240 RGBA cut-out: an opaque bar (columns 40-279, rows 90-149) of varying colour on transparency."""
    import numpy as np
    from PIL import Image

    rgba = np.zeros((240, 320, 4), np.uint8)
    rgba[90:150, 40:280, 0] = np.linspace(60, 220, 240, dtype=np.uint8)
    rgba[90:150, 40:280, 1:3] = (120, 80)
    rgba[90:150, 40:280, 3] = 255
    Image.fromarray(rgba).save(path)
    return path


def test_an_edited_mask_makes_the_mesh_again(addon_zip, backend, tmp_path):
    photo = cutout_photo(tmp_path / "bar.png")
    report = run_scenario("mask_edit", addon_zip, backend.address, str(photo), "160", resources=tmp_path)
    # The first mesh: the cut-out's alpha is the mask, exactly, and it comes back beside the mesh.
    assert report["operator"] == ["FINISHED"]
    assert report["first"]["mask_source"] == "alpha"
    assert report["first_mask"] == {
        "name": "bar mask",
        "size": [320, 240],
        "packed": True,
        "object_pixels": 240 * 60,
        "columns": [40, 280],
    }
    assert report["photo_property"] == str(photo)
    assert report["options_property"]["shape"] == "inflate"
    assert report["options_property"]["upright"] is False
    # Edit Mask: no window to open in background mode (a warning, not an error); an open Image Editor gets it.
    assert report["edit_without_editor"] == ["CANCELLED"]
    assert report["edit_with_editor"] == ["FINISHED"]
    assert report["editor"] == ["bar mask", "PAINT"]
    # Reconstruct Again with the right half painted out: the same object gets a mesh of the left half.
    assert report["again"] == ["FINISHED"]
    assert report["last_error"] == ""
    assert report["new_objects"] == 0
    assert report["same_object"]
    assert report["second"]["mask_source"] == "user"
    assert report["second_mask"]["object_pixels"] == 120 * 60
    assert report["second_mask"]["columns"] == [40, 160]
    assert report["mask_images"] == ["bar mask"]  # replaced, not a second image
    assert report["editor_after"] == "bar mask"  # the editor shows the mask the new mesh was built from
    # The bar was 4 times as wide as tall, now 2: the mesh (1 unit tall) is about half as wide.
    first, second = report["first"]["width_per_height"], report["second"]["width_per_height"]
    assert second == pytest.approx(first / 2, rel=0.25), (first, second)
    print(f"\nwidth per unit of height: {first:.2f} from the cut-out, {second:.2f} with the right half painted out")
    assert report["undo_steps"] == ["Reconstruct bar", "Reconstruct bar again"]


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
    assert not re.search(r"[0-9a-f]{32}", report["last_error"])  # the photo's name, not the request id
    assert report["status"].startswith("batch finished: 3 of 4")  # the summary stays on top of the failures
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


def test_file_new_during_a_job_keeps_the_timer_and_lands_the_mesh(addon_zip, backend, tmp_path):
    report = run_scenario("new_file_during_job", addon_zip, backend.address, str(PHOTO), resources=tmp_path)
    assert report["timer_registered"]  # once: not persistent, so the job's result was dropped silently
    assert report["running_shown"]  # progress and Cancel are back in the new file's panel
    assert report["meshes"] == ["coffee"]


def test_a_crash_before_saving_loses_no_photo_on_resume(addon_zip, backend, tmp_path):
    folder = photo_folder(tmp_path)
    blend = tmp_path / "saved-early.blend"
    first = run_scenario(
        "batch_crash_before_save", addon_zip, backend.address, str(folder), str(blend), resources=tmp_path
    )
    states = {Path(item["path"]).name: item["state"] for item in first["queue"]["items"]}
    assert states["a_cup.jpg"] == "done"  # the queue says done, but the saved file never had the mesh
    second = run_scenario("batch_resume", addon_zip, backend.address, str(folder), str(blend), resources=tmp_path)
    assert second["meshes"] == ["a_cup", "b_cup", "c_cup"]


def test_a_bad_key_file_is_a_one_line_error_naming_it(addon_zip, backend, tmp_path):
    not_a_key = tmp_path / "notes.txt"
    not_a_key.write_text("hello")
    report = run_scenario("bad_key_file", addon_zip, backend.address, str(PHOTO), str(not_a_key), resources=tmp_path)
    assert str(not_a_key) in report["last_error"]
    assert "not a CurveZMQ key file" in report["last_error"]
    assert "Traceback" not in report["raised"]
    assert report["raised"]


def test_online_access_off_refuses_a_remote_backend(addon_zip, tmp_path):
    report = run_scenario("online_access_off", addon_zip, "tcp://127.0.0.1:1", str(PHOTO), resources=tmp_path)
    assert "online access is off" in report["last_error"]
    assert "tcp://192.0.2.1:5557" in report["last_error"]
    assert report["seconds"] < 2  # refused before any connection is tried


def test_a_cancel_is_not_reported_as_an_error(addon_zip, backend, tmp_path):
    report = run_scenario("cancel", addon_zip, backend.address, str(PHOTO), resources=tmp_path)
    assert report["status"] == "coffee: cancelled"
    assert report["last_error"] == ""


def test_a_packed_image_is_reconstructed(addon_zip, backend, tmp_path):
    report = run_scenario("packed_image", addon_zip, backend.address, str(PHOTO), resources=tmp_path)
    assert report["meshes"] == ["coffee"]  # once: "file not found"
    assert report["last_error"] == ""


def test_the_local_backend_starts_in_the_project_and_stops_with_the_add_on(addon_zip, tmp_path):
    torch.manual_seed(1)
    checkpoint = save_checkpoint(ZeroShapeW(get_config("tiny")), tmp_path / "tiny.safetensors")
    venv_python = ROOT / ".venv" / "bin" / "python"
    if not venv_python.is_file():
        pytest.skip("no project virtual environment (.venv)")
    address = f"tcp://127.0.0.1:{free_port()}"
    arguments = f"--checkpoint {checkpoint} --device cpu --token-file {tmp_path / 'token'}"
    report = run_scenario("local_backend", addon_zip, address, str(venv_python), arguments, resources=tmp_path)
    assert report["answered"]
    assert Path(report["cwd"]) == ROOT  # once: the system Python's folder, through the venv's symlink
    assert report["exit_status"] is not None  # disabling the add-on stopped it
    assert not Path(f"/proc/{report['pid']}").exists() or report["exit_status"] is not None


def test_reconstruct_is_greyed_out_with_the_reason_while_the_backend_is_unreachable(addon_zip, backend, tmp_path):
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    report = run_scenario("greyed_out", addon_zip, nowhere, str(PHOTO), backend.address, resources=tmp_path)
    assert report["enabled_before_check"]  # nothing known yet: the button itself pings on press
    assert not report["enabled_without_backend"]
    assert "nothing listens there" in report["problem"]
    assert report["enabled_with_backend"]
