"""Facts about files the backend reads: their content hashes (recorded in checkpoints and result metadata)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex; read in chunks, so large weight files cost little memory."""
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
