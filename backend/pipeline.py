"""Photo → mesh: the one pipeline behind the command line and the server (and so the add-on, through it).

Stages: locate the object (the model at full frame; its visible mask gives the box), crop square around it
with the checkpoint's margin, encode, query occupancy coarse-to-fine, marching cubes and clean-up, colour,
and move the mesh to the requested frame. Timings of every stage are kept for the metadata.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from backend import __version__
from backend.color import vertex_colors
from backend.device import autocast, resolve_device
from backend.files import file_sha256
from backend.frames import apply_transform, elevation_deg, frame_transform
from backend.mesh import extract_mesh
from backend.model.checkpoint import load_checkpoint, read_header
from backend.object_mask import MaskError, check_mask, crop_to_photo, refine_with_grabcut
from backend.preprocess import Crop, Photo, crop_photo, full_frame_box, mask_box, square_box_around
from backend.silhouette import (
    ROUND,
    Thickness,
    ViewCamera,
    carve,
    front_surface,
    inflate,
    silhouette_maps,
)
from blender_addon.protocol import ReconstructOptions

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "zeroshape-w-small.safetensors"
"""The trained default model shipped with the project."""
UNTRAINED_CHECKPOINT = REPO_ROOT / "weights" / "untrained-small.safetensors"
"""The fallback when the bundled file is missing: random weights, labelled as such, for wiring only. Nothing makes it
by itself; a developer writes it with `zeroshape-w init-checkpoint -o weights/untrained-small.safetensors`."""

Precision = Literal["fp32", "bf16", "fp16"]
ProgressFn = Callable[[str, float], None]
"""(stage name, fraction of the whole job done in [0, 1])."""


def default_checkpoint() -> Path:
    """The bundled checkpoint, or an untrained stand-in a developer wrote; a clear error if neither exists."""
    for candidate in (BUNDLED_CHECKPOINT, UNTRAINED_CHECKPOINT):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no default checkpoint: {BUNDLED_CHECKPOINT} is missing (restore it with `git checkout -- "
        f"{BUNDLED_CHECKPOINT.relative_to(REPO_ROOT)}`), or pass --checkpoint PATH"
    )


@dataclass
class Reconstruction:
    vertices: np.ndarray
    """[V, 3] float32 in the requested frame."""
    faces: np.ndarray
    """[F, 3] int64, outward facing."""
    colors: np.ndarray | None
    """[V, 4] uint8 RGBA, or None."""
    metadata: dict[str, Any] = field(default_factory=dict)
    mask: np.ndarray | None = None
    """[H, W] bool on the photo as decoded: the object mask the mesh was built from (metadata "mask_source")."""
    photo_size: tuple[int, int] | None = None
    """(width, height) of the photo file, the size the mask is written at."""

    def to_trimesh(self):
        import trimesh

        return trimesh.Trimesh(self.vertices, self.faces, vertex_colors=self.colors, process=False)


class Reconstructor:
    """Loads a checkpoint once and reconstructs any number of photos with it."""

    def __init__(
        self, checkpoint: str | Path | None = None, device: str = "auto", open_clip_weights: str | Path | None = None
    ):
        self.checkpoint = Path(checkpoint) if checkpoint else default_checkpoint()
        self.device = resolve_device(device)
        self.header = read_header(self.checkpoint)
        self.untrained = bool(self.header.get("provenance", {}).get("untrained"))
        if self.untrained:
            log.warning("%s is an UNTRAINED checkpoint (random weights): meshes will be meaningless", self.checkpoint)
        self.model = load_checkpoint(self.checkpoint, device=self.device, open_clip_weights=open_clip_weights)
        self.preprocess = self.model.preprocess
        self.checkpoint_sha256 = file_sha256(self.checkpoint)

    def capabilities(self) -> dict[str, Any]:
        """What this model can do beyond the round body, for a client to show (and to grey out what it cannot):
        its optional heads, and where an object's mask can come from."""
        return {
            "gravity_head": self.model.scene_head is not None,
            "category_head": self.model.category_head is not None,
            "body_head": self.model.body_head is not None,
            "mask_sources": ["mask file", "alpha", "model + GrabCut"],
        }

    def autocast(self, precision: Precision):
        """A context in which the network computes in `precision` (fp32: plain)."""
        return autocast(precision, self.device)

    def _to_tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None].to(self.device)

    @torch.inference_mode()
    def locate(self, photo: Photo, category: str) -> tuple[float, float, float, float]:
        """The object's square crop box in photo pixels: from the alpha channel when there is a real one,
        otherwise from the model's visible mask on the whole (padded) photo. Falls back to the whole photo."""
        margin = self.preprocess.crop_margin
        if photo.alpha is not None:
            box = mask_box(photo.alpha)
            if box is not None:
                return square_box_around(box, margin)
        frame = full_frame_box(photo)
        crop = crop_photo(photo, frame, self.preprocess)
        latent = self.model.encode(self._to_tensor(crop.rgb), [category])
        mask = torch.sigmoid(latent.visible_mask_logits)[0, 0].float().cpu().numpy()
        box = mask_box(mask, self.model.config.mask_threshold)
        if box is None:
            return frame
        # Input pixels → photo pixels.
        x0, y0 = frame[0], frame[1]
        step = 1.0 / crop.scale
        return square_box_around(
            (x0 + box[0] * step, y0 + box[1] * step, x0 + box[2] * step, y0 + box[3] * step), margin
        )

    @torch.inference_mode()
    def reconstruct(
        self,
        photo: Photo,
        options: ReconstructOptions | None = None,
        progress: ProgressFn | None = None,
        chunk_size: int | None = None,
        mask: np.ndarray | None = None,
    ) -> Reconstruction:
        """One photo → its mesh. `chunk_size`: query points per network call, which bounds the decoder's
        memory (default: 16384 on CPU, fastest there as the working set stays in cache; 262144 on a GPU).
        `mask`: the user's object mask [H, W] in [0, 1] at the photo file's size (`object_mask.read_mask_file`);
        it replaces the photo's alpha. Raises MaskError for a mask that cannot be used."""
        options = options or ReconstructOptions()
        report = progress or (lambda stage, fraction: None)
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] = round(now - clock, 4)
            clock = now

        report("locate", 0.0)
        if not options.use_alpha:
            photo = replace(photo, alpha=None)
        photo, mask_source, warnings = self._given_mask(photo, mask, options.box)
        box = self._user_box(photo, options.box) if options.box else None
        box = box or self.locate(photo, options.category)
        crop = crop_photo(photo, box, self.preprocess)
        lap("preprocess")

        report("encode", 0.1)
        visible_override = None
        if crop.alpha is not None:
            visible_override = torch.from_numpy(crop.alpha)[None, None].to(self.device)
        with self.autocast(options.precision):
            latent = self.model.encode(self._to_tensor(crop.rgb), [options.category], visible_mask=visible_override)
        lap("encode")

        object_mask, occluder, mask_source = self._crop_mask(photo, crop, latent, options, mask_source, warnings)
        maps = silhouette_maps(object_mask, occluder)
        camera = ViewCamera.of_latent(latent)
        K, centroid, scale = camera.K, camera.centroid, camera.scale
        lap("mask")

        report("occupancy", 0.2)
        queried = 0

        def query(points: np.ndarray) -> np.ndarray:
            nonlocal queried
            queried += len(points)
            batch = torch.from_numpy(points).to(self.device)[None]
            with self.autocast(options.precision):
                logits = self.model.query(batch, latent)[0].float().cpu().numpy()
            report("occupancy", 0.2 + 0.6 * min(1.0, queried / (0.05 * (options.resolution + 1) ** 3)))
            return logits

        half_extent = self.preprocess.query_box_half_extent
        visible_points = latent.visible_points[0].float().cpu().numpy()
        visible = latent.visible[0, 0].cpu().numpy()
        thickness = body_thickness(self.model, latent, object_mask) if options.shape == "body" else None
        if options.shape in ("inflate", "body"):
            body = inflate(maps, camera, half_extent, thickness=thickness or ROUND)
            field, band, centroid, scale = body.field, body.band, body.camera.centroid, body.camera.scale
            visible_points, visible = front_surface(maps, body.camera, thickness or ROUND)
        else:
            field, band = carve(query, maps, camera, level=self.preprocess.occupancy_level), None
        mesh, result = extract_mesh(
            field,
            resolution=options.resolution,
            half_extent=half_extent,
            level=0.0,
            band=band,
            chunk_size=chunk_size or (262144 if self.device.type == "cuda" else 16384),
            largest_component=options.largest_component,
            max_faces=options.max_faces,
        )
        timings["occupancy_and_meshing"] = round(time.perf_counter() - clock, 4)
        clock = time.perf_counter()
        vertices = np.asarray(mesh.vertices, dtype=np.float32)
        faces = np.asarray(mesh.faces, dtype=np.int64)
        if len(faces) == 0:
            raise EmptyMeshError(
                f"{photo.source}: the model found no object surface (try a tighter --box or another --category)"
            )

        report("color", 0.85)
        colors = None
        if options.color:
            colors, _ = vertex_colors(
                vertices,
                visible_points,
                visible,
                K,
                centroid,
                scale,
                crop.rgb,
                image_to_photo=(box[0], box[1], 1.0 / crop.scale),
                photo=photo.rgb,
            )
        lap("color")

        gravity = None
        if latent.gravity is not None:
            gravity = latent.gravity[0].double().cpu().numpy()
        matrix = frame_transform(vertices, options.frame, gravity if options.upright else None)
        vertices = apply_transform(vertices, matrix)
        report("done", 1.0)
        metadata = self._metadata(photo, options, crop, K, centroid, scale, matrix, result, timings, faces, vertices)
        metadata.update(self._scene_metadata(latent, options, gravity))
        metadata["shape"] = options.shape
        if thickness is not None:
            metadata["body"] = {"front": thickness.front, "back": thickness.back, "tilt": list(thickness.tilt)}
        metadata["mask_source"] = mask_source
        metadata["network_queries"] = queried
        metadata["warnings"] = photo_warnings(photo) + warnings
        if mask_source in ("user", "alpha"):
            photo_mask = photo.alpha >= 0.5
        else:
            photo_mask = crop_to_photo(object_mask, box, photo.rgb.shape[:2])
        return Reconstruction(
            vertices=vertices,
            faces=faces,
            colors=colors,
            metadata=metadata,
            mask=photo_mask,
            photo_size=photo.size_in_file,
        )

    def _given_mask(self, photo: Photo, mask: np.ndarray | None, box=None) -> tuple[Photo, str, list[str]]:
        """The photo with the user's mask (checked, resized to the photo as decoded) as its alpha, or with its own
        alpha checked; an alpha that is no object mask is dropped with a warning. Of a mask in several parts, the one
        the user's box (file pixels) covers most is kept, else the largest. Returns (photo, mask source so far,
        warnings)."""
        near = None
        if box is not None:
            x0, y0, x1, y1 = (max(0, round(photo.from_file_pixels(float(v)))) for v in box)
            near = np.zeros(photo.rgb.shape[:2], bool)
            near[y0:y1, x0:x1] = True
        if mask is not None:
            if tuple(mask.shape[::-1]) != tuple(photo.size_in_file):
                raise MaskError(
                    f"the mask is {mask.shape[1]}×{mask.shape[0]} pixels but the photo is {_size_text(photo)}: "
                    "a mask must have the photo's size"
                )
            if mask.shape != photo.rgb.shape[:2]:
                from PIL import Image

                resized = Image.fromarray(mask.astype(np.float32)).resize(photo.size, Image.Resampling.BILINEAR)
                mask = np.asarray(resized, np.float32)
            checked = check_mask(mask, "the mask", keep_near=near)
            return replace(photo, alpha=checked.mask.astype(np.float32)), "user", checked.warnings
        if photo.alpha is None:
            return photo, "network", []
        try:
            checked = check_mask(photo.alpha, "the photo's alpha channel", keep_near=near)
        except MaskError as error:
            return replace(photo, alpha=None), "network", [f"{error}; using the model's mask instead"]
        alpha = np.where(checked.mask | (photo.alpha < 0.5), photo.alpha, 0.0).astype(np.float32)
        return replace(photo, alpha=alpha), "alpha", checked.warnings

    def _crop_mask(self, photo: Photo, crop: Crop, latent, options, source: str, warnings: list[str]):
        """The object mask [S, S] bool on the network input, the occluder mask [S, S] bool or None, and the mask's
        source: the crop of a given mask, else the network's mask, refined with GrabCut when the options ask."""
        if crop.alpha is not None:
            return crop.alpha >= 0.5, None, source
        probability = torch.sigmoid(latent.visible_mask_logits.float())[0, 0].cpu().numpy()
        occluder = (torch.sigmoid(latent.occluder_mask_logits.float())[0, 0] >= 0.5).cpu().numpy()
        raw = probability >= self.model.config.mask_threshold
        if not raw.any():
            raise EmptyMeshError(
                f"{photo.source}: the model found no object in the photo (give a mask with --mask, a tighter "
                "--box, or a cut-out with an alpha channel)"
            )
        mask = raw
        if options.refine_mask:
            mask = refine_with_grabcut(crop.rgb, probability, _inside_photo(crop, photo))
            source = "network+grabcut"
        try:
            checked = check_mask(mask, "the model's object mask", keep_near=raw, given=False)
        except MaskError as error:
            raise EmptyMeshError(f"{error}; give a mask with --mask, or a tighter --box") from None
        warnings += checked.warnings
        return checked.mask, occluder, source

    def _user_box(self, photo: Photo, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """A box (x0, y0, x1, y1) in the file's pixels → the square crop window in `photo.rgb` pixels. Raises
        BadBoxError unless it is ordered, overlaps the photo and is at most 4× the photo's longer side."""
        x0, y0, x1, y1 = (photo.from_file_pixels(float(v)) for v in box)
        width, height = photo.size
        if not (x0 < x1 and y0 < y1):
            raise BadBoxError(f"{photo.source}: box {list(box)} must be [x0, y0, x1, y1] with x0 < x1 and y0 < y1")
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            raise BadBoxError(f"{photo.source}: box {list(box)} lies outside the {_size_text(photo)} photo")
        if max(x1 - x0, y1 - y0) > 4 * max(width, height):
            raise BadBoxError(f"{photo.source}: box {list(box)} is more than 4 times the size of the photo")
        return square_box_around((x0, y0, x1, y1), self.preprocess.crop_margin)

    def _scene_metadata(self, latent, options: ReconstructOptions, gravity: np.ndarray | None) -> dict:
        """The category the mesh was made with (and how sure the model was) and which way is up."""
        chosen, probability = self.model.choose_categories(latent.category_logits)
        scene = {
            "category": latent.prompts[0] if latent.prompts else options.category,
            "category_requested": options.category,
            "category_predicted": {"name": chosen[0], "probability": probability[0]},
        }
        if latent.category_logits is None:
            scene["category_predicted"] = None
        if gravity is None:
            scene["up"] = {"source": "camera", "note": "this model has no gravity head: up is the camera's up"}
        else:
            scene["up"] = {
                "source": "gravity head" if options.upright else "camera (upright off)",
                "gravity_camera": [round(float(v), 5) for v in gravity],
                "elevation_deg": round(elevation_deg(gravity), 2),
            }
        return scene

    def _metadata(self, photo, options, crop: Crop, K, centroid, scale, matrix, result, timings, faces, vertices):
        photo_per_input = 1.0 / crop.scale

        def file_coordinate(value: float) -> float:
            """A pixel-centre coordinate in `photo.rgb` → the same in the file's pixels."""
            return photo.to_file_pixels(value + 0.5) - 0.5

        focal = float(K[0, 0])
        size = self.preprocess.image_size
        return {
            "source": photo.source,
            "frame": options.frame,
            "frame_transform": matrix.round(8).tolist(),
            "frame_transform_maps": "model frame (OpenCV camera axes, normalised) -> output vertices",
            "camera": {
                "focal_length_px": round(focal, 4),
                "principal_point_px": [round(float(K[0, 2]), 4), round(float(K[1, 2]), 4)],
                "image_size_px": size,
                "field_of_view_deg": round(float(np.degrees(2 * np.arctan(size / (2 * focal)))), 3),
                "photo_size_px": list(photo.size_in_file),
                "crop_box_photo_px": [round(photo.to_file_pixels(v), 2) for v in crop.box],
                "focal_length_photo_px": round(photo.to_file_pixels(focal * photo_per_input), 3),
                "principal_point_photo_px": [
                    round(file_coordinate(crop.box[0] + (float(K[0, 2]) + 0.5) * photo_per_input - 0.5), 3),
                    round(file_coordinate(crop.box[1] + (float(K[1, 2]) + 0.5) * photo_per_input - 0.5), 3),
                ],
                "note": "similar to the true camera up to the depth/focal ambiguity: not metric",
            },
            "normalisation": {"centroid": centroid.round(6).tolist(), "scale": round(scale, 6)},
            "resolution": options.resolution,
            "queries": result.queries,
            "dense_grid_queries": result.dense_queries,
            "vertices": len(vertices),
            "faces": len(faces),
            "timings_s": timings,
            "model": {
                "config": self.model.config.name,
                "checkpoint": self.checkpoint.name,
                "sha256": self.checkpoint_sha256,
                "untrained": self.untrained,
            },
            "device": str(self.device),
            "zeroshape_w_version": __version__,
        }


UNIFORM_PHOTO_STD = 0.01
"""Below this standard deviation of the photo's colours (in [0, 1]) a photo shows nothing to reconstruct."""


def body_thickness(model, latent, object_mask: np.ndarray) -> Thickness | None:
    """The body head's estimate (`ZeroShapeW.body`) for the mask [S, S] the body is inflated from, of a one-image
    latent; None for a model without a body head."""
    device = next(model.parameters()).device
    mask = torch.from_numpy(np.asarray(object_mask, dtype=np.float32))[None, None].to(device)
    with torch.inference_mode():
        body = model.body(latent, mask)
    return None if body is None else Thickness.from_body(body[0].float().cpu())


def photo_warnings(photo: Photo) -> list[str]:
    """Reasons to doubt a mesh that was made anyway, for people to read (the result's metadata "warnings")."""
    if float(photo.rgb[::4, ::4].std()) < UNIFORM_PHOTO_STD:
        return ["the photo is almost one flat colour: there is probably no object in it, and the mesh is a guess"]
    return []


def _inside_photo(crop: Crop, photo: Photo) -> np.ndarray:
    """[S, S] bool: the crop's pixels that show the photo, not the padding around it."""
    size = crop.rgb.shape[0]
    x0, y0, x1, y1 = crop.box
    centres = (np.arange(size) + 0.5) / size
    width, height = photo.size
    x = x0 + centres * (x1 - x0)
    y = y0 + centres * (y1 - y0)
    return ((y >= 0) & (y < height))[:, None] & ((x >= 0) & (x < width))[None, :]


class EmptyMeshError(Exception):
    """The occupancy field has no surface for this photo."""


def _size_text(photo: Photo) -> str:
    width, height = photo.size_in_file
    return f"{width}×{height}"


class BadBoxError(ValueError):
    """The user's object box cannot be cropped from this photo; the message says why."""
