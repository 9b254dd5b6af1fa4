"""Jobs on the main thread (bpy): the running reconstruction, the batch's state machine and the timer.

Threads never touch Blender data: a reconstruction runs in the client's background thread and reports into a
queue; `tick()`, a `bpy.app.timers` function on the main thread, drains that queue, updates the progress
shown in the panel and imports finished meshes. (Timers do not run in background mode, so the tests call
`tick()` themselves.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import bpy

from . import batch as batch_module
from . import camera as camera_module
from . import scene as scene_module
from .mask_image import grey_png, pixels_to_mask
from .properties import PACKAGE, make_client, preferences
from .protocol import MAX_IMAGE_BYTES, ProtocolError, ReconstructOptions
from .texture_bake import bake_vertex_colours

TICK_SECONDS = 0.1


class _State:
    """Runtime state (not saved in the .blend): the running job and the batch."""

    def __init__(self) -> None:
        self.job = None
        self.job_name = ""
        self.job_location = None
        self.job_photo = ""
        self.job_photo_image = ""
        """The Blender image the photo came from (sources other than File), to reconstruct it again."""
        self.job_options: ReconstructOptions | None = None
        self.job_target = ""
        """Reconstruct Again: the object whose mesh the result replaces ("" for a new object)."""
        self.job_request_id = ""
        self.job_started = 0.0
        self.batch: batch_module.BatchQueue | None = None
        self.batch_item: batch_module.BatchItem | None = None
        self.cancel_batch_after_current = False
        self.backend_process = None
        self.backend_problem: str | None = None
        """Why the backend cannot be reached, from the last background check; None when it answered (or
        before the first check). The Reconstruct button is greyed out with this reason."""
        self.backend_check = None


STATE = _State()


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


# ----------------------------------------------------------------------------------------- helpers
def read_source(context) -> tuple[str, bytes]:
    """(object name, image file bytes) for the chosen image source; ValueError with a clear message."""
    settings = context.scene.zeroshape
    if settings.source != "FILE":
        return image_bytes(source_image(context))
    if not settings.filepath:
        raise ValueError("choose a photo first")
    path = Path(bpy.path.abspath(settings.filepath))
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    return path.stem, path.read_bytes()


def source_image(context):
    """The Blender image chosen as the photo (the Blend Image and Image Editor sources); ValueError if none."""
    settings = context.scene.zeroshape
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
        raise ValueError("no image chosen" if settings.source == "DATABLOCK" else "no image open in an Image Editor")
    return image


def image_bytes(image) -> tuple[str, bytes]:
    """(name, file bytes) of a Blender image: its file on disk, its packed copy, or, for a generated or edited
    image with no file, its pixels saved as a PNG."""
    import tempfile

    path = Path(bpy.path.abspath(image.filepath_from_user())) if image.filepath else None
    if image.packed_file is not None:
        return Path(image.name).stem, bytes(image.packed_file.data)
    if path is not None and path.is_file() and not image.is_dirty:
        return path.stem, path.read_bytes()
    if not image.has_data and image.source not in ("GENERATED", "VIEWER"):
        raise ValueError(f"{image.name}: its file {path} is missing, and Blender has no pixels of it")
    with tempfile.TemporaryDirectory(prefix="zeroshape-") as scratch:
        png = Path(scratch) / "image.png"
        image.save_render(str(png))  # the pixels as Blender shows them, whatever the source
        return Path(image.name).stem, png.read_bytes()


def request_options(context, with_box: bool = True) -> ReconstructOptions:
    """The panel's settings as the options of a request (a batch leaves the box out: it belongs to one photo).
    ValueError, with the option's rule, for a box that is not one."""
    settings = context.scene.zeroshape
    return ReconstructOptions(
        resolution=int(settings.resolution),
        category=settings.category.strip() or "auto",
        frame="blender",
        color=settings.color,
        upright=settings.upright,
        max_faces=settings.max_faces if settings.limit_faces else None,
        box=tuple(settings.box) if settings.use_box and with_box else None,
        shape=settings.shape.lower(),
        use_alpha=settings.use_alpha,
        return_mask=True,  # loaded beside the result, to be edited and sent back (Edit Mask, Reconstruct Again)
    )


