"""The `zeroshape-w` command: output people read, exit codes, errors without tracebacks."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from backend.cli import main
from backend.model.checkpoint import save_checkpoint
from backend.model.config import get_config
from backend.model.zeroshape import ZeroShapeW


def test_params_prints_each_component_and_the_total(capsys):
    assert main(["params", "--config", "tiny", "--config", "small"]) == 0
    out = capsys.readouterr().out
    for component in ("backbone", "intrinsics_head", "depth_head", "coord_encoder", "decoder", "total"):
        assert component in out
    totals = [float(x) for x in re.findall(r"total\s+([\d.]+)M", out)]
    assert len(totals) == 2
    assert totals[0] < totals[1] <= 15.0


@pytest.mark.slow
def test_params_compares_paper_with_the_published_count(capsys):
    assert main(["params", "--config", "paper"]) == 0
    out = capsys.readouterr().out
    difference = float(re.search(r"difference ([+-][\d.]+)%", out).group(1))
    assert abs(difference) <= 2.0
    assert "OpenCLIP ViT-B-32 text tower" in out
    assert "excluded" in out


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


def test_checkpoint_info_prints_the_header(tmp_path, capsys):
    path = save_checkpoint(ZeroShapeW(get_config("tiny")), tmp_path / "m.safetensors", provenance={"by": "test"})
    assert main(["checkpoint-info", str(path)]) == 0
    out = capsys.readouterr().out
    assert '"name": "tiny"' in out
    assert '"by": "test"' in out


def test_errors_are_one_line_without_traceback(tmp_path, capsys):
    assert main(["checkpoint-info", str(tmp_path / "missing.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("zeroshape-w: error: ")
    assert "missing.safetensors: checkpoint not found" in err
    assert "Traceback" not in err


def test_module_entry_point_shows_help():
    result = subprocess.run(
        [sys.executable, "-m", "backend", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    for command in ("params", "benchmark", "convert-zeroshape", "checkpoint-info"):
        assert command in result.stdout
