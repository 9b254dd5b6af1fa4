"""The `zeroshape-w` command as a whole: the backend's and the training package's commands, one parser."""

from __future__ import annotations

import subprocess
import sys


def test_module_entry_point_shows_help():
    result = subprocess.run(
        [sys.executable, "-m", "zeroshape_w", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    for command in ("params", "benchmark", "convert-zeroshape", "checkpoint-info"):
        assert command in result.stdout


def test_each_package_runs_its_own_commands():
    backend_help = subprocess.run(
        [sys.executable, "-m", "backend", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    training_help = subprocess.run(
        [sys.executable, "-m", "training", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    for command in ("reconstruct", "serve", "keys", "benchmark", "params", "checkpoint-info"):
        assert command in backend_help
    for command in ("train", "evaluate", "release", "benchmark-train", "data"):
        assert command in training_help
        assert f"    {command} " not in backend_help
