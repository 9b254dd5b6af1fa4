"""Silhouette-first shapes and outline measures for the evaluation (`zeroshape-w evaluate --shapes`).

Rows, beside the model's, on the same views:
* `inflate-true-mask`: the no-network body inflated from the true visible mask (and true occluder mask);
* `inflate-predicted-mask`: the same from the model's own visible and occluder masks;
* `inflate-refined-mask`: from the model's mask sharpened by GrabCut (what `reconstruct` does by default);
* `model-carved`: the model's occupancy field carved by the refined mask's visual cone (`reconstruct --shape
  learned`);
* `body-true-mask`, `body-refined-mask`: the body inflated from the true or the refined mask, tilted and
  thickened as the model's body head estimates from that mask (`reconstruct --shape body`);
* `body-oracle-true-mask`: the body fitted to the true object (`training.thickness_targets`): what a perfect body
  head would reach.
The `inflate-*` rows are the round body (`reconstruct --shape inflate`). All use the model's estimated camera (its
K and the visible surface's centroid), as `reconstruct` does.

Silhouette IoUs (`silhouette_ious`): the mesh and the ground truth, both in the camera's axes, each centred on its
bounding box and scaled by its larger image-plane extent, drawn as filled orthographic silhouettes from the
photo's direction (front), turned 90° about the image's vertical axis (side) and about its horizontal axis (top).
FS@τ rewards a blob that sits where most of the surface is; these see the outline.
"""

from __future__ import annotations

import numpy as np
import torch
import trimesh
from scipy import ndimage

from backend.mesh import extract_mesh
from backend.model.zeroshape import Latent, ZeroShapeW
from backend.object_mask import check_mask, refine_with_grabcut
from backend.pipeline import body_thickness
from backend.silhouette import ROUND, Thickness, ViewCamera, carve, inflate, silhouette_maps

SHAPE_METHODS = (
    "inflate-true-mask",
    "inflate-predicted-mask",
    "inflate-refined-mask",
    "model-carved",
    "body-true-mask",
    "body-refined-mask",
    "body-oracle-true-mask",
)
VIEWS = ("front", "side", "top")
RASTER = 128
"""Pixels per side of the silhouette images."""
RASTER_SAMPLES = 200_000
"""Surface samples splatted per silhouette (about ten per covered pixel at RASTER²: no gaps)."""


def predicted_masks(model: ZeroShapeW, latent: Latent) -> tuple[np.ndarray, np.ndarray]:
    """The model's visible-mask probability [S, S] and occluder mask [S, S] bool of a one-image latent."""
    probability = torch.sigmoid(latent.visible_mask_logits.float())[0, 0].cpu().numpy()
    occluder = (torch.sigmoid(latent.occluder_mask_logits.float())[0, 0] >= 0.5).cpu().numpy()
    return probability, occluder


def _one_part(mask: np.ndarray, keep_near: np.ndarray | None = None) -> np.ndarray | None:
    """The mask reduced to one part as `reconstruct` does; None when it is no usable mask."""
    try:
        return check_mask(mask, "mask", keep_near=keep_near, given=False).mask
    except ValueError:
        return None


def inflated_mesh(
    mask: np.ndarray | None,
    occluder: np.ndarray | None,
    camera: ViewCamera,
    resolution: int,
    half_extent: float,
    thickness: Thickness = ROUND,
) -> trimesh.Trimesh:
    """The inflated body's mesh, in the camera's axes up to translation and scale; empty for no mask."""
    if mask is None:
        return trimesh.Trimesh()
    body = inflate(silhouette_maps(mask, occluder), camera, half_extent, thickness=thickness)
    mesh, _ = extract_mesh(body.field, resolution, half_extent, level=0.0, band=body.band, chunk_size=1 << 20)
    return mesh


