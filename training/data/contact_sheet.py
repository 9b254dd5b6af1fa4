"""`python -m training.data.contact_sheet DATASET OUT.png`: what a rendered dataset looks like, at a glance.

Default: view 0 of several objects (one per category first), each as RGB | depth | masks. With `--all-views`,
one row per object with every view as RGB | masks: for a split rendered with `--every-condition`, a row shows
the same camera clean, cluttered and occluded. Masks: the visible object white, rendered occluders red.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from . import layout

TILE = 160


def depth_picture(depth: np.ndarray) -> Image.Image:
    """Near is bright, far is dark, background black."""
    visible = depth > 0
    shade = np.zeros_like(depth)
    if visible.any():
        low, high = depth[visible].min(), depth[visible].max()
        shade[visible] = 1 - (depth[visible] - low) / max(high - low, 1e-6) * 0.8
    return Image.fromarray((shade * 255).astype(np.uint8)).convert("RGB")


def mask_picture(view: Path) -> Image.Image:
    """The visible mask in white and, where the view has one, the occluder mask in red."""
    visible = layout.read_mask(view)
    picture = np.zeros((*visible.shape, 3), dtype=np.uint8)
    picture[visible] = 255
    occluder = layout.read_occluder(view)
    if occluder is not None:
        picture[occluder] = (220, 40, 30)
    return Image.fromarray(picture)


def _records(dataset: Path) -> list[dict]:
    """Finished objects: the manifest(s) if written, else object.json of every DONE object (a render still
    running, or a shard)."""
    manifests = sorted(dataset.glob("manifest*.jsonl"))
    if manifests:
        return [json.loads(line) for path in manifests for line in path.read_text().splitlines() if line.strip()]
    return [
        layout.read_object_info(folder)
        for folder in sorted(layout.objects_folder(dataset).iterdir())
        if layout.is_done(folder)
    ]


def _choose(records: list[dict], count: int) -> list[dict]:
    seen, chosen = set(), []
    for record in records:  # one object per category first, for variety
        if record["category"] not in seen:
            seen.add(record["category"])
            chosen.append(record)
    return (chosen + [r for r in records if r not in chosen])[:count]


def contact_sheet(dataset: Path, out: Path, count: int = 8, per_row: int = 4, all_views: bool = False) -> Path:
    chosen = _choose(_records(dataset), count)
    if not chosen:
        raise ValueError(f"{dataset}: no finished objects to show")
    if all_views:
        cells = [layout.view_folders(layout.object_folder(dataset, r["object_id"])) for r in chosen]
        per_row, tiles_per_cell = 1, 2 * max(len(views) for views in cells)
    else:
        cells = [[layout.view_folder(layout.object_folder(dataset, r["object_id"]), 0)] for r in chosen]
        tiles_per_cell = 3
    rows = -(-len(chosen) // per_row)
    cell_width = tiles_per_cell * TILE + 10
    sheet = Image.new("RGB", (per_row * cell_width - 10, rows * (TILE + 18)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for index, (record, views) in enumerate(zip(chosen, cells, strict=True)):
        row, column = divmod(index, per_row)
        x, y = column * cell_width, row * (TILE + 18)
        tiles, labels = [], []
        for view in views:
            camera = layout.read_camera(view)
            tiles.append(Image.fromarray(layout.read_rgb(view)))
            if not all_views:
                tiles.append(depth_picture(layout.read_depth(view)))
            tiles.append(mask_picture(view))
            labels.append(camera.get("scene", "clean"))
        title = f"{record.get('source', '')} · {record['category']}"
        title += f": {' | '.join(labels)} (RGB, masks)" if all_views else f" ({labels[0]}): RGB | depth | masks"
        draw.text((x + 4, y + 2), title, fill=(0, 0, 0))
        for k, tile in enumerate(tiles):
            sheet.paste(tile.resize((TILE, TILE)), (x + k * TILE, y + 16))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=8, help="objects to show (default 8)")
    parser.add_argument("--per-row", type=int, default=4, help="objects per row without --all-views (default 4)")
    parser.add_argument("--all-views", action="store_true", help="one row per object with every view")
    args = parser.parse_args(argv)
    print(contact_sheet(args.dataset, args.out, args.count, args.per_row, args.all_views))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
