"""`training.figures.tile`: the grid of the README's pictures."""

from __future__ import annotations

import numpy as np
from PIL import Image

from training.figures import tile


def test_rows_are_as_high_as_their_own_pictures_and_portraits_are_capped(tmp_path):
    """Three landscape photos in the first row, a tall portrait and a landscape one in the second: the first row
    must not be padded to the portrait's height, and the portrait is scaled to at most 1.5 × the cell width."""
    sizes = [(400, 200), (400, 300), (400, 200), (100, 600), (400, 200)]
    paths = []
    for number, size in enumerate(sizes):
        path = tmp_path / f"{number}.png"
        Image.new("RGB", size, (200, 30, 30)).save(path)
        paths.append(path)
    out = tile(paths, tmp_path / "grid.png", columns=3, width=100)
    grid = np.asarray(Image.open(out))
    # Row 1: tallest picture 400×300 → 100×75; row 2: the portrait 100×600 → 25×150 (capped at 1.5 × 100).
    assert grid.shape[:2] == (75 + 6 + 150, 3 * 100 + 2 * 6)
    red = (grid[..., 0] > 150) & (grid[..., 1] < 100)
    portrait = red[81:, :100]
    assert portrait.sum(axis=0).max() == 150  # full cell height
    assert 24 <= portrait.any(axis=0).sum() <= 26  # 25 wide, centred
    assert portrait[:, 37:63].all(axis=0).sum() >= 24
