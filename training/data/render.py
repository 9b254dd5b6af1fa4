"""`zeroshape-w data render`: objects → a training dataset (geometry supervision + Blender renders).

Plain Python; the rendering itself runs in Blender processes (`training.data.render_blender`). The output
folder's layout (files, names, readers and writers) lives in `training.data.layout`; docs/DATASET.md
describes it for users.

Resumable: finished objects (DONE present) are skipped, unfinished ones are rendered again from scratch, so
a killed run followed by a new one gives the same dataset as an uninterrupted run, with nothing rendered
twice. `--shard i/N` takes every N-th object, so shards can run on different processes or machines.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import layout
from .convert_blender import BLENDER_ONLY_SUFFIXES, convert_to_glb
from .sources import ObjectSource, stable_seed

ROOT = Path(__file__).resolve().parents[2]
BATCH_OBJECTS = 4
"""Objects per Blender process: small enough that rendering starts early, large enough to amortise start-up."""
Y_UP_TO_Z_UP = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
"""(x, y, z) with Y up → (x, −z, y) with Z up: the rotation Blender's glTF importer applies (glTF's front, +Z,
becomes −Y, the dataset's front)."""


TEXTURED_SUFFIXES = {".glb": "gltf", ".gltf": "gltf", ".obj": "obj"}
"""Formats whose own materials Blender can render: glTF and OBJ directly; FBX and .blend through the GLB they
are converted to (kept next to the object as asset.glb)."""


def upright_matrix(source: ObjectSource) -> np.ndarray:
    """4×4 from the asset file's axes to the dataset's Z-up axes."""
    if source.upright is not None:
        return np.asarray(source.upright, dtype=np.float64).reshape(4, 4)
    return Y_UP_TO_Z_UP if source.up_axis == "y" else np.eye(4)


def unpack_archived(source: ObjectSource, folder: Path) -> ObjectSource:
    """A source whose mesh lives in a zip → the same source pointing at its copy unpacked in folder/asset/
    (a Sweet Home 3D model's folder as it is; a 0 A.D. PMD mesh converted to PLY)."""
    if source.archive is None:
        return source
    if source.path.endswith(".pmd"):
        from .zero_ad import extract_pmd_as_ply

        extracted = extract_pmd_as_ply(Path(source.archive), source.path, folder / "asset")
    else:
        from .sweethome3d import extract_model

        extracted = extract_model(Path(source.archive), source.path, folder / "asset")
    return replace(source, path=str(extracted), archive=None)


def load_mesh(source: ObjectSource, keep_converted: Path | None = None):
    """The source's triangles in Z-up axes (raw file coordinates, turned upright if `up_axis` is y).

    keep_converted: where to keep the GLB an FBX or .blend asset is converted to (else a temporary file)."""
    import trimesh

    if source.path is None:
        from .procedural import ObjectSpec, build

        return build(ObjectSpec(source.object_id, source.category, source.seed))
    path = Path(source.path)
    if path.suffix.lower() in BLENDER_ONLY_SUFFIXES:
        with tempfile.TemporaryDirectory(prefix="zeroshape-asset-") as scratch:
            # Exported without glTF's Y-up conversion, and trimesh reads GLB coordinates as they are: Z up.
            converted = convert_to_glb(path, (keep_converted or Path(scratch) / "asset.glb"))
            loaded = trimesh.load(converted, force="mesh")
    else:
        loaded = trimesh.load(source.path, force="mesh")
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise ValueError(f"{source.path}: no triangles in this file")
    loaded.apply_transform(upright_matrix(source))
    return loaded


