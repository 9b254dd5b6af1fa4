"""Training samples from datasets written by `zeroshape-w data render` (format: docs/DATASET.md).

One sample is one rendered view of one object, turned into what the losses need:

* the image, with Copy-Paste occlusion (0 to 2 cut-outs of other objects with a similar focal length, each
  scaled to 0.4–0.6 of the image side and pasted over the object, as in ZeroShape-W's supplement) and
  colour jitter;
* the targets of the pixel heads: K, depth, the visible mask (what the occluders left of the object) and
  the occluder mask;
* occupancy query points with labels, moved into the frame the network reasons in: OpenCV camera axes,
  centred on the visible points' centroid and scaled so that their farthest point is at distance 1. The
  frame comes from the ground-truth depth of the *visible* pixels, exactly as the model normalises its own
  prediction, so a query at normalised position x means the same place for the labels and for the network.

Every random choice of a sample comes from the `seed` it is asked with (see `SampleRequest`), so a training
step's batch is a pure function of (run seed, step): resuming a run replays it exactly, whatever the number
of data-loader workers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from training.data import layout

log = logging.getLogger(__name__)

OBJECT_CUBE_HALF_EXTENT = 0.55
"""Objects are normalised into [-0.5, 0.5]³ (docs/DATASET.md); everything outside this cube is empty."""
MIN_INSIDE_SHARE = 0.005
"""Training skips objects with fewer of their occupancy samples inside (half of the samples lie near the surface, so
a solid object has 15-50% inside): they enclose no volume, e.g. a flat shield face or a plant's leaves drawn as
open sheets, and their all-empty labels would teach the decoder to answer "empty" for what it sees."""


@dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation; `Augmentation.none()` for evaluation."""

    max_occluders: int = 2
    """0 to this many Copy-Paste occluders per sample, uniformly."""
    occluder_scale: tuple[float, float] = (0.4, 0.6)
    """Longer side of a pasted cut-out, as a fraction of the image side."""
    occluder_focal_tolerance_mm: float = 10.0
    """Cut-outs are drawn from those whose render focal length is this close to the sample's."""
    min_visible_fraction: float = 0.25
    """An occluder that would leave less of the object visible is not pasted: the task must stay defined."""
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    """Colour jitter: each factor is drawn from [1 - x, 1 + x]."""

    @staticmethod
    def none() -> Augmentation:
        return Augmentation(max_occluders=0, brightness=0.0, contrast=0.0, saturation=0.0)


@dataclass(frozen=True)
class SampleRequest:
    """Which view to load and the seed of every random choice made for it."""

    index: int
    seed: int
    occluders: int | None = None
    """Force this many occluders (evaluation's occluded split); None draws 0..max_occluders."""


@dataclass(frozen=True)
class ViewRecord:
    object_id: str
    category: str
    folder: Path
    """The view folder (rgb.png, depth.npy, mask.png, camera.json)."""
    object_folder: Path
    focal_mm: float
    source: str = ""
    """The object's source ("procedural", "sweethome3d", a folder, …), from object.json."""
    scene: str = "clean"
    """How the view was staged: "clean", "cluttered" or "occluded" (a 3D occluder); camera.json's "scene"."""


@dataclass(frozen=True)
class OccluderRecord:
    object_id: str
    path: Path
    focal_mm: float


def scan_dataset(roots: Sequence[str | Path]) -> tuple[list[ViewRecord], list[OccluderRecord]]:
    """Every finished view and occluder cut-out under the dataset folders `roots`.

    An object counts once its DONE marker exists, so a dataset that is still rendering can already be read.
    Raises FileNotFoundError naming the folder when a root is not a rendered dataset.
    """
    views: list[ViewRecord] = []
    occluders: list[OccluderRecord] = []
    for root in map(Path, roots):
        objects = layout.objects_folder(root)
        if not objects.is_dir():
            raise FileNotFoundError(
                f"{root}: not a rendered dataset (no objects/ folder); make one with `zeroshape-w data render`"
            )
        for object_folder in sorted(objects.iterdir()):
            if not layout.is_done(object_folder):
                continue
            info = layout.read_object_info(object_folder)
            for view in layout.view_folders(object_folder):
                camera = layout.read_camera(view)
                views.append(
                    ViewRecord(
                        info["object_id"],
                        info["category"],
                        view,
                        object_folder,
                        camera["focal_mm"],
                        info.get("source", ""),
                        camera.get("scene", "clean"),
                    )
                )
        for meta in sorted((root / layout.OCCLUDERS).glob("*.json")):
            info = json.loads(meta.read_text())
            image = meta.with_suffix(".png")
            if image.is_file():
                occluders.append(OccluderRecord(info["object_id"], image, float(info["focal_mm"])))
    return views, occluders


