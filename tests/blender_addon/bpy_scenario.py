"""Runs inside a fresh Python with bpy: install the add-on zip, drive it, print a JSON report on the last line.

Usage: python bpy_scenario.py SCENARIO ZIP ADDRESS [ARGS...]   (BLENDER_USER_RESOURCES must be set)
Timers do not tick in background mode, so the scenario calls the add-on's `tick()` itself.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path


def install(zip_path: str):
    import bpy

    bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    module = importlib.import_module("bl_ext.user_default.zeroshape_w")
    jobs = importlib.import_module("bl_ext.user_default.zeroshape_w.jobs")
    return bpy, module, jobs


def run_until_idle(jobs, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if jobs.tick() is None and jobs.STATE.job is None and jobs.STATE.batch is None:
            return
        time.sleep(0.05)
    raise TimeoutError("the add-on did not finish")


def wait_for_backend(address: str, timeout: float = 90.0) -> bool:
    """Ping `address` with the add-on's own client until it answers; whether it did within `timeout` s."""
    from bl_ext.user_default.zeroshape_w.client import BackendError, Client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            Client(address).ping(timeout_s=1, retries=1)
            return True
        except BackendError:
            time.sleep(0.5)
    return False


def srgb_to_linear(c):
    import numpy as np

    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c):
    import numpy as np

    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.clip(c, 0, None) ** (1 / 2.4) - 0.055)


def bilinear(pixels, uv):
    """Sample an image's pixels [H, W, C] (Blender's order: the first row is the bottom) at UVs [N, 2]."""
    from backend.color import sample_bilinear

    height, width = pixels.shape[:2]
    return sample_bilinear(pixels, uv[:, 0] * width - 0.5, uv[:, 1] * height - 0.5)


