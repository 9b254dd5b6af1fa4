"""Shared fixtures of the training tests: a tiny dataset really rendered by Blender, and a 2-step tiny run on it."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

if TYPE_CHECKING:
    from training.options import TrainOptions

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m zeroshape_w ARGS` (the `zeroshape-w` command) from the repository root, offline, as a user
    would run it."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "zeroshape_w", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def cpu_options(data: Path, out: Path, **overrides) -> TrainOptions:
    """TrainOptions for a test run in this process: tiny config, CPU, no workers, no progress bar."""
    from training.options import TrainOptions

    settings = {"config": "tiny", "workers": 0, "progress": False, "device": "cpu", **overrides}
    return TrainOptions(data=(str(data),), out=str(out), **settings)


@contextlib.contextmanager
def one_torch_thread():
    """Run torch single-threaded for a while: these tests share two cores with other work, and a 2-thread pool
    with one core busy runs the tiny model several times slower than one thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def rendered_dataset(tmp_path_factory) -> Path:
    """3 procedural objects (chair, table, sofa), 2 clean views each (no scenes, no HDRI), rendered once per
    session (~20 s on 2 cores)."""
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("bpy is not installed: the rendered dataset cannot be made")
    out = tmp_path_factory.mktemp("rendered") / "dataset"
    options = ["--per-category", "1", "--limit", "3", "--views", "2", "--samples", "2"]
    options += ["--clutter", "0", "--occlusion", "0", "--hdri", "0"]
    result = run_cli("data", "render", "--source", "procedural", *options, "--out", str(out))
    if result.returncode != 0:
        pytest.fail(f"rendering the test dataset failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    return out


@pytest.fixture(scope="session")
def scene_dataset(tmp_path_factory) -> Path:
    """2 procedural objects (chair, table), 1 camera each rendered clean, cluttered and occluded
    (`--every-condition`), once per session (~15 s on 2 cores)."""
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("bpy is not installed: the scene dataset cannot be made")
    out = tmp_path_factory.mktemp("scenes") / "dataset"
    options = ["--per-category", "1", "--limit", "2", "--views", "1", "--samples", "2", "--every-condition"]
    result = run_cli("data", "render", "--source", "procedural", *options, "--out", str(out))
    if result.returncode != 0:
        pytest.fail(f"rendering the scene dataset failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    return out


@dataclass(frozen=True)
class TinyRun:
    data: Path
    out: Path
    init: Path
    """The weights the run started from (the run itself records none, so the fixture supplies them)."""
    result: object
    """training.train.TrainResult of the run."""


@pytest.fixture(scope="session")
def tiny_run(rendered_dataset, tmp_path_factory) -> TinyRun:
    """A finished 2-step `tiny` run on the rendered dataset (CPU), shared by the training and evaluation tests."""
    from backend.model.checkpoint import save_checkpoint
    from backend.model.config import get_config
    from backend.model.zeroshape import ZeroShapeW
    from training.train import train

    folder = tmp_path_factory.mktemp("tiny-run")
    torch.manual_seed(1234)
    init = save_checkpoint(ZeroShapeW(get_config("tiny")), folder / "init.safetensors")
    options = cpu_options(rendered_dataset, folder / "run", max_steps=2, init=str(init))
    with one_torch_thread():
        result = train(options)
    return TinyRun(rendered_dataset, folder / "run", init, result)
