"""Loader for the Pix3D benchmark (Sun et al., "Pix3D: Dataset and Methods for Single-Image 3D Shape Modeling", 2018).

Layout of a Pix3D root folder::

    pix3d.json                          a JSON list with one record per image
    img/<category>/<name>.jpg|png       photographs
    mask/<category>/<name>.png          object masks (0 background, 255 object)
    model/<category>/<model>/model.obj  the aligned CAD models

Camera convention (determined from the dataset's own repository, github.com/xingyuansun/pix3d):

* `README.md` says `rot_mat` and `trans_mat` are "defined in camera coordinates and applied to objects", and that
  for rendering "a camera with a sensor width of 32mm and a focal length of `focal_length` is placed at the origin".
* `demo.py` (the reference Blender renderer) imports the OBJ, then sets the object's world matrix to
  `Translation(trans_mat) · rot_mat`. Blender 2.7x's OBJ importer stores its Y-up → Z-up axis conversion in that same
  world matrix, so overwriting it discards the conversion: world = rot_mat · X_obj + trans_mat, X_obj being the raw
  OBJ vertex coordinates.
* The camera sits at the origin with Euler rotation (0, π, 0), a horizontal sensor fit and a 32 mm sensor width.
  A Blender camera looks along its local −z with +y up and +x right; turned by π about y it looks along world +z,
  with image-right = world −x and image-up = world +y.

Hence, in OpenCV camera axes (x right, y down, z forward):

    X_cv = PIX3D_TO_OPENCV · (rot_mat · X_obj + trans_mat),   PIX3D_TO_OPENCV = diag(−1, −1, +1),

and the intrinsics are f_px = focal_length · W / 32 for both axes (square pixels, sensor width spans the image width)
with the principal point at the image centre (W/2, H/2). Cross-check: the README describes the model axes as
"+x leftward, +y upward, +z inward, in canonical view"; with rot_mat = I the formula above maps them to image-left,
image-up and away from the camera, as it should.

(ZeroShape's `data/pix3d.py` does not use the raw OBJ this way: it evaluates against its own preprocessed point clouds
with a pose built from `rot_mat`, so its axis flips are not comparable to the ones here.)
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

log = logging.getLogger(__name__)

PIX3D_TO_OPENCV = np.diag([-1.0, -1.0, 1.0])
"""[3, 3] map from Pix3D's rendering camera frame (Blender camera turned by π about y: x left, y up, z forward)
to OpenCV camera axes (x right, y down, z forward). See the module docstring for how it was derived."""

SENSOR_WIDTH_MM = 32.0
"""Pix3D's fixed sensor width; `focal_length` in the annotations is in mm on this sensor (horizontal fit)."""


@dataclass
class Pix3DSample:
    """One Pix3D annotation record, with paths resolved against the dataset root.

    Attributes:
        image_path: the photograph (JPEG or PNG, any mode; see `load_image_and_mask`).
        mask_path: the object mask, same size as the image.
        model_path: the aligned CAD model (`model.obj`), in the model's own units (metres in practice).
        category: Pix3D category, e.g. "chair".
        bbox: 2D box (x0, y0, x1, y1) in pixels of the full image, origin top-left.
        occluded: `occluded` or `slightly_occluded` in the record.
        truncated: the object is cut by the image border.
        rotation: [3, 3] float64 `rot_mat`, model → Pix3D camera frame (not yet OpenCV; see `PIX3D_TO_OPENCV`).
        translation: [3] float64 `trans_mat`, same frame and unit as the model.
        focal_length_mm: focal length in mm on a `SENSOR_WIDTH_MM` wide sensor.
        img_size: (width, height) in pixels, as annotated.
    """

    image_path: Path
    mask_path: Path
    model_path: Path
    category: str
    bbox: tuple[float, float, float, float]
    occluded: bool
    truncated: bool
    rotation: np.ndarray
    translation: np.ndarray
    focal_length_mm: float
    img_size: tuple[int, int]