def bake_and_export(bpy, settings, jobs, photo: str, out, when: str) -> dict:
    """Reconstruct with colours, bake (on import, or with the operator), export FBX and glTF, import both back and
    compare the colours their textures give with the vertex colours the backend sent."""
    import numpy as np
    from mathutils.kdtree import KDTree

    settings.filepath = photo
    settings.resolution = "64"
    settings.bake_texture = when == "on_import"
    settings.texture_size = "1024"
    bpy.ops.zeroshape.reconstruct()
    run_until_idle(jobs)
    (obj,) = [o for o in bpy.data.collections["ZeroShape"].objects if o.type == "MESH"]
    report: dict = {"status": bpy.context.window_manager.zeroshape_status}
    mesh = obj.data
    world = np.array(obj.matrix_world)
    positions = np.array([list(v.co) for v in mesh.vertices]) @ world[:3, :3].T + world[:3, 3]
    if when == "operator":
        # An untrained backend colours its blob nearly uniformly; paint smooth stripes in every channel instead, so
        # the comparison sees colours that change across the mesh (as a photo's do).
        attribute = mesh.color_attributes["Col"]
        local = np.array([list(v.co) for v in mesh.vertices])
        colours = 0.5 + 0.4 * np.sin(local[:, [0, 1, 2]] * [7.0, 9.0, 11.0] + [0.0, 1.0, 2.0])
        rgba = np.concatenate([colours, np.ones((len(colours), 1))], axis=1).astype(np.float32)
        attribute.data.foreach_set("color_srgb", rgba.ravel())
        attribute.data.foreach_get("color_srgb", rgba.ravel())
        colours = rgba[:, :3].copy()  # as stored: rounded to bytes
        for other in bpy.context.view_layer.objects:
            other.select_set(False)
        obj.select_set(True)
        started = time.perf_counter()
        report["operator"] = sorted(bpy.ops.zeroshape.bake_texture())
        report["bake_seconds"] = time.perf_counter() - started
        report["status"] = bpy.context.window_manager.zeroshape_status
        try:
            bpy.ops.zeroshape.bake_texture()
            report["second_bake"] = "accepted"
        except RuntimeError as error:  # an operator that reports ERROR raises in background mode
            report["second_bake"] = str(error)
    report["color_attributes_after_bake"] = [a.name for a in mesh.color_attributes]
    report["uv_maps"] = [uv.name for uv in mesh.uv_layers]
    report["packed"] = any(i.packed_file is not None for i in bpy.data.images if i.name.startswith(obj.name))
    if when != "operator":
        return report
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    out.mkdir(parents=True, exist_ok=True)
    bpy.ops.export_scene.gltf(filepath=str(out / "mesh.glb"), use_selection=True, export_format="GLB")
    bpy.ops.export_scene.fbx(filepath=str(out / "mesh.fbx"), use_selection=True, path_mode="COPY", embed_textures=True)
    tree = KDTree(len(positions))
    for index, position in enumerate(positions):
        tree.insert(position, index)
    tree.balance()
    for kind in ("glb", "fbx"):
        before = set(bpy.data.objects)
        if kind == "glb":
            bpy.ops.import_scene.gltf(filepath=str(out / "mesh.glb"))
        else:
            bpy.ops.import_scene.fbx(filepath=str(out / "mesh.fbx"))
        (back,) = [o for o in bpy.data.objects if o not in before and o.type == "MESH"]
        material = back.active_material
        principled = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
        feeding = [link.from_node for link in material.node_tree.links if link.to_socket == principled.inputs[0]]
        entry = {"base_colour_from": [n.type for n in feeding], "color_attributes": len(back.data.color_attributes)}
        if feeding and feeding[0].type == "TEX_IMAGE" and feeding[0].image is not None:
            image = feeding[0].image
            width, height = image.size
            pixels = np.array(image.pixels[:], dtype=np.float32).reshape(height, width, -1)[..., :3]
            entry["image_size"] = [width, height]
            back_mesh = back.data
            back_world = np.array(back.matrix_world)
            back_positions = np.array([list(v.co) for v in back_mesh.vertices]) @ back_world[:3, :3].T
            back_positions += back_world[:3, 3]
            matched, distances = [], []
            for position in back_positions:
                _, index, distance = tree.find(position)
                matched.append(index)
                distances.append(distance)
            matched = np.array(matched)
            entry["max_position_error"] = float(max(distances))
            loops = np.array([loop.vertex_index for loop in back_mesh.loops])
            uv = np.zeros(len(back_mesh.loops) * 2, dtype=np.float32)
            back_mesh.uv_layers.active.data.foreach_get("uv", uv)
            uv = uv.reshape(-1, 2)
            expected = colours[matched[loops]]
            sampled = bilinear(pixels, uv)
            entry["vertex_mean_error_255"] = float(np.abs(sampled - expected).mean() * 255)
            entry["vertex_mean_signed_255"] = ((sampled - expected).mean(axis=0) * 255).tolist()
            entry["vertex_p99_error_255"] = float(np.percentile(np.abs(sampled - expected).max(axis=1), 99) * 255)
            # Inside each triangle (its centroid): the mean of its corners' colours, blended in linear light as a
            # renderer does.
            triangles = np.array([list(p.loop_indices) for p in back_mesh.polygons if p.loop_total == 3])
            corner = srgb_to_linear(expected[triangles])
            inside = linear_to_srgb(corner.mean(axis=1))
            sampled = bilinear(pixels, uv[triangles].mean(axis=1))
            entry["centroid_mean_error_255"] = float(np.abs(sampled - inside).mean() * 255)
        report[kind] = entry
    report["vertices"] = len(positions)
    report["colour_spread_255"] = float(colours.std(axis=0).mean() * 255)
    report["colour_mean_255"] = (colours.mean(axis=0) * 255).tolist()
    return report


def mesh_report(obj) -> dict:
    """A reconstruction's mesh as the mask test compares it: size, extents and width per unit of height."""
    import numpy as np

    coordinates = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", coordinates)
    extent = np.ptp(coordinates.reshape(-1, 3), axis=0)
    return {
        "vertices": len(obj.data.vertices),
        "extent": extent.tolist(),
        "width_per_height": float(extent[0] / extent[2]),
        "mask_source": json.loads(obj["zeroshape"])["mask_source"],
    }


