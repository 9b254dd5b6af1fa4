"""A stand-in for Debian's Tux Paint stamps folder: photo-like cut-outs (noisy colours, a real alpha) and one
drawing, at paths chosen to fall in each split of `training.photo_benchmark.stamp_split`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from training.photo_benchmark import stamp_split


def noisy_cutout(seed: int, size=(120, 90)) -> np.ndarray:
    """RGBA uint8: an ellipse of noisy colour (thousands of distinct colours, like a photo) on transparency."""
    rng = np.random.default_rng(seed)
    width, height = size
    rows, columns = np.mgrid[0:height, 0:width]
    inside = ((columns - width / 2) / (0.45 * width)) ** 2 + ((rows - height / 2) / (0.4 * height)) ** 2 <= 1
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[..., :3] = np.clip(rng.normal([180, 90, 60], 40, (height, width, 3)), 0, 255)
    rgba[..., 3] = inside * 255
    return rgba


def make_stamps(root: Path, per_split: int = 2) -> dict[str, list[str]]:
    """Write `per_split` photo stamps into each of the benchmark, train and held-out splits, plus a drawing in the
    train split; returns {split: [paths under root]}."""
    chosen: dict[str, list[str]] = {"benchmark": [], "train": [], "held-out": []}
    number = 0
    while any(len(paths) < per_split for paths in chosen.values()):
        relative = f"animals/thing{number}.png"
        split = stamp_split(relative)
        if split in chosen and len(chosen[split]) < per_split:
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(noisy_cutout(number)).save(path)
            chosen[split].append(relative)
        number += 1
    drawing = noisy_cutout(999)
    drawing[..., :3] = [200, 30, 30]  # one flat colour: a drawing, not a photo
    number = 0
    while stamp_split(f"cartoon/drawing{number}.png") != "train":
        number += 1
    (root / "cartoon").mkdir(exist_ok=True)
    Image.fromarray(drawing).save(root / f"cartoon/drawing{number}.png")
    return chosen
