"""The on-disk layout of a rendered dataset: the one module that knows its folder and file names.

    DATASET/
      objects/OBJECT_ID/
        object.json         {"object_id", "category", "source", "name"?, "textured"?}
        mesh.ply            the mesh in its normalised frame (bbox centred at 0, largest half-extent 0.5)
        occupancy.npz       points float16 [N, 3], occupancy packed bits [N], count N
        surface.npy         float32 [M, 3] surface points (for evaluation tools; not read by training)
        view_000/ ...       one folder per camera:
          rgb.png             the photo, sRGB
          depth.npy           float32 [H, W] camera-space z in normalised object units, 0 on the background
          mask.png            the visible object, 0/255
          occluder.png        what hides the object, 0/255 (only in views with 3D occluders)
          camera.json         K, world_to_camera, focal_mm, scene, lighting, hidden_fraction, ...
        DONE                written last: a folder without it is an interrupted object
      occluders/OBJECT_ID.png, .json   Copy-Paste cut-outs (RGBA) and their focal lengths
      errors.log            one line per object that failed

Used by the renderer (which writes), the training dataset, evaluation, figures and contact sheets (which
read). Standard library, numpy and Pillow only: it is also imported inside Blender.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

OBJECTS = "objects"
OCCLUDERS = "occluders"
ERRORS = "errors.log"
DONE = "DONE"
OBJECT_INFO = "object.json"
MESH = "mesh.ply"
OCCUPANCY = "occupancy.npz"
SURFACE = "surface.npy"
VIEW_PREFIX = "view_"
RGB = "rgb.png"
DEPTH = "depth.npy"
MASK = "mask.png"
OCCLUDER = "occluder.png"
CAMERA = "camera.json"


# ------------------------------------------------------------------------------------------------ objects
def objects_folder(dataset: Path) -> Path:
    return Path(dataset) / OBJECTS


def object_folder(dataset: Path, object_id: str) -> Path:
    return Path(dataset) / OBJECTS / object_id


def is_done(folder: Path) -> bool:
    """Whether an object folder is complete (its DONE marker exists)."""
    return (Path(folder) / DONE).is_file()


def mark_done(folder: Path) -> None:
    """Write the DONE marker: call it after everything else of the object is written."""
    (Path(folder) / DONE).write_text("ok")


def read_object_info(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / OBJECT_INFO).read_text())


def write_object_info(folder: Path, info: dict[str, Any]) -> None:
    (Path(folder) / OBJECT_INFO).write_text(json.dumps(info))


def read_occupancy(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(points float32 [N, 3] in the normalised object frame, labels bool [N])."""
    with np.load(Path(folder) / OCCUPANCY) as data:
        count = int(data["count"])
        points = data["points"].astype(np.float32)
        labels = np.unpackbits(data["occupancy"])[:count].astype(bool)
    return points, labels


def write_occupancy(folder: Path, points: np.ndarray, occupancy: np.ndarray) -> None:
    """points [N, 3] (stored as float16), occupancy bool [N] (stored as packed bits). Written to a temporary file
    and renamed, so an interruption leaves the old samples or the new ones, never half a file."""
    target = Path(folder) / OCCUPANCY
    partial = target.with_name(target.name + ".partial")
    with open(partial, "wb") as file:
        np.savez_compressed(file, points=points.astype(np.float16), occupancy=np.packbits(occupancy), count=len(points))
    os.replace(partial, target)


# ------------------------------------------------------------------------------------------------ views
def view_folder(folder: Path, index: int) -> Path:
    return Path(folder) / f"{VIEW_PREFIX}{index:03d}"


def view_folders(folder: Path) -> list[Path]:
    """An object's view folders, in order."""
    return sorted(Path(folder).glob(VIEW_PREFIX + "*"))


def read_camera(view: Path) -> dict[str, Any]:
    return json.loads((Path(view) / CAMERA).read_text())


def write_view(
    view: Path, rgb: np.ndarray, depth: np.ndarray, mask: np.ndarray, occluder: np.ndarray | None, camera: dict
) -> None:
    """rgb uint8 [H, W, 3], depth float32 [H, W], mask bool [H, W], occluder bool [H, W] or None (no file)."""
    from PIL import Image

    view = Path(view)
    Image.fromarray(rgb).save(view / RGB)
    np.save(view / DEPTH, depth)
    Image.fromarray(mask.astype(np.uint8) * 255).save(view / MASK)
    if occluder is not None:
        Image.fromarray(occluder.astype(np.uint8) * 255).save(view / OCCLUDER)
    (view / CAMERA).write_text(json.dumps(camera, indent=1))


def read_rgb(view: Path) -> np.ndarray:
    """uint8 [H, W, 3]."""
    from PIL import Image

    return np.asarray(Image.open(Path(view) / RGB).convert("RGB"))


def read_mask(view: Path) -> np.ndarray:
    """The visible object, bool [H, W]."""
    from PIL import Image

    return np.asarray(Image.open(Path(view) / MASK)) > 127


def read_mask_image(view: Path) -> np.ndarray:
    """The mask as stored, uint8 [H, W] of 0/255 (e.g. as an alpha channel)."""
    from PIL import Image

    return np.asarray(Image.open(Path(view) / MASK))


def read_occluder(view: Path) -> np.ndarray | None:
    """What hides the object, bool [H, W]; None for views without rendered occluders."""
    from PIL import Image

    path = Path(view) / OCCLUDER
    return np.asarray(Image.open(path)) > 127 if path.is_file() else None


def read_depth(view: Path) -> np.ndarray:
    """float32 [H, W]."""
    return np.load(Path(view) / DEPTH).astype(np.float32)