def mask_report(image) -> dict:
    import numpy as np

    width, height = image.size
    pixels = np.empty(width * height * image.channels, np.float32)
    image.pixels.foreach_get(pixels)
    pixels = pixels.reshape(height, width, image.channels)[::-1]  # the first row at the top, as in the photo
    columns = np.nonzero((pixels[..., 0] >= 0.5).any(axis=0))[0]
    return {
        "name": image.name,
        "size": [width, height],
        "packed": image.packed_file is not None,
        "object_pixels": int((pixels[..., 0] >= 0.5).sum()),
        "columns": [int(columns.min()), int(columns.max()) + 1] if len(columns) else [],
    }


def edit_mask_and_reconstruct_again(bpy, settings, jobs, photo: str, cut_from: int) -> dict:
    """Reconstruct a cut-out, open its mask for painting, paint the object out from column `cut_from` (photo
    pixels) to the right edge, and Reconstruct Again."""
    import numpy as np

    report: dict = {}
    settings.filepath = photo
    settings.resolution = "64"
    settings.upright = False  # the camera's up: the mesh's X runs along the photo's rows
    report["operator"] = sorted(bpy.ops.zeroshape.reconstruct())
    run_until_idle(jobs)
    (obj,) = [obj for obj in bpy.data.collections["ZeroShape"].objects if obj.type == "MESH"]
    report["name"] = obj.name
    report["first"] = mesh_report(obj)
    mask = obj["zeroshape_mask"]
    report["first_mask"] = mask_report(mask)
    report["photo_property"] = obj["zeroshape_photo"]
    report["options_property"] = json.loads(obj["zeroshape_options"])
    # Edit Mask: background mode opens no window, so with no Image Editor open it says what to do...
    report["edit_without_editor"] = sorted(bpy.ops.zeroshape.edit_mask())
    # ...and with one open, it shows the mask there in Paint mode.
    area = next(a for a in bpy.context.window_manager.windows[0].screen.areas if a.type == "DOPESHEET_EDITOR")
    area.type = "IMAGE_EDITOR"
    report["edit_with_editor"] = sorted(bpy.ops.zeroshape.edit_mask())
    report["editor"] = [area.spaces.active.image.name, area.spaces.active.mode]
    # The stroke: black paint over the mask from column `cut_from` on, all the way down (Blender's rows run
    # bottom-up; columns are the photo's).
    width, height = mask.size
    pixels = np.empty(width * height * mask.channels, np.float32)
    mask.pixels.foreach_get(pixels)
    pixels = pixels.reshape(height, width, mask.channels)
    pixels[:, cut_from:, :3] = 0.0
    mask.pixels.foreach_set(pixels.ravel())
    objects_before = len(bpy.data.objects)
    report["again"] = sorted(bpy.ops.zeroshape.reconstruct_again())
    run_until_idle(jobs)
    report["new_objects"] = len(bpy.data.objects) - objects_before
    report["same_object"] = bpy.data.objects.get(report["name"]) == obj and obj.type == "MESH"
    report["second"] = mesh_report(obj)
    report["second_mask"] = mask_report(obj["zeroshape_mask"])
    report["editor_after"] = area.spaces.active.image.name if area.spaces.active.image else ""
    report["mask_images"] = sorted(image.name for image in bpy.data.images if image.name.endswith(" mask"))
    report["last_error"] = bpy.context.window_manager.zeroshape_last_error
    return report


