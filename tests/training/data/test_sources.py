"""Object sources, sharding and the validation split (no Blender needed); catalogue sources have their own
test files (test_sweethome3d.py, test_zero_ad.py)."""

from __future__ import annotations

import importlib.util

import pytest

from tests.training.data.asset_fixtures import asset_folder
from training.data.sources import ObjectSource, folder_objects, random_urdf_objects, shard, split


def test_sources_categories_and_shards(tmp_path):
    objects = folder_objects(asset_folder(tmp_path))
    categories = {o.object_id: o.category for o in objects}
    assert categories == {
        "asset-ball-small": "ball",
        "asset-crate-broken": "crate",
        "asset-crate-long": "crate",
        "asset-pillar": "column",
    }
    assert [o.object_id for o in shard(objects, "1/2")] == [objects[1].object_id, objects[3].object_id]
    with pytest.raises(ValueError, match="i/N"):
        shard(objects, "2")


def test_validation_split_is_one_in_ten_and_stable():
    objects = [ObjectSource(f"thing-{index:04d}", "object", "test") for index in range(2000)]
    held_out = {o.object_id for o in split(objects, "val")}
    trained = {o.object_id for o in split(objects, "train")}
    assert not held_out & trained
    assert len(held_out) + len(trained) == 2000
    assert 150 < len(held_out) < 250
    # Growing the source never moves an object between the splits.
    assert {o.object_id for o in split(objects[:500], "val")} == {i for i in held_out if int(i[-4:]) < 500}
    with pytest.raises(ValueError, match="all, train or val"):
        split(objects, "test")


@pytest.mark.skipif(importlib.util.find_spec("pybullet_data") is None, reason="pybullet is not installed")
def test_random_objects_source_lists_all_1000():
    objects = random_urdf_objects()
    assert len(objects) == 1000
    assert {o.category for o in objects} == {"object"}
