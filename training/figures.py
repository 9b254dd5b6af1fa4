"""Pictures for the model card and the README: inputs beside Cycles renders of their meshes, in one grid.

    python -m training.figures grid out/examples/*.png -o docs/images/examples.png
    python -m training.figures validation --data data/val-procedural -o docs/images/validation.png --count 8

`grid` tiles existing previews (the main job writes one per photo); `validation` reconstructs rendered
validation views with a checkpoint (default: the bundled model) and previews each mesh first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def tile(images: Sequence[Path], out: Path, columns: int = 2, width: int = 768) -> Path:
    """Tile pictures into a grid PNG with a thin white gutter. Each is scaled to fit a cell `width` pixels wide
    and at most 1.5 × `width` high, keeping its aspect ratio, and centred in it; each row is as high as its tallest
    picture, so a row of landscape photos is not padded to the height of a portrait one elsewhere."""
    from PIL import Image

    if not images:
        raise ValueError("no pictures to tile")
    max_height = round(1.5 * width)
    opened = []
    for path in images:
        with Image.open(path) as image:
            image = image.convert("RGB")
            scale = min(width / image.width, max_height / image.height)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            opened.append(image.resize(size, Image.Resampling.LANCZOS))
    gutter = 6
    rows = [opened[start : start + columns] for start in range(0, len(opened), columns)]
    row_heights = [max(image.height for image in row) for row in rows]
    canvas = Image.new(
        "RGB", (columns * width + (columns - 1) * gutter, sum(row_heights) + (len(rows) - 1) * gutter), "white"
    )
    top = 0
    for row, height in zip(rows, row_heights, strict=True):
        for column, image in enumerate(row):
            left = column * (width + gutter) + (width - image.width) // 2
            canvas.paste(image, (left, top + (height - image.height) // 2))
        top += height + gutter
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, optimize=True)
    return out


def validation_figure(
    data: Sequence[Path], out: Path, count: int, checkpoint: Path | None, seed: int = 0, columns: int = 2
) -> Path:
    """Reconstruct `count` validation views (one per object, objects drawn with `seed`) and tile previews."""
    from backend.pipeline import ReconstructOptions, Reconstructor
    from backend.preprocess import load_photo
    from backend.preview_render import render_preview
    from training.data import layout
    from training.dataset import scan_dataset

    views, _ = scan_dataset(data)
    first_views = {}
    for view in views:
        first_views.setdefault(view.object_id, view)
    by_category: dict[str, list] = {}
    for view in first_views.values():
        by_category.setdefault(view.category, []).append(view)
    rng = np.random.default_rng(seed)
    # Round-robin over categories so the picture shows as many kinds of object as it has cells.
    chosen = []
    pools = {c: list(rng.permutation(len(v))) for c, v in sorted(by_category.items())}
    while len(chosen) < count and any(pools.values()):
        for category, order in pools.items():
            if order and len(chosen) < count:
                chosen.append(by_category[category][order.pop()])
    reconstructor = Reconstructor(checkpoint)
    previews = []
    with tempfile.TemporaryDirectory(prefix="zeroshape-figure-") as scratch:
        for number, view in enumerate(chosen):
            photo = load_photo(view.folder / layout.RGB)
            result = reconstructor.reconstruct(photo, ReconstructOptions(category=view.category))
            mesh_path = Path(scratch) / f"{number}.ply"
            result.to_trimesh().export(mesh_path)
            previews.append(
                render_preview(mesh_path, Path(scratch) / f"{number}.png", photo_path=view.folder / layout.RGB)
            )
        return tile(previews, out, columns)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.figures", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    grid = commands.add_parser("grid", help="tile existing pictures")
    grid.add_argument("images", type=Path, nargs="+")
    grid.add_argument("-o", "--out", type=Path, required=True)
    grid.add_argument("--columns", type=int, default=1)
    validation = commands.add_parser("validation", help="reconstruct validation views and tile their previews")
    validation.add_argument("--data", type=Path, action="append", required=True)
    validation.add_argument("-o", "--out", type=Path, required=True)
    validation.add_argument("--count", type=int, default=8)
    validation.add_argument("--checkpoint", type=Path)
    validation.add_argument("--seed", type=int, default=0)
    validation.add_argument("--columns", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "grid":
        path = tile(sorted(args.images), args.out, args.columns)
    else:
        path = validation_figure(args.data, args.out, args.count, args.checkpoint, args.seed, args.columns)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
