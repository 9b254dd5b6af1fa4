"""Evaluation with ZeroShape's protocol, for the model and for two baselines on the same views.

For each view: the model's mesh at resolution 128 (the same coarse-to-fine extraction as `reconstruct`),
10,000 area-weighted surface samples of it and of the ground-truth mesh, both in the camera's axes; each cloud
normalised by its own centroid and max(x-extent, y-extent); Chamfer distance and F-scores at τ = 0.05 and
2τ, 3τ, 5τ (training.metrics). An empty mesh scores F = 0 and the penalty Chamfer distance, never an error.

Baselines, scored identically:
* `visible`: the visible surface alone, unprojected from the model's own predicted depth and mask;
* `sphere`: a sphere, i.e. knowing nothing about the shape.

The oracle decomposition (`EvalOptions.oracle`) scores the same model again on each view, given part of the
truth in place of its own pixel-level predictions: the true visible mask (`oracle-mask`), the true depth and
intrinsics (`oracle-depth-K`), and all three (`oracle-all`). A shape decoder that uses its input scores higher
with better input; how much higher says how much of the error lives in the pixel heads and how much in the 3D
half.

Conditions. A split rendered with scenes (`data render --every-condition`) is evaluated as rendered: each view
once, under its own condition, "clean", "cluttered" (other objects around it) or "occluded" (a 3D object in
front of it), on the same cameras. A split of clean renders is evaluated clean and, with a fixed seed,
occluded by one Copy-Paste cut-out (the "occluded" rows of the first validation split). Tables are given
overall, per category and per source.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh

from backend.frames import elevation_deg
from backend.mesh import extract_mesh
from backend.model.zeroshape import Latent, ZeroShapeW
from training.data import layout
from training.dataset import Augmentation, RenderedViews, SampleRequest, load_view
from training.eval_tables import CONDITIONS, format_tables  # the markdown of `tables`: its own module

# The markdown of the tables lives in its own module; imported here so `training.evaluate.format_tables` stays.
from training.metrics import THRESHOLDS, evaluate_clouds, summarise, surface_cloud
from training.silhouette_eval import SHAPE_METHODS, VIEWS, shape_meshes, silhouette_images, silhouette_ious
from training.thickness_targets import view_thickness

ORACLES: dict[str, tuple[str, ...]] = {
    "oracle-mask": ("visible_mask",),
    "oracle-depth-K": ("depth", "intrinsics"),
    "oracle-all": ("visible_mask", "depth", "intrinsics"),
}
"""Oracle rows: which true inputs replace the model's predictions (keyword arguments of `ZeroShapeW.encode`)."""
METHODS = ("model", *ORACLES, *SHAPE_METHODS, "visible", "sphere")
PROMPTS = ("true", "object", "auto")
SCORE_KEYS = ("fscore@0.05", "fscore@0.1", "fscore@0.15", "fscore@0.25", "cd")
"""Every row's scores: F-scores at τ, 2τ, 3τ, 5τ and the Chamfer distance."""
IOU_KEYS = tuple(f"iou_{v}" for v in VIEWS)
"""The silhouette IoUs of the mesh rows, with `EvalOptions.shapes`."""
METRIC_KEYS = (*SCORE_KEYS, *IOU_KEYS)


@dataclass(frozen=True)
class EvalOptions:
    resolution: int = 128
    surface_samples: int = 10_000
    views_per_object: int | None = None
    """Evaluate only the first N views of each object (None: all)."""
    object_stride: int = 1
    """Evaluate every N-th object only (in dataset order, from the first): a fixed subset of a large split,
    e.g. of the training set to see how well the model fits what it was trained on."""
    conditions: tuple[str, ...] = CONDITIONS
    """Conditions to score. Clean-only splits: "occluded" pastes a cut-out. Scene splits: each view has one."""
    rotation_search: bool = False
    baselines: bool = True
    prompt: str = "true"
    """The category prompt: "true" (the view's own category), "object" (agnostic) or "auto" (the model's scene
    head chooses; models without one use "object")."""
    seed: int = 0
    oracle: bool = False
    """Also score the model given the true mask, depth and intrinsics (the ORACLES rows; rendered data only)."""
    shapes: bool = False
    """Also score the silhouette-first shapes (training.silhouette_eval), and the silhouette IoUs of every mesh."""
    shape_methods: tuple[str, ...] = SHAPE_METHODS
    """With `shapes`: which of them."""
    model_row: bool = True
    """Score the model's own mesh (False: only the other rows asked for; the decoder's mesh is not made)."""

    def __post_init__(self) -> None:
        if self.prompt not in PROMPTS:
            raise ValueError(f"prompt must be one of {PROMPTS}, got {self.prompt!r}")


