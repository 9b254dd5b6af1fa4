"""Warm starts (training/warm_start.py)."""

from __future__ import annotations

import torch

from backend.model.text import CategoryTableEncoder
from training.warm_start import copy_matching_weights


def test_warm_start_keeps_category_rows_by_name():
    """An older table (fewer categories) warm-starts a newer one: shared categories keep their rows, new ones
    start from "object", whatever the order."""

    old = CategoryTableEncoder(("object", "chair", "mug"), 8)
    new = CategoryTableEncoder(("object", "mug", "chair", "stool"), 8)
    copied, kept = copy_matching_weights(old, new)
    assert "table.weight" in copied
    assert not kept
    old_rows, new_rows = old.table.weight, new.table.weight
    assert torch.equal(new_rows[0], old_rows[0])
    assert torch.equal(new_rows[1], old_rows[2])
    assert torch.equal(new_rows[2], old_rows[1])
    assert torch.equal(new_rows[3], old_rows[0])
