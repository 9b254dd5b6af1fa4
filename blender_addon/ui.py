"""The add-on's Blender side: settings, preferences, operators, the sidebar panel and the timer (bpy).

Threads never touch Blender data: a reconstruction runs in the client's background thread and reports
into a queue; `tick()`, a `bpy.app.timers` function on the main thread, drains that queue, updates the
progress shown in the panel and imports finished meshes. (Timers do not run in background mode, so the
tests call `tick()` themselves.)
"""

from __future__ import annotations

import time
from pathlib import Path

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, FloatProperty, PointerProperty, StringProperty

from . import batch as batch_module
from . import scene as scene_module
from .protocol import DEFAULT_ADDRESS, ReconstructOptions

PACKAGE = __package__
TICK_SECONDS = 0.1


# ----------------------------------------------------------------------------------------- state
class _State:
    """Runtime state (not saved in the .blend): the running job and the batch."""

    def __init__(self) -> None:
        self.job = None
        self.job_name = ""
        self.job_location = None
        self.job_photo = ""
        self.batch: batch_module.BatchQueue | None = None
        self.batch_item: batch_module.BatchItem | None = None
        self.cancel_batch_after_current = False
        self.backend_process = None


STATE = _State()


def preferences(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(PACKAGE)
    return addon.preferences if addon else None


def make_client(context=None):
    from .client import Client, CurveKeys

    prefs = preferences(context)
    address = prefs.address if prefs else DEFAULT_ADDRESS
    curve = None
    if prefs and prefs.use_auth:
        curve = CurveKeys.from_files(
            bpy.path.abspath(prefs.server_public_key), bpy.path.abspath(prefs.client_secret_key)
        )
    heartbeat = prefs.heartbeat_timeout if prefs else 10.0
    return Client(address, curve=curve, heartbeat_timeout_s=heartbeat)


def queue_file() -> Path:
    """The batch queue lives in the extension's user folder, which survives add-on upgrades."""
    try:
        folder = bpy.utils.extension_path_user(PACKAGE, create=True)
    except (ValueError, AttributeError):  # installed as a legacy add-on
        folder = str(Path(bpy.utils.user_resource("CONFIG", path="zeroshape_w", create=True)))
    return Path(folder) / "batch_queue.json"


def status(context, text: str, error: bool = False) -> None:
    wm = context.window_manager
    wm.zeroshape_status = text
    if error:
        wm.zeroshape_last_error = text
        print(f"ZeroShape-W: {text}")
    for window in getattr(context.window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


# ----------------------------------------------------------------------------------------- settings
RESOLUTIONS = [
    ("64", "Draft (64)", "Fast preview"),
    ("128", "Standard (128)", "Good balance"),
    ("256", "Fine (256)", "More detail, slower"),
]


class ZeroShapeSettings(bpy.types.PropertyGroup):
    source: EnumProperty(
        name="Image",
        items=[
            ("FILE", "File", "An image file on disk"),
            ("DATABLOCK", "Blend Image", "An image already in this .blend (saved on disk)"),
            ("EDITOR", "Image Editor", "The image open in an Image Editor"),
        ],
        default="FILE",
    )
    filepath: StringProperty(name="Photo", subtype="FILE_PATH")
    image: PointerProperty(name="Image", type=bpy.types.Image)
    category: StringProperty(name="Category", description='What the object is, e.g. "chair" (empty: "object")')
    resolution: EnumProperty(name="Detail", items=RESOLUTIONS, default="128")
    color: BoolProperty(name="Colour from photo", default=True)
    match_photo: BoolProperty(name="Match photo", description="Add a camera that sees the mesh as the photo did")
    batch_folder: StringProperty(name="Folder", subtype="DIR_PATH")


class ZeroShapePreferences(bpy.types.AddonPreferences):
    bl_idname = PACKAGE

    address: StringProperty(name="Backend address", default=DEFAULT_ADDRESS)
    ping_timeout: FloatProperty(name="Connect timeout (s)", default=0.5, min=0.1, max=30)
    heartbeat_timeout: FloatProperty(name="Give up after silence (s)", default=10.0, min=2, max=600)
    use_auth: BoolProperty(name="CurveZMQ keys", description="For a backend started with --auth (e.g. remote)")
    server_public_key: StringProperty(name="Server public key", subtype="FILE_PATH")
    client_secret_key: StringProperty(name="Your secret key", subtype="FILE_PATH")
    backend_python: StringProperty(
        name="Backend Python",
        subtype="FILE_PATH",
        description="The project's .venv/bin/python, to start a local backend",
    )
    backend_arguments: StringProperty(name="Extra arguments", default="")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "address")
        row = layout.row()
        row.prop(self, "ping_timeout")
        row.prop(self, "heartbeat_timeout")
        layout.prop(self, "use_auth")
        if self.use_auth:
            layout.prop(self, "server_public_key")
            layout.prop(self, "client_secret_key")
        box = layout.box()
        box.label(text="Local backend")
        box.prop(self, "backend_python")
        box.prop(self, "backend_arguments")
        row = box.row()
        row.operator(ZEROSHAPE_OT_start_backend.bl_idname)
        row.operator(ZEROSHAPE_OT_stop_backend.bl_idname)


# ----------------------------------------------------------------------------------------- helpers
def read_source(context) -> tuple[str, bytes]:
    """(object name, image file bytes) for the chosen image source; ValueError with a clear message."""
    settings = context.scene.zeroshape
    if settings.source == "FILE":
        path = Path(bpy.path.abspath(settings.filepath))
        if not settings.filepath:
            raise ValueError("choose a photo first")
    else:
        image = settings.image
        if settings.source == "EDITOR":
            image = next(
                (
                    area.spaces.active.image
                    for window in context.window_manager.windows
                    for area in window.screen.areas
                    if area.type == "IMAGE_EDITOR" and area.spaces.active.image
                ),
                None,
            )
        if image is None:
            raise ValueError(
                "no image chosen" if settings.source == "DATABLOCK" else "no image open in an Image Editor"
            )
        path = Path(bpy.path.abspath(image.filepath_from_user()))
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    return path.stem, path.read_bytes()


def request_options(context) -> ReconstructOptions:
    settings = context.scene.zeroshape
    return ReconstructOptions(
        resolution=int(settings.resolution),
        category=settings.category.strip() or "object",
        frame="blender",
        color=settings.color,
    )


def backend_reachable(context) -> str | None:
    """None when the backend answers a ping quickly, else a message saying what to do."""
    from .client import BackendError

    prefs = preferences(context)
    timeout = prefs.ping_timeout if prefs else 0.5
    try:
        make_client(context).ping(timeout_s=timeout, retries=2)
    except BackendError as error:
        return str(error)
    return None


def add_match_camera(context, obj, metadata: dict) -> None:
    """A camera posed and focused as the model's estimate of the photo's camera, with the photo behind."""
    transform = np.asarray(metadata["frame_transform"], dtype=np.float64)  # model frame → mesh frame
    normalisation = metadata["normalisation"]
    centroid, scale = np.asarray(normalisation["centroid"]), float(normalisation["scale"])
    camera_model = -centroid / scale  # the camera sits at the camera-frame origin
    position = transform[:3, :3] @ camera_model + transform[:3, 3]
    forward = transform[:3, :3] @ np.array([0.0, 0.0, 1.0])
    down = transform[:3, :3] @ np.array([0.0, 1.0, 0.0])
    forward /= np.linalg.norm(forward)
    up = -down / np.linalg.norm(down)
    right = np.cross(forward, up)
    # Blender cameras look along their local -Z with +Y up.
    rotation = np.stack([right, up, -forward], axis=1)
    import mathutils

    camera_data = bpy.data.cameras.new(f"{obj.name} camera")
    info = metadata["camera"]
    camera_data.sensor_fit = "HORIZONTAL"
    camera_data.sensor_width = 36.0
    camera_data.lens = info["focal_length_px"] / info["image_size_px"] * camera_data.sensor_width
    camera = bpy.data.objects.new(f"{obj.name} camera", camera_data)
    matrix = mathutils.Matrix.Identity(4)
    for i in range(3):
        for j in range(3):
            matrix[i][j] = rotation[i, j]
        matrix[i][3] = position[i]
    camera.matrix_world = obj.matrix_world @ matrix
    scene_module.reconstruction_collection(context.scene).objects.link(camera)
    photo_path = metadata.get("blender_photo")
    if photo_path and Path(photo_path).is_file():
        image = bpy.data.images.load(photo_path, check_existing=True)
        background = camera_data.background_images.new()
        background.image = image
        camera_data.show_background_images = True


# ----------------------------------------------------------------------------------------- timer
def tick() -> float | None:
    """Drain job events on the main thread. Returns the next delay, or None when there is nothing to do."""
    context = bpy.context
    wm = context.window_manager
    job = STATE.job
    if job is None:
        return _start_next_batch_item(context)
    while True:
        try:
            event = job.events.get_nowait()
        except Exception:  # queue.Empty
            return TICK_SECONDS
        kind = event[0]
        if kind == "progress":
            wm.zeroshape_stage, wm.zeroshape_progress = event[1], float(event[2])
            status(context, f"{STATE.job_name}: {event[1]} {event[2]:.0%}")
            continue
        STATE.job = None
        wm.zeroshape_running = STATE.batch is not None
        if kind == "result":
            _import_result(context, event[1])
        else:
            _job_failed(context, event[1])
        return _start_next_batch_item(context) if STATE.batch is not None else None


def _import_result(context, result) -> None:
    started = time.perf_counter()
    obj = scene_module.import_mesh(
        context, STATE.job_name, result.vertices, result.faces, result.colors, location=STATE.job_location
    )
    if context.scene.zeroshape.match_photo and STATE.batch is None:
        try:
            add_match_camera(context, obj, {**result.metadata, "blender_photo": STATE.job_photo})
        except (KeyError, ValueError, RuntimeError) as error:  # the mesh is in; only the camera failed
            status(context, f"{obj.name}: could not add the matching camera ({error})", error=True)
    scene_module.push_undo(f"Reconstruct {obj.name}")
    seconds = time.perf_counter() - started
    status(context, f"{obj.name}: {len(result.faces):,} faces imported in {seconds:.2f} s")
    context.window_manager.zeroshape_progress = 1.0
    if STATE.batch is not None and STATE.batch_item is not None:
        STATE.batch_item.state, STATE.batch_item.object_name = "done", obj.name
        STATE.batch.save(queue_file())
        STATE.batch_item = None


def _job_failed(context, error) -> None:
    message = f"{STATE.job_name}: {error}"
    status(context, message, error=True)
    if STATE.batch is not None and STATE.batch_item is not None:
        STATE.batch_item.state, STATE.batch_item.message = "failed", str(error)
        STATE.batch.save(queue_file())
        STATE.batch_item = None


def _start_next_batch_item(context) -> float | None:
    queue = STATE.batch
    wm = context.window_manager
    if queue is None:
        wm.zeroshape_running = False
        return None
    item = None if STATE.cancel_batch_after_current else queue.next_pending()
    if item is None:
        stopped_early = not queue.complete
        total = queue.total
        failed = [] if stopped_early else queue.finish(queue_file())
        STATE.batch = None
        STATE.cancel_batch_after_current = False
        wm.zeroshape_running = False
        if stopped_early:
            status(context, "batch stopped; Resume Batch continues it")
            return None
        status(context, f"batch finished: {total - len(failed)} of {total} photo(s) imported")
        for failure in failed:
            status(context, f"{Path(failure.path).name}: {failure.message}", error=True)
        return None
    wm.zeroshape_batch_text = f"{queue.finished + 1} of {queue.total}: {Path(item.path).name}"
    try:
        data = Path(item.path).read_bytes()
    except OSError as error:
        item.state, item.message = "failed", f"cannot read the file ({error})"
        queue.save(queue_file())
        return TICK_SECONDS
    item.state = "running"
    queue.save(queue_file())
    STATE.batch_item = item
    _submit(context, Path(item.path).stem, data, request_options(context), queue.grid_position(item), item.path)
    return TICK_SECONDS


def _submit(context, name: str, data: bytes, options: ReconstructOptions, location, photo: str) -> None:
    STATE.job = make_client(context).submit(data, options)
    STATE.job_name, STATE.job_location, STATE.job_photo = name, location, photo
    wm = context.window_manager
    wm.zeroshape_running, wm.zeroshape_progress, wm.zeroshape_stage = True, 0.0, "queued"
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=TICK_SECONDS)


