"""Writing reconstructions: mesh files and the JSON beside them, atomically (no half-written outputs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from backend.pipeline import Reconstruction

FORMATS = ("glb", "obj", "ply", "stl")


def _atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def write_reconstruction(reconstruction: Reconstruction, mesh_path: str | Path, file_format: str) -> tuple[Path, Path]:
    """Write the mesh as `file_format` and its metadata as JSON with the same stem. STL has no colours.

    Returns:
        (mesh path, JSON path).
    """
    if file_format not in FORMATS:
        raise ValueError(f"unknown format {file_format!r}; choose one of {', '.join(FORMATS)}")
    mesh_path = Path(mesh_path)
    mesh_path.parent.mkdir(parents=True, exist_ok=True)
    data = reconstruction.to_trimesh().export(file_type=file_format)
    _atomic_write(mesh_path, data.encode() if isinstance(data, str) else data)
    json_path = mesh_path.with_suffix(".json")
    metadata = dict(reconstruction.metadata, mesh_file=mesh_path.name, format=file_format)
    _atomic_write(json_path, json.dumps(metadata, indent=2).encode())
    return mesh_path, json_path
