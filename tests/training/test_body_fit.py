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
    # On what it saw, it closes most of the gap between the round body and the bodies fitted to each view.
    assert train["head"] < train["round"] - 0.8 * (train["round"] - train["fitted"])
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


def test_the_depth_error_is_zero_for_the_body_that_made_the_cells_and_grows_with_a_wrong_one():
    from training.body_fit import depth_error

    cells = 6
    rows, columns = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
    u, v = columns.float() * 8 - 20, rows.float() * 8 - 20
    h = 10.0 + torch.rand(cells, cells) * 5
    tilt, front, back = (0.3, -0.5), 0.5, 1.5
    plane = 7.0 + tilt[0] * u + tilt[1] * v  # any depth: the error chooses the plane's best
    observed = torch.stack([torch.ones(cells, cells), h, h, u, v, plane - front * h, plane + back * h])[None]
    made = torch.tensor([[*tilt, torch.log(torch.tensor(front)), torch.log(torch.tensor(back))]])
    assert float(depth_error(made, observed)) < 1e-5
    assert float(depth_error(torch.zeros(1, 4), observed)) > 0.1
    observed[:, 0, :3] = 0  # cells that are not usable do not count, whatever they hold
    observed[:, 5, :3] = 1e6
    assert float(depth_error(made, observed)) < 1e-5


def test_the_cache_knows_the_views_it_was_built_from(rendered_dataset, tmp_path):
    import shutil

    from training.body_fit import _dataset_identity
    from training.data import layout

    copy = tmp_path / "dataset"
    shutil.copytree(rendered_dataset, copy)
    before = _dataset_identity((copy,))
    assert _dataset_identity((copy,)) == before
    first = sorted(layout.objects_folder(copy).iterdir())[0]
    (first / "DONE").unlink()  # an object that is not finished is not read, so the views differ
    assert _dataset_identity((copy,)) != before