# ----------------------------------------------------------------------------------------- operators
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
        return True

    def execute(self, context):
        try:
            name, data = read_source(context)
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        problem = backend_reachable(context)
        if problem:
            context.window_manager.zeroshape_backend = "not reachable: start it with `zeroshape-w serve`"
            status(context, problem, error=True)
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        settings = context.scene.zeroshape
        photo = bpy.path.abspath(settings.filepath) if settings.source == "FILE" else ""
        _submit(context, name, data, request_options(context), None, photo)
        self.report({"INFO"}, f"reconstructing {name}…")
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
            wm.zeroshape_backend = f"not reachable at {address}: start it with `zeroshape-w serve`"
            self.report({"WARNING"}, str(error))
            return {"CANCELLED"}
        if info.get("state") == "loading":
            wm.zeroshape_backend = f"loading the model on {info['device']}; jobs sent now wait until it is ready"
            return {"FINISHED"}
        state = "busy" if info["queue_length"] else "ready"
        untrained = ", UNTRAINED model" if info.get("untrained") else ""
        wm.zeroshape_backend = f"{state}: {info['model']} on {info['device']}, {info['queue_length']} queued{untrained}"
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
        if STATE.batch is not None:
            STATE.cancel_batch_after_current = True
            if STATE.batch_item is not None:
                STATE.batch_item.state = "pending"  # not done: a later resume redoes it
                STATE.batch.save(queue_file())
                STATE.batch_item = None
            STATE.batch = None  # the saved queue keeps the rest for "Resume batch"
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
        problem = backend_reachable(context)
        if problem:
            status(context, problem, error=True)
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        queue.save(queue_file())
        STATE.batch = queue
        _start_next_batch_item(context)
        self.report({"INFO"}, f"queued {queue.total} photo(s)")
        return {"FINISHED"}


