"""training/release.py and `zeroshape-w release`: level chosen on training views, float16 file with provenance."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from backend.model.checkpoint import load_checkpoint, read_header
from tests.training.conftest import one_torch_thread
from training.release import release
from training.train import FINAL_CHECKPOINT


@pytest.mark.blender
def test_release_chooses_the_best_level_and_stores_float16(tiny_run, tmp_path):
    levels = (0.0, -1.0, 30.0)
    with one_torch_thread():
        path, level, scores = release(
            tiny_run.out / FINAL_CHECKPOINT,
            tmp_path / "shipped.safetensors",
            [str(tiny_run.data)],
            levels,
            views=2,
            notes={"trained_on": "a test"},
        )
    assert set(scores) == set(levels)
    assert level == max(levels, key=lambda lv: scores[lv]["fscore@0.05"])
    assert all(0.0 <= s["fscore@0.05"] <= 1.0 and 0 <= s["empty"] <= 2 for s in scores.values())
    # No logit of a 2-step model reaches 30: nothing is inside, every mesh is empty and scores 0 (never chosen).
    assert scores[30.0]["empty"] == 2
    assert scores[30.0]["fscore@0.05"] == 0.0
    assert level != 30.0
    header = read_header(path)
    assert header["preprocess"]["occupancy_level"] == level
    assert header["provenance"]["stored_as"] == "float16"
    assert header["provenance"]["trained_on"] == "a test"
    assert header["provenance"]["steps"] == 2  # the run's own provenance is kept
    assert all(t.dtype == torch.float16 for t in load_file(path).values() if t.is_floating_point())
    shipped, trained = load_checkpoint(path), load_checkpoint(tiny_run.out / FINAL_CHECKPOINT)
    assert shipped.preprocess.occupancy_level == level
    for (name, a), (_, b) in zip(shipped.state_dict().items(), trained.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-2, rtol=1e-2), name
