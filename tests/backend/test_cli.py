"""The backend's commands: output people read, exit codes, errors without tracebacks."""

from __future__ import annotations

import re

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
