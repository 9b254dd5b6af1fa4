"""Writing reconstructions: mesh files and the JSON beside them, atomically (no half-written outputs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from backend.pipeline import Reconstruction

FORMATS = ("glb", "obj", "ply", "stl")
Y_UP_FORMATS = ("glb", "obj")
"""Formats whose readers take +Y as up: glTF by its specification, OBJ by custom (Blender's and most tools' OBJ
importers turn Y up into Z up). A mesh in the `blender` frame (Z up) is turned Y up in them, so it stands upright
wherever it is opened; PLY and STL keep Z up, as their importers do."""
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
"""(x, y, z) → (x, z, −y): up stays up, the front (−Y in Blender) becomes glTF's front (+Z)."""


def _atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def write_reconstruction(reconstruction: Reconstruction, mesh_path: str | Path, file_format: str) -> tuple[Path, Path]:
    """Write the mesh as `file_format` and its metadata as JSON with the same stem, and the object mask it was
    built from as `<stem>-mask.png` at the photo's size (white: the object; give it back with --mask after
    editing it). STL has no colours.

    Returns:
        (mesh path, JSON path).
    """
    if file_format not in FORMATS:
        raise ValueError(f"unknown format {file_format!r}; choose one of {', '.join(FORMATS)}")
    mesh_path = Path(mesh_path)
    mesh_path.parent.mkdir(parents=True, exist_ok=True)
    mesh = reconstruction.to_trimesh()
    file_transform = np.eye(4)
    if file_format in Y_UP_FORMATS and reconstruction.metadata.get("frame") == "blender":
        file_transform = Z_UP_TO_Y_UP
        mesh.apply_transform(file_transform)
    data = mesh.export(file_type=file_format)
    _atomic_write(mesh_path, data.encode() if isinstance(data, str) else data)
    json_path = mesh_path.with_suffix(".json")
    extra = {}
    if reconstruction.mask is not None:
        from backend.object_mask import write_mask_png

        mask_path = mesh_path.with_name(f"{mesh_path.stem}-mask.png")
        extra["mask_file"] = write_mask_png(reconstruction.mask, mask_path, reconstruction.photo_size).name
    metadata = dict(
        reconstruction.metadata,
        **extra,
        mesh_file=mesh_path.name,
        format=file_format,
        file_transform=file_transform.tolist(),
        file_transform_maps="output vertices (the frame above) -> the coordinates in the mesh file",
    )
    _atomic_write(json_path, json.dumps(metadata, indent=2).encode())
    return mesh_path, json_path