class ZEROSHAPE_OT_batch_resume(bpy.types.Operator):
    """Continue a batch saved before Blender closed or the batch was cancelled"""

    bl_idname = "zeroshape.batch_resume"
    bl_label = "Resume Batch"

    @classmethod
    def poll(cls, context):
        return STATE.batch is None and queue_file().is_file()

    def execute(self, context):
        queue = batch_module.BatchQueue.load(queue_file())
        if queue is None or queue.complete:
            self.report({"INFO"}, "nothing left to do")
            return {"CANCELLED"}
        problem = backend_reachable(context)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        done = {obj.name for obj in bpy.data.objects}
        for item in queue.items:  # a restart after a crash: an object that exists is not made again
            if item.state == "pending" and item.object_name and item.object_name in done:
                item.state = "done"
        STATE.batch = queue
        _start_next_batch_item(context)
        self.report({"INFO"}, f"resuming: {queue.total - queue.finished} photo(s) left")
        return {"FINISHED"}


class ZEROSHAPE_OT_start_backend(bpy.types.Operator):
    """Start a local ZeroShape-W backend with the Python and arguments set in the preferences"""

    bl_idname = "zeroshape.start_backend"
    bl_label = "Start local backend"

    def execute(self, context):
        import shlex
        import subprocess

        prefs = preferences(context)
        python = bpy.path.abspath(prefs.backend_python) if prefs else ""
        if not python or not Path(python).is_file():
            self.report({"ERROR"}, "set 'Backend Python' in the add-on preferences (the project's .venv/bin/python)")
            return {"CANCELLED"}
        command = [python, "-m", "backend", "serve", "--address", prefs.address, *shlex.split(prefs.backend_arguments)]
        STATE.backend_process = subprocess.Popen(command, cwd=str(Path(python).resolve().parents[2]))
        self.report({"INFO"}, f"starting the backend on {prefs.address} (ready in a few seconds)")
        return {"FINISHED"}


