"""The batch queue (plain Python): grid layout, atomic saves, resume semantics."""

from __future__ import annotations

import json

import pytest

from blender_addon.batch import BatchQueue


def make_folder(tmp_path, names):
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_folder_scan_keeps_supported_images_in_order(tmp_path):
    folder = make_folder(tmp_path, ["b.JPG", "a.png", "c.webp", "notes.txt", "d.tiff", "e.gif"])
    queue = BatchQueue.from_folder(folder)
    assert [p.split("/")[-1] for p in (item.path for item in queue.items)] == ["a.png", "b.JPG", "c.webp", "d.tiff"]
    assert [item.index for item in queue.items] == [0, 1, 2, 3]


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        BatchQueue.from_folder(tmp_path / "nope")


def test_grid_is_square_and_starts_at_the_origin(tmp_path):
    queue = BatchQueue.from_folder(make_folder(tmp_path, [f"{i}.jpg" for i in range(5)]), origin=(1, 2, 3), spacing=2)
    positions = [queue.grid_position(item) for item in queue.items]
    assert positions == [(1, 2, 3), (3, 2, 3), (5, 2, 3), (1, 0, 3), (3, 0, 3)]


def test_save_load_and_a_running_item_becomes_pending_again(tmp_path):
    queue = BatchQueue.from_folder(make_folder(tmp_path, ["a.jpg", "b.jpg", "c.jpg"]))
    queue.items[0].state, queue.items[0].object_name = "done", "a"
    queue.items[1].state = "running"
    path = tmp_path / "state" / "queue.json"
    queue.save(path)
    assert not list(path.parent.glob("*.partial"))
    loaded = BatchQueue.load(path)
    assert [item.state for item in loaded.items] == ["done", "pending", "pending"]
    assert loaded.next_pending().path.endswith("b.jpg")
    assert loaded.finished == 1
    assert not loaded.complete


def test_finish_empties_the_saved_queue_and_returns_failures(tmp_path):
    queue = BatchQueue.from_folder(make_folder(tmp_path, ["a.jpg", "b.jpg"]))
    queue.items[0].state = "done"
    queue.items[1].state, queue.items[1].message = "failed", "damaged"
    path = tmp_path / "queue.json"
    failed = queue.finish(path)
    assert [item.message for item in failed] == ["damaged"]
    assert json.loads(path.read_text())["items"] == []


def test_unreadable_queue_is_set_aside(tmp_path):
    path = tmp_path / "queue.json"
    path.write_text("{not json")
    assert BatchQueue.load(path) is None
    assert (tmp_path / "queue.json.unreadable").is_file()
    assert BatchQueue.load(tmp_path / "missing.json") is None


def test_peek_counts_what_is_left_without_touching_the_file(tmp_path):
    from blender_addon.batch import peek

    path = tmp_path / "queue.json"
    assert peek(path) is None
    queue = BatchQueue.from_folder(make_folder(tmp_path, ["a.jpg", "b.jpg", "c.jpg"]))
    queue.items[0].state = "done"
    queue.save(path)
    assert peek(path) == (2, 3)
    queue.finish(path)  # a finished batch: nothing left
    assert peek(path) == (0, 0)
    path.write_text("{not json")
    assert peek(path) is None
    assert path.read_text() == "{not json"  # not set aside, as load() would
