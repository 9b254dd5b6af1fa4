"""The add-on's operators (bpy): reconstruct (and again, with an edited mask), batch import and resume, cancel,
check and start/stop the backend."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import bpy
from bpy_extras.io_utils import ExportHelper

from . import batch as batch_module
from .backend_status import problem_line, ready_line
from .jobs import (
    STATE,
    backend_reachable,
    mask_image,
    mask_png,
    queue_file,
    read_mask_file,
    read_source,
    reconstruction_source,
    request_options,
    resume_blocked_because,
    source_image,
    start_batch,
    status,
    stop_local_backend,
    submit_job,
)
from .properties import make_client, preferences
from .protocol import DEFAULT_ADDRESS
from .scene import COLOR_ATTRIBUTE
from .texture_bake import bake_vertex_colours


class ZEROSHAPE_OT_reconstruct(bpy.types.Operator):
    """Reconstruct a 3D mesh from the chosen photo with the ZeroShape-W backend"""

    bl_idname = "zeroshape.reconstruct"
    bl_label = "Reconstruct from Image"

    @classmethod
    def poll(cls, context):
        if context.window_manager.zeroshape_running:
            cls.poll_message_set("a reconstruction is already running")
            return False
        settings = context.scene.zeroshape
        if settings.source == "FILE" and not settings.filepath:
            cls.poll_message_set("choose a photo first")
            return False
        if STATE.backend_problem:  # from the background check (jobs.watch_backend), a few seconds old at most
            cls.poll_message_set(STATE.backend_problem)
            return False
        return True

    def execute(self, context):
        settings = context.scene.zeroshape
        try:
            name, data = read_source(context)
            options = request_options(context)
            mask = read_mask_file(context)
            photo_image = source_image(context).name if settings.source != "FILE" else ""
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        if not _backend_answers(self, context):
            return {"CANCELLED"}
        photo = bpy.path.abspath(settings.filepath) if settings.source == "FILE" else ""
        submit_job(context, name, data, options, None, photo, mask=mask, photo_image=photo_image)
        self.report({"INFO"}, f"reconstructing {name}…")
        return {"FINISHED"}


def _backend_answers(operator, context) -> bool:
    """Ping the backend; when it does not answer, say so (panel, status, report) and return False."""
    error = backend_reachable(context)
    if error is not None:
        prefs = preferences(context)
        context.window_manager.zeroshape_backend = problem_line(error, prefs.address if prefs else DEFAULT_ADDRESS)
        status(context, str(error), error=True)
        operator.report({"ERROR"}, str(error))
    return error is None


class ZEROSHAPE_OT_edit_mask(bpy.types.Operator):
    """Paint the mask the selected reconstruction was built from, in an Image Editor (black removes, white adds);
    then Reconstruct Again"""

    bl_idname = "zeroshape.edit_mask"
    bl_label = "Edit Mask"

    @classmethod
    def poll(cls, context):
        if mask_image(context.active_object) is None:
            cls.poll_message_set("select a reconstruction: its mask comes with it")
            return False
        return True

    def execute(self, context):
        image = mask_image(context.active_object)
        space = _image_editor(context)
        if space is None:
            self.report(
                {"WARNING"},
                f"no Image Editor to show the mask in: open one, choose the image “{image.name}” and paint it in "
                "Paint mode (black removes, white adds), then Reconstruct Again",
            )
            return {"CANCELLED"}
        space.image = image
        space.ui_mode = "PAINT"
        paint = context.scene.tool_settings.image_paint.unified_paint_settings
        paint.use_unified_color = True  # every brush paints black; X swaps to white
        paint.color, paint.secondary_color = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        self.report({"INFO"}, f"paint “{image.name}”: black removes, white adds; then Reconstruct Again")
        return {"FINISHED"}


def _image_editor(context):
    """An Image Editor's space to paint in: one that is open (in any window), else one in a new window (a copy of
    the area the button was pressed in, turned into an Image Editor); None without a window to open (background
    mode)."""
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "IMAGE_EDITOR":
                return area.spaces.active
    if bpy.app.background or context.window is None or context.area is None:
        return None
    windows = set(context.window_manager.windows)
    with context.temp_override(window=context.window, area=context.area):
        bpy.ops.screen.area_dupli("INVOKE_DEFAULT")
    opened = [window for window in context.window_manager.windows if window not in windows]
    if not opened:
        return None
    area = opened[0].screen.areas[0]
    area.type = "IMAGE_EDITOR"
    return area.spaces.active


class ZEROSHAPE_OT_reconstruct_again(bpy.types.Operator):
    """Reconstruct the selected object again from its photo and options, with its mask as painted now; the object
    keeps its place and gets the new mesh"""

    bl_idname = "zeroshape.reconstruct_again"
    bl_label = "Reconstruct Again"

    @classmethod
    def poll(cls, context):
        if context.window_manager.zeroshape_running:
            cls.poll_message_set("a reconstruction is already running")
            return False
        if mask_image(context.active_object) is None:
            cls.poll_message_set("select a reconstruction: its mask comes with it")
            return False
        if STATE.backend_problem:
            cls.poll_message_set(STATE.backend_problem)
            return False
        return True

    def execute(self, context):
        obj = context.active_object
        try:
            data, photo, photo_image, options = reconstruction_source(obj)
            mask = mask_png(mask_image(obj))
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        if not _backend_answers(self, context):
            return {"CANCELLED"}
        options = dataclasses.replace(options, return_mask=True)
        submit_job(context, obj.name, data, options, None, photo, mask=mask, photo_image=photo_image, target=obj.name)
        self.report({"INFO"}, f"reconstructing {obj.name} again with its mask…")
        return {"FINISHED"}


def _meshes_selected(operator_class, context, otherwise: str) -> bool:
    """An operator's poll: is a mesh selected? If not, the greyed-out button says `otherwise`."""
    if any(obj.type == "MESH" for obj in context.selected_objects):
        return True
    operator_class.poll_message_set(otherwise)
    return False


