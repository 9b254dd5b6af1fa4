"""The contact sheet of a rendered dataset: one object per category, every view with --all-views."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from training.data.contact_sheet import TILE, contact_sheet, main


@pytest.mark.blender
def test_first_views_and_all_views(scene_dataset, tmp_path):
    first = Image.open(contact_sheet(scene_dataset, tmp_path / "first.png", count=2, per_row=2))
    assert first.size == (2 * (3 * TILE + 10) - 10, TILE + 18)
    assert main([str(scene_dataset), str(tmp_path / "all.png"), "--all-views"]) == 0
    every = Image.open(tmp_path / "all.png")
    # Two objects, one row each, three views (clean, cluttered, occluded) of RGB and masks.
    assert every.size == (3 * 2 * TILE, 2 * (TILE + 18))
    pixels = np.asarray(every.convert("RGB")).reshape(-1, 3)
    red = (pixels[:, 0] > 200) & (pixels[:, 1] < 80) & (pixels[:, 2] < 80)
    assert red.any()  # the occluded views' occluder masks are drawn


def test_an_empty_dataset_is_refused(tmp_path):
    (tmp_path / "objects").mkdir()
    with pytest.raises(ValueError, match="no finished objects"):
        contact_sheet(tmp_path, tmp_path / "sheet.png")
