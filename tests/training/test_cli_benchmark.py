"""`zeroshape-w benchmark-train`: training throughput, as people read it."""

from __future__ import annotations

import re

import pytest

from training.cli import main


def test_benchmark_train_prints_samples_per_second(capsys):
    assert main(["benchmark-train", "--config", "tiny", "--steps", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"training throughput: [\d.]+ samples/s", out)
    assert "batch=2 points/image=256" in out  # the tiny recipe's defaults


def test_benchmark_train_times_the_shape_stage_in_bf16(capsys):
    """--stage shape steps the 3D half alone (no backbone); --precision bf16 runs it under CPU autocast."""
    from backend.benchmark import train_throughput

    args = ["benchmark-train", "--config", "tiny", "--steps", "1", "--warmup", "0", "--stage", "shape"]
    assert main([*args, "--precision", "bf16"]) == 0
    out = capsys.readouterr().out
    assert "stage=shape precision=bf16" in out
    assert re.search(r"training throughput: [\d.]+ samples/s", out)
    with pytest.raises(ValueError, match="fp32 or bf16"):
        train_throughput("tiny", 1, 8, steps=1, warmup=0, precision="fp16")
    with pytest.raises(SystemExit):  # fp16 is refused by the parser, before any work
        main([*args, "--precision", "fp16"])


def test_inference_modes_are_the_backends_command():
    with pytest.raises(SystemExit):
        main(["benchmark", "--mode", "forward"])