def sphere_cloud(count: int, seed: int = 0) -> np.ndarray:
    """[count, 3] points on the unit sphere (the shape-agnostic baseline; its scale and place do not matter)."""
    points = np.random.default_rng(seed).normal(size=(count, 3))
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def visible_cloud(points: torch.Tensor, visible: torch.Tensor, count: int, seed: int = 0) -> np.ndarray:
    """The predicted visible surface: points [3, H, W] where visible [1, H, W]; up to `count` of them."""
    cloud = points.permute(1, 2, 0)[visible[0]].float().cpu().numpy()
    if len(cloud) > count:
        cloud = cloud[np.random.default_rng(seed).choice(len(cloud), count, replace=False)]
    return cloud.astype(np.float64)


def ground_truth_cloud(object_folder: Path, world_to_camera: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Surface samples of the object's mesh in camera coordinates (a rigid map keeps them area-uniform)."""
    mesh = trimesh.load(object_folder / layout.MESH, force="mesh", process=False)
    points = surface_cloud(mesh, count, seed)
    return points @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]


def ground_truth_silhouettes(object_folder: Path, world_to_camera: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """The object's mesh in camera coordinates as `silhouette_images`."""
    mesh = trimesh.load(object_folder / layout.MESH, force="mesh", process=False)
    return silhouette_images(mesh.apply_transform(world_to_camera), seed)


@torch.inference_mode()
def predict_mesh(
    model: ZeroShapeW,
    image: torch.Tensor,
    prompt: str,
    resolution: int,
    level: float | None = None,
    truth: dict[str, torch.Tensor] | None = None,
) -> tuple[trimesh.Trimesh, Latent]:
    """Mesh in the normalised camera frame, and the latent it came from (batch of one).

    Args:
        image: [3, S, S] in [0, 1].
        level: occupancy logit of the surface; default: the checkpoint's `preprocess.occupancy_level`.
        truth: true inputs that replace the predictions (oracle rows): any of visible_mask [1, S, S],
            depth [1, S, S], intrinsics [3, 3].
    """
    device = next(model.parameters()).device
    given = {name: value[None].to(device) for name, value in (truth or {}).items()}
    latent = model.encode(image[None].to(device), [prompt], **given)

    def query(points: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(points).to(device)[None]
        return model.query(batch, latent)[0].float().cpu().numpy()

    mesh, _ = extract_mesh(
        query,
        resolution=resolution,
        half_extent=model.preprocess.query_box_half_extent,
        level=model.preprocess.occupancy_level if level is None else level,
        chunk_size=262144 if device.type == "cuda" else 16384,
        largest_component=False,
    )
    return mesh, latent


def _view_seed(object_id: str, view_name: str, seed: int) -> int:
    return zlib.crc32(f"{seed}:{object_id}:{view_name}".encode())


def select_views(dataset: RenderedViews, views_per_object: int | None, object_stride: int = 1) -> list[int]:
    """Indices of the views to evaluate: those of every `object_stride`-th object (in order of first
    appearance), all of its views or only its first `views_per_object`."""
    if object_stride < 1:
        raise ValueError(f"object_stride must be at least 1, got {object_stride}")
    chosen, seen, order = [], {}, {}
    for index, view in enumerate(dataset.views):
        order.setdefault(view.object_id, len(order))
        seen[view.object_id] = seen.get(view.object_id, 0) + 1
        if order[view.object_id] % object_stride:
            continue
        if views_per_object is None or seen[view.object_id] <= views_per_object:
            chosen.append(index)
    return chosen


def evaluate_dataset(
    model: ZeroShapeW,
    data: Sequence[str | Path],
    options: EvalOptions,
    progress: Callable[[Iterable], Iterable] | None = None,
    limit: int | None = None,
) -> list[dict]:
    """One row per (view, condition, method): ids, category, condition, occluders, and the metric keys.

    limit: only the first N selected views (quick checks)."""
    model.eval()
    occluding = Augmentation(max_occluders=1, brightness=0.0, contrast=0.0, saturation=0.0)
    dataset = RenderedViews(data, model.config.image_size, query_points=1, augmentation=occluding)
    indices = select_views(dataset, options.views_per_object, options.object_stride)
    staged = any(view.scene != "clean" for view in dataset.views)
    if staged:  # a scene split: every view once, under the condition it was rendered in
        jobs = [(index, dataset.views[index].scene) for index in indices]
        jobs = [(index, condition) for index, condition in jobs if condition in options.conditions][:limit]
    else:  # clean renders: clean, and occluded by a pasted cut-out
        jobs = [(index, condition) for index in indices[:limit] for condition in options.conditions]
        jobs = [(index, condition) for index, condition in jobs if condition != "cluttered"]
    rows = []
    for index, condition in progress(jobs) if progress else jobs:
        view = dataset.views[index]
        seed = _view_seed(view.object_id, view.folder.name, options.seed)
        pasted = 1 if condition == "occluded" and not staged else 0
        sample = dataset[SampleRequest(index, seed, occluders=pasted)]
        camera = load_view(view)
        gt = ground_truth_cloud(view.object_folder, camera["world_to_camera"], options.surface_samples, seed)
        base = {
            "object_id": view.object_id,
            "view": view.folder.name,
            "category": view.category,
            "source": view.source,
            "condition": condition,
            "occluders": sample["occluders"] + int(bool(sample["occluder_mask"].any()) and staged),
        }
        truth = {"visible_mask": sample["visible_mask"], "depth": sample["depth"], "intrinsics": sample["K"]}
        silhouettes = None
        if options.shapes:
            truth["occluder_mask"] = sample["occluder_mask"]
            if "body-oracle-true-mask" in options.shape_methods and not pasted:
                fit = view_thickness(view.folder, view.object_folder)
                truth["body"] = None if fit is None else fit.thickness
            silhouettes = ground_truth_silhouettes(view.object_folder, camera["world_to_camera"], seed)
        rows += score_view(model, sample["image"], gt, base, options, seed, truth, sample["gravity"], silhouettes)
    return rows


def score_view(
    model: ZeroShapeW,
    image: torch.Tensor,
    gt: np.ndarray,
    base: dict,
    options: EvalOptions,
    seed: int,
    truth: dict[str, torch.Tensor] | None = None,
    gravity: torch.Tensor | None = None,
    silhouettes: dict[str, np.ndarray] | None = None,
) -> list[dict]:
    """Rows for the model (and the baselines) on one image [3, S, S] against ground-truth points [N, 3] in
    camera axes; `base` (ids, category, condition) is copied into every row. `truth` (visible_mask [1, S, S],
    depth [1, S, S], intrinsics [3, 3], occluder_mask [1, S, S]) is needed for the oracle and inflate-true-mask
    rows; `gravity` [3] (the true direction of gravity in camera axes) scores a scene head's estimate, which the
    model's row records with its category. `silhouettes`: the ground truth's `silhouette_images`, for the meshes'
    silhouette IoUs."""
    prompt = {"true": base["category"], "object": "object", "auto": "auto"}[options.prompt]
    mesh = None
    if options.model_row:
        mesh, latent = predict_mesh(model, image, prompt, options.resolution)
    else:
        with torch.inference_mode():
            latent = model.encode(image[None].to(next(model.parameters()).device), [prompt])
    visible_points, visible = latent.visible_points[0], latent.visible[0]
    prompt = options.prompt if options.prompt == "true" else latent.prompts[0]
    clouds = {} if mesh is None else {"model": surface_cloud(mesh, options.surface_samples, seed)}
    scene = {"prompt": prompt, **scene_estimates(model, latent, base["category"], gravity)}
    if truth is not None:
        scene |= pixel_errors(latent, truth)
    if options.oracle:
        if truth is None:
            raise ValueError("oracle rows need the true depth, mask and intrinsics (rendered datasets only)")
        for method, names in ORACLES.items():
            given = {name: truth[name] for name in names}
            oracle_mesh, _ = predict_mesh(model, image, prompt, options.resolution, truth=given)
            clouds[method] = surface_cloud(oracle_mesh, options.surface_samples, seed)
    ious = {}
    if options.shapes:
        meshes = {} if mesh is None else {"model": mesh}
        meshes |= shape_meshes(model, image, latent, options.resolution, truth, options.shape_methods)
        for method, shape in meshes.items():
            clouds.setdefault(method, surface_cloud(shape, options.surface_samples, seed))
            if silhouettes is not None:
                ious[method] = silhouette_ious(shape, silhouettes, seed)
    if options.baselines:
        clouds["visible"] = visible_cloud(visible_points, visible, options.surface_samples, seed)
        clouds["sphere"] = sphere_cloud(options.surface_samples, seed)
    return [
        {
            **base,
            "method": method,
            **evaluate_clouds(cloud, gt, options.rotation_search, THRESHOLDS),
            **ious.get(method, {}),
            **(scene if method == "model" else {}),
        }
        for method, cloud in clouds.items()
    ]


def pixel_errors(latent: Latent, truth: dict[str, torch.Tensor]) -> dict:
    """How far the pixel heads are from the truth on one view (batch of one): the depth's scale-and-shift
    invariant error on the true visible mask (1.0 = no better than a flat depth), the visible mask's IoU, and
    the focal length's |log f̂ − log f|. truth: visible_mask [1, S, S], depth [1, S, S], intrinsics [3, 3]."""
    from training.losses import scale_shift_invariant_loss

    mask = truth["visible_mask"][None].float()
    depth = scale_shift_invariant_loss(latent.depth.float().cpu(), truth["depth"][None].float(), mask)
    predicted = latent.visible[0, 0].cpu()
    true = truth["visible_mask"][0] >= 0.5
    union = (predicted | true).sum()
    focal = latent.intrinsics[0, 0, 0].float().cpu()
    return {
        "depth_error": float(depth),
        "mask_iou": float((predicted & true).sum() / union) if union else 1.0,
        "focal_log_error": float((focal.log() - truth["intrinsics"][0, 0].float().log()).abs()),
    }


def scene_estimates(model: ZeroShapeW, latent: Latent, category: str, gravity: torch.Tensor | None) -> dict:
    """What a scene or category head said about one view (batch of one): the angle in degrees between its gravity
    and the true `gravity` [3], and its most likely category, that category's probability and whether it is
    `category`. {} for a model with neither head."""
    estimates = {}
    if latent.category_logits is not None:
        chosen, probability = model.choose_categories(latent.category_logits)
        top = model.config.text.categories[int(latent.category_logits[0].argmax())]
        estimates = {"category_top": top, "category_probability": probability[0], "category_correct": top == category}
        estimates["category_auto"] = chosen[0]
    if latent.gravity is not None and gravity is not None:
        cosine = torch.nn.functional.cosine_similarity(latent.gravity[0].float().cpu(), gravity.float(), dim=0)
        estimates["gravity_error_deg"] = float(torch.rad2deg(torch.arccos(cosine.clamp(-1.0, 1.0))))
        # The camera's elevation, predicted and true: a head can score a fair median error by always answering
        # the renders' average elevation, which only the spread of its answers reveals.
        estimates["elevation_deg"] = elevation_deg(latent.gravity[0].double().cpu().numpy())
        estimates["elevation_true_deg"] = elevation_deg(gravity.double().cpu().numpy())
    return estimates


def tables(rows: list[dict]) -> dict:
    """Means per method and condition, and FS@τ per category and per source (each condition) for every method."""
    result: dict = {"overall": {}, "per_category": {}, "per_source": {}}
    for method in sorted({r["method"] for r in rows}, key=lambda m: METHODS.index(m) if m in METHODS else 99):
        mine = [r for r in rows if r["method"] == method]
        result["overall"][method] = summarise(mine, "condition", keys=METRIC_KEYS)
        for table, key in (("per_category", "category"), ("per_source", "source")):
            result[table][method] = {
                condition: summarise([r for r in mine if r["condition"] == condition], key, keys=METRIC_KEYS)
                for condition in sorted({r["condition"] for r in mine})
            }
    scene = scene_table([r for r in rows if r["method"] == "model"])
    if scene:
        result["scene"] = scene
    pixel = pixel_table([r for r in rows if r["method"] == "model"])
    if pixel:
        result["pixel_heads"] = pixel
    return result


def _by_condition(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """(condition, its rows) for each condition present, in CONDITIONS order, then ("all", every row)."""
    conditions = sorted({r["condition"] for r in rows}, key=CONDITIONS.index)
    return [(c, [r for r in rows if r["condition"] == c]) for c in conditions] + [("all", rows)]


def pixel_table(rows: list[dict]) -> dict:
    """Per condition and "all": the means of the pixel heads' errors (`pixel_errors`); {} without them."""
    rows = [r for r in rows if "depth_error" in r]
    if not rows:
        return {}
    table = {}
    for condition, group in _by_condition(rows):
        table[condition] = {"n": len(group)} | {
            key: float(np.mean([r[key] for r in group])) for key in ("depth_error", "mask_iou", "focal_log_error")
        }
    return table


def scene_table(rows: list[dict]) -> dict:
    """Per condition and "all": the scene head's gravity error (median, mean, share within 10°) and category
    accuracy (all views; balanced: the mean of the per-category accuracies, which answering "object" always
    cannot inflate; views whose true category is not "object"); {} when no row has the estimates."""
    rows = [r for r in rows if "category_top" in r]
    if not rows:
        return {}
    table = {}
    for condition, group in _by_condition(rows):
        categories = sorted({r["category"] for r in group})
        named = [r for r in group if r["category"] != "object"]
        errors = np.array([r["gravity_error_deg"] for r in group if "gravity_error_deg" in r])
        table[condition] = {
            "n": len(group),
            "category_accuracy": float(np.mean([r["category_correct"] for r in group])),
            "category_accuracy_balanced": float(
                np.mean([np.mean([r["category_correct"] for r in group if r["category"] == c]) for c in categories])
            ),
            "category_accuracy_named": float(np.mean([r["category_correct"] for r in named])) if named else None,
            "auto_chose_a_category": float(np.mean([r["category_auto"] != "object" for r in group])),
        }
        if len(errors):
            table[condition] |= {
                "gravity_error_deg_median": float(np.median(errors)),
                "gravity_error_deg_mean": float(errors.mean()),
                "gravity_within_10deg": float((errors <= 10).mean()),
            }
        table[condition] |= _elevation_summary([r for r in group if "elevation_deg" in r])
    return table


def _elevation_summary(rows: list[dict]) -> dict:
    """What the predicted elevations say beyond the error: the median error of the best constant answer (the
    views' mean true elevation), and the correlation of predicted with true elevation (None when either is
    constant). A head no better than the constant has learned the renders' prior, not the photo's camera."""
    if len(rows) < 2:
        return {}
    predicted = np.array([r["elevation_deg"] for r in rows])
    true = np.array([r["elevation_true_deg"] for r in rows])
    spread = predicted.std() > 1e-9 and true.std() > 1e-9
    return {
        "constant_elevation_error_deg_median": float(np.median(np.abs(true - true.mean()))),
        "elevation_correlation": float(np.corrcoef(predicted, true)[0, 1]) if spread else None,
    }


def write_results(rows: list[dict], result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "rows.jsonl").open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    (out / "summary.json").write_text(json.dumps(result, indent=2))
    (out / "tables.md").write_text(format_tables(result) + "\n")


def evaluate_pix3d(
    model: ZeroShapeW,
    root: str | Path,
    options: EvalOptions,
    categories: list[str] | None = None,
    limit: int | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> list[dict]:
    """The same protocol on Pix3D (`training.pix3d` layout): the photo cropped square around its box with the
    checkpoint's margin, composited on the background through the annotated mask as the paper's benchmark does;
    the condition is Pix3D's own occlusion flag."""
    from backend.preprocess import Photo, crop_photo, square_box_around
    from training.pix3d import load_image_and_mask, load_pix3d, model_in_camera_frame

    if options.oracle:
        raise ValueError("--oracle needs rendered views (true depth and intrinsics); Pix3D has neither")
    model.eval()
    samples = load_pix3d(Path(root), categories)[:limit]
    rows = []
    for number, sample in enumerate(progress(samples) if progress else samples):
        rgb, mask = load_image_and_mask(sample)
        photo = Photo(rgb=rgb, alpha=mask, source=str(sample.image_path))
        crop = crop_photo(photo, square_box_around(sample.bbox, model.preprocess.crop_margin), model.preprocess)
        image = torch.from_numpy(np.ascontiguousarray(crop.rgb.transpose(2, 0, 1)))
        seed = options.seed * 100_003 + number
        gt = surface_cloud(model_in_camera_frame(sample), options.surface_samples, seed)
        base = {
            "object_id": str(sample.model_path),
            "view": str(sample.image_path.name),
            "category": sample.category,
            "condition": "occluded" if sample.occluded else "clean",
            "occluders": int(sample.occluded),
        }
        rows += score_view(model, image, gt, base, options, seed)
    return rows
