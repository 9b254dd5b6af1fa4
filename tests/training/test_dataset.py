"""training/dataset.py on a dataset really rendered by Blender: scanning, samples, geometry, Copy-Paste, resizing."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation
from scipy.spatial import cKDTree

from training.data import layout
from training.dataset import (
    OBJECT_CUBE_HALF_EXTENT,
    Augmentation,
    RenderedViews,
    SampleRequest,
    _load_occupancy,
    load_view,
    occupancy_queries,
    paste_occluders,
    resize_view,
    scan_dataset,
    visible_frame,
)

NO_JITTER = Augmentation(max_occluders=2, brightness=0.0, contrast=0.0, saturation=0.0)
"""Copy-Paste on, colour jitter off: the pasted image can be compared pixel by pixel with rgb.png."""


def camera_points(depth: np.ndarray, mask: np.ndarray, K: np.ndarray) -> np.ndarray:
    """[M, 3] camera-frame points of the masked pixels, X = d · K⁻¹ [u, v, 1] (docs/DATASET.md)."""
    rows, cols = np.nonzero(mask)
    pixels = np.stack([cols, rows, np.ones_like(cols)]).astype(np.float64)
    return (np.linalg.inv(K) @ pixels * depth[rows, cols]).T


def gap(points: np.ndarray, queries: np.ndarray, inside: np.ndarray) -> float:
    """Median distance from `points` to the farther of the nearest inside and nearest outside query, in units of
    the queries' median spacing: small only on the labelled boundary (deep inside, the nearest outside query is
    far, and vice versa; in empty space, the nearest inside one)."""
    spacing = np.median(cKDTree(queries).query(queries, k=2)[0][:, 1])
    to_inside = cKDTree(queries[inside]).query(points)[0]
    to_outside = cKDTree(queries[~inside]).query(points)[0]
    return float(np.median(np.maximum(to_inside, to_outside)) / spacing)


def to_object(points: np.ndarray, world_to_camera: np.ndarray, centroid: np.ndarray, scale: float) -> np.ndarray:
    """Normalised-frame points back into the object frame: R⁻¹ (x · scale + centroid − t), one point per row."""
    rotation, translation = world_to_camera[:3, :3], world_to_camera[:3, 3]
    return (points.astype(np.float64) * scale + centroid - translation) @ rotation


# ------------------------------------------------------------------------------------------------------ scanning
@pytest.mark.blender
def test_scan_finds_every_view_and_cutout(rendered_dataset):
    views, occluders = scan_dataset([rendered_dataset])
    assert len(views) == 6
    assert {v.category for v in views} == {"chair", "table", "sofa"}
    assert sorted(v.folder.name for v in views) == sorted(["view_000", "view_001"] * 3)
    assert all((v.folder / "depth.npy").is_file() and v.object_folder == v.folder.parent for v in views)
    assert 30 <= min(v.focal_mm for v in views) <= max(v.focal_mm for v in views) <= 70
    assert len(occluders) == 3
    assert {o.object_id for o in occluders} == {v.object_id for v in views}


def test_scan_names_a_folder_that_is_not_a_dataset(tmp_path):
    folder = tmp_path / "not-a-dataset"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(str(folder))):
        scan_dataset([folder])


@pytest.mark.blender
def test_scan_ignores_objects_without_done(rendered_dataset, tmp_path):
    copy = Path(shutil.copytree(rendered_dataset, tmp_path / "dataset"))
    unfinished = copy / "objects" / "procedural-table-0000"
    (unfinished / "DONE").unlink()
    views, _ = scan_dataset([copy])
    assert len(views) == 4
    assert "procedural-table-0000" not in {v.object_id for v in views}
    # A half-written object may lack anything; with its camera.json gone it must still not be read.
    (unfinished / "view_000" / "camera.json").unlink()
    assert len(scan_dataset([copy])[0]) == 4


@pytest.mark.blender
def test_training_skips_objects_that_enclose_no_volume(rendered_dataset, tmp_path, caplog):
    copy = Path(shutil.copytree(rendered_dataset, tmp_path / "dataset"))
    sheet = copy / "objects" / "procedural-table-0000"
    points, _ = layout.read_occupancy(sheet)
    layout.write_occupancy(sheet, points, np.zeros(len(points), dtype=bool))  # an open sheet: nothing inside
    assert len(RenderedViews([copy], image_size=64, query_points=8)) == 6  # evaluation keeps every view
    with caplog.at_level(logging.WARNING, logger="training.dataset"):
        kept = RenderedViews([copy], image_size=64, query_points=8, skip_sheets=True)
    assert len(kept) == 4
    assert "procedural-table-0000" not in {v.object_id for v in kept.views}
    assert "skipping 1 of 3 objects that enclose no volume" in caplog.text


# ------------------------------------------------------------------------------------------------------ samples
@pytest.mark.blender
def test_clean_sample_shapes_and_targets(rendered_dataset):
    dataset = RenderedViews([rendered_dataset], image_size=224, query_points=300, augmentation=Augmentation.none())
    for index in range(len(dataset)):
        sample = dataset[SampleRequest(index, seed=5, occluders=0)]
        data = load_view(dataset.views[index])
        assert sample["image"].shape == (3, 224, 224)
        assert sample["image"].dtype == torch.float32
        assert sample["image"].min() >= 0.0
        assert sample["image"].max() <= 1.0
        for key in ("depth", "visible_mask", "occluder_mask"):
            assert sample[key].shape == (1, 224, 224), key
        assert sample["K"].shape == (3, 3)
        assert sample["points"].shape == (300, 3)
        assert sample["occupancy"].shape == (300,)
        assert set(sample["occupancy"].unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(sample["visible_mask"].bool(), sample["depth"] > 0)
        assert not sample["occluder_mask"].any()
        assert sample["occluders"] == 0
        # Augmentation.none() leaves the rendered pixels and camera exactly as stored.
        np.testing.assert_allclose(sample["image"].numpy().transpose(1, 2, 0), data["rgb"], atol=1e-6)
        np.testing.assert_allclose(sample["K"].numpy(), data["K"], rtol=1e-6)
        assert sample["category"] == dataset.views[index].category


@pytest.mark.blender
def test_visible_points_lie_on_the_labelled_occupancy_boundary(rendered_dataset):
    """Labels and the network see one frame: the visible surface must separate inside from outside queries."""
    dataset = RenderedViews([rendered_dataset], image_size=224, query_points=20_000, augmentation=Augmentation.none())
    for index in range(len(dataset)):
        sample = dataset[SampleRequest(index, seed=3, occluders=0)]
        depth, K = sample["depth"][0].numpy(), sample["K"].double().numpy()
        visible = sample["visible_mask"][0].numpy() > 0.5
        centroid, scale = visible_frame(depth, visible, K)
        surface = (camera_points(depth, visible, K) - centroid) / scale
        # The frame's definition: centred on the visible points, farthest one at distance 1.
        np.testing.assert_allclose(surface.mean(axis=0), 0.0, atol=1e-9)
        assert np.linalg.norm(surface, axis=1).max() == pytest.approx(1.0, abs=1e-9)

        queries, inside = sample["points"].numpy().astype(np.float64), sample["occupancy"].numpy() > 0.5
        assert gap(surface, queries, inside) < 1.5, f"view {index}: visible surface is off the occupancy boundary"
        # The check discriminates: with image axes flipped (a pixel-convention mistake) it fails clearly.
        assert gap(surface * [-1.0, -1.0, 1.0], queries, inside) > 2.5, f"view {index}: the check cannot tell"


@pytest.mark.blender
def test_queries_map_back_to_the_stored_occupancy_samples(rendered_dataset):
    """Every query is either one of occupancy.npz's points moved by the camera pose into the frame (with its
    label), or a far box point that lies outside the object's cube and is labelled empty."""
    views, _ = scan_dataset([rendered_dataset])
    for view in views:
        data = load_view(view)
        centroid, scale = visible_frame(data["depth"], data["mask"], data["K"])
        count, fraction, half = 4000, 0.25, 1.5
        points, labels = occupancy_queries(
            view.object_folder,
            data["world_to_camera"],
            centroid,
            scale,
            count,
            np.random.default_rng(0),
            box_half_extent=half,
            box_fraction=fraction,
        )
        assert points.shape == (count, 3)
        assert labels.shape == (count,)
        stored_points, stored_labels = _load_occupancy(view.object_folder)
        stored = cKDTree(stored_points)
        in_object = to_object(points, data["world_to_camera"], centroid, scale)
        distance, nearest = stored.query(in_object)
        near = distance < 1e-4
        far_count = round(count * fraction)
        assert near.sum() == count - far_count
        assert np.array_equal(labels[near], stored_labels[nearest[near]])
        # The far points come last; they are all in the query box, outside the object's cube, and empty.
        far = points[count - far_count :]
        assert not near[count - far_count :].any()
        assert np.abs(far).max() <= half
        assert (np.abs(in_object[count - far_count :]).max(axis=1) > OBJECT_CUBE_HALF_EXTENT).all()
        assert not labels[count - far_count :].any()
        # A wrong inverse pose (R instead of Rᵀ) matches no stored point: the checks above depend on the transform.
        wrong_pose = data["world_to_camera"].copy()
        wrong_pose[:3, :3] = wrong_pose[:3, :3].T
        assert (stored.query(to_object(points, wrong_pose, centroid, scale))[0] < 1e-4).mean() < 0.01