class ZEROSHAPE_OT_stop_backend(bpy.types.Operator):
    """Stop the local backend this Blender started"""

    bl_idname = "zeroshape.stop_backend"
    bl_label = "Stop local backend"

    def execute(self, context):
        process = STATE.backend_process
        if process is None or process.poll() is not None:
            self.report({"INFO"}, "no backend started from this Blender is running")
            return {"CANCELLED"}
        process.terminate()
        STATE.backend_process = None
        return {"FINISHED"}


# ----------------------------------------------------------------------------------------- panel
class ZEROSHAPE_PT_panel(bpy.types.Panel):
    bl_label = "ZeroShape-W"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "ZeroShape"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.zeroshape
        wm = context.window_manager
        row = layout.row()
        row.label(text=f"Backend: {wm.zeroshape_backend or 'not checked'}")
        row.operator(ZEROSHAPE_OT_check_backend.bl_idname, text="", icon="FILE_REFRESH")
        layout.prop(settings, "source", expand=True)
        if settings.source == "FILE":
            layout.prop(settings, "filepath")
        elif settings.source == "DATABLOCK":
            layout.prop(settings, "image")
        layout.prop(settings, "category", placeholder="object")
        layout.prop(settings, "resolution")
        row = layout.row()
        row.prop(settings, "color")
        row.prop(settings, "match_photo")
        layout.operator(ZEROSHAPE_OT_reconstruct.bl_idname, icon="MESH_MONKEY")
        if wm.zeroshape_running:
            layout.progress(factor=wm.zeroshape_progress, type="BAR", text=wm.zeroshape_stage or "working")
            if STATE.batch is not None:
                layout.label(text=wm.zeroshape_batch_text)
                layout.operator(ZEROSHAPE_OT_cancel_after_current.bl_idname)
            layout.operator(ZEROSHAPE_OT_cancel.bl_idname, icon="CANCEL")
        box = layout.box()
        box.label(text="Batch")
        box.prop(settings, "batch_folder")
        row = box.row()
        row.operator(ZEROSHAPE_OT_batch_import.bl_idname)
        row.operator(ZEROSHAPE_OT_batch_resume.bl_idname)
        if wm.zeroshape_status:
            layout.label(
                text=wm.zeroshape_status, icon="ERROR" if wm.zeroshape_status == wm.zeroshape_last_error else "INFO"
            )


