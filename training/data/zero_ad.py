"""The `0ad` source: animals and props of 0 A.D. (Debian's `0ad-data`, CC-BY-SA 3.0), in the game's own
`.pmd` mesh format, read straight from the game's `public.zip`.

PMD (as documented by the 0 A.D. project): little-endian; "PSMD", u32 version (1–4), u32 data size (file size
− 12); u32 vertex count, then (version 4 only) u32 UV sets per vertex; per vertex: position (3 f32, world
space of the rest pose, Y up), normal (3 f32), UV sets (2 f32 each; one before version 4), bone blend (4 u8
bone indices, 4 f32 weights); u32 face count, per face 3 u16 vertex indices; then bones and prop points,
which a static mesh does not need. Textures (`.dds`, assigned by actor XML files) are not read: these
objects are rendered with drawn appearances.
"""

from __future__ import annotations

import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .categories import category_for_name

INSTALLED = Path("/usr/share/games/0ad/mods/public/public.zip")
INSTALL_HINT = "sudo apt-get install 0ad-data (Debian main, about 1.4 GB)"
MAX_PMD_BYTES = 64 * 1024 * 1024
"""A mesh member larger than this is refused (the game's largest is a few MB)."""
MIN_FACES = 8
ANIMAL_FOLDER = "art/meshes/skeletal/"
PROP_FOLDERS = {"art/meshes/props/helmet/": 3, "art/meshes/props/shield/": 3, "art/meshes/props/weapons/": 1}
"""Prop folders and the stride taken from each (every third helmet and shield: they come in close variants)."""


class PmdError(ValueError):
    """A file that is not a readable PMD mesh; the message says what is wrong."""


@dataclass(frozen=True)
class PmdMesh:
    vertices: np.ndarray
    """[N, 3] float32, the rest pose in the game's axes (Y up)."""
    faces: np.ndarray
    """[F, 3] int64 vertex indices."""


def read_pmd(data: bytes) -> PmdMesh:
    """Parse a PMD file's bytes (versions 1–4); raises PmdError on anything malformed or truncated."""
    if len(data) < 20 or data[:4] != b"PSMD":
        raise PmdError("not a PMD mesh (no PSMD header)")
    version, _size, vertex_count = struct.unpack_from("<III", data, 4)
    if not 1 <= version <= 4:
        raise PmdError(f"unsupported PMD version {version}")
    offset = 16
    uv_sets = 1
    if version >= 4:
        (uv_sets,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if uv_sets > 8:
            raise PmdError(f"{uv_sets} UV sets per vertex: not a plausible PMD mesh")
    stride = 12 + 12 + 8 * uv_sets + 4 + 16
    end = offset + vertex_count * stride
    if vertex_count == 0 or end + 4 > len(data):
        raise PmdError(f"truncated: {vertex_count} vertices do not fit in {len(data)} bytes")
    records = np.frombuffer(data, dtype=np.uint8, count=vertex_count * stride, offset=offset).reshape(-1, stride)
    vertices = records[:, :12].copy().view("<f4").reshape(-1, 3).astype(np.float32)
    (face_count,) = struct.unpack_from("<I", data, end)
    start = end + 4
    if face_count == 0 or start + face_count * 6 > len(data):
        raise PmdError(f"truncated: {face_count} faces do not fit in the file")
    faces = np.frombuffer(data, dtype="<u2", count=face_count * 3, offset=start).reshape(-1, 3).astype(np.int64)
    if face_count < MIN_FACES:
        raise PmdError(f"{face_count} faces: a marker or billboard, not an object")
    if faces.max() >= vertex_count:
        raise PmdError("a face names a vertex the mesh does not have")
    if not np.isfinite(vertices).all():
        raise PmdError("vertex positions that are not finite numbers")
    return PmdMesh(vertices, faces)


def write_pmd(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    """A version-4 PMD of a static mesh (one UV set, no bones, no prop points): the inverse of `read_pmd`,
    used by the tests and to document the layout."""
    vertices = np.asarray(vertices, dtype="<f4").reshape(-1, 3)
    faces = np.asarray(faces, dtype="<u2").reshape(-1, 3)
    body = struct.pack("<II", len(vertices), 1)
    for position in vertices:
        body += position.tobytes() + np.zeros(3, "<f4").tobytes() + np.zeros(2, "<f4").tobytes()
        body += bytes([0xFF] * 4) + np.zeros(4, "<f4").tobytes()
    body += struct.pack("<I", len(faces)) + faces.tobytes() + struct.pack("<II", 0, 0)
    return b"PSMD" + struct.pack("<II", 4, len(body)) + body


def _display_name(member: str) -> str:
    """'art/meshes/skeletal/animal_lioness.dae.cached.pmd' → 'animal lioness'."""
    stem = Path(member).name.split(".")[0]
    return re.sub(r"[_\-]+", " ", stem).strip()


def members(archive_path: Path | None = None) -> list[tuple[str, str]]:
    """(member path, name) of the animal meshes and a stride of the props in the game's public.zip."""
    path = archive_path or INSTALLED
    if not path.is_file():
        if archive_path is None:
            raise FileNotFoundError(f"the 0ad source needs the game's data: {INSTALL_HINT}")
        raise FileNotFoundError(f"{path}: no such file (expected 0 A.D.'s public.zip)")
    with zipfile.ZipFile(path) as archive:
        names = sorted(name for name in archive.namelist() if name.endswith(".pmd"))
    chosen = []
    for name in names:
        if name.startswith(ANIMAL_FOLDER) and category_for_name(_display_name(name)) == "animal":
            chosen.append((name, _display_name(name)))
    for folder, stride in PROP_FOLDERS.items():
        inside = [name for name in names if name.startswith(folder)]
        chosen += [(name, _display_name(name)) for name in inside[::stride]]
    return chosen


def extract_pmd_as_ply(archive_path: Path, member: str, destination: Path) -> Path:
    """Read one PMD member of the zip (bounded by MAX_PMD_BYTES) and write it as destination/<stem>.ply."""
    import trimesh

    with zipfile.ZipFile(archive_path) as archive:
        info = archive.getinfo(member)
        if info.file_size > MAX_PMD_BYTES:
            raise PmdError(f"{member}: {info.file_size} bytes, more than a mesh should be")
        mesh = read_pmd(archive.read(info))
    destination.mkdir(parents=True, exist_ok=True)
    target = destination / (Path(member).name.split(".")[0] + ".ply")
    trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(target)
    return target
