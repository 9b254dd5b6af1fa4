"""`zeroshape-w benchmark`: the backend's timings (photo → mesh, the forward pass), as people read them."""

from __future__ import annotations

import re
from pathlib import Path

from backend.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_forward_mode_prints_the_median(capsys):
    assert main(["benchmark", "--mode", "forward", "--config", "tiny", "--steps", "1", "--points", "100"]) == 0
    out = capsys.readouterr().out
    assert "forward seconds (1 image, 100 query points)" in out
    assert re.search(r"median forward: [\d.]+ s", out)


def test_reconstruct_mode_is_the_default_and_prints_one_row_per_config(capsys):
    """Random tiny weights: the cut-out's alpha gives the outline, so the default inflated body has a mesh."""
    photo = EXAMPLES / "strawberry.png"
    args = ["benchmark", "--config", "tiny", "--image", str(photo), "--resolution", "32", "--repeats", "1"]
    assert main([*args, "--threads", "2"]) == 0
    header, _, row = capsys.readouterr().out.strip().splitlines()[-3:]
    assert "image→mesh s" in header
    assert row.startswith("| tiny | cpu fp32 | inflate | 32 |")
    assert re.search(r"\*\*[\d.]+\*\* \(median of 1\)", row)


def test_a_photo_random_weights_find_nothing_in_is_one_line(capsys):
    args = ["benchmark", "--config", "tiny", "--image", str(EXAMPLES / "coffee.jpg"), "--resolution", "32"]
    assert main([*args, "--repeats", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("zeroshape-w: error: tiny: ")
    assert "found no object" in err
    assert "Traceback" not in err