# ------------------------------------------------------------------------------------------------------ Copy-Paste
@pytest.mark.blender
def test_copy_paste_occludes_part_of_the_object(rendered_dataset):
    dataset = RenderedViews([rendered_dataset], image_size=224, query_points=64, augmentation=NO_JITTER)
    for index in range(len(dataset)):
        data = load_view(dataset.views[index])
        for seed in range(3):
            sample = dataset[SampleRequest(index, seed, occluders=2)]
            occluder = sample["occluder_mask"][0].numpy() > 0.5
            visible = sample["visible_mask"][0].numpy() > 0.5
            assert 1 <= sample["occluders"] <= 2
            assert occluder.any()
            assert np.array_equal(visible, data["mask"] & ~occluder)
            assert visible.sum() >= NO_JITTER.min_visible_fraction * data["mask"].sum()
            assert (visible & data["mask"]).sum() < data["mask"].sum()  # some of the object really is hidden
            # Pixels under a cut-out changed; pixels away from every cut-out edge did not.
            image = sample["image"].numpy().transpose(1, 2, 0)
            change = np.abs(image - data["rgb"]).max(axis=2)
            assert (change[occluder] > 0.02).mean() > 0.9
            assert change[~binary_dilation(occluder, iterations=2)].max() < 1e-6
            # Depth stays the object's: the occluder is not part of the ground truth.
            np.testing.assert_array_equal(sample["depth"][0].numpy(), data["depth"])


