"""The README's Blender picture (`training.addon_figure`) and the panel capture it draws (`training.panel_capture`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from PIL import Image

from training.panel_capture import Row, Widget, draw_panel, rows_as_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_rows_read_as_a_person_reads_the_panel():
    rows = [
        Row([Widget("label", "Backend: ready"), Widget("button", "", "FILE_REFRESH")]),
        Row([Widget("enum", "", (["Inflate", "Body", "Learned"], 1)), Widget("check", "Use alpha", False)]),
        Row([Widget("button", "Resume Batch", enabled=False)], indent=1),
        Row([Widget("progress", "meshing", 0.25)]),
    ]
    assert rows_as_text(rows) == [
        "Backend: ready | [ FILE_REFRESH ]",
        "Inflate (Body) Learned | [ ] Use alpha",
        "  [ Resume Batch ] (greyed out)",
        "<meshing 25%>",
    ]
    picture = draw_panel(rows, width=300)
    assert picture.size == (300, 28 * 5 + 20)  # a title row and one row each
    assert len(picture.getcolors(maxcolors=100_000)) > 4  # drawn, not blank


@pytest.mark.blender
@pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed")
def test_the_add_on_makes_the_picture_in_real_blender(tmp_path):
    """The zip installed in bpy, Reconstruct pressed against the bundled model: the panel says what happened, Match
    Photo added its camera, and the picture has its three parts."""
    from training.addon_figure import make_figure

    out, report = make_figure(EXAMPLES / "strawberry.png", tmp_path / "addon.png", samples=1)
    text = "\n".join(report["panel_text"])
    assert "[x] Match photo" in text
    assert "[ Reconstruct from Image ]" in text
    assert "[ Edit Mask ] | [ Reconstruct Again ]" in text  # the new mesh is selected and has its mask
    assert text.splitlines()[0].startswith("Backend: ready: small on cpu")
    assert "faces imported" in report["status"]
    assert any(name.endswith("camera") for name in report["objects"])
    picture = Image.open(out)
    assert picture.height == 512 + 30
    assert picture.width > 300 + 512  # the panel, the photo's aspect, the square scene view