# ----------------------------------------------------------------------------------------- masks
def read_mask_file(context) -> bytes | None:
    """The panel's mask file's bytes, or None when none is set; ValueError with a clear message."""
    settings = context.scene.zeroshape
    if not settings.mask_filepath:
        return None
    path = Path(bpy.path.abspath(settings.mask_filepath))
    if not path.is_file():
        raise ValueError(f"mask {path}: file not found")
    if path.stat().st_size > MAX_IMAGE_BYTES:
        raise ValueError(f"mask {path}: larger than {MAX_IMAGE_BYTES // 2**20} MB (save it as a greyscale PNG)")
    return path.read_bytes()


def mask_image(obj):
    """The mask image of a reconstruction (custom property "zeroshape_mask"), or None."""
    image = obj.get("zeroshape_mask") if obj is not None else None
    return image if isinstance(image, bpy.types.Image) else None


def mask_png(image) -> bytes:
    """A mask image's pixels, as painted (saved or not), as a greyscale PNG's bytes for the backend."""
    import numpy as np

    width, height = image.size
    if width == 0 or height == 0:  # its file is gone and it was never packed
        raise ValueError(f"{image.name}: Blender has no pixels of this mask image")
    pixels = np.empty(width * height * image.channels, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    return grey_png(pixels_to_mask(pixels, width, height, image.channels))


def reconstruction_source(obj) -> tuple[bytes, str, str, ReconstructOptions]:
    """What a reconstruction was made from: (photo file bytes, photo path or "", Blender image name or "", its
    options). ValueError with a clear message when the photo is gone."""
    photo, image_name = str(obj.get("zeroshape_photo", "")), str(obj.get("zeroshape_photo_image", ""))
    try:
        options = ReconstructOptions.from_json(json.loads(obj.get("zeroshape_options", "{}")))
    except (ValueError, ProtocolError) as error:
        raise ValueError(f"{obj.name}: its reconstruction options cannot be read ({error})") from None
    if image_name:
        image = bpy.data.images.get(image_name)
        if image is None:
            raise ValueError(f"{obj.name}: its photo, the image {image_name}, is no longer in this file")
        return image_bytes(image)[1], "", image_name, options
    if not photo or not Path(photo).is_file():
        raise ValueError(f"{obj.name}: its photo {photo or '(unknown)'} is not found")
    return Path(photo).read_bytes(), photo, "", options


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
    """A camera posed and focused as the model's estimate of the photo's camera, with the photo behind, made the
    scene's camera with the photo's render size, so the mesh lines up with the photo through it."""
    import mathutils

    match = camera_module.match_camera(metadata)
    camera_data = bpy.data.cameras.new(f"{obj.name} camera")
    camera_data.sensor_fit = match.sensor_fit
    camera_data.sensor_width = camera_data.sensor_height = match.sensor_mm
    camera_data.lens = match.lens_mm
    camera_data.shift_x, camera_data.shift_y = match.shift_x, match.shift_y
    camera = bpy.data.objects.new(f"{obj.name} camera", camera_data)
    matrix = mathutils.Matrix.Identity(4)
    for i in range(3):
        for j in range(3):
            matrix[i][j] = match.rotation[i, j]
        matrix[i][3] = match.position[i]
    context.view_layer.update()  # obj.matrix_world follows its new location only once the view layer is updated
    camera.matrix_world = obj.matrix_world @ matrix
    scene_module.reconstruction_collection(context.scene).objects.link(camera)
    scene = context.scene
    scene.camera = camera
    scene.render.resolution_x, scene.render.resolution_y = match.resolution
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    photo_path = metadata.get("blender_photo")
    if photo_path and Path(photo_path).is_file():
        image = bpy.data.images.load(photo_path, check_existing=True)
        background = camera_data.background_images.new()
        background.image = image
        background.frame_method = "FIT"
        camera_data.show_background_images = True


# ----------------------------------------------------------------------------------------- timer
def tick() -> float | None:
    """Drain job events on the main thread. Returns the next delay, or None when there is nothing to do."""
    context = bpy.context
    wm = context.window_manager
    job = STATE.job
    if job is None:
        return start_next_batch_item(context)
    while True:
        try:
            event = job.events.get_nowait()
        except Exception:  # queue.Empty
            return TICK_SECONDS
        kind = event[0]
        if kind == "progress":
            stage, fraction = event[1], float(event[2])
            wm.zeroshape_stage = f"{stage} · {progress_times(time.monotonic() - STATE.job_started, fraction)}"
            wm.zeroshape_progress = fraction
            status(context, f"{STATE.job_name}: {stage} {fraction:.0%}")
            continue
        STATE.job = None
        wm.zeroshape_running = STATE.batch is not None
        if kind == "result":
            _import_result(context, event[1])
        else:
            _job_failed(context, event[1])
        return start_next_batch_item(context) if STATE.batch is not None else None


def _import_result(context, result) -> None:
    started = time.perf_counter()
    target = bpy.data.objects.get(STATE.job_target) if STATE.job_target else None
    if target is not None:  # Reconstruct Again: the object stays (place, scale, camera); its mesh is new
        obj = scene_module.replace_mesh(context, target, result.vertices, result.faces, result.colors)
    else:
        obj = scene_module.import_mesh(
            context, STATE.job_name, result.vertices, result.faces, result.colors, location=STATE.job_location
        )
        height = context.scene.zeroshape.real_height
        if height > 0:  # the mesh arrives 1 unit tall, standing on z = 0
            obj.scale = (height, height, height)
    # The reconstruction's metadata (camera, frame, category, model) stays with the object, for scripts and tools;
    # its photo, options and mask too, to reconstruct it again with an edited mask.
    obj["zeroshape"] = json.dumps(result.metadata)
    obj["zeroshape_photo"] = STATE.job_photo
    obj["zeroshape_photo_image"] = STATE.job_photo_image
    if STATE.job_options is not None:
        obj["zeroshape_options"] = json.dumps(STATE.job_options.to_json())
    if result.mask is not None:
        obj["zeroshape_mask"] = scene_module.load_mask_image(f"{obj.name} mask", result.mask, mask_image(obj))
    settings = context.scene.zeroshape
    problems = list(result.metadata.get("warnings") or [])  # e.g. a blank photo: probably not an object
    if settings.bake_texture and result.colors is not None:
        try:
            bake_vertex_colours(context, obj, int(settings.texture_size))
        except (ValueError, RuntimeError) as error:  # the mesh is in, with its vertex colours; only the bake failed
            problems.append(f"could not bake its texture ({error})")
    if settings.match_photo and STATE.batch is None and target is None:
        try:
            add_match_camera(context, obj, {**result.metadata, "blender_photo": STATE.job_photo})
        except (KeyError, ValueError, RuntimeError) as error:  # the mesh is in; only the camera failed
            problems.append(f"could not add the matching camera ({error})")
    scene_module.push_undo(f"Reconstruct {obj.name}" + (" again" if target is not None else ""))
    seconds = time.perf_counter() - started
    if problems:  # the mesh is in, but not all is well
        status(context, f"{obj.name}: {'; '.join(problems)}", error=True)
    else:
        status(context, f"{obj.name}: {len(result.faces):,} faces imported in {seconds:.2f} s")
    context.window_manager.zeroshape_progress = 1.0
    _mark_batch_item_done(obj)


def _mark_batch_item_done(obj) -> None:
    if STATE.batch is not None and STATE.batch_item is not None:
        STATE.batch_item.state, STATE.batch_item.object_name = "done", obj.name
        STATE.batch.save(queue_file())
        STATE.batch_item = None


def _job_failed(context, error) -> None:
    from .client import JobCancelledError

    if isinstance(error, JobCancelledError):  # the user's own choice, not an error
        status(context, f"{STATE.job_name}: cancelled")
        return
    # The server names a photo after its request ("request 3f2a…: the image is damaged"): say which photo.
    text = str(error).replace(f"request {STATE.job_request_id}", STATE.job_name) if STATE.job_request_id else str(error)
    message = text if text.startswith(STATE.job_name) else f"{STATE.job_name}: {text}"
    status(context, message, error=True)
    if STATE.batch is not None and STATE.batch_item is not None:
        STATE.batch_item.state, STATE.batch_item.message = "failed", message.removeprefix(f"{STATE.job_name}: ")
        STATE.batch.save(queue_file())
        STATE.batch_item = None


def start_next_batch_item(context) -> float | None:
    """Submit the batch's next pending photo, or end the batch (its summary in the status line); the next tick."""
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
        for failure in failed:  # each failure in the console and as the last error, then the summary on top
            status(context, f"{Path(failure.path).name}: {failure.message}", error=True)
        summary = f"batch finished: {total - len(failed)} of {total} photo(s) imported"
        status(context, summary + (f"; {len(failed)} failed (see the console)" if failed else ""))
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
    options = request_options(context, with_box=False)
    submit_job(context, Path(item.path).stem, data, options, queue.grid_position(item), item.path)
    return TICK_SECONDS


def submit_job(
    context,
    name: str,
    data: bytes,
    options: ReconstructOptions,
    location,
    photo: str,
    mask: bytes | None = None,
    photo_image: str = "",
    target: str = "",
) -> None:
    """Start a job. `photo`: the photo's path ("" when it came from a Blender image, named `photo_image`); `mask`:
    the object's mask as an image file's bytes; `target`: the object whose mesh the result replaces."""
    STATE.job = make_client(context).submit(data, options, mask=mask)
    STATE.job_name, STATE.job_location, STATE.job_photo = name, location, photo
    STATE.job_photo_image, STATE.job_options, STATE.job_target = photo_image, options, target
    STATE.job_request_id = STATE.job.request_id
    STATE.job_started = time.monotonic()
    wm = context.window_manager
    wm.zeroshape_running, wm.zeroshape_progress, wm.zeroshape_stage = True, 0.0, "queued"
    ensure_timer()


def stop_local_backend() -> bool:
    """Stop the backend this Blender started, if it runs; True if one was stopped."""
    from .local_backend import stop

    stopped = stop(STATE.backend_process)
    STATE.backend_process = None
    return stopped


def progress_times(elapsed_s: float, fraction: float) -> str:
    """ "12 s, about 30 s left": the time so far and, once there is enough progress to go by, what remains."""
    text = f"{elapsed_s:.0f} s"
    if 0.05 <= fraction < 1.0:
        text += f", about {elapsed_s * (1 - fraction) / fraction:.0f} s left"
    return text


BACKEND_CHECK_SECONDS = 5.0


def watch_backend() -> float:
    """A persistent timer: every few seconds, ping the backend in a background thread (Blender never waits on the
    network) and keep the answer in STATE.backend_problem for the Reconstruct button's poll."""
    import threading

    from .client import BackendError

    if STATE.backend_check is not None and STATE.backend_check.is_alive():
        return BACKEND_CHECK_SECONDS
    try:
        client = make_client(bpy.context)  # preferences are read here, on the main thread
    except BackendError as error:
        STATE.backend_problem = str(error)
        return BACKEND_CHECK_SECONDS
    prefs = preferences(bpy.context)
    timeout = prefs.ping_timeout if prefs else 0.5

    def check() -> None:
        try:
            client.ping(timeout_s=timeout, retries=2)
            STATE.backend_problem = None
        except BackendError as error:
            STATE.backend_problem = str(error)

    STATE.backend_check = threading.Thread(target=check, name="zeroshape-backend-check", daemon=True)
    STATE.backend_check.start()
    return BACKEND_CHECK_SECONDS


def ensure_timer() -> None:
    """The timer that drains job events; persistent, so File → New or Open does not stop it mid-job."""
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=TICK_SECONDS, persistent=True)


@bpy.app.handlers.persistent
def after_file_load(_file_path) -> None:
    """A file was opened (or File → New) while a job or a batch runs: show its progress and Cancel again in the
    new file's panel; the result lands in the file that is open when it arrives."""
    if STATE.job is None and STATE.batch is None:
        return
    wm = bpy.context.window_manager
    wm.zeroshape_running = True
    wm.zeroshape_stage = "running"
    if STATE.batch is not None:
        wm.zeroshape_batch_text = f"{STATE.batch.finished + 1} of {STATE.batch.total}"
    ensure_timer()