@pytest.mark.blender
def test_an_object_is_never_occluded_by_its_own_cutout(rendered_dataset, tmp_path):
    copy = Path(shutil.copytree(rendered_dataset, tmp_path / "dataset"))
    for path in (copy / "occluders").iterdir():
        if not path.name.startswith("procedural-chair-0000."):
            path.unlink()
    dataset = RenderedViews([copy], image_size=224, query_points=64, augmentation=NO_JITTER)
    assert [o.object_id for o in dataset.occluders] == ["procedural-chair-0000"]
    for index, view in enumerate(dataset.views):
        pasted = [dataset[SampleRequest(index, seed, occluders=2)]["occluders"] for seed in range(3)]
        if view.object_id == "procedural-chair-0000":
            assert pasted == [0, 0, 0], "the chair was occluded by the only cut-out there is: its own"
        else:
            assert max(pasted) >= 1, f"{view.object_id} could use the chair's cut-out but was never occluded"


def test_paste_occluders_on_synthetic_arrays():
    height = width = 100
    rgb = np.full((height, width, 3), 0.5, dtype=np.float32)
    mask = np.zeros((height, width), dtype=bool)
    mask[20:80, 20:80] = True
    red = np.zeros((10, 10, 4), dtype=np.float32)
    red[..., 0] = red[..., 3] = 1.0  # opaque red square

    # The 10-px square is scaled to 0.2 · 100 = 20 px and pasted once.
    out, visible, occluder, pasted = paste_occluders(rgb, mask, [red], np.random.default_rng(0), (0.2, 0.2), 0.25)
    assert pasted == 1
    rows, cols = np.nonzero(occluder)
    box = (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
    clipped = rows.min() == 0 or cols.min() == 0 or rows.max() == height - 1 or cols.max() == width - 1
    assert box == (20, 20) or (clipped and max(box) <= 20)
    assert occluder.sum() == box[0] * box[1]  # a solid rectangle
    assert (occluder & mask).any()  # placed over the object
    np.testing.assert_allclose(out[occluder], [[1.0, 0.0, 0.0]] * int(occluder.sum()), atol=1e-6)
    np.testing.assert_array_equal(out[~occluder], rgb[~occluder])
    np.testing.assert_array_equal(visible, mask & ~occluder)
    assert rgb[0, 0, 0] == 0.5  # the input is not modified in place

    # Two cut-outs: the occluder mask is their union, the visible mask what is left of the object.
    out, visible, occluder, pasted = paste_occluders(rgb, mask, [red, red], np.random.default_rng(1), (0.2, 0.2), 0.25)
    assert pasted == 2
    assert 400 < occluder.sum() <= 800
    np.testing.assert_array_equal(visible, mask & ~occluder)

    # A cut-out that would leave less than min_visible_fraction of the object is not pasted.
    out, visible, occluder, pasted = paste_occluders(rgb, mask, [red], np.random.default_rng(0), (0.9, 0.9), 0.9)
    assert pasted == 0
    assert not occluder.any()
    np.testing.assert_array_equal(visible, mask)
    np.testing.assert_array_equal(out, rgb)

    # Only pixels where the cut-out's alpha exceeds 1/2 count as occluded.
    half = red.copy()
    half[:, 5:, 3] = 0.0
    _, _, occluder, pasted = paste_occluders(rgb, mask, [half], np.random.default_rng(0), (0.2, 0.2), 0.25)
    rows, cols = np.nonzero(occluder)
    assert pasted == 1
    assert cols.max() - cols.min() + 1 <= 11
    assert rows.max() - rows.min() + 1 <= 20


# ------------------------------------------------------------------------------------------------------ determinism
@pytest.mark.blender
def test_same_request_same_sample_other_seed_other_sample(rendered_dataset):
    first = RenderedViews([rendered_dataset], image_size=64, query_points=128)
    second = RenderedViews([rendered_dataset], image_size=64, query_points=128)  # no shared state
    for index in (0, 3):
        a = first[SampleRequest(index, seed=11)]
        b = second[SampleRequest(index, seed=11)]
        for key, value in a.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, b[key]), key
            else:
                assert value == b[key], key
        c = first[SampleRequest(index, seed=12)]
        assert not torch.equal(a["points"], c["points"])
        assert not torch.equal(a["image"], c["image"])  # colour jitter (and maybe occluders) differ