def _flag(value: object) -> bool:
    """A Pix3D boolean: JSON true/false, but tolerate the string spellings the README uses ("true"/"false")."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _sample_from_record(root: Path, record: dict) -> Pix3DSample:
    rotation = np.asarray(record["rot_mat"], dtype=np.float64)
    translation = np.asarray(record["trans_mat"], dtype=np.float64).reshape(-1)
    if rotation.shape != (3, 3) or translation.shape != (3,):
        raise ValueError(
            f"bad pose in record {record.get('img')!r}: rot_mat {rotation.shape}, trans_mat {translation.shape}"
        )
    x0, y0, x1, y1 = (float(v) for v in record["bbox"])
    width, height = (int(v) for v in record["img_size"])
    return Pix3DSample(
        image_path=root / record["img"],
        mask_path=root / record["mask"],
        model_path=root / record["model"],
        category=str(record["category"]),
        bbox=(x0, y0, x1, y1),
        occluded=_flag(record.get("occluded", False)) or _flag(record.get("slightly_occluded", False)),
        truncated=_flag(record.get("truncated", False)),
        rotation=rotation,
        translation=translation,
        focal_length_mm=float(record["focal_length"]),
        img_size=(width, height),
    )


def load_pix3d(
    root: Path | str, categories: list[str] | None = None, skip_truncated: bool = False
) -> list[Pix3DSample]:
    """Read `root/pix3d.json` and return the usable samples.

    Args:
        root: the Pix3D folder (the one holding `pix3d.json`, `img/`, `mask/` and `model/`).
        categories: keep only these categories (e.g. ["chair", "sofa"]); None keeps all.
        skip_truncated: drop records whose object is truncated by the image border.

    Returns:
        Samples in the order of `pix3d.json`. Records whose image, mask or model file is missing are skipped: each is
        logged at DEBUG level and the total is logged once as a WARNING (partial downloads are common).

    Raises:
        FileNotFoundError: `root/pix3d.json` does not exist.
        ValueError: `pix3d.json` is not a JSON list of records.
    """
    root = Path(root)
    index_path = root / "pix3d.json"
    if not index_path.is_file():
        raise FileNotFoundError(
            f"Pix3D index not found: {index_path}. Expected the Pix3D root folder, which holds pix3d.json "
            "next to img/, mask/ and model/."
        )
    with index_path.open(encoding="utf-8") as handle:
        records = json.load(handle)
    if not isinstance(records, list):
        raise ValueError(f"{index_path} must hold a JSON list of records, got {type(records).__name__}")

    wanted = set(categories) if categories is not None else None
    samples: list[Pix3DSample] = []
    missing = 0
    for record in records:
        if wanted is not None and record.get("category") not in wanted:
            continue
        if skip_truncated and _flag(record.get("truncated", False)):
            continue
        sample = _sample_from_record(root, record)
        absent = [p for p in (sample.image_path, sample.mask_path, sample.model_path) if not p.is_file()]
        if absent:
            missing += 1
            log.debug("skipping Pix3D record %s: missing %s", record.get("img"), ", ".join(map(str, absent)))
            continue
        samples.append(sample)
    if missing:
        log.warning(
            "Pix3D: skipped %d of %d selected records with missing image, mask or model files under %s",
            missing,
            missing + len(samples),
            root,
        )
    return samples


def camera_transform(sample: Pix3DSample) -> tuple[np.ndarray, np.ndarray]:
    """The model → OpenCV camera transform of a sample.

    Returns:
        (R, t): [3, 3] and [3] float64 with X_cv = R · X_obj + t, i.e. R = PIX3D_TO_OPENCV · rot_mat and
        t = PIX3D_TO_OPENCV · trans_mat. t is in the model's units; R includes no scale.
    """
    return PIX3D_TO_OPENCV @ sample.rotation, PIX3D_TO_OPENCV @ sample.translation


def intrinsics(sample: Pix3DSample) -> np.ndarray:
    """[3, 3] OpenCV intrinsic matrix K of the annotated image, in pixels.

    f_px = focal_length_mm · width / 32 on both axes (Pix3D renders with a horizontally fitted 32 mm sensor and square
    pixels), principal point at the image centre (width / 2, height / 2), from `img_size`.
    """
    width, height = sample.img_size
    focal_px = sample.focal_length_mm * width / SENSOR_WIDTH_MM
    return np.array([[focal_px, 0.0, width / 2.0], [0.0, focal_px, height / 2.0], [0.0, 0.0, 1.0]])


def model_in_camera_frame(sample: Pix3DSample) -> trimesh.Trimesh:
    """Load the sample's CAD model and move it into the OpenCV camera frame of its image.

    Returns:
        A mesh with vertices X_cv = PIX3D_TO_OPENCV · (rot_mat · X_obj + trans_mat) (see the module docstring), in the
        model's units; projecting them with `intrinsics(sample)` lands on the object in the image. Vertex order and
        faces are those of the OBJ file (loaded with `process=False`, so nothing is merged or reordered).
    """
    mesh = trimesh.load(sample.model_path, force="mesh", process=False)
    R, t = camera_transform(sample)
    vertices = np.asarray(mesh.vertices, dtype=np.float64) @ R.T + t
    # det(R) = +1 (a rotation times a double axis flip), so face winding and normals stay outward.
    return trimesh.Trimesh(vertices=vertices, faces=np.asarray(mesh.faces), process=False)


def load_image_and_mask(sample: Pix3DSample) -> tuple[np.ndarray, np.ndarray]:
    """Read a sample's photograph and mask at full resolution.

    Returns:
        rgb: [H, W, 3] float32 in [0, 1] (greyscale, palette and RGBA images are converted to RGB; alpha is dropped).
        mask: [H, W] float32 in {0, 1}: 1 where the mask's grey value is > 127.

    Raises:
        ValueError: image and mask sizes differ.
    """
    with Image.open(sample.image_path) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    with Image.open(sample.mask_path) as mask_image:
        mask = (np.asarray(mask_image.convert("L")) > 127).astype(np.float32)
    if rgb.shape[:2] != mask.shape:
        raise ValueError(
            f"image {sample.image_path} is {rgb.shape[:2]} but its mask {sample.mask_path} is {mask.shape}"
        )
    return rgb, mask