@lru_cache(maxsize=2048)
def _load_occupancy(object_folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(points float32 [N, 3] in the normalised object frame, labels bool [N]); cached per process."""
    return layout.read_occupancy(object_folder)


def _without_sheets(views: list[ViewRecord]) -> list[ViewRecord]:
    """The views whose objects enclose a volume (see MIN_INSIDE_SHARE); logs what it leaves out."""
    share = {}
    for folder in dict.fromkeys(view.object_folder for view in views):
        share[folder] = float(_load_occupancy(folder)[1].mean())  # cached: the samples training draws from
    sheets = sorted(folder.name for folder, inside in share.items() if inside < MIN_INSIDE_SHARE)
    if sheets:
        log.warning(
            "skipping %d of %d objects that enclose no volume (under %.1f%% of their occupancy samples inside): %s%s",
            len(sheets), len(share), 100 * MIN_INSIDE_SHARE, ", ".join(sheets[:5]), ", ..." if len(sheets) > 5 else "",
        )  # fmt: skip
    return [view for view in views if share[view.object_folder] >= MIN_INSIDE_SHARE]


@lru_cache(maxsize=512)
def _load_cutout(path: Path) -> np.ndarray:
    """RGBA float32 [h, w, 4] in [0, 1], cropped to the cut-out's alpha box."""
    rgba = np.asarray(Image.open(path).convert("RGBA"), dtype=np.float32) / 255.0
    rows, cols = np.nonzero(rgba[..., 3] > 0.5)
    if len(rows) == 0:
        return rgba[:0, :0]
    return rgba[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def load_view(view: ViewRecord) -> dict[str, np.ndarray]:
    """rgb float32 [H, W, 3] in [0, 1], depth float32 [H, W], mask bool [H, W] (the visible object), occluder
    bool [H, W] (rendered 3D occluders; all False for views without occluder.png), K [3, 3], world_to_camera
    [4, 4]."""
    camera = layout.read_camera(view.folder)
    mask = layout.read_mask(view.folder)
    occluder = layout.read_occluder(view.folder)
    return {
        "rgb": layout.read_rgb(view.folder).astype(np.float32) / 255.0,
        "depth": layout.read_depth(view.folder),
        "mask": mask,
        "occluder": occluder if occluder is not None else np.zeros_like(mask),
        "K": np.asarray(camera["K"], dtype=np.float64),
        "world_to_camera": np.asarray(camera["world_to_camera"], dtype=np.float64),
    }


def gravity_in_camera(world_to_camera: np.ndarray) -> np.ndarray:
    """float32 [3]: the unit direction of gravity (world −Z) in the camera axes of a [4, 4] world_to_camera."""
    down = -np.asarray(world_to_camera, dtype=np.float64)[:3, 2]
    return (down / np.linalg.norm(down)).astype(np.float32)


def resize_view(data: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """A view resized to size² (models with smaller inputs, e.g. `tiny`): bilinear RGB, nearest depth and
    mask (no depth is invented between object and background), K rescaled with pixel centres at integers."""
    height, width = data["mask"].shape
    if height != width:
        raise ValueError(f"views must be square, got {width}×{height}")
    factor = size / width
    nearest = lambda a: np.array(Image.fromarray(a).resize((size, size), Image.NEAREST))  # noqa: E731 (writable)
    K = data["K"].copy()
    K[:2, :2] *= factor
    K[:2, 2] = (K[:2, 2] + 0.5) * factor - 0.5
    return {
        **data,
        "rgb": _resize(data["rgb"], size, size)[..., :3],
        "depth": nearest(data["depth"]),
        "mask": nearest(data["mask"]),
        "occluder": nearest(data["occluder"]),
        "K": K,
    }


def visible_frame(depth: np.ndarray, mask: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, float]:
    """Centroid [3] and scale of the visible points in camera coordinates (the model's normalisation).

    Same convention as backend.model.geometry: pixel (u, v) = (column, row) without half-pixel offset,
    centroid = mean of the points, scale = largest distance from it.
    """
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        raise ValueError("no visible pixel: cannot place the normalised frame")
    z = depth[rows, cols].astype(np.float64)
    pixels = np.stack([cols, rows, np.ones_like(cols)], axis=0).astype(np.float64)
    points = (np.linalg.inv(K) @ pixels * z).T
    centroid = points.mean(axis=0)
    scale = float(np.sqrt(((points - centroid) ** 2).sum(axis=1)).max())
    return centroid, max(scale, 1e-6)


def _resize(array: np.ndarray, width: int, height: int) -> np.ndarray:
    image = Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8))
    return np.asarray(image.resize((width, height), Image.BILINEAR), dtype=np.float32) / 255.0


def paste_occluders(
    rgb: np.ndarray,
    mask: np.ndarray,
    cutouts: Iterable[np.ndarray],
    rng: np.random.Generator,
    scale: tuple[float, float],
    min_visible_fraction: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Copy-Paste occlusion.

    Args:
        rgb: [H, W, 3] in [0, 1]; mask: [H, W] bool, the object's full silhouette.
        cutouts: RGBA [h, w, 4] cut-outs, cropped to their alpha.
    Returns:
        (rgb with the cut-outs pasted, visible mask = object pixels not covered, occluder mask [H, W] bool
        = pixels covered by a cut-out, number of cut-outs actually pasted).
    """
    height, width = mask.shape
    rgb = rgb.copy()
    occluder = np.zeros_like(mask)
    total = max(int(mask.sum()), 1)
    pasted = 0
    rows, cols = np.nonzero(mask)
    for cutout in cutouts:
        if cutout.size == 0 or len(rows) == 0:
            continue
        side = rng.uniform(*scale) * max(height, width)
        factor = side / max(cutout.shape[:2])
        h, w = max(1, round(cutout.shape[0] * factor)), max(1, round(cutout.shape[1] * factor))
        resized = _resize(cutout, w, h)
        # Centred near a random object pixel so the cut-out really hides part of the object.
        pick = rng.integers(len(rows))
        cy = rows[pick] + rng.normal(0, h / 4)
        cx = cols[pick] + rng.normal(0, w / 4)
        top, left = round(cy - h / 2), round(cx - w / 2)
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + h, height), min(left + w, width)
        if y1 <= y0 or x1 <= x0:
            continue
        patch = resized[y0 - top : y1 - top, x0 - left : x1 - left]
        alpha = patch[..., 3:4]
        covered = occluder.copy()
        covered[y0:y1, x0:x1] |= alpha[..., 0] > 0.5
        if (mask & ~covered).sum() < min_visible_fraction * total:
            continue
        rgb[y0:y1, x0:x1] = rgb[y0:y1, x0:x1] * (1 - alpha) + patch[..., :3] * alpha
        occluder = covered
        pasted += 1
    return rgb, mask & ~occluder, occluder, pasted


def colour_jitter(rgb: np.ndarray, rng: np.random.Generator, augmentation: Augmentation) -> np.ndarray:
    """Brightness, contrast and saturation jitter of an [H, W, 3] image in [0, 1]."""
    if augmentation.brightness:
        rgb = rgb * rng.uniform(1 - augmentation.brightness, 1 + augmentation.brightness)
    if augmentation.contrast:
        mean = rgb.mean()
        rgb = (rgb - mean) * rng.uniform(1 - augmentation.contrast, 1 + augmentation.contrast) + mean
    if augmentation.saturation:
        grey = rgb.mean(axis=2, keepdims=True)
        rgb = (rgb - grey) * rng.uniform(1 - augmentation.saturation, 1 + augmentation.saturation) + grey
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def occupancy_queries(
    object_folder: Path,
    world_to_camera: np.ndarray,
    centroid: np.ndarray,
    scale: float,
    count: int,
    rng: np.random.Generator,
    box_half_extent: float,
    box_fraction: float,
) -> tuple[np.ndarray, np.ndarray]:
    """`count` labelled query points in the normalised camera frame.

    Most come from the object's precomputed samples (uniform in its cube plus near its surface); a fraction
    `box_fraction` is uniform in the whole query box [-h, h]³ outside the object's cube, where the answer is
    known to be empty, so the network also learns that the far corners of the box it is queried in are empty.

    Returns:
        (points float32 [count, 3] in the normalised frame, labels float32 [count] in {0, 1}).
    """
    rotation, translation = world_to_camera[:3, :3], world_to_camera[:3, 3]
    wanted_far = round(count * box_fraction)
    far = np.zeros((0, 3))
    if wanted_far:
        candidates = rng.uniform(-box_half_extent, box_half_extent, size=(wanted_far * 4, 3))
        in_object = (candidates * scale + centroid - translation) @ rotation  # = R⁻¹ (x_cam − t)
        far = candidates[np.abs(in_object).max(axis=1) > OBJECT_CUBE_HALF_EXTENT][:wanted_far]
    points, labels = _load_occupancy(object_folder)
    chosen = rng.choice(len(points), size=count - len(far), replace=len(points) < count - len(far))
    near = ((points[chosen].astype(np.float64) @ rotation.T + translation) - centroid) / scale
    all_points = np.concatenate([near, far]).astype(np.float32)
    all_labels = np.concatenate([labels[chosen], np.zeros(len(far), dtype=bool)]).astype(np.float32)
    return all_points, all_labels


class RenderedViews(torch.utils.data.Dataset):
    """Views of rendered datasets as training samples; index it with `SampleRequest`s.

    Each item is a dict of tensors: image [3, S, S] in [0, 1]; depth [1, S, S] (camera z, 0 off the object);
    visible_mask, occluder_mask [1, S, S] in {0, 1}; K [3, 3] in pixels; points [N, 3] and occupancy [N];
    gravity [3] (the world's down, −Z, in camera axes: the renders' worlds are Z-up);
    plus the strings category and object_id and the int occluders (cut-outs pasted).
    """

    def __init__(
        self,
        roots: Sequence[str | Path],
        image_size: int,
        query_points: int,
        augmentation: Augmentation | None = None,
        box_half_extent: float = 1.5,
        box_fraction: float = 0.125,
        skip_sheets: bool = False,
    ):
        self.views, self.occluders = scan_dataset(roots)
        if skip_sheets:
            self.views = _without_sheets(self.views)
        if not self.views:
            raise ValueError(f"no finished views under {', '.join(map(str, roots))}")
        self.image_size = image_size
        self.query_points = query_points
        self.augmentation = augmentation or Augmentation()
        self.box_half_extent = box_half_extent
        self.box_fraction = box_fraction
        self._occluder_focals = np.array([o.focal_mm for o in self.occluders])

    def __len__(self) -> int:
        return len(self.views)

    @property
    def categories(self) -> list[str]:
        return sorted({v.category for v in self.views})

    def _pick_cutouts(self, view: ViewRecord, count: int, rng: np.random.Generator) -> list[np.ndarray]:
        if count == 0 or not self.occluders:
            return []
        others = np.array([o.object_id != view.object_id for o in self.occluders])
        close = others & (
            np.abs(self._occluder_focals - view.focal_mm) <= self.augmentation.occluder_focal_tolerance_mm
        )
        pool = np.nonzero(close if close.any() else others)[0]
        if len(pool) == 0:
            return []
        picks = rng.choice(pool, size=count, replace=len(pool) < count)
        return [_load_cutout(self.occluders[i].path) for i in picks]

    def __getitem__(self, request: SampleRequest | int) -> dict:
        if isinstance(request, int):
            request = SampleRequest(request, seed=request)
        view = self.views[request.index]
        rng = np.random.default_rng(request.seed)
        data = load_view(view)
        if data["rgb"].shape[:2] != (self.image_size, self.image_size):
            data = resize_view(data, self.image_size)
        augmentation = self.augmentation
        wanted = request.occluders
        if wanted is None:
            wanted = int(rng.integers(0, augmentation.max_occluders + 1))
        rgb, visible, occluder, pasted = paste_occluders(
            data["rgb"],
            data["mask"],
            self._pick_cutouts(view, wanted, rng),
            rng,
            augmentation.occluder_scale,
            augmentation.min_visible_fraction,
        )
        occluder |= data["occluder"]  # rendered 3D occluders, beside any pasted cut-outs
        rgb = colour_jitter(rgb, rng, augmentation)
        centroid, scale = visible_frame(data["depth"], visible, data["K"])
        points, labels = occupancy_queries(
            view.object_folder,
            data["world_to_camera"],
            centroid,
            scale,
            self.query_points,
            rng,
            self.box_half_extent,
            self.box_fraction,
        )
        return {
            "image": torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))),
            "depth": torch.from_numpy(data["depth"])[None],
            "visible_mask": torch.from_numpy(visible.astype(np.float32))[None],
            "occluder_mask": torch.from_numpy(occluder.astype(np.float32))[None],
            "K": torch.from_numpy(data["K"].astype(np.float32)),
            "gravity": torch.from_numpy(gravity_in_camera(data["world_to_camera"])),
            "points": torch.from_numpy(points),
            "occupancy": torch.from_numpy(labels),
            "category": view.category,
            "object_id": view.object_id,
            "occluders": pasted,
        }


def collate(samples: list[dict]) -> dict:
    """Stack tensors; keep strings and ints as lists."""
    batch = {}
    for key, value in samples[0].items():
        values = [sample[key] for sample in samples]
        batch[key] = torch.stack(values) if isinstance(value, torch.Tensor) else values
    return batch
