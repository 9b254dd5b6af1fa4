"""The training package's commands (`benchmark`): output people read."""

from __future__ import annotations

import re

import pytest

from training.cli import main


def test_benchmark_prints_samples_per_second(capsys):
    assert main(["benchmark", "--config", "tiny", "--steps", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"training throughput: [\d.]+ samples/s", out)
    assert "batch=2 points/image=256" in out  # the tiny recipe's defaults


def test_benchmark_times_the_shape_stage_in_bf16(capsys):
    """--stage shape steps the 3D half alone (no backbone); --precision bf16 runs it under CPU autocast."""
    from backend.benchmark import train_throughput

    args = ["benchmark", "--config", "tiny", "--steps", "1", "--warmup", "0", "--stage", "shape", "--precision", "bf16"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "stage=shape precision=bf16" in out
    assert re.search(r"training throughput: [\d.]+ samples/s", out)
    with pytest.raises(ValueError, match="fp32 or bf16"):
        train_throughput("tiny", 1, 8, steps=1, warmup=0, precision="fp16")


def test_benchmark_forward_mode(capsys):
    assert main(["benchmark", "--mode", "forward", "--config", "tiny", "--steps", "1", "--points", "100"]) == 0
    assert re.search(r"median forward: [\d.]+ s", capsys.readouterr().out)
