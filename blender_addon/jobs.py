"""Jobs on the main thread (bpy): the running reconstruction, the batch's state machine and the timer.

Threads never touch Blender data: a reconstruction runs in the client's background thread and reports into a
queue; `tick()`, a `bpy.app.timers` function on the main thread, drains that queue, updates the progress
shown in the panel and imports finished meshes. (Timers do not run in background mode, so the tests call
`tick()` themselves.)
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import bpy

from . import backend_status
from . import batch as batch_module
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
        self.backend_error: Exception | None = None
        """The last background check's failure (its kind picks the Backend line), None when it answered."""
        self.backend_info: dict | None = None
        """The backend's last `info` (model, device, capabilities), None before one arrived."""
        self.job_settings: dict = {}
        """The panel's import settings as they were when the artist clicked (Match photo, bake, height): a File →
        Open before the result arrives must not change what happens to it."""
        self.batch_options: ReconstructOptions | None = None
        self.batch_settings: dict = {}
        """A batch's request options and import settings, as they were when it was started or resumed."""
        self.file_generation = 0
        """Counts the files opened (File → New or Open) in this session; a job remembers the one it started in."""
        self.job_file_generation = 0
        self.job_cancelled = False
        """Cancel was pressed for the running job: its result, should it still arrive, is not imported (a cancelled
        batch photo stays pending in the saved queue, and Resume makes it)."""


STATE = _State()


def import_settings(context) -> dict:
    """The panel's settings that decide what happens to a result when it arrives, read now."""
    settings = context.scene.zeroshape
    return {
        "match_photo": settings.match_photo,
        "bake_texture": settings.bake_texture,
        "texture_size": int(settings.texture_size),
        "real_height": settings.real_height,
    }


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


def backend_reachable(context):
    """None when the backend answers a ping quickly, else the BackendError that says what is wrong."""
    from .client import BackendError

    prefs = preferences(context)
    timeout = prefs.ping_timeout if prefs else 0.5
    try:
        make_client(context).ping(timeout_s=timeout, retries=2)
    except BackendError as error:
        return error
    return None


def saved_batch() -> tuple[int, int] | None:
    """(photos left, photos in all) of the batch saved for Resume, or None when there is none."""
    return batch_module.peek(queue_file())


def resume_blocked_because() -> str:
    """Why Resume Batch cannot run now ("" when it can): the reason its button shows when greyed out."""
    if STATE.batch is not None:
        return "a batch is running: Cancel or Stop after current first"
    if STATE.job is not None:
        return "a reconstruction is running: wait for it or cancel it"
    saved = saved_batch()
    if saved is None:
        return "no batch to resume: Batch Import Folder starts one"
    left, _ = saved
    if left == 0:
        return "the last batch is finished: nothing left to resume"
    return ""


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
        if kind == "result" and STATE.job_cancelled:  # it finished as the cancel reached it: nothing lands
            status(context, f"{STATE.job_name}: cancelled")
        elif kind == "result":
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
        height = STATE.job_settings.get("real_height", 0.0)
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
    settings = STATE.job_settings  # as they were when the artist clicked, whatever file is open now
    problems = list(result.metadata.get("warnings") or [])  # e.g. a blank photo: probably not an object
    if settings.get("bake_texture") and result.colors is not None:
        try:
            bake_vertex_colours(context, obj, int(settings["texture_size"]))
        except (ValueError, RuntimeError) as error:  # the mesh is in, with its vertex colours; only the bake failed
            problems.append(f"could not bake its texture ({error})")
    if settings.get("match_photo") and STATE.batch is None and target is None:
        try:
            scene_module.add_match_camera(context, obj, {**result.metadata, "blender_photo": STATE.job_photo})
        except (KeyError, ValueError, RuntimeError) as error:  # the mesh is in; only the camera failed
            problems.append(f"could not add the matching camera ({error})")
    scene_module.push_undo(f"Reconstruct {obj.name}" + (" again" if target is not None else ""))
    seconds = time.perf_counter() - started
    context.window_manager.zeroshape_backend = backend_status.result_line(result.metadata)
    STATE.backend_problem = STATE.backend_error = None
    moved = STATE.job_file_generation != STATE.file_generation
    where = " into the file open now (the file changed while it ran)" if moved else ""
    if problems:  # the mesh is in, but not all is well
        status(context, f"{obj.name}: imported{where}, but {'; '.join(problems)}", error=True)
    else:
        used = backend_status.estimates_used(result.metadata)
        status(
            context,
            f"{obj.name}: {len(result.faces):,} faces imported{where} in {seconds:.2f} s"
            + (f"; {used}" if used else ""),
        )
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
    options = STATE.batch_options or request_options(context, with_box=False)
    submit_job(context, Path(item.path).stem, data, options, queue.grid_position(item), item.path)
    return TICK_SECONDS


