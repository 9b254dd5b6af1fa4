"""Assets made by the tests: a folder of loose meshes, and small stand-ins for Debian's asset packages (a Sweet
Home 3D catalogue and a 0 A.D. zip)."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from training.data.zero_ad import write_pmd


def asset_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "assets"
    (folder / "ball").mkdir(parents=True)
    (folder / "crate").mkdir()
    trimesh.creation.icosphere(subdivisions=2, radius=0.3).export(folder / "ball" / "small.ply")
    trimesh.creation.box(extents=(1.0, 0.6, 0.4)).export(folder / "crate" / "long.obj")
    trimesh.creation.cylinder(radius=0.2, height=0.9).export(folder / "pillar.stl")
    (folder / "pillar.stl.category").write_text("column\n")
    (folder / "crate" / "broken.obj").write_text("this is not a mesh\n")
    return folder


CATALOGUE_PROPERTIES = r"""# A test catalogue in Sweet Home 3D's format
id=Test#catalogue
name=Test catalogue
license=CC0
provider=tests

id#1=Test#chair
name#1=Caf\u00e9 chair
category#1=Living room
model#1=/test/chair/chair.obj
multiPartModel#1=true
modelRotation#1=1 0 0 0 0 1 0 -1 0
width#1=50
depth#1=40
height#1=90
creator#1=A. Tester
doorOrWindow#1=false

id#2=Test#door
name#2=Front door
category#2=Doors and windows
model#2=/test/door/door.obj
doorOrWindow#2=true

id#3=Test#teddy
name#3=Teddy \
  bear
category#3=Bedroom
model#3=/test/teddy/teddy.obj
width#3=30
depth#3=20
height#3=60
creator#3=B. Tester
"""
"""Entry 1 is stored Z up and turned Y up by its modelRotation; entry 3 is stored Y up (Sweet Home 3D's own
axes); entry 2 is a door (skipped). Entry 3's name continues on a second line."""


def textured_box(extents: tuple[float, float, float], colour: tuple[int, int, int]) -> trimesh.Trimesh:
    box = trimesh.creation.box(extents=extents)
    uv = np.random.default_rng(0).uniform(0.1, 0.9, size=(len(box.vertices), 2))
    box.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.new("RGB", (16, 16), colour))
    return box


CATALOGUE_MESHES = {
    # member folder: (extents in the file's own axes, the extents once upright in Z-up axes)
    "test/chair": ((0.5, 0.4, 0.9), (0.5, 0.4, 0.9)),
    "test/door": ((0.9, 0.05, 2.0), None),
    "test/teddy": ((0.3, 0.6, 0.2), (0.3, 0.2, 0.6)),
}


def make_catalogue(folder: Path, name: str = "Test-CC0") -> Path:
    """folder/<name>.sh3f: a zip with PluginFurnitureCatalog.properties and a red textured OBJ per model."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.sh3f"
    with tempfile.TemporaryDirectory() as scratch, zipfile.ZipFile(path, "w") as archive:
        archive.writestr("PluginFurnitureCatalog.properties", CATALOGUE_PROPERTIES.encode("latin-1"))
        archive.writestr("LICENSE.TXT", "CC0\n")
        for member, (extents, _) in CATALOGUE_MESHES.items():
            model = Path(scratch) / member
            model.mkdir(parents=True)
            textured_box(extents, (210, 25, 20)).export(model / f"{model.name}.obj")
            for file in sorted(model.iterdir()):
                archive.write(file, f"{member}/{file.name}")
    return path


ZERO_AD_MEMBERS = {
    "art/meshes/skeletal/animal_horse.dae.cached.pmd": (0.4, 1.0, 1.2),  # Y up: 1.0 high, 1.2 long (z)
    "art/meshes/skeletal/target_marker.pmd": (1.0, 0.1, 1.0),  # not an animal: left out
    "art/meshes/props/shield/shield_a.pmd": (0.8, 0.8, 0.1),
    "art/meshes/props/shield/shield_b.pmd": (0.8, 0.8, 0.1),
    "art/meshes/props/shield/shield_c.pmd": (0.8, 0.8, 0.1),
    "art/meshes/props/shield/shield_d.pmd": (0.7, 0.9, 0.1),
}


def make_zero_ad_zip(path: Path) -> Path:
    """A zip laid out like 0 A.D.'s public.zip, with box meshes in PMD and a one-face marker that must fail."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for member, extents in ZERO_AD_MEMBERS.items():
            box = trimesh.creation.box(extents=extents)
            archive.writestr(member, write_pmd(box.vertices, box.faces[:, ::-1]))  # clockwise, as the game
        archive.writestr("art/meshes/skeletal/fish_shoal.pmd", write_pmd(np.eye(3), [[0, 1, 2]]))
        archive.writestr("art/textures/skins/horse.dds", b"DDS not read")
    return path


def check_own_red_texture(folder: Path) -> int:
    """Every view of a rendered object (its dataset folder) shows the asset's own red texture, and its depth
    unprojects onto the object's normalised mesh. Returns the number of views checked."""
    import json

    from scipy.spatial import cKDTree

    mesh = trimesh.load(folder / "mesh.ply", force="mesh")
    surface = cKDTree(trimesh.sample.sample_surface(mesh, 100_000, seed=0)[0])
    views = sorted(folder.glob("view_*"))
    for view in views:
        camera = json.loads((view / "camera.json").read_text())
        assert camera["material"] == "own", camera
        rgb = np.asarray(Image.open(view / "rgb.png")).astype(float)
        depth = np.load(view / "depth.npy")
        red, green, blue = np.median(rgb[depth > 0], axis=0)
        assert red > 1.5 * green, (view, red, green, blue)
        assert red > 1.5 * blue, (view, red, green, blue)
        rows, cols = np.nonzero(depth > 0)
        K, world_to_camera = np.asarray(camera["K"]), np.asarray(camera["world_to_camera"])
        points = np.linalg.inv(K) @ np.stack([cols, rows, np.ones_like(cols)]).astype(float) * depth[rows, cols]
        world = (np.linalg.inv(world_to_camera) @ np.vstack([points, np.ones(points.shape[1])]))[:3].T
        assert np.median(surface.query(world)[0]) < 0.01 * np.linalg.norm(mesh.extents)
    return len(views)
