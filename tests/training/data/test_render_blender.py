"""Rendered views agree with the geometry: depth unprojects onto the mesh, the mask is the silhouette."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from scipy.ndimage import binary_dilation
from scipy.spatial import cKDTree

pytestmark = [
    pytest.mark.blender,
    pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed"),
]
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("render")
    meshes = {
        "sphere": trimesh.creation.icosphere(subdivisions=3, radius=0.45),
        "box": trimesh.creation.box(extents=(0.9, 0.5, 0.7)),
        "torus": trimesh.creation.torus(major_radius=0.35, minor_radius=0.12),
    }
    objects = []
    for index, (name, mesh) in enumerate(meshes.items()):
        mesh.export(folder / f"{name}.ply")
        objects.append(
            {"object_id": name, "mesh": str(folder / f"{name}.ply"), "seed": index, "out": str(folder / name)}
        )
    job = {"output_size": 224, "samples": 4, "views": 2, "objects": objects}
    (folder / "job.json").write_text(json.dumps(job))
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(folder / "blender"))
    result = subprocess.run(
        [sys.executable, "-m", "training.data.render_blender", str(folder / "job.json")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, meshes


def views(folder: Path, name: str):
    for view in sorted((folder / name).glob("view_*")):
        camera = json.loads((view / "camera.json").read_text())
        depth = np.load(view / "depth.npy")
        mask = np.asarray(Image.open(view / "mask.png")) > 127
        yield view, np.asarray(camera["K"]), np.asarray(camera["world_to_camera"]), depth, mask


@pytest.mark.parametrize("name", ["sphere", "box", "torus"])
def test_depth_unprojects_onto_the_mesh_surface(rendered, name):
    folder, meshes = rendered
    mesh = meshes[name]
    surface = cKDTree(trimesh.sample.sample_surface(mesh, 300_000, seed=0)[0])
    size = np.linalg.norm(mesh.extents)
    count = 0
    for _, K, world_to_camera, depth, _ in views(folder, name):
        rows, cols = np.nonzero(depth > 0)
        pixels = np.stack([cols, rows, np.ones_like(cols)]).astype(np.float64)
        camera = np.linalg.inv(K) @ pixels * depth[rows, cols]
        world = (np.linalg.inv(world_to_camera) @ np.vstack([camera, np.ones(camera.shape[1])]))[:3].T
        distance, _ = surface.query(world)
        assert np.median(distance) < 0.01 * size
        count += 1
    assert count == 2


@pytest.mark.parametrize("name", ["sphere", "box", "torus"])
def test_mask_is_depth_above_zero_and_the_silhouette(rendered, name):
    folder, meshes = rendered
    points = trimesh.sample.sample_surface(meshes[name], 400_000, seed=1)[0]
    for view, K, world_to_camera, depth, mask in views(folder, name):
        assert np.array_equal(mask, depth > 0), view
        assert 0.05 < mask.mean() < 0.95
        # Project the surface: the pixels it covers are the silhouette.
        camera = (world_to_camera @ np.hstack([points, np.ones((len(points), 1))]).T)[:3]
        u = np.round(K[0, 0] * camera[0] / camera[2] + K[0, 2]).astype(int)
        v = np.round(K[1, 1] * camera[1] / camera[2] + K[1, 2]).astype(int)
        inside = (u >= 0) & (u < 224) & (v >= 0) & (v < 224)
        silhouette = np.zeros_like(mask)
        silhouette[v[inside], u[inside]] = True
        # Agreement up to one pixel: rounding projected points to pixels blurs the boundary by that much.
        near_mask = binary_dilation(mask, iterations=1)
        near_silhouette = binary_dilation(silhouette, iterations=1)
        assert (silhouette & near_mask).sum() / silhouette.sum() > 0.995, view
        assert (mask & near_silhouette).sum() / mask.sum() > 0.995, view
        assert (silhouette & mask).sum() / (silhouette | mask).sum() > 0.9, view


def test_views_have_rgb_of_the_output_size_and_metadata(rendered):
    folder, _ = rendered
    for view, K, _, _, _ in views(folder, "box"):
        rgb = Image.open(view / "rgb.png")
        assert rgb.size == (224, 224)
        assert rgb.mode == "RGB"
        camera = json.loads((view / "camera.json").read_text())
        assert 30 <= camera["focal_mm"] <= 70
        assert 5 <= camera["elevation_deg"] <= 65
        assert K[0, 0] > 0
    assert (folder / "box" / "DONE").is_file()
