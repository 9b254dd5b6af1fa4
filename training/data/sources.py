"""Where the objects of `zeroshape-w data render` come from: the sources, sharding and the validation split.

Each source lists `ObjectSource`s (an id, a category of the model's table, where the mesh is and which way is
up); nothing is loaded or rendered here (see `training.data.render`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from .categories import category_for_name

MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply", ".stl", ".off", ".fbx", ".blend")
Y_UP_SUFFIXES = (".obj", ".glb", ".gltf")
"""Formats whose convention is Y up (glTF by its specification; OBJ as most tools, Blender included, write it).
The dataset is Z up, so `--up-axis auto` turns these upright. PLY, STL and OFF (CAD and scanners) are taken as
Z up; FBX and .blend come through Blender, which converts them to its own Z-up axes."""


@dataclass(frozen=True)
class ObjectSource:
    object_id: str
    category: str
    source: str
    path: str | None = None
    """A mesh file, or None for procedural objects (built from `seed`)."""
    seed: int = 0
    up_axis: str = "z"
    """Which axis of the file points up ("y" or "z"); meshes are turned to Z up when loaded."""
    archive: str | None = None
    """A zip (a Sweet Home 3D catalogue) that holds `path` as a member; unpacked when the object is prepared."""
    upright: tuple[float, ...] | None = None
    """16 floats, row-major 4×4 from the file's axes to Z up; overrides `up_axis` when given."""
    name: str | None = None
    """The asset's own name in its catalogue ("Winchester armchair"), kept in object.json."""


def procedural_objects(per_category: int, seed: int = 0) -> list[ObjectSource]:
    from .procedural import procedural_specs

    return [
        ObjectSource(spec.object_id, spec.category, "procedural", None, spec.seed)
        for spec in procedural_specs(per_category, seed)
    ]


def random_urdf_objects() -> list[ObjectSource]:
    """The 1000 generated objects of pybullet_data/random_urdfs (category "object")."""
    try:
        import pybullet_data
    except ImportError:
        raise FileNotFoundError(
            "the random-objects source needs pybullet_data: pip install pybullet (it ships the 1000 objects)"
        ) from None
    folder = Path(pybullet_data.getDataPath()) / "random_urdfs"
    objects = []
    for index, sub in enumerate(sorted(p for p in folder.iterdir() if p.is_dir())):
        meshes = sorted(sub.glob("*.obj"))
        if meshes:
            # URDF meshes are Z up (ROS convention).
            objects.append(ObjectSource(f"random-{sub.name}", "object", "random-objects", str(meshes[0]), index, "z"))
    return objects


def sweethome3d_objects(folder: Path | None = None) -> list[ObjectSource]:
    """Every model of the Sweet Home 3D catalogues in `folder` (default: Debian's sweethome3d-furniture),
    minus doors, windows and staircases."""
    from .sweethome3d import catalogue_files, object_id, read_catalogue, upright_matrix

    objects, seen = [], set()
    for path in catalogue_files(folder):
        for model in read_catalogue(path):
            identifier = object_id(model)
            if model.skipped or identifier in seen:
                continue
            seen.add(identifier)
            objects.append(
                ObjectSource(
                    identifier,
                    category_for_name(model.name),
                    "sweethome3d",
                    model.model,
                    len(objects),
                    archive=str(path.resolve()),
                    upright=tuple(upright_matrix(model.rotation).ravel()),
                    name=model.name,
                )
            )
    return objects


def zero_ad_objects(archive: Path | None = None) -> list[ObjectSource]:
    """Animals and a stride of props from 0 A.D.'s public.zip (default: Debian's 0ad-data); PMD is Y up."""
    from .zero_ad import INSTALLED, members

    path = (archive or INSTALLED).resolve() if (archive or INSTALLED).exists() else archive
    objects = []
    for member, name in members(path if archive else None):
        identifier = "0ad-" + re.sub(r"[^a-z0-9]+", "-", member.split("art/meshes/", 1)[-1].split(".")[0].lower())
        category = category_for_name(name)
        objects.append(
            ObjectSource(
                identifier, category, "0ad", member, len(objects), "y", archive=str(path or INSTALLED), name=name
            )
        )
    return objects


def folder_objects(folder: Path, up_axis: str = "auto") -> list[ObjectSource]:
    """A user's assets: the category is a sidecar `<file>.category` text, else the subfolder's name.

    up_axis: "auto" (per format, see Y_UP_SUFFIXES), "y" or "z" for every file of the folder.
    """
    if up_axis not in ("auto", "y", "z"):
        raise ValueError(f"up axis must be auto, y or z, got {up_axis!r}")
    objects = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in MESH_SUFFIXES):
        sidecar = path.with_suffix(path.suffix + ".category")
        category = sidecar.read_text().strip() if sidecar.is_file() else path.parent.name.lower()
        if path.parent == folder and not sidecar.is_file():
            category = "object"
        relative = path.relative_to(folder).with_suffix("").as_posix().replace("/", "-")
        up = up_axis if up_axis != "auto" else ("y" if path.suffix.lower() in Y_UP_SUFFIXES else "z")
        objects.append(ObjectSource(f"asset-{relative}", category, str(folder), str(path), len(objects), up))
    return objects


def collect_sources(sources: list[str], per_category: int, seed: int, up_axis: str = "auto") -> list[ObjectSource]:
    objects: list[ObjectSource] = []
    for source in sources:
        if source == "procedural":
            objects += procedural_objects(per_category, seed)
        elif source == "random-objects":
            objects += random_urdf_objects()
        elif source == "sweethome3d":
            objects += sweethome3d_objects()
        elif source == "0ad":
            objects += zero_ad_objects()
        elif source.endswith(".zip") and Path(source).is_file():
            objects += zero_ad_objects(Path(source))  # 0 A.D.'s public.zip, or a copy of part of it
        else:
            folder = Path(source)
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"{source}: not a folder of assets, 'procedural', 'random-objects' or 'sweethome3d'"
                )
            # A folder of Sweet Home 3D catalogues is read as catalogues, anything else as loose assets.
            objects += sweethome3d_objects(folder) if any(folder.glob("*.sh3f")) else folder_objects(folder, up_axis)
    return objects


def shard(objects: list[ObjectSource], spec: str) -> list[ObjectSource]:
    """'i/N' → every N-th object starting at i (0-based)."""
    try:
        index, count = (int(part) for part in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/N, got {spec!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {spec}: i must be between 0 and N-1")
    return objects[index::count]


VALIDATION_EVERY = 10


def split(objects: list[ObjectSource], which: str) -> list[ObjectSource]:
    """'all', or the held-out 'val' objects (one in VALIDATION_EVERY by a hash of the id) or the 'train' rest.

    A hash, not a position: adding objects to a source never moves an object between the splits."""
    if which == "all":
        return objects
    if which not in ("train", "val"):
        raise ValueError(f"split must be all, train or val, got {which!r}")
    held_out = [stable_seed("split:" + source.object_id) % VALIDATION_EVERY == 0 for source in objects]
    return [source for source, out in zip(objects, held_out, strict=True) if out == (which == "val")]


def stable_seed(text: str) -> int:
    """A seed from an id that is the same in every process (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
