"""Turn a trained run's checkpoint into the file the project ships: `zeroshape-w release`.

Two things happen between `runs/<name>/model.safetensors` and `backend/weights/zeroshape-w-small.safetensors`:

* The occupancy level at which meshes are extracted is chosen on *training* views (never the validation
  split, which must stay unseen for the model card's numbers): a model trained on few steps is under-confident
  inside thin parts, and its 0.5-probability surface can leave meshes empty. The level travels in the
  checkpoint's preprocessing, so every consumer (reconstruct, server, add-on, evaluate) uses it.
* The weights are stored in float16 (half the file; loading upcasts), with the provenance saying how.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from backend.model.checkpoint import load_checkpoint, read_header, save_checkpoint
from backend.model.zeroshape import ZeroShapeW
from training.dataset import Augmentation, RenderedViews, SampleRequest, load_view
from training.evaluate import ground_truth_cloud, predict_mesh, select_views
from training.metrics import THRESHOLDS, evaluate_clouds, surface_cloud

CANDIDATE_LEVELS = (0.0, -0.5, -1.0, -1.5, -2.0)
"""Occupancy logits tried as the surface (0 is probability 0.5, −1 is 0.27, −2 is 0.12)."""


def level_scores(
    model: ZeroShapeW,
    data: Sequence[str | Path],
    levels: Sequence[float] = CANDIDATE_LEVELS,
    views: int = 24,
    resolution: int = 64,
    samples: int = 5000,
    seed: int = 0,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> dict[float, dict[str, float]]:
    """Mean F-score@0.05 and the count of empty meshes per level, on `views` views (first view of objects
    drawn with `seed`) of rendered datasets, clean and with the true category as the prompt."""
    model.eval()
    dataset = RenderedViews(data, model.config.image_size, query_points=1, augmentation=Augmentation.none())
    candidates = select_views(dataset, 1)
    chosen = np.random.default_rng(seed).choice(candidates, size=min(views, len(candidates)), replace=False)
    scores: dict[float, list[float]] = {level: [] for level in levels}
    empty = dict.fromkeys(levels, 0)
    for index in progress(chosen) if progress else chosen:
        view = dataset.views[int(index)]
        sample = dataset[SampleRequest(int(index), seed, occluders=0)]
        camera = load_view(view)
        truth = ground_truth_cloud(view.object_folder, camera["world_to_camera"], samples, seed)
        for level in levels:
            mesh, _ = predict_mesh(model, sample["image"], view.category, resolution, level)
            empty[level] += int(len(mesh.faces) == 0)
            cloud = surface_cloud(mesh, samples, seed)
            scores[level].append(evaluate_clouds(cloud, truth, False, THRESHOLDS)["fscore@0.05"])
    return {level: {"fscore@0.05": float(np.mean(scores[level])), "empty": empty[level]} for level in levels}


def release(
    checkpoint: str | Path,
    out: str | Path,
    data: Sequence[str | Path],
    levels: Sequence[float] = CANDIDATE_LEVELS,
    views: int = 24,
    notes: dict | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> tuple[Path, float, dict[float, dict[str, float]]]:
    """Choose the occupancy level on training views and write the float16 release. Returns (path, level, scores)."""
    model = load_checkpoint(checkpoint)
    with torch.inference_mode():
        scores = level_scores(model, data, levels, views, progress=progress)
    level = max(levels, key=lambda candidate: scores[candidate]["fscore@0.05"])
    model.preprocess = dataclasses.replace(model.preprocess, occupancy_level=float(level))
    table = ", ".join(f"{lv:g}: {s['fscore@0.05']:.3f} ({s['empty']} empty)" for lv, s in scores.items())
    provenance = {
        **(read_header(checkpoint).get("provenance") or {}),
        **(notes or {}),
        "occupancy_level": f"{level:g}, chosen by mean F-score@0.05 at resolution 64 on {views} training views "
        f"(not the validation split); {table}",
        "stored_as": "float16",
    }
    path = save_checkpoint(model, out, provenance, dtype=torch.float16)
    return path, float(level), scores
