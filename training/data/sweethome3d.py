"""The `sweethome3d` source: textured OBJ models of Sweet Home 3D's furniture catalogues.

Debian's `sweethome3d-furniture` package installs five catalogues (`.sh3f`, zip files) in
/usr/share/sweethome3d/furniture: about 820 models of furniture, kitchenware, food, tools, toys, appliances,
vehicles, people and a few animals, under CC0 and CC-BY 3.0 (docs/DATASET.md credits the authors). Each
catalogue's `PluginFurnitureCatalog.properties` (Java properties: Latin-1 with \\uXXXX escapes) lists its
models as numbered keys: `name#7`, `category#7`, `model#7` (the OBJ inside the zip, beside its MTL and
textures), `modelRotation#7` (3×3, row-major, turns the file's axes into Sweet Home 3D's Y-up axes),
`width#7`/`depth#7`/`height#7` (real size in cm), `creator#7`, `doorOrWindow#7`.

Doors, windows and staircases are skipped (they are cut-outs of walls, not objects); the model's name, not the
catalogue's room, gives the category (`training.data.categories`). Models are read straight from the zip: the
renderer extracts one model's folder into the object's dataset folder when it prepares that object.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INSTALLED = Path("/usr/share/sweethome3d/furniture")
INSTALL_HINT = "sudo apt-get install sweethome3d-furniture (Debian main)"
SKIPPED_CATEGORIES = ("Doors and windows", "Staircases")
MAX_MODEL_BYTES = 256 * 1024 * 1024
"""A model folder that would unpack to more than this is refused: a catalogue is a zip a user may hand us."""

Y_UP_TO_Z_UP = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float64)


@dataclass(frozen=True)
class CatalogueModel:
    catalogue: str
    """The catalogue's file stem, e.g. "BlendSwap-CC-0"."""
    number: int
    name: str
    room: str
    """Sweet Home 3D's own category (a room: "Kitchen", "Living room", …)."""
    model: str
    """Member path of the OBJ inside the zip, without the leading slash."""
    rotation: tuple[float, ...] | None
    """modelRotation, 9 floats row-major, or None."""
    size_cm: tuple[float, float, float]
    """(width, depth, height) of the catalogue entry."""
    creator: str
    licence: str
    skipped: bool
    """A door, window or staircase."""


def read_properties(text: str) -> dict[str, str]:
    """A Java .properties file → {key: value}: comments (# or !), `key=value` / `key: value` / `key value`,
    lines continued by a trailing backslash, and \\uXXXX, \\t, \\n escapes."""
    result: dict[str, str] = {}
    logical, pending = [], ""
    for raw in text.splitlines():
        line = pending + raw.lstrip() if pending else raw.strip()
        if not pending and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending = line[:-1]
            continue
        pending = ""
        logical.append(line)
    for line in logical:
        match = re.match(r"((?:\\.|[^=:\s\\])*)\s*[=:\s]\s*(.*)", line)
        key, value = (match.group(1), match.group(2)) if match else (line, "")
        result[_unescape(key)] = _unescape(value)
    return result


def _unescape(text: str) -> str:
    escapes = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}

    def replace(match: re.Match) -> str:
        body = match.group(1)
        if body.startswith("u") and len(body) == 5:
            return chr(int(body[1:], 16))
        return escapes.get(body, body)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", replace, text)


def read_catalogue(path: Path) -> list[CatalogueModel]:
    """Every model entry of one `.sh3f` catalogue, in the catalogue's numbering order."""
    with zipfile.ZipFile(path) as archive:
        try:
            text = archive.read("PluginFurnitureCatalog.properties").decode("latin-1")
        except KeyError:
            raise ValueError(f"{path}: not a Sweet Home 3D catalogue (no PluginFurnitureCatalog.properties)") from None
    properties = read_properties(text)
    numbers = sorted({int(key.split("#")[1]) for key in properties if re.fullmatch(r"model#\d+", key)})
    licence = properties.get("license", "")
    models = []
    for number in numbers:

        def field(name: str, default: str = "", number: int = number) -> str:
            return properties.get(f"{name}#{number}", default)

        rotation = field("modelRotation")
        room = field("category")
        skipped = field("doorOrWindow") == "true" or room in SKIPPED_CATEGORIES or bool(field("staircaseCutOutShape"))
        models.append(
            CatalogueModel(
                catalogue=path.stem,
                number=number,
                name=field("name", f"model {number}"),
                room=room,
                model=field("model").lstrip("/"),
                rotation=tuple(float(v) for v in rotation.split()) if rotation else None,
                size_cm=(float(field("width", "0")), float(field("depth", "0")), float(field("height", "0"))),
                creator=field("creator"),
                licence=licence,
                skipped=skipped,
            )
        )
    return models


def upright_matrix(rotation: tuple[float, ...] | None) -> np.ndarray:
    """4×4 from the OBJ file's axes to the dataset's Z-up axes: the model's rotation into Sweet Home 3D's
    Y-up frame (front +Z), then Y up → Z up (front −Y)."""
    matrix = np.eye(4)
    turn = np.asarray(rotation, dtype=np.float64).reshape(3, 3) if rotation else np.eye(3)
    matrix[:3, :3] = Y_UP_TO_Z_UP @ turn
    return matrix


def object_id(model: CatalogueModel) -> str:
    """Stable and unique within the installed catalogues: catalogue stem + the model's folder."""
    folder = Path(model.model).parent.name or Path(model.model).stem
    slug = re.sub(r"[^a-z0-9]+", "-", f"{model.catalogue}-{folder}".lower()).strip("-")
    return f"sh3d-{slug}"


def catalogue_files(folder: Path | None = None) -> list[Path]:
    """The `.sh3f` files of `folder` (default: Debian's install folder); a clear error when there are none."""
    folder = folder or INSTALLED
    files = sorted(folder.glob("*.sh3f")) if folder.is_dir() else []
    if not files:
        if folder == INSTALLED:
            raise FileNotFoundError(f"the sweethome3d source needs the furniture catalogues: {INSTALL_HINT}")
        raise FileNotFoundError(f"{folder}: no Sweet Home 3D catalogues (*.sh3f) in this folder")
    return files


def extract_model(archive_path: Path, member: str, destination: Path) -> Path:
    """Unpack the model's folder (OBJ, MTL, textures) from the catalogue into `destination`; returns the OBJ.

    Member names are checked (no absolute paths, no `..`) and the unpacked size bounded by MAX_MODEL_BYTES."""
    prefix = str(Path(member).parent) + "/" if Path(member).parent != Path(".") else ""
    with zipfile.ZipFile(archive_path) as archive:
        entries = [
            info
            for info in archive.infolist()
            if not info.is_dir() and (info.filename.startswith(prefix) if prefix else info.filename == member)
        ]
        if not any(info.filename == member for info in entries):
            raise ValueError(f"{archive_path}: the catalogue names {member}, which is not in it")
        if sum(info.file_size for info in entries) > MAX_MODEL_BYTES:
            raise ValueError(f"{archive_path}: {member} unpacks to more than {MAX_MODEL_BYTES >> 20} MiB")
        for info in entries:
            relative = Path(info.filename[len(prefix) :])
            if relative.is_absolute() or ".." in relative.parts:
                raise ValueError(f"{archive_path}: unsafe member name {info.filename!r}")
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink)
    return destination / Path(member).name
