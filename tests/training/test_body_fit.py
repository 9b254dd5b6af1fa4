"""`zeroshape-w train-body`: the body head learns the fitted bodies of rendered views and is added to a model that
is otherwise unchanged."""

from __future__ import annotations

import json

import torch

from backend.model.checkpoint import load_checkpoint
from training.body_fit import BodyFitOptions, fit_body_head

from .conftest import one_torch_thread, run_cli


def test_the_head_learns_the_training_bodies_and_nothing_else_changes(rendered_dataset, tiny_run, tmp_path):
    options = BodyFitOptions(tiny_run.init, (rendered_dataset,), tmp_path / "body", steps=150, batch_size=8)
    with one_torch_thread():
        summary = fit_body_head(options)
    train = summary["train_loss"]
    assert summary["examples"]["train"] + summary["examples"]["monitor"] >= 4
    assert train["head"] < 0.5 * train["round"]  # it fits what it saw far better than the round body
    model = load_checkpoint(tmp_path / "body" / "model.safetensors")
    base = load_checkpoint(tiny_run.init)
    assert model.config.body_head == "image"
    for name, value in base.own_state_dict().items():
        assert torch.equal(model.own_state_dict()[name], value), name
    assert json.loads((tmp_path / "body" / "summary.json").read_text())["train_loss"] == train


def test_train_body_reuses_its_cache_and_releases(rendered_dataset, tiny_run, tmp_path):
    out = tmp_path / "run"
    first = run_cli(
        "train-body", str(rendered_dataset), "--out", str(out), "--init", str(tiny_run.init), "--steps", "5"
    )
    assert first.returncode == 0, first.stderr[-2000:]
    cache = (out / "examples.safetensors").stat().st_mtime_ns
    release = tmp_path / "release.safetensors"
    args = ["--init", str(tiny_run.init), "--steps", "5", "--kind", "mask", "--release-to", str(release)]
    second = run_cli("train-body", str(rendered_dataset), "--out", str(out), *args)
    assert second.returncode == 0, second.stderr[-2000:]
    assert (out / "examples.safetensors").stat().st_mtime_ns == cache  # read again, not rebuilt
    assert "released" in second.stdout
    assert load_checkpoint(release).config.body_head == "mask"