def prepare_object(source: ObjectSource, folder: Path, occupancy_points: int, surface_points: int) -> None:
    """Normalised mesh, occupancy samples and surface points for one object (deterministic per object)."""
    from .geometry import normalise_mesh, sample_occupancy, sample_surface, signed_volume

    rng = np.random.default_rng(stable_seed(source.object_id))
    folder.mkdir(parents=True, exist_ok=True)
    source = unpack_archived(source, folder)
    mesh, centre, scale = normalise_mesh(load_mesh(source, keep_converted=folder / "asset.glb"))
    if signed_volume(mesh) < 0:
        # Inside-out files (0 A.D.'s PMD winds clockwise; 17 of 405 Sweet Home 3D models too) are written the right
        # way out, so mesh.ply's normals face outwards like every other source's.
        mesh.invert()
    info = {"object_id": source.object_id, "category": source.category, "source": source.source}
    if source.name:
        info["name"] = source.name
    textured = textured_asset(source, folder, centre, scale)
    if textured:
        info["textured"] = textured
    layout.write_object_info(folder, info)
    mesh.export(folder / layout.MESH)
    points, occupancy = sample_occupancy(mesh, occupancy_points // 2, occupancy_points - occupancy_points // 2, rng=rng)
    layout.write_occupancy(folder, points, occupancy)
    np.save(folder / layout.SURFACE, sample_surface(mesh, surface_points, rng))


def relabel_inside_out(dataset: Path) -> list[str]:
    """Repair a dataset rendered before inside-out meshes were handled: every finished object whose mesh.ply
    encloses a negative volume is turned the right way out and its stored occupancy points are labelled again
    (renders, cameras and surface points do not depend on the winding and are kept). Returns the ids changed.

    Safe to interrupt and run again: the labels are written (atomically) before the mesh, and labelling no longer
    depends on the winding, so a second run finishes what the first began."""
    import trimesh

    from .geometry import occupancy_labels, signed_volume

    objects = layout.objects_folder(dataset)
    if not objects.is_dir():
        raise FileNotFoundError(f"{dataset}: not a rendered dataset (no objects/ folder)")
    changed = []
    for folder in sorted(objects.iterdir()):
        if not layout.is_done(folder):
            continue
        mesh = trimesh.load(folder / layout.MESH, force="mesh", process=False)
        if signed_volume(mesh) >= 0:
            continue
        points, _ = layout.read_occupancy(folder)
        layout.write_occupancy(folder, points, occupancy_labels(mesh, points.astype(np.float64)))
        mesh.invert()
        mesh.export(folder / layout.MESH)
        changed.append(folder.name)
    return changed


def textured_asset(source: ObjectSource, folder: Path, centre: np.ndarray, scale: float) -> dict | None:
    """How Blender imports the asset with its own materials: {"path", "format", "matrix"}, where matrix (4×4)
    maps Blender's imported coordinates to the normalised frame; None for assets without materials to show.

    Blender's glTF importer turns glTF's Y-up axes to Z up with the same rotation as Y_UP_TO_Z_UP, so its
    output is first turned back to the file's raw axes; OBJ is imported raw (forward Y, up Z)."""
    if source.path is None:
        return None
    path = Path(source.path)
    if path.suffix.lower() in BLENDER_ONLY_SUFFIXES:
        path = folder / "asset.glb"
    kind = TEXTURED_SUFFIXES.get(path.suffix.lower())
    if kind is None or not path.is_file():
        return None
    if kind == "obj" and not _obj_has_materials(path):
        return None
    raw_from_import = np.linalg.inv(Y_UP_TO_Z_UP) if kind == "gltf" else np.eye(4)
    upright = upright_matrix(source)
    normalise = np.diag([scale, scale, scale, 1.0])
    normalise[:3, 3] = -np.asarray(centre) * scale
    # Inside the object's folder (unpacked or converted assets) the path is kept relative to it, so the dataset
    # can move, and a resumed dataset equals an uninterrupted one wherever each was written.
    resolved = path.resolve()
    stored = (
        resolved.relative_to(folder.resolve()).as_posix()
        if resolved.is_relative_to(folder.resolve())
        else str(resolved)
    )
    return {"path": stored, "format": kind, "matrix": (normalise @ upright @ raw_from_import).tolist()}


def _obj_has_materials(path: Path) -> bool:
    """Whether an OBJ names a material library (a bare OBJ has nothing of its own to show)."""
    with path.open("rb") as handle:
        return any(line.lstrip().startswith(b"mtllib") for line in handle)


def save_occluder(object_folder: Path, occluder_folder: Path, object_id: str) -> None:
    """The first view's object, cut out (RGBA), with its focal length: a Copy-Paste occluder."""
    from PIL import Image

    view = layout.view_folder(object_folder, 0)
    if not view.is_dir():
        return
    rgb = layout.read_rgb(view)
    mask = layout.read_mask_image(view)
    occluder_folder.mkdir(parents=True, exist_ok=True)
    # Written to temporary names and renamed, the JSON last: a cut-out with its JSON is complete.
    partial = occluder_folder / f".{object_id}.png.partial"
    Image.fromarray(np.dstack([rgb, mask])).save(partial, format="PNG")
    os.replace(partial, occluder_folder / f"{object_id}.png")
    camera = layout.read_camera(view)
    info = {"object_id": object_id, "focal_px": camera["K"][0][0], "focal_mm": camera["focal_mm"]}
    partial = occluder_folder / f".{object_id}.json.partial"
    partial.write_text(json.dumps(info))
    os.replace(partial, occluder_folder / f"{object_id}.json")


DEFAULT_ELEVATION_DEG = (5.0, 65.0)
"""The cameras' elevation range, in degrees, unless a render asks for another (`RenderSettings.elevation_deg`)."""


@dataclass
class RenderSettings:
    views: int = 8
    output_size: int = 224
    """Side of the rendered square, in pixels: the camera renders only the crop around the object."""
    samples: int = 4
    """Cycles samples per pixel: 4 keeps a 224² view near 0.3 s on 2 cores (visible grain); 8 is cleaner at
    about half the throughput."""
    own_appearance: float = 0.5
    """Share of textured assets (glTF, OBJ with materials, FBX, .blend) rendered with their own materials
    instead of a drawn colour × material."""
    occupancy_points: int = 100_000
    surface_points: int = 20_000
    timeout_s: float = 120.0
    """Per object: a Blender process silent for longer is killed and the object skipped."""
    clutter: float = 0.3
    """Share of views in a scene: 2–4 other objects standing beside and behind the object on the ground."""
    occlusion: float = 0.2
    """Share of views with clutter and a 3D occluder standing between the camera and the object."""
    hdri: float = 0.3
    """Share of objects lit (and, without a photo behind, surrounded) by one of the bpy wheel's HDRIs."""
    every_condition: bool = False
    """Render every camera three times, clean, cluttered and occluded (a validation split): 3 × views."""
    elevation_deg: tuple[float, float] = DEFAULT_ELEVATION_DEG
    """The cameras' elevation above the object's centre, drawn uniformly in this range, in degrees; 0 is a side
    view. Photos are often taken from the side, which the default range leaves out."""

    def __post_init__(self) -> None:
        lowest, highest = self.elevation_deg
        if not 0.0 <= lowest <= highest <= 85.0:
            raise ValueError(
                f"camera elevation range {lowest:g}..{highest:g}° is not within 0..85° (lowest first): below 0 the "
                "camera would look up through the ground, near 90 straight down"
            )


def _run_blender(job: dict, timeout_s: float, scratch: Path) -> Iterator[tuple[str, str | None]]:
    """Render a job in a Blender process; yields (object_id, error or None) as objects finish."""
    job_path = scratch / "job.json"
    job_path.write_text(json.dumps(job))
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(scratch / "blender"))
    process = subprocess.Popen(
        [sys.executable, "-m", "training.data.render_blender", str(job_path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    pending = [item["object_id"] for item in job["objects"]]
    while pending:
        if not selector.select(timeout=timeout_s):
            process.kill()
            process.wait()
            yield pending[0], f"no progress for {timeout_s:.0f} s: render killed"
            return
        line = process.stdout.readline()
        if not line:
            process.wait()
            error = (process.stderr.read().strip().splitlines() or ["Blender exited"])[-1]
            yield pending[0], f"the render process failed: {error}"
            return
        if line.startswith("rendered "):
            object_id = line.split(" ", 1)[1].strip()
            if object_id in pending:
                pending.remove(object_id)
            yield object_id, None
    process.wait()


CLUTTER_POOL_PER_CATEGORY = 2
CLUTTER_POOL_SEED = 9173
"""The clutter and occluders of scenes are procedural objects of their own seed: the same pool for every
dataset and shard, whatever the sources, so a resumed or sharded render stages the same scenes."""


def prepare_clutter_pool(out: Path) -> list[str]:
    """Normalised meshes of the scenes' other objects, written once to out/clutter/; returns their paths."""
    from .geometry import normalise_mesh
    from .procedural import build, procedural_specs

    folder = out / "clutter"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in procedural_specs(CLUTTER_POOL_PER_CATEGORY, CLUTTER_POOL_SEED):
        path = folder / f"{spec.object_id}.ply"
        if not path.is_file():
            partial = folder / f".{spec.object_id}.partial.ply"
            normalise_mesh(build(spec))[0].export(partial)
            os.replace(partial, path)
        paths.append(str(path.resolve()))
    return paths


def write_manifest(objects: list[ObjectSource], out: Path, name: str = "manifest.jsonl") -> Path:
    """Rebuilt from what is on disk (DONE markers), in the objects' order: a run that was killed and resumed
    writes exactly what an uninterrupted run writes."""
    lines = []
    for source in objects:
        folder = layout.object_folder(out, source.object_id)
        if layout.is_done(folder):
            record = {
                "object_id": source.object_id,
                "category": source.category,
                "source": source.source,
                "views": len(layout.view_folders(folder)),
            }
            lines.append(json.dumps(record))
    path = out / name
    temporary = path.with_name(path.name + ".partial")
    temporary.write_text("".join(line + "\n" for line in lines))
    os.replace(temporary, path)
    return path


def render_dataset(
    objects: list[ObjectSource],
    out: Path,
    settings: RenderSettings,
    progress=None,
    manifest_name: str = "manifest.jsonl",
) -> dict:
    """Prepare and render every object not already finished. Returns counts and the measured throughput."""
    out.mkdir(parents=True, exist_ok=True)
    done = {source.object_id for source in objects if layout.is_done(layout.object_folder(out, source.object_id))}
    todo = [source for source in objects if source.object_id not in done]
    for stale in (out / layout.OCCLUDERS).glob(".*.partial"):  # left by a run killed mid-write
        stale.unlink()
    for object_id in done:  # a run killed between an object's DONE and its cut-out: finish the cut-out
        if not (out / layout.OCCLUDERS / f"{object_id}.json").is_file():
            save_occluder(layout.object_folder(out, object_id), out / layout.OCCLUDERS, object_id)
    scenes = settings.every_condition or settings.clutter > 0 or settings.occlusion > 0
    clutter_pool = prepare_clutter_pool(out) if scenes and todo else []
    failed: list[str] = []
    started = time.perf_counter()
    views_rendered = 0
    with tempfile.TemporaryDirectory(prefix="zeroshape-render-") as scratch_name:
        scratch = Path(scratch_name)

        def prepare_batch(sources: list[ObjectSource]) -> tuple[list[ObjectSource], list[tuple[str, str]]]:
            """Meshes and geometry supervision for a batch; returns (ready, [(id, error)])."""
            ready, errors = [], []
            for source in sources:
                folder = layout.object_folder(out, source.object_id)
                if folder.exists():
                    shutil.rmtree(folder)  # an interrupted object starts over: nothing half-written survives
                try:
                    prepare_object(source, folder, settings.occupancy_points, settings.surface_points)
                    ready.append(source)
                except Exception as error:  # one bad asset must not stop the dataset
                    errors.append((source.object_id, f"cannot prepare: {error}"))
            return ready, errors

        # While Blender renders one batch, the next batch's occupancy labels are computed in a thread
        # (numpy releases the GIL): the two stages overlap instead of taking turns.
        batches = [todo[i : i + BATCH_OBJECTS] for i in range(0, len(todo), BATCH_OBJECTS)]
        executor = ThreadPoolExecutor(max_workers=1)
        upcoming = executor.submit(prepare_batch, batches[0]) if batches else None
        for number in range(len(batches)):
            batch, errors = upcoming.result()
            upcoming = executor.submit(prepare_batch, batches[number + 1]) if number + 1 < len(batches) else None
            for object_id, message in errors:
                _log_error(out, object_id, message)
                failed.append(object_id)
                if progress:
                    progress(object_id, False)
            remaining = list(batch)
            while remaining:
                job = {
                    "clutter": settings.clutter,
                    "occlusion": settings.occlusion,
                    "hdri": settings.hdri,
                    "every_condition": settings.every_condition,
                    "clutter_pool": clutter_pool,
                    "own_appearance": settings.own_appearance,
                    "output_size": settings.output_size,
                    "elevation_deg": list(settings.elevation_deg),
                    "samples": settings.samples,
                    "views": settings.views,
                    "objects": [
                        {
                            "object_id": s.object_id,
                            "mesh": str(layout.object_folder(out, s.object_id) / layout.MESH),
                            "seed": stable_seed(s.object_id),
                            "textured": _textured_for_job(layout.object_folder(out, s.object_id)),
                            "out": str(layout.object_folder(out, s.object_id)),
                        }
                        for s in remaining
                    ],
                }
                by_id = {s.object_id: s for s in remaining}
                for object_id, error in _run_blender(job, settings.timeout_s, scratch):
                    source = by_id[object_id]
                    remaining.remove(source)
                    folder = layout.object_folder(out, object_id)
                    if error is None:
                        view_count = len(layout.view_folders(folder))
                        views_rendered += view_count
                        save_occluder(folder, out / layout.OCCLUDERS, object_id)
                    else:
                        _log_error(out, object_id, error)
                        failed.append(object_id)
                        shutil.rmtree(folder, ignore_errors=True)
                    if progress:
                        progress(object_id, error is None)
        executor.shutdown()
    write_manifest(objects, out, manifest_name)
    seconds = time.perf_counter() - started
    return {
        "objects": len(objects),
        "skipped_finished": len(done),
        "rendered": len(todo) - len(failed),
        "failed": len(failed),
        "views": views_rendered,
        "seconds": seconds,
        "views_per_second": views_rendered / seconds if seconds > 0 else 0.0,
    }


def _textured_for_job(folder: Path) -> dict | None:
    """object.json's "textured" entry with its path made absolute (it is stored relative to the object's folder
    when the asset lives there)."""
    textured = layout.read_object_info(folder).get("textured")
    if textured:
        textured = {**textured, "path": str((folder / textured["path"]).resolve())}
    return textured


def _log_error(out: Path, object_id: str, message: str) -> None:
    with (out / layout.ERRORS).open("a") as log:
        log.write(f"{object_id}: {message}\n")