def shape_meshes(
    model: ZeroShapeW,
    image: torch.Tensor,
    latent: Latent,
    resolution: int,
    truth: dict[str, torch.Tensor] | None,
    methods: tuple[str, ...] = SHAPE_METHODS,
) -> dict[str, trimesh.Trimesh]:
    """The meshes of one view (batch of one) for `methods` (of SHAPE_METHODS). image: [3, S, S] in [0, 1]; truth:
    visible_mask [1, S, S], optionally occluder_mask [1, S, S] and body (the fitted `Thickness`, or None where the
    view has none); rows whose inputs are missing (no true mask, no body head, no fitted body) are left out."""
    half_extent = model.preprocess.query_box_half_extent
    camera = ViewCamera.of_latent(latent)
    probability, occluder = predicted_masks(model, latent)
    raw = probability >= model.config.mask_threshold
    rgb = image.permute(1, 2, 0).float().cpu().numpy()
    refined = None
    if raw.any() and {"inflate-refined-mask", "model-carved", "body-refined-mask"} & set(methods):
        refined = _one_part(refine_with_grabcut(rgb, probability), keep_near=raw)
    meshes = {}
    true_mask = true_occluder = None
    if truth is not None and "visible_mask" in truth:
        true_mask = _one_part(truth["visible_mask"][0].cpu().numpy() >= 0.5)
        true_occluder = truth.get("occluder_mask")
        true_occluder = None if true_occluder is None else true_occluder[0].cpu().numpy() >= 0.5
    if true_mask is not None and "inflate-true-mask" in methods:
        meshes["inflate-true-mask"] = inflated_mesh(true_mask, true_occluder, camera, resolution, half_extent)
    for method, mask, mask_occluder in (
        ("body-true-mask", true_mask, true_occluder),
        ("body-refined-mask", refined, occluder),
    ):
        thickness = body_thickness(model, latent, mask) if method in methods and mask is not None else None
        if thickness is not None:
            meshes[method] = inflated_mesh(mask, mask_occluder, camera, resolution, half_extent, thickness)
    fitted = (truth or {}).get("body")
    if "body-oracle-true-mask" in methods and true_mask is not None and fitted is not None:
        meshes["body-oracle-true-mask"] = inflated_mesh(
            true_mask, true_occluder, camera, resolution, half_extent, fitted
        )
    if "inflate-predicted-mask" in methods:
        meshes["inflate-predicted-mask"] = inflated_mesh(_one_part(raw), occluder, camera, resolution, half_extent)
    if "inflate-refined-mask" in methods:
        meshes["inflate-refined-mask"] = inflated_mesh(refined, occluder, camera, resolution, half_extent)
    if "model-carved" not in methods:
        return meshes
    if refined is None:
        meshes["model-carved"] = trimesh.Trimesh()
        return meshes
    device = next(model.parameters()).device

    @torch.inference_mode()
    def query(points: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(points).to(device)[None]
        return model.query(batch, latent)[0].float().cpu().numpy()

    field = carve(query, silhouette_maps(refined, occluder), camera, level=model.preprocess.occupancy_level)
    chunk = 262144 if device.type == "cuda" else 16384
    meshes["model-carved"], _ = extract_mesh(field, resolution, half_extent, level=0.0, chunk_size=chunk)
    return meshes


def silhouette_images(mesh: trimesh.Trimesh, seed: int = 0) -> dict[str, np.ndarray] | None:
    """Filled orthographic silhouettes [RASTER, RASTER] bool of a mesh in camera axes (x right, y down, z forward),
    centred on its bounding box and scaled by its larger image-plane extent; None for an empty mesh.

    Drawn by splatting RASTER_SAMPLES area-weighted surface samples plus the vertices and closing one-pixel gaps:
    at this density it is the filled silhouette a rasteriser would draw, for a fraction of the time."""
    if mesh.is_empty or len(mesh.faces) == 0:
        return None
    samples, _ = trimesh.sample.sample_surface(mesh, RASTER_SAMPLES, seed=seed)
    points = np.concatenate([np.asarray(samples), np.asarray(mesh.vertices)])
    low, high = points.min(axis=0), points.max(axis=0)
    extent = max(float(high[0] - low[0]), float(high[1] - low[1]), 1e-9)
    points = (points - (low + high) / 2) / extent  # x, y in [-0.5, 0.5]; z wherever the depth puts it
    x, y, z = points.T
    # Side: turned 90° about the image's vertical axis (the camera looks along −x); top: about its horizontal axis.
    planes = {"front": (x, y), "side": (z, y), "top": (x, z)}
    images = {}
    for view, (horizontal, vertical) in planes.items():
        span = 1.5  # the image covers [-0.75, 0.75]²: deep objects (z up to 1.5 times the width) fit too
        columns = np.clip(((horizontal / span + 0.5) * RASTER).astype(int), 0, RASTER - 1)
        rows = np.clip(((vertical / span + 0.5) * RASTER).astype(int), 0, RASTER - 1)
        image = np.zeros((RASTER, RASTER), bool)
        image[rows, columns] = True
        images[view] = ndimage.binary_closing(image, iterations=1) | image
    return images


def silhouette_ious(mesh: trimesh.Trimesh, ground_truth: dict[str, np.ndarray], seed: int = 0) -> dict[str, float]:
    """{"iou_front", "iou_side", "iou_top"} of a mesh against the ground truth's `silhouette_images`; 0 for an
    empty mesh."""
    images = silhouette_images(mesh, seed)
    scores = {}
    for view in VIEWS:
        truth = ground_truth[view]
        if images is None:
            scores[f"iou_{view}"] = 0.0
            continue
        union = (images[view] | truth).sum()
        scores[f"iou_{view}"] = float((images[view] & truth).sum() / union) if union else 1.0
    return scores
