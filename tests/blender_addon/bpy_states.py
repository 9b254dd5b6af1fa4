"""Runs inside a fresh Python with bpy: the add-on's states as an artist meets them (issue 40), with the panel as its
real `draw()` lays it out (`training.panel_capture`). Prints a JSON report on the last line.

Usage: python bpy_states.py SCENARIO ZIP ADDRESS [ARGS...]   (BLENDER_USER_RESOURCES must be set)
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time

from bpy_scenario import install, run_until_idle, wait_for_backend

from training.panel_capture import capture_panel, rows_as_text

ADDON = "bl_ext.user_default.zeroshape_w"


def panel_text() -> list[str]:
    import bpy

    panel = importlib.import_module(f"{ADDON}.panel")
    return rows_as_text(capture_panel(panel.ZEROSHAPE_PT_panel, bpy.context))


def call(operator) -> str:
    """Run an operator as a button press would; "" when it ran, else Blender's refusal (with the poll's reason)."""
    try:
        operator()
    except RuntimeError as error:
        return str(error)
    return ""


def tick_until(jobs, condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        jobs.tick()
        time.sleep(0.05)


def meshes(bpy) -> list[str]:
    collection = bpy.data.collections.get("ZeroShape")
    return sorted(obj.name for obj in collection.objects if obj.type == "MESH") if collection else []


def cancel_and_resume(bpy, jobs, settings, folder: str) -> dict:
    """Items 1 and 2: Cancel mid-batch, one Resume finishes it, and a finished batch cannot be resumed."""
    report: dict = {"screens": {}}
    settings.batch_folder, settings.resolution = folder, "64"
    bpy.ops.zeroshape.batch_import()
    tick_until(jobs, lambda: bpy.context.window_manager.zeroshape_stage not in ("", "queued"))
    report["screens"]["running"] = panel_text()
    bpy.ops.zeroshape.cancel()
    run_until_idle(jobs)
    report["screens"]["cancelled"] = panel_text()
    report["meshes_at_cancel"] = meshes(bpy)
    report["resume_refused"] = call(bpy.ops.zeroshape.batch_resume)  # the one press
    run_until_idle(jobs)
    report["meshes"] = meshes(bpy)
    report["status"] = bpy.context.window_manager.zeroshape_status
    report["screens"]["finished"] = panel_text()
    report["resume_after_finish"] = call(bpy.ops.zeroshape.batch_resume)
    return report


def refused_key(bpy, prefs, server_key: str, client_secret: str) -> dict:
    """Item 3: a backend that refuses this client's key is not "not reachable"."""
    prefs.use_auth, prefs.server_public_key, prefs.client_secret_key = True, server_key, client_secret
    refused = call(bpy.ops.zeroshape.check_backend)
    return {"refused": refused, "backend_line": bpy.context.window_manager.zeroshape_backend, "screen": panel_text()}


def model_without_heads(bpy, jobs, prefs, settings, photo: str, nowhere: str) -> dict:
    """Items 3 and 4: a stale "not reachable" line is refreshed by a job that succeeds; a model without gravity or
    category head greys out Upright and says so, and the result's report names the estimates it used."""
    report: dict = {}
    real_address, prefs.address = prefs.address, nowhere
    call(bpy.ops.zeroshape.check_backend)
    report["line_before"] = bpy.context.window_manager.zeroshape_backend
    prefs.address = real_address
    jobs.STATE.backend_problem = None  # what the next background check finds; the line is not refreshed by it here
    settings.filepath, settings.resolution, settings.upright = photo, "64", True
    bpy.ops.zeroshape.reconstruct()
    run_until_idle(jobs)
    report["line_after_job"] = bpy.context.window_manager.zeroshape_backend
    call(bpy.ops.zeroshape.check_backend)
    report["screen"] = panel_text()
    bpy.ops.zeroshape.reconstruct()
    run_until_idle(jobs)
    report["status"] = bpy.context.window_manager.zeroshape_status
    return report