# ------------------------------------------------------------------------------------------------------ resizing
@pytest.mark.blender
def test_resize_view_keeps_the_camera_consistent(rendered_dataset):
    views, _ = scan_dataset([rendered_dataset])
    factor = 64 / 224
    for view in views:
        data = load_view(view)
        small = resize_view(data, 64)
        assert small["rgb"].shape == (64, 64, 3)
        assert small["depth"].shape == (64, 64)
        assert small["mask"].shape == (64, 64)
        assert np.array_equal(small["mask"], small["depth"] > 0)
        assert np.isin(small["depth"], data["depth"]).all()  # nearest: no depth invented between object and sky
        np.testing.assert_array_equal(small["world_to_camera"], data["world_to_camera"])

        # A 3D point projects to the place that corresponds, with pixel centres at integers in both grids.
        point = camera_points(data["depth"], data["mask"], data["K"])[0]
        old = data["K"] @ point
        new = small["K"] @ point
        np.testing.assert_allclose(new[:2] / new[2], (old[:2] / old[2] + 0.5) * factor - 0.5, atol=1e-9)

        # The resized depth, unprojected with the new K, lies on the full-size visible surface: within half an
        # original pixel (PIL's nearest picks source pixels ±¼ pixel from the exact spot). Without the half-pixel
        # shift of the principal point it lands about a pixel off.
        full = cKDTree(camera_points(data["depth"], data["mask"], data["K"]))
        pixel = np.median(data["depth"][data["mask"]]) / data["K"][0, 0]
        offset = full.query(camera_points(small["depth"], small["mask"], small["K"]))[0] / pixel
        assert np.percentile(offset, 90) < 0.5
        naive_K = np.diag([factor, factor, 1.0]) @ data["K"]
        naive = full.query(camera_points(small["depth"], small["mask"], naive_K))[0] / pixel
        assert np.median(naive) > 0.6


def test_resize_view_rejects_non_square_views():
    data = {
        "rgb": np.zeros((10, 12, 3), np.float32),
        "depth": np.zeros((10, 12), np.float32),
        "mask": np.zeros((10, 12), bool),
        "K": np.eye(3),
    }
    with pytest.raises(ValueError, match="square"):
        resize_view(data, 8)