class ZEROSHAPE_OT_bake_texture(bpy.types.Operator):
    """Bake the selected reconstructions' colours into UV-mapped image textures, so exports keep them"""

    bl_idname = "zeroshape.bake_texture"
    bl_label = "Bake Texture"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 (Blender reads a plain set)

    @classmethod
    def poll(cls, context):
        return _meshes_selected(cls, context, "select a reconstructed mesh")

    def execute(self, context):
        size = int(context.scene.zeroshape.texture_size)
        meshes = [obj for obj in context.selected_objects if obj.type == "MESH"]
        baked, problems = [], []
        for obj in meshes:
            try:
                baked.append(bake_vertex_colours(context, obj, size).name)
            except (ValueError, RuntimeError) as error:  # RuntimeError: Blender's own bake refused
                problems.append(f"{obj.name}: {error}")
        if problems:
            self.report({"WARNING"} if baked else {"ERROR"}, "; ".join(problems))
        if baked:
            status(context, f"baked {len(baked)} texture(s) of {size} px: {', '.join(baked)}")
        return {"FINISHED"} if baked else {"CANCELLED"}


class ZEROSHAPE_OT_export_fbx(bpy.types.Operator, ExportHelper):
    """Export the selected reconstructions as FBX with their colours: FBX keeps image textures, not colour attributes,
    so each one not baked yet is baked first (at the panel's texture size)"""

    bl_idname = "zeroshape.export_fbx"
    bl_label = "Export FBX with Colours"
    filename_ext = ".fbx"
    filter_glob: bpy.props.StringProperty(default="*.fbx", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return _meshes_selected(cls, context, "select the reconstructions to export")

    def execute(self, context):
        size = int(context.scene.zeroshape.texture_size)
        meshes = [obj for obj in context.selected_objects if obj.type == "MESH"]
        baked = []
        for obj in meshes:
            if obj.data.color_attributes.get(COLOR_ATTRIBUTE) is None:
                continue  # baked already, or never coloured: exported as it is
            try:
                baked.append(bake_vertex_colours(context, obj, size).name)
            except (ValueError, RuntimeError) as error:
                self.report({"ERROR"}, f"{obj.name}: {error}; nothing exported")
                return {"CANCELLED"}
        for obj in meshes:  # the bake selects one object at a time: export what the artist selected
            obj.select_set(True)
        bpy.ops.export_scene.fbx(filepath=self.filepath, use_selection=True, path_mode="COPY", embed_textures=True)
        note = f" (baked first: {', '.join(baked)})" if baked else ""
        status(context, f"exported {len(meshes)} object(s) with their colours to {self.filepath}{note}")
        return {"FINISHED"}


class ZEROSHAPE_OT_check_backend(bpy.types.Operator):
    """Ask the backend whether it is running, and what model and device it uses"""

    bl_idname = "zeroshape.check_backend"
    bl_label = "Check Backend"

    def execute(self, context):
        from .client import BackendError

        wm = context.window_manager
        prefs = preferences(context)
        address = prefs.address if prefs else DEFAULT_ADDRESS
        try:
            info = make_client(context).info(timeout_s=prefs.ping_timeout if prefs else 0.5, retries=2)
        except BackendError as error:
            wm.zeroshape_backend = problem_line(error, address)
            STATE.backend_problem, STATE.backend_error = str(error), error
            self.report({"WARNING"}, str(error))
            return {"CANCELLED"}
        STATE.backend_info, STATE.backend_problem, STATE.backend_error = info, None, None
        wm.zeroshape_backend = ready_line(info)
        return {"FINISHED"}


class ZEROSHAPE_OT_cancel(bpy.types.Operator):
    """Cancel the running reconstruction (and the rest of the batch)"""

    bl_idname = "zeroshape.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        # Bound to Esc in the 3D View: when nothing runs, the key falls through to Blender's own use of it.
        return STATE.job is not None or STATE.batch is not None

    def execute(self, context):
        if STATE.job is not None:
            STATE.job.cancel()
            STATE.job_cancelled = True
        if STATE.batch is not None:
            STATE.cancel_batch_after_current = True
            if STATE.batch_item is not None:
                STATE.batch_item.state = "pending"  # not done: a later resume redoes it
                STATE.batch.save(queue_file())
                STATE.batch_item = None
            STATE.batch = None  # the saved queue keeps the rest for "Resume batch"
        # Nothing is left to stop after the current job: a flag left set would end the next Resume before it starts.
        STATE.cancel_batch_after_current = False
        context.window_manager.zeroshape_running = False
        status(context, "cancelled")
        return {"FINISHED"}


class ZEROSHAPE_OT_cancel_after_current(bpy.types.Operator):
    """Finish the photo being reconstructed, then stop the batch (the rest stays queued)"""

    bl_idname = "zeroshape.cancel_after_current"
    bl_label = "Stop after current"

    def execute(self, context):
        STATE.cancel_batch_after_current = True
        return {"FINISHED"}


class ZEROSHAPE_OT_batch_import(bpy.types.Operator):
    """Reconstruct every photo in a folder; results are laid out in a grid at the 3D cursor"""

    bl_idname = "zeroshape.batch_import"
    bl_label = "Batch Import Folder"

    def execute(self, context):
        folder = bpy.path.abspath(context.scene.zeroshape.batch_folder)
        try:
            queue = batch_module.BatchQueue.from_folder(folder, origin=tuple(context.scene.cursor.location))
        except FileNotFoundError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        if not queue.items:
            self.report({"ERROR"}, f"{folder}: no supported images (JPEG, PNG, WebP, TIFF, BMP)")
            return {"CANCELLED"}
        if not _backend_answers(self, context):
            return {"CANCELLED"}
        queue.save(queue_file())
        start_batch(context, queue)
        self.report({"INFO"}, f"queued {queue.total} photo(s)")
        return {"FINISHED"}


class ZEROSHAPE_OT_batch_resume(bpy.types.Operator):
    """Continue a batch saved before Blender closed or the batch was cancelled"""

    bl_idname = "zeroshape.batch_resume"
    bl_label = "Resume Batch"

    @classmethod
    def poll(cls, context):
        reason = resume_blocked_because()
        if reason:
            cls.poll_message_set(reason)
        return not reason

    def execute(self, context):
        queue = batch_module.BatchQueue.load(queue_file())
        if queue is None or queue.complete:
            self.report({"INFO"}, "nothing left to do")
            return {"CANCELLED"}
        if not _backend_answers(self, context):
            return {"CANCELLED"}
        done = {obj.name for obj in bpy.data.objects}
        for item in queue.items:  # a restart after a crash: an object that exists is not made again
            if item.state == "pending" and item.object_name and item.object_name in done:
                item.state = "done"
            elif item.state == "done" and item.object_name not in done:
                item.state = "pending"  # Blender stopped before the file was saved: the mesh was lost with it
        start_batch(context, queue)
        self.report({"INFO"}, f"resuming: {queue.total - queue.finished} photo(s) left")
        return {"FINISHED"}


class ZEROSHAPE_OT_start_backend(bpy.types.Operator):
    """Start a local ZeroShape-W backend with the Python and arguments set in the preferences"""

    bl_idname = "zeroshape.start_backend"
    bl_label = "Start local backend"

    def execute(self, context):
        import subprocess

        from .local_backend import backend_command

        prefs = preferences(context)
        python = bpy.path.abspath(prefs.backend_python) if prefs else ""
        if not python or not Path(python).is_file():
            self.report({"ERROR"}, "set 'Backend Python' in the add-on preferences (the project's .venv/bin/python)")
            return {"CANCELLED"}
        if STATE.backend_process is not None and STATE.backend_process.poll() is None:
            self.report({"INFO"}, "the backend this Blender started is already running")
            return {"CANCELLED"}
        if backend_reachable(context) is None:  # one left by an earlier session, or started by hand: use it
            self.report({"INFO"}, f"a backend already answers at {prefs.address}: using it")
            bpy.ops.zeroshape.check_backend()
            return {"CANCELLED"}
        # It stops by itself once this Blender is gone, even after a crash (no atexit runs then).
        command, folder = backend_command(python, prefs.address, prefs.backend_arguments, parent_pid=os.getpid())
        STATE.backend_process = subprocess.Popen(command, cwd=str(folder))
        self.report({"INFO"}, f"starting the backend on {prefs.address} (ready in a few seconds)")
        return {"FINISHED"}


class ZEROSHAPE_OT_stop_backend(bpy.types.Operator):
    """Stop the local backend this Blender started"""

    bl_idname = "zeroshape.stop_backend"
    bl_label = "Stop local backend"

    def execute(self, context):
        if not stop_local_backend():
            self.report({"INFO"}, "no backend started from this Blender is running")
            return {"CANCELLED"}
        return {"FINISHED"}