def file_changes_mid_job(bpy, jobs, settings, photo: str, other_blend: str) -> dict:
    """Item 5: options are those of the click, not of the file opened before the result arrived."""
    settings.match_photo = True
    bpy.ops.wm.save_as_mainfile(filepath=other_blend)  # a file whose panel has Match photo on
    bpy.ops.wm.read_homefile(use_empty=True)
    settings = bpy.context.scene.zeroshape
    settings.filepath, settings.resolution, settings.match_photo = photo, "128", False
    bpy.ops.zeroshape.reconstruct()
    bpy.ops.wm.open_mainfile(filepath=other_blend)  # File → Open while the job runs
    report = {"job_running_at_open": jobs.STATE.job is not None}
    run_until_idle(jobs)
    collection = bpy.data.collections.get("ZeroShape")
    report["cameras"] = [o.name for o in collection.objects if o.type == "CAMERA"] if collection else []
    report["meshes"] = meshes(bpy)
    report["status"] = bpy.context.window_manager.zeroshape_status
    return report


def file_new_mid_batch(bpy, jobs, settings, folder: str) -> dict:
    """Item 5: a batch across File → New: what the new file holds is what the summary counts."""
    settings.batch_folder, settings.resolution = folder, "64"
    bpy.ops.zeroshape.batch_import()
    tick_until(jobs, lambda: len(meshes(bpy)) >= 1)
    bpy.ops.wm.read_homefile(use_empty=True)  # File → New: the first mesh stays in the discarded file
    run_until_idle(jobs)
    return {"meshes": meshes(bpy), "status": bpy.context.window_manager.zeroshape_status}


def crashed_blender(bpy, jobs, prefs, python: str, arguments: str, address: str) -> None:
    """Item 6: start the local backend, then die as a crash does (SIGKILL: no atexit, no unregister)."""
    prefs.backend_python, prefs.backend_arguments = python, arguments
    bpy.ops.zeroshape.start_backend()
    answered = wait_for_backend(address)
    print(json.dumps({"pid": jobs.STATE.backend_process.pid, "answered": answered}))
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def export_fbx(bpy, jobs, settings, photo: str, fbx: str) -> dict:
    """Item 7: Export FBX with Colours from an unbaked reconstruction re-imports with its colours."""
    import numpy as np

    settings.filepath, settings.resolution, settings.bake_texture = photo, "64", False
    bpy.ops.zeroshape.reconstruct()
    run_until_idle(jobs)
    report = {"refused": call(lambda: bpy.ops.zeroshape.export_fbx(filepath=fbx)), "exported": os.path.isfile(fbx)}
    report["status"] = bpy.context.window_manager.zeroshape_status
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.import_scene.fbx(filepath=fbx)
    (obj,) = [o for o in bpy.data.objects if o.type == "MESH"]
    nodes = obj.active_material.node_tree.nodes if obj.active_material and obj.active_material.use_nodes else []
    images = [node.image for node in nodes if node.type == "TEX_IMAGE" and node.image is not None]
    report["textured"] = bool(images)
    if images:
        pixels = np.empty(images[0].size[0] * images[0].size[1] * 4, dtype=np.float32)
        images[0].pixels.foreach_get(pixels)
        report["colour_spread"] = float(pixels.reshape(-1, 4)[:, :3].std())
    return report


def main() -> None:
    scenario, zip_path, address, *args = sys.argv[1:]
    bpy, _, jobs = install(zip_path)
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.address = address
    prefs.heartbeat_timeout = 30.0
    settings = bpy.context.scene.zeroshape
    if scenario == "cancel_and_resume":
        report = cancel_and_resume(bpy, jobs, settings, args[0])
    elif scenario == "refused_key":
        report = refused_key(bpy, prefs, args[0], args[1])
    elif scenario == "model_without_heads":
        report = model_without_heads(bpy, jobs, prefs, settings, args[0], args[1])
    elif scenario == "file_changes_mid_job":
        report = file_changes_mid_job(bpy, jobs, settings, args[0], args[1])
    elif scenario == "file_new_mid_batch":
        report = file_new_mid_batch(bpy, jobs, settings, args[0])
    elif scenario == "crashed_blender":
        crashed_blender(bpy, jobs, prefs, args[0], args[1], address)
        return
    elif scenario == "reuse_backend":
        prefs.backend_python = args[0]
        result = call(bpy.ops.zeroshape.start_backend)
        report = {"refused": result, "started": jobs.STATE.backend_process is not None}
        report["backend_line"] = bpy.context.window_manager.zeroshape_backend
    elif scenario == "export_fbx":
        report = export_fbx(bpy, jobs, settings, args[0], args[1])
    elif scenario == "huge_png":
        settings.filepath, settings.resolution = args[0], "64"
        bpy.ops.zeroshape.reconstruct()
        run_until_idle(jobs)
        report = {"last_error": bpy.context.window_manager.zeroshape_last_error}
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