def start_batch(context, queue: batch_module.BatchQueue) -> None:
    """Run `queue` with the panel's options and import settings as they are now (they travel with the batch)."""
    STATE.batch = queue
    STATE.cancel_batch_after_current = False
    STATE.batch_options = request_options(context, with_box=False)
    STATE.batch_settings = import_settings(context)
    start_next_batch_item(context)


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
    STATE.job_settings = STATE.batch_settings if STATE.batch is not None else import_settings(context)
    STATE.job_file_generation = STATE.file_generation
    STATE.job_cancelled = False
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
    network), keep the answer in STATE.backend_problem for the Reconstruct button's poll, and show the last answer
    on the panel's Backend line (with the model's `info` when the backend is there)."""
    import threading

    from .client import BackendError

    if STATE.backend_check is not None and STATE.backend_check.is_alive():
        return BACKEND_CHECK_SECONDS
    show_backend_check(bpy.context)
    try:
        client = make_client(bpy.context)  # preferences are read here, on the main thread
    except BackendError as error:
        STATE.backend_problem, STATE.backend_error = str(error), error
        return BACKEND_CHECK_SECONDS
    prefs = preferences(bpy.context)
    timeout = prefs.ping_timeout if prefs else 0.5

    def check() -> None:
        try:
            client.ping(timeout_s=timeout, retries=2)
        except BackendError as error:
            STATE.backend_problem, STATE.backend_error = str(error), error
            return
        STATE.backend_problem = STATE.backend_error = None
        # What model it runs, for the panel; a slow info (a broker's busy worker) is no reason to grey out.
        with contextlib.suppress(BackendError):
            STATE.backend_info = client.info(timeout_s=max(timeout, 1.0), retries=1)

    STATE.backend_check = threading.Thread(target=check, name="zeroshape-backend-check", daemon=True)
    STATE.backend_check.start()
    return BACKEND_CHECK_SECONDS


def show_backend_check(context) -> None:
    """The last finished background check on the panel's Backend line (main thread only)."""
    wm = context.window_manager
    if STATE.backend_error is not None:
        prefs = preferences(context)
        wm.zeroshape_backend = backend_status.problem_line(STATE.backend_error, prefs.address if prefs else "")
    elif STATE.backend_info is not None:
        wm.zeroshape_backend = backend_status.ready_line(STATE.backend_info)


def ensure_timer() -> None:
    """The timer that drains job events; persistent, so File → New or Open does not stop it mid-job."""
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=TICK_SECONDS, persistent=True)


@bpy.app.handlers.persistent
def after_file_load(_file_path) -> None:
    """A file was opened (or File → New): count it, so a running job's result says it landed in another file than
    the one it was asked in. While a batch runs, photos whose meshes stayed in the previous file are queued again
    (never counted as imported in a file that lacks them), and progress and Cancel come back to the new panel."""
    STATE.file_generation += 1
    if STATE.job is None and STATE.batch is None:
        return
    wm = bpy.context.window_manager
    wm.zeroshape_running = True
    wm.zeroshape_stage = "running"
    if STATE.batch is not None:
        present = {obj.name for obj in bpy.data.objects}
        redo = [i for i in STATE.batch.items if i.state == "done" and i.object_name not in present]
        for item in redo:
            item.state, item.object_name = "pending", ""
        if redo:
            STATE.batch.save(queue_file())
            status(
                bpy.context,
                f"the file changed: {len(redo)} photo(s) imported into the previous file are made again here",
            )
        wm.zeroshape_batch_text = f"{STATE.batch.finished + 1} of {STATE.batch.total}"
    ensure_timer()