def main() -> None:
    scenario, zip_path, address, *args = sys.argv[1:]
    bpy, _, jobs = install(zip_path)
    prefs = bpy.context.preferences.addons["bl_ext.user_default.zeroshape_w"].preferences
    prefs.address = address
    prefs.heartbeat_timeout = 30.0
    scene = bpy.context.scene
    settings = scene.zeroshape
    report: dict = {}
    # Undo cannot be exercised without a window; count the steps the add-on pushes instead.
    from bl_ext.user_default.zeroshape_w import scene as scene_module

    pushed: list[str] = []
    original_push = scene_module.push_undo

    def counting_push(message: str) -> None:
        pushed.append(message)
        original_push(message)

    scene_module.push_undo = counting_push
    if scenario == "single":
        import numpy as np

        photo = args[0]
        scene.cursor.location = (1.0, 2.0, 3.0)
        settings.filepath = photo
        settings.resolution = "64"
        settings.match_photo = len(args) > 1 and args[1] == "match"
        if len(args) > 1 and args[1] == "budget":
            settings.limit_faces, settings.max_faces, settings.real_height = True, 500, 0.3
            settings.upright, settings.category = False, "mug"
        if len(args) > 1 and args[1] == "box":
            settings.use_box, settings.box = True, (200.0, 100.0, 400.0, 300.0)
        objects_before = len(bpy.data.objects)
        result = bpy.ops.zeroshape.reconstruct()
        report["operator"] = sorted(result)
        run_until_idle(jobs)
        new = [obj for obj in bpy.data.collections["ZeroShape"].objects if obj.type == "MESH"]
        cameras = [obj for obj in bpy.data.collections["ZeroShape"].objects if obj.type == "CAMERA"]
        if cameras:
            camera = cameras[0]
            report["camera_lens"] = camera.data.lens
            report["camera_background"] = bool(camera.data.background_images)
            # The camera looks at the mesh: the mesh centre lies in front of it (negative local z).
            mesh_object = new[0]
            points = [mesh_object.matrix_world @ v.co for v in mesh_object.data.vertices[:2000]]
            centre = points[0] * 0
            for point in points:
                centre += point
            centre /= len(points)
            report["mesh_in_front"] = (camera.matrix_world.inverted() @ centre).z < 0
            # Blender's own projection through the match camera agrees with the add-on's maths (camera.py), which
            # tests check against the photo without Blender.
            from bl_ext.user_default.zeroshape_w.camera import match_camera, project
            from bpy_extras.object_utils import world_to_camera_view

            metadata = json.loads(mesh_object["zeroshape"])
            match = match_camera(metadata)
            width, height = match.resolution
            local = np.array([list(v.co) for v in mesh_object.data.vertices[:500]])
            ours = project(match, local)
            theirs, depths = [], []
            for vertex in mesh_object.data.vertices[:500]:
                ndc = world_to_camera_view(scene, camera, mesh_object.matrix_world @ vertex.co)
                theirs.append((ndc.x * width, (1 - ndc.y) * height))
                depths.append(ndc.z)
            # Vertices well in front of the camera (an untrained model's blob may wrap around it; near the camera's
            # plane both projections run off to infinity).
            usable = np.isfinite(ours).all(axis=1) & (np.array(depths) > 0.1)
            report["projected"] = int(usable.sum())
            report["projection_max_px"] = float(np.abs(ours[usable] - np.array(theirs)[usable]).max())
            report["scene_camera"] = scene.camera == camera
            report["render_size"] = [scene.render.resolution_x, scene.render.resolution_y]
            report["photo_size"] = metadata["camera"]["photo_size_px"]
        bpy.ops.zeroshape.check_backend()
        report["backend"] = bpy.context.window_manager.zeroshape_backend
        report["new_objects"] = len(bpy.data.objects) - objects_before
        obj = new[0]
        report["name"] = obj.name
        report["vertices"] = len(obj.data.vertices)
        report["faces"] = len(obj.data.polygons)
        report["location"] = list(obj.location)
        report["scale"] = list(obj.scale)
        metadata = json.loads(obj["zeroshape"])
        report["crop_box"] = metadata["camera"]["crop_box_photo_px"]
        report["up"] = metadata["up"]["source"]
        report["category"] = [metadata["category"], metadata["category_requested"]]
        report["height"] = obj.dimensions.z
        report["collection"] = obj.users_collection[0].name
        report["active"] = bpy.context.view_layer.objects.active == obj
        report["material"] = obj.data.materials[0].name
        links = obj.data.materials[0].node_tree.links
        report["color_node_linked"] = any(link.from_node.type == "VERTEX_COLOR" for link in links)
        report["color_attribute"] = obj.data.color_attributes.active_color.name if obj.data.color_attributes else ""
        report["status"] = bpy.context.window_manager.zeroshape_status
        report["undo_steps"] = pushed
    elif scenario == "mask_edit":
        report.update(edit_mask_and_reconstruct_again(bpy, settings, jobs, args[0], int(args[1])))
        report["undo_steps"] = pushed
    elif scenario == "no_backend":
        settings.filepath = args[0]
        started = time.monotonic()
        try:
            bpy.ops.zeroshape.reconstruct()  # reads the photo, pings, reports
            report["raised"] = ""
        except RuntimeError as error:  # operators that report ERROR raise in background mode
            report["raised"] = str(error)
        report["seconds"] = time.monotonic() - started
        report["last_error"] = bpy.context.window_manager.zeroshape_last_error
        report["objects"] = len(bpy.data.objects)
    elif scenario in ("batch", "batch_interrupted", "batch_resume"):
        folder, blend = args[0], args[1]
        if scenario == "batch_resume":
            bpy.ops.wm.open_mainfile(filepath=blend)
            bpy.ops.zeroshape.batch_resume()
        else:
            settings.batch_folder = folder
            settings.resolution = "64"
            scene.cursor.location = (0.0, 0.0, 0.0)
            bpy.ops.zeroshape.batch_import()
        if scenario == "batch_interrupted":
            deadline = time.monotonic() + 120
            while "ZeroShape" not in bpy.data.collections and time.monotonic() < deadline:
                jobs.tick()
                time.sleep(0.05)
            bpy.ops.wm.save_as_mainfile(filepath=blend)
            report["queue"] = json.loads(jobs.queue_file().read_text())
            report["meshes"] = sorted(obj.name for obj in bpy.data.collections["ZeroShape"].objects)
            print(json.dumps(report))
            sys.stdout.flush()
            import os

            os._exit(0)  # Blender "crashes": no clean shutdown, the queue file is what survives
        run_until_idle(jobs)
        meshes = [obj for obj in bpy.data.collections["ZeroShape"].objects if obj.type == "MESH"]
        report["meshes"] = sorted(obj.name for obj in meshes)
        report["locations"] = sorted([round(v, 3) for v in obj.location] for obj in meshes)
        report["queue"] = json.loads(jobs.queue_file().read_text())
        report["last_error"] = bpy.context.window_manager.zeroshape_last_error
        report["status"] = bpy.context.window_manager.zeroshape_status
        report["undo_steps"] = len(pushed)
    elif scenario == "new_file_during_job":
        settings.filepath = args[0]
        settings.resolution = "64"
        bpy.ops.zeroshape.reconstruct()
        bpy.ops.wm.read_homefile(use_empty=True)  # File → New while the job runs
        report["timer_registered"] = bpy.app.timers.is_registered(jobs.tick)
        report["running_shown"] = bpy.context.window_manager.zeroshape_running
        run_until_idle(jobs)
        collection = bpy.data.collections.get("ZeroShape")
        report["meshes"] = sorted(obj.name for obj in collection.objects) if collection else []
    elif scenario == "batch_crash_before_save":
        folder, blend = args[0], args[1]
        settings.batch_folder = folder
        settings.resolution = "64"
        bpy.ops.wm.save_as_mainfile(filepath=blend)  # saved before any mesh exists
        bpy.ops.zeroshape.batch_import()
        deadline = time.monotonic() + 120
        while "ZeroShape" not in bpy.data.collections and time.monotonic() < deadline:
            jobs.tick()
            time.sleep(0.05)
        report["queue"] = json.loads(jobs.queue_file().read_text())
        print(json.dumps(report))
        sys.stdout.flush()
        import os

        os._exit(0)  # Blender crashes before the file is saved again: the first mesh is lost with it
    elif scenario in ("bad_key_file", "online_access_off"):
        settings.filepath = args[0]
        if scenario == "bad_key_file":
            prefs.use_auth = True
            prefs.server_public_key = args[1]  # not a key file
            prefs.client_secret_key = args[1]
        else:
            bpy.context.preferences.system.use_online_access = False
            prefs.address = "tcp://192.0.2.1:5557"  # TEST-NET-1: another computer
        started = time.monotonic()
        try:
            bpy.ops.zeroshape.reconstruct()
            report["raised"] = ""
        except RuntimeError as error:
            report["raised"] = str(error)
        report["seconds"] = time.monotonic() - started
        report["last_error"] = bpy.context.window_manager.zeroshape_last_error
    elif scenario == "cancel":
        settings.filepath = args[0]
        settings.resolution = "256"
        bpy.ops.zeroshape.reconstruct()
        deadline = time.monotonic() + 60
        while bpy.context.window_manager.zeroshape_stage in ("", "queued") and time.monotonic() < deadline:
            jobs.tick()
            time.sleep(0.05)
        bpy.ops.zeroshape.cancel()
        run_until_idle(jobs)
        report["status"] = bpy.context.window_manager.zeroshape_status
        report["last_error"] = bpy.context.window_manager.zeroshape_last_error
    elif scenario == "packed_image":
        image = bpy.data.images.load(args[0])
        image.pack()
        image.filepath = "//gone/photo.jpg"  # the file is not on disk: only the packed copy remains
        settings.source = "DATABLOCK"
        settings.image = image
        settings.resolution = "64"
        bpy.ops.zeroshape.reconstruct()
        run_until_idle(jobs)
        collection = bpy.data.collections.get("ZeroShape")
        report["meshes"] = sorted(obj.name for obj in collection.objects) if collection else []
        report["last_error"] = bpy.context.window_manager.zeroshape_last_error
    elif scenario == "local_backend":
        python, arguments = args[0], args[1]
        prefs.backend_python = python
        prefs.backend_arguments = arguments
        bpy.ops.zeroshape.start_backend()
        process = jobs.STATE.backend_process
        report["pid"] = process.pid
        report["answered"] = wait_for_backend(address)
        import os

        report["cwd"] = os.readlink(f"/proc/{process.pid}/cwd")
        bpy.ops.preferences.addon_disable(module="bl_ext.user_default.zeroshape_w")
        report["exit_status"] = process.poll()
    elif scenario == "greyed_out":
        settings.filepath = args[0]
        report["enabled_before_check"] = bpy.ops.zeroshape.reconstruct.poll()
        jobs.watch_backend()  # what the persistent timer does every few seconds
        jobs.STATE.backend_check.join(timeout=10)
        report["enabled_without_backend"] = bpy.ops.zeroshape.reconstruct.poll()
        report["problem"] = jobs.STATE.backend_problem or ""
        prefs.address = args[1]  # a running backend
        jobs.watch_backend()
        jobs.STATE.backend_check.join(timeout=10)
        report["enabled_with_backend"] = bpy.ops.zeroshape.reconstruct.poll()
    elif scenario == "bake_export":
        report.update(bake_and_export(bpy, settings, jobs, args[0], Path(args[1]), args[2]))
    elif scenario == "import_benchmark":
        import numpy as np

        rng = np.random.default_rng(0)
        vertices = rng.random((100_000, 3), dtype=np.float32)
        faces = rng.integers(0, 100_000, size=(200_000, 3)).astype(np.uint32)
        colors = rng.integers(0, 255, size=(100_000, 4)).astype(np.uint8)
        times = []
        for index in range(3):
            started = time.perf_counter()
            scene_module.import_mesh(bpy.context, f"bench{index}", vertices, faces, colors)
            times.append(time.perf_counter() - started)
        report["seconds"] = times
    print(json.dumps(report))


if __name__ == "__main__":
    main()
