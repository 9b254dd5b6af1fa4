"""`zeroshape-w data render` end to end on a tiny folder of assets: outputs, errors, resume after a kill."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh

from tests.training.data.asset_fixtures import asset_folder, check_own_red_texture
from training.data.sources import folder_objects

pytestmark = [
    pytest.mark.blender,
    pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed"),
]
ROOT = Path(__file__).resolve().parents[3]


def command(assets: Path, out: Path) -> list[str]:
    options = ["--views", "2", "--samples", "2"]
    return [sys.executable, "-m", "zeroshape_w", "data", "render", "--source", str(assets), "--out", str(out), *options]


def run(assets: Path, out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(command(assets, out), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def dataset_digest(out: Path) -> dict[str, str]:
    """Every file of the dataset except logs, by content."""
    return {
        path.relative_to(out).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(out.rglob("*"))
        if path.is_file() and path.name != "errors.log"
    }


def test_render_writes_the_dataset_and_skips_bad_assets(tmp_path):
    assets = asset_folder(tmp_path)
    out = tmp_path / "dataset"
    result = run(assets, out)
    assert result.returncode == 1  # one asset failed
    assert "views/s" in result.stdout
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [m["object_id"] for m in manifest] == ["asset-ball-small", "asset-crate-long", "asset-pillar"]
    assert all(m["views"] == 2 for m in manifest)
    assert "asset-crate-broken" in (out / "errors.log").read_text()
    for record in manifest:
        folder = out / "objects" / record["object_id"]
        data = np.load(folder / "occupancy.npz")
        occupancy = np.unpackbits(data["occupancy"])[: int(data["count"])]
        assert data["points"].shape == (int(data["count"]), 3)
        assert 0.05 < occupancy.mean() < 0.95
        assert np.load(folder / "surface.npy").shape[1] == 3
        mesh = trimesh.load(folder / "mesh.ply")
        assert np.abs(mesh.bounds).max() == pytest.approx(0.5, abs=1e-4)
        assert (out / "occluders" / f"{record['object_id']}.png").is_file()
        assert json.loads((out / "occluders" / f"{record['object_id']}.json").read_text())["focal_px"] > 0


def catalogue_folder(tmp_path: Path) -> Path:
    from tests.training.data.asset_fixtures import make_catalogue

    make_catalogue(tmp_path / "catalogues")
    return tmp_path / "catalogues"


@pytest.mark.parametrize("make_assets", [asset_folder, catalogue_folder], ids=["asset-folder", "sweethome3d"])
def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path, make_assets):
    """Scenes included (the default shares of clutter and occlusion): a resumed run stages the same scenes."""
    assets = make_assets(tmp_path)
    reference = tmp_path / "reference"
    run(assets, reference)

    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(
        command(assets, interrupted), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while not list(interrupted.glob("objects/*/DONE")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the command and its Blender process, mid-render
    process.wait()
    time.sleep(0.5)
    finished_before = {p.parent.name for p in interrupted.glob("objects/*/DONE")}
    assert finished_before
    mtimes = {name: (interrupted / "objects" / name / "DONE").stat().st_mtime_ns for name in finished_before}

    second = run(assets, interrupted)
    assert f"{len(finished_before)} already done" in second.stdout
    # Nothing finished before was rendered again...
    for name in finished_before:
        assert (interrupted / "objects" / name / "DONE").stat().st_mtime_ns == mtimes[name]
    # ...and the result is the same dataset, file for file.
    assert dataset_digest(interrupted) == dataset_digest(reference)


@pytest.mark.skipif(importlib.util.find_spec("pybullet_data") is None, reason="pybullet is not installed")
def test_random_objects_render(tmp_path):
    out = tmp_path / "random"
    options = ["--views", "1", "--samples", "2", "--limit", "2"]
    command = [sys.executable, "-m", "zeroshape_w", "data", "render", "--source", "random-objects", "--out", str(out)]
    result = subprocess.run(
        [*command, *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [m["object_id"] for m in manifest] == ["random-000", "random-001"]


def textured_box(extents: tuple[float, float, float], offset: tuple[float, float, float]) -> trimesh.Trimesh:
    """A box with UVs and a red image texture, neither centred nor of unit size (so normalisation matters)."""
    from PIL import Image

    box = trimesh.creation.box(extents=extents)
    box.apply_translation(offset)
    texture = Image.new("RGB", (16, 16), (210, 25, 20))
    uv = np.random.default_rng(0).uniform(0.1, 0.9, size=(len(box.vertices), 2))
    box.visual = trimesh.visual.TextureVisuals(uv=uv, image=texture)
    return box


def test_textured_assets_render_with_their_own_materials(tmp_path):
    """glTF and OBJ(+MTL) assets drawn with their own red texture, in the frame of their normalised mesh: the
    camera records it, the object's pixels are red, and the depth still unprojects onto the normalised mesh."""

    from training.data.render import RenderSettings, render_dataset

    assets = tmp_path / "assets"
    (assets / "crate").mkdir(parents=True)
    textured_box((2.0, 4.0, 1.0), (3.0, 1.0, -2.0)).export(assets / "crate" / "tall.glb")
    textured_box((1.5, 0.5, 1.0), (0.0, 2.0, 0.0)).export(assets / "crate" / "flat.obj")
    out = tmp_path / "dataset"
    settings = RenderSettings(views=2, samples=4, own_appearance=1.0, occupancy_points=4000, surface_points=1000)
    summary = render_dataset(folder_objects(assets), out, settings)
    assert summary["failed"] == 0, (out / "errors.log").read_text()
    for object_id in ("asset-crate-tall", "asset-crate-flat"):
        folder = out / "objects" / object_id
        assert json.loads((folder / "object.json").read_text())["textured"]["format"] in ("gltf", "obj")
        assert check_own_red_texture(folder) == 2


def test_render_settings_refuse_an_elevation_range_outside_0_to_85_degrees():
    from training.data.render import RenderSettings

    assert RenderSettings(elevation_deg=(0.0, 65.0)).elevation_deg == (0.0, 65.0)
    for bad in [(-10.0, 65.0), (30.0, 10.0), (5.0, 90.0)]:
        with pytest.raises(ValueError, match="elevation range"):
            RenderSettings(elevation_deg=bad)
