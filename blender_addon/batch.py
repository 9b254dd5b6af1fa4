"""Batch import of a folder of photos: a queue saved to disk, so a restart resumes where it stopped.

Plain Python (no bpy): the operators keep one `BatchQueue` and save it after every change; the file lives
in the extension's user folder. An item is `pending` until its mesh is in the scene (`done`) or it failed
(`failed`, with the reason). A job that was running when Blender stopped is pending again on load, so it is
redone once and never imported twice: an item becomes `done` only after its object exists.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

SUPPORTED_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")
QUEUE_FORMAT = 1


@dataclass
class BatchItem:
    path: str
    index: int
    """Position in the batch: fixes the item's place in the grid whatever order items finish in."""
    state: str = "pending"
    """pending, running, done or failed."""
    message: str = ""
    object_name: str = ""


@dataclass
class BatchQueue:
    folder: str
    items: list[BatchItem] = field(default_factory=list)
    spacing: float = 1.5
    """Distance between neighbouring results in the grid, in scene units (results are 1 unit tall)."""
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def from_folder(cls, folder: str | Path, origin=(0.0, 0.0, 0.0), spacing: float = 1.5) -> BatchQueue:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: not a folder")
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
        items = [BatchItem(path=str(p), index=i) for i, p in enumerate(files)]
        return cls(folder=str(folder), items=items, spacing=spacing, origin=tuple(origin))

    # ---------------------------------------------------------------------------------- progress
    def next_pending(self) -> BatchItem | None:
        return next((item for item in self.items if item.state == "pending"), None)

    @property
    def total(self) -> int:
        return len(self.items)

    @property
    def finished(self) -> int:
        return sum(item.state in ("done", "failed") for item in self.items)

    @property
    def complete(self) -> bool:
        return all(item.state in ("done", "failed") for item in self.items)

    def grid_position(self, item: BatchItem) -> tuple[float, float, float]:
        """Row-major square grid in the XY plane starting at the origin (the 3D cursor at batch start)."""
        columns = max(1, math.ceil(math.sqrt(self.total)))
        row, column = divmod(item.index, columns)
        x0, y0, z0 = self.origin
        return (x0 + column * self.spacing, y0 - row * self.spacing, z0)

    # ---------------------------------------------------------------------------------- storage
    def to_json(self) -> dict:
        return {
            "format": QUEUE_FORMAT,
            "folder": self.folder,
            "spacing": self.spacing,
            "origin": list(self.origin),
            "items": [asdict(item) for item in self.items],
        }

    def save(self, path: str | Path) -> None:
        """Atomic write: an interruption leaves the previous or the new queue, never half of one."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".partial")
        temporary.write_text(json.dumps(self.to_json(), indent=1))
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: str | Path) -> BatchQueue | None:
        """The saved queue, or None when there is none (or it cannot be read: it is then set aside)."""
        path = Path(path)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            if data.get("format") != QUEUE_FORMAT:
                raise ValueError("unknown format")
            items = [BatchItem(**item) for item in data["items"]]
            queue = cls(data["folder"], items, float(data["spacing"]), tuple(data["origin"]))
        except (OSError, ValueError, KeyError, TypeError):
            path.replace(path.with_name(path.name + ".unreadable"))
            return None
        for item in queue.items:
            if item.state == "running":
                item.state = "pending"  # interrupted mid-job: its object was never made, so redo it
        return queue

    def finish(self, path: str | Path) -> list[BatchItem]:
        """The batch is over: empty the saved queue and return the failed items to report."""
        failed = [item for item in self.items if item.state == "failed"]
        self.items = []
        self.save(path)
        return failed


_PEEKED: dict = {}


def peek(path: str | Path) -> tuple[int, int] | None:
    """(items not done, items in all) of a saved queue, or None when there is none or it cannot be read. Read-only
    (unlike `BatchQueue.load`, it sets nothing aside), and cached on the file's time and size: the panel asks on
    every redraw."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if _PEEKED.get("key") != key:
        try:
            items = json.loads(path.read_text()).get("items") or []
            counts = (sum(item.get("state") != "done" for item in items), len(items))
        except (OSError, ValueError, AttributeError):
            counts = None
        _PEEKED.update(key=key, counts=counts)
    return _PEEKED["counts"]