def menu_add(self, context):
    self.layout.operator(ZEROSHAPE_OT_reconstruct.bl_idname, icon="MESH_MONKEY")


CLASSES = (
    ZeroShapeSettings,
    ZeroShapePreferences,
    ZEROSHAPE_OT_reconstruct,
    ZEROSHAPE_OT_check_backend,
    ZEROSHAPE_OT_cancel,
    ZEROSHAPE_OT_cancel_after_current,
    ZEROSHAPE_OT_batch_import,
    ZEROSHAPE_OT_batch_resume,
    ZEROSHAPE_OT_start_backend,
    ZEROSHAPE_OT_stop_backend,
    ZEROSHAPE_PT_panel,
)

WM_PROPERTIES = {
    "zeroshape_running": BoolProperty(default=False),
    "zeroshape_progress": FloatProperty(default=0.0, min=0.0, max=1.0),
    "zeroshape_stage": StringProperty(),
    "zeroshape_status": StringProperty(),
    "zeroshape_last_error": StringProperty(),
    "zeroshape_batch_text": StringProperty(),
    "zeroshape_backend": StringProperty(),
}
_KEYMAPS: list = []


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.zeroshape = PointerProperty(type=ZeroShapeSettings)
    for name, prop in WM_PROPERTIES.items():
        setattr(bpy.types.WindowManager, name, prop)
    bpy.types.VIEW3D_MT_add.append(menu_add)
    keyconfig = bpy.context.window_manager.keyconfigs.addon
    if keyconfig is not None:  # None in background mode
        keymap = keyconfig.keymaps.new(name="3D View", space_type="VIEW_3D")
        _KEYMAPS.append((keymap, keymap.keymap_items.new(ZEROSHAPE_OT_cancel.bl_idname, "ESC", "PRESS")))


def unregister() -> None:
    for keymap, item in _KEYMAPS:
        keymap.keymap_items.remove(item)
    _KEYMAPS.clear()
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    if STATE.job is not None:
        STATE.job.cancel()
    bpy.types.VIEW3D_MT_add.remove(menu_add)
    for name in WM_PROPERTIES:
        delattr(bpy.types.WindowManager, name)
    del bpy.types.Scene.zeroshape
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
