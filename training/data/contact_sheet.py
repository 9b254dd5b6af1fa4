"""`python -m training.data.contact_sheet DATASET OUT.png`: RGB | depth | mask of view 0 of several objects."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

TILE = 160


def depth_picture(depth: np.ndarray) -> Image.Image:
    """Near is bright, far is dark, background black."""
    visible = depth > 0
    shade = np.zeros_like(depth)
    if visible.any():
        low, high = depth[visible].min(), depth[visible].max()
        shade[visible] = 1 - (depth[visible] - low) / max(high - low, 1e-6) * 0.8
    return Image.fromarray((shade * 255).astype(np.uint8)).convert("RGB")


def contact_sheet(dataset: Path, out: Path, count: int = 8, per_row: int = 4) -> Path:
    records = [json.loads(line) for line in (dataset / "manifest.jsonl").read_text().splitlines()]
    seen, chosen = set(), []
    for record in records:  # one object per category first, for variety
        if record["category"] not in seen:
            seen.add(record["category"])
            chosen.append(record)
    chosen = (chosen + [r for r in records if r not in chosen])[:count]
    rows = -(-len(chosen) // per_row)
    sheet = Image.new("RGB", (per_row * (3 * TILE + 10) - 10, rows * (TILE + 18)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for index, record in enumerate(chosen):
        view = dataset / "objects" / record["object_id"] / "view_000"
        tiles = [
            Image.open(view / "rgb.png").convert("RGB"),
            depth_picture(np.load(view / "depth.npy")),
            Image.open(view / "mask.png").convert("RGB"),
        ]
        row, column = divmod(index, per_row)
        x, y = column * (3 * TILE + 10), row * (TILE + 18)
        draw.text((x + 4, y + 2), f"{record['category']}: RGB | depth | mask", fill=(0, 0, 0))
        for k, tile in enumerate(tiles):
            sheet.paste(tile.resize((TILE, TILE)), (x + k * TILE, y + 16))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=8)
    args = parser.parse_args(argv)
    print(contact_sheet(args.dataset, args.out, args.count))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
