"""training/evaluate.py and `zeroshape-w evaluate` on the rendered dataset with a 2-step `tiny` checkpoint."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from backend.model.checkpoint import load_checkpoint
from tests.training.conftest import one_torch_thread, run_cli
from training.evaluate import (
    CONDITIONS,
    IOU_KEYS,
    METHODS,
    ORACLES,
    SCORE_KEYS,
    EvalOptions,
    evaluate_dataset,
    format_tables,
    predict_mesh,
    scene_table,
    select_views,
    sphere_cloud,
    tables,
)
from training.metrics import EMPTY_CHAMFER

CLEAN_SPLIT_CONDITIONS = ("clean", "occluded")
"""What a split of clean renders is scored under: as rendered, and occluded by a pasted cut-out."""
QUICK = EvalOptions(resolution=32, surface_samples=2000, views_per_object=1)
"""Coarse meshes and few samples: the protocol's wiring, not its numbers, is under test here."""


@pytest.fixture(scope="module")
def rows(tiny_run) -> list[dict]:
    model = load_checkpoint(tiny_run.out / "model.safetensors")
    with one_torch_thread():
        return evaluate_dataset(model, [tiny_run.data], QUICK)


@pytest.mark.blender
def test_rows_cover_every_method_condition_and_view(rows):
    # 3 objects × 1 view each (views_per_object=1) × 2 conditions × 3 methods.
    assert len(rows) == 3 * 1 * 2 * 3
    keys = {(r["object_id"], r["view"], r["condition"], r["method"]) for r in rows}
    assert len(keys) == len(rows)
    assert {r["view"] for r in rows} == {"view_000"}
    assert {r["method"] for r in rows} == {"model", "visible", "sphere"}  # no oracle rows unless asked
    assert {r["condition"] for r in rows} == set(CLEAN_SPLIT_CONDITIONS)
    assert {r["category"] for r in rows} == {"chair", "table", "sofa"}
    for row in rows:
        assert row["occluders"] == (0 if row["condition"] == "clean" else 1), row
        assert not set(IOU_KEYS) & set(row)  # silhouette IoUs only with shapes=True
        for key in SCORE_KEYS:
            assert math.isfinite(row[key]), (key, row)
        for key in SCORE_KEYS[:-1]:
            assert 0.0 <= row[key] <= 1.0, (key, row)
        assert row["cd"] >= 0.0
        # F-scores can only grow with the threshold.
        scores = [row[key] for key in SCORE_KEYS[:-1]]
        assert scores == sorted(scores), row


@pytest.mark.blender
def test_the_model_rows_score_the_scene_head(rows, tiny_run):
    model = load_checkpoint(tiny_run.out / "model.safetensors")
    mine = [r for r in rows if r["method"] == "model"]
    for row in mine:
        assert 0.0 <= row["gravity_error_deg"] <= 180.0
        assert row["category_top"] in model.config.text.categories
        assert row["category_correct"] == (row["category_top"] == row["category"])
        assert row["prompt"] == "true"
    assert all("gravity_error_deg" not in r for r in rows if r["method"] != "model")
    scene = tables(rows)["scene"]
    assert scene["all"]["n"] == len(mine)
    errors = sorted(r["gravity_error_deg"] for r in mine)
    assert scene["all"]["gravity_error_deg_median"] == pytest.approx(float(np.median(errors)))
    assert scene["all"]["category_accuracy"] == pytest.approx(np.mean([r["category_correct"] for r in mine]))
    assert "Gravity and category heads" in format_tables(tables(rows))


def test_pixel_errors_are_zero_for_the_truth_and_grow_with_the_error():
    from types import SimpleNamespace

    from training.evaluate import pixel_errors

    size = 16
    rows = torch.arange(size).float()[:, None].expand(size, size)
    mask = torch.zeros(1, size, size)
    mask[:, 4:12, 4:12] = 1.0
    depth = (2.0 + rows / size)[None] * mask
    K = torch.tensor([[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]])
    truth = {"visible_mask": mask, "depth": depth, "intrinsics": K}

    def latent(predicted_depth, visible, focal):
        intrinsics = K.clone()
        intrinsics[0, 0] = focal
        return SimpleNamespace(depth=predicted_depth[None], visible=visible[None] >= 0.5, intrinsics=intrinsics[None])

    # The truth up to scale and shift: no error, a perfect mask.
    exact = pixel_errors(latent(3.0 * depth + 1.0, mask, 20.0), truth)
    assert exact["depth_error"] == pytest.approx(0.0, abs=1e-5)
    assert exact["mask_iou"] == 1.0
    assert exact["focal_log_error"] == pytest.approx(0.0, abs=1e-6)
    # A flat depth is the reference (1.0); half the mask; twice the focal length.
    wrong_mask = mask.clone()
    wrong_mask[:, 4:8] = 0.0
    off = pixel_errors(latent(torch.ones_like(depth), wrong_mask, 40.0), truth)
    assert off["depth_error"] == pytest.approx(1.0, abs=1e-5)
    assert off["mask_iou"] == pytest.approx(0.5)
    assert off["focal_log_error"] == pytest.approx(math.log(2.0), rel=1e-5)


def test_the_scene_table_shows_a_head_that_always_answers_the_average():
    """A head that answers one elevation for every view gets no correlation, and the constant's error beside its
    own shows it learned nothing; a head that follows the truth correlates."""
    from training.evaluate import scene_table

    true = [5.0, 20.0, 35.0, 50.0, 65.0]

    def rows(predicted):
        return [
            {"condition": "clean", "category": "object", "category_top": "object", "category_correct": True,
             "category_auto": "object", "gravity_error_deg": abs(p - t), "elevation_deg": p, "elevation_true_deg": t}
            for p, t in zip(predicted, true, strict=True)
        ]  # fmt: skip

    constant = scene_table(rows([35.0] * 5))["clean"]
    assert constant["elevation_correlation"] is None
    assert constant["constant_elevation_error_deg_median"] == pytest.approx(15.0)
    assert constant["gravity_error_deg_median"] == pytest.approx(15.0)
    following = scene_table(rows([t + 2.0 for t in true]))["clean"]
    assert following["elevation_correlation"] == pytest.approx(1.0)
    assert following["gravity_error_deg_median"] == pytest.approx(2.0)
    assert "a constant elevation" in format_tables({"overall": {}, "per_category": {}, "scene": {"clean": constant}})


def test_scene_estimates_measure_the_angle_to_the_true_gravity():
    from backend.model.config import get_config
    from backend.model.zeroshape import ZeroShapeW
    from training.evaluate import scene_estimates

    model = ZeroShapeW(get_config("tiny")).eval()
    with torch.no_grad():
        latent = model.encode(torch.rand(1, 3, 64, 64), "object")
    predicted = latent.gravity[0]
    assert scene_estimates(model, latent, "chair", predicted)["gravity_error_deg"] == pytest.approx(0.0, abs=0.1)
    # A true gravity 30° away from the prediction, about the camera's x axis.
    angle = math.radians(30)
    rotation = torch.tensor(
        [[1.0, 0.0, 0.0], [0.0, math.cos(angle), -math.sin(angle)], [0.0, math.sin(angle), math.cos(angle)]]
    )
    estimates = scene_estimates(model, latent, "chair", rotation @ predicted)
    assert estimates["gravity_error_deg"] == pytest.approx(30.0, abs=0.1)
    # No roll: the rotation about x moves the camera's elevation by the same 30°.
    assert estimates["elevation_true_deg"] - estimates["elevation_deg"] == pytest.approx(30.0, abs=0.1)
    assert estimates["category_auto"] == "object"  # an untrained head is unsure
    assert estimates["category_correct"] == (estimates["category_top"] == "chair")


@pytest.mark.blender
def test_the_sphere_baseline_ignores_the_occluders(rows):
    for view in {(r["object_id"], r["view"]) for r in rows}:
        clean, occluded = (
            next(
                r
                for r in rows
                if (r["object_id"], r["view"]) == view and r["method"] == "sphere" and r["condition"] == c
            )
            for c in CLEAN_SPLIT_CONDITIONS
        )
        assert {k: clean[k] for k in SCORE_KEYS} == {k: occluded[k] for k in SCORE_KEYS}
    # …while what the model sees does change with them: its visible-surface rows differ somewhere.
    visible = {(r["object_id"], r["condition"]): r["cd"] for r in rows if r["method"] == "visible"}
    assert any(visible[(o, "clean")] != visible[(o, "occluded")] for o, _ in visible)


@pytest.mark.blender
def test_tables_and_their_markdown(rows):
    result = tables(rows)
    scored = ["model", "visible", "sphere"]
    assert list(result["overall"]) == scored
    for method in scored:
        for condition in CLEAN_SPLIT_CONDITIONS:
            group = result["overall"][method][condition]
            assert group["n"] == 3
            mine = [r["fscore@0.05"] for r in rows if r["method"] == method and r["condition"] == condition]
            assert group["fscore@0.05"] == pytest.approx(np.mean(mine))
    text = format_tables(result)
    assert "| method | condition | views | FS@τ | FS@2τ | FS@3τ | FS@5τ | CD |" in text
    assert "FS@τ per category:" in text
    assert "| category | model clean | model occluded | visible clean" in text
    for category in ("chair", "table", "sofa"):
        assert f"| {category} |" in text
    for method in scored:
        for condition in CLEAN_SPLIT_CONDITIONS:
            assert f"| {method} | {condition} | 3 |" in text
    assert "FS@τ per source:" not in text  # one source: no per-source table


@pytest.mark.blender
def test_a_scene_split_is_scored_as_rendered(tiny_run, scene_dataset):
    """Views rendered clean, cluttered and occluded are each scored once under their own condition, with
    nothing pasted; the occluded ones carry their rendered occluder; tables break results down by source."""
    model = load_checkpoint(tiny_run.out / "model.safetensors")
    options = EvalOptions(resolution=32, surface_samples=2000, baselines=False)
    with one_torch_thread():
        rows = evaluate_dataset(model, [scene_dataset], options)
    assert sorted((r["object_id"], r["view"], r["condition"]) for r in rows) == sorted(
        (object_id, f"view_{k:03d}", condition)
        for object_id in ("procedural-chair-0000", "procedural-table-0000")
        for k, condition in enumerate(CONDITIONS)
    )
    for row in rows:
        assert row["source"] == "procedural"
        camera = json.loads((scene_dataset / "objects" / row["object_id"] / row["view"] / "camera.json").read_text())
        assert camera["scene"] == row["condition"]
        assert row["occluders"] == (1 if camera["hidden_fraction"] > 0 else 0), (row, camera)
    text = format_tables(tables(rows + [{**r, "source": "elsewhere"} for r in rows]))
    assert "FS@τ per source:" in text
    assert "| procedural |" in text
    assert "| elsewhere |" in text


@pytest.mark.blender
def test_an_empty_mesh_scores_the_penalty_without_crashing(tiny_run):
    model = load_checkpoint(tiny_run.out / "model.safetensors")
    with torch.no_grad():
        # The occupancy MLP's output layer: a very negative bias makes every query empty.
        model.decoder.occupancy_mlp.layers[-1].bias.fill_(-1e4)
    mesh, _ = predict_mesh(model, torch.rand(3, 64, 64), "chair", 32)
    assert len(mesh.faces) == 0  # the premise of this test
    options = EvalOptions(resolution=32, surface_samples=2000, conditions=("clean",))
    with one_torch_thread():
        rows = evaluate_dataset(model, [tiny_run.data], options, limit=1)
    assert len(rows) == 3
    by_method = {r["method"]: r for r in rows}
    assert by_method["model"]["cd"] == EMPTY_CHAMFER
    assert all(by_method["model"][k] == 0.0 for k in SCORE_KEYS[:-1])
    # The baselines do not depend on the shape decoder: still real, finite scores.
    assert by_method["sphere"]["cd"] < EMPTY_CHAMFER
    assert by_method["visible"]["cd"] < EMPTY_CHAMFER


def test_sphere_cloud_is_on_the_unit_sphere_and_reproducible():
    cloud = sphere_cloud(500, seed=3)
    assert cloud.shape == (500, 3)
    np.testing.assert_allclose(np.linalg.norm(cloud, axis=1), 1.0)
    np.testing.assert_array_equal(cloud, sphere_cloud(500, seed=3))
    assert not np.array_equal(cloud, sphere_cloud(500, seed=4))


@pytest.mark.blender
def test_evaluate_cli_writes_rows_summary_and_tables(tiny_run, tmp_path):
    out = tmp_path / "eval"
    checkpoint = tiny_run.out / "model.safetensors"
    quick = ["--views-per-object", "1", "--resolution", "32", "--samples", "2000", "--device", "cpu", "--threads", "1"]
    data = ["--data", str(tiny_run.data)]
    result = run_cli(
        "evaluate", "--checkpoint", str(checkpoint), *data, *quick, "--out", str(out), "--oracle", "--shapes"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| method | condition |" in result.stdout
    assert "| oracle-all | clean | 3 |" in result.stdout
    lines = (out / "rows.jsonl").read_text().splitlines()
    # 3 views, clean and occluded: the model, 3 oracles, 4 silhouette-first shapes and 2 baselines each; the body
    # fitted to the true object on the clean views (the pasted cut-out's views have none); no body-head rows (the
    # tiny model has no body head).
    methods = [m for m in METHODS if m not in ("body-true-mask", "body-refined-mask")]
    assert len(lines) == 3 * 2 * (len(methods) - 1) + 3
    rows = [json.loads(line) for line in lines]
    assert {row["method"] for row in rows} == set(methods)
    assert {row["condition"] for row in rows if row["method"] == "body-oracle-true-mask"} == {"clean"}
    for row in rows:  # every mesh row has its silhouette IoUs; the point-cloud baselines have none
        has_ious = row["method"] not in ("visible", "sphere") and not row["method"].startswith("oracle")
        assert (set(IOU_KEYS) <= set(row)) == has_ious, row
        assert all(0.0 <= row[key] <= 1.0 for key in IOU_KEYS if key in row)
    true_mask = [r for r in rows if r["method"] == "inflate-true-mask" and r["condition"] == "clean"]
    assert np.mean([r["iou_front"] for r in true_mask]) > 0.5  # the true outline, whatever this random model says
    summary = json.loads((out / "summary.json").read_text())
    # The tiny model has a scene head; rendered views give the pixel heads' errors.
    assert set(summary) == {"overall", "per_category", "per_source", "scene", "pixel_heads"}
    assert set(summary["overall"]) == set(methods)
    assert "FS@τ per category:" in (out / "tables.md").read_text()


def test_select_views_takes_every_nth_object_and_its_first_views():
    """--object-stride N keeps objects 0, N, 2N, … in order of first appearance; --views-per-object caps each."""
    ids = ["a", "a", "a", "b", "b", "c", "c", "c", "d", "e", "e"]
    dataset = SimpleNamespace(views=[SimpleNamespace(object_id=i) for i in ids])
    assert select_views(dataset, None) == list(range(len(ids)))
    assert select_views(dataset, 1) == [0, 3, 5, 8, 9]
    assert select_views(dataset, 2, object_stride=2) == [0, 1, 5, 6, 9, 10]  # objects a, c, e
    assert select_views(dataset, 1, object_stride=3) == [0, 8]  # objects a, d
    with pytest.raises(ValueError, match="object_stride must be at least 1"):
        select_views(dataset, 1, object_stride=0)


@pytest.mark.blender
def test_oracle_rows_use_the_truth_they_name(tiny_run, monkeypatch):
    """--oracle adds one row per oracle on the same views, and each oracle encodes with exactly the true inputs
    it names (the true visible mask is the occluded one under occlusion)."""
    import training.evaluate as evaluate_module

    model = load_checkpoint(tiny_run.out / "model.safetensors")
    calls = []
    original = evaluate_module.predict_mesh

    def spy(model, image, prompt, resolution, level=None, truth=None):
        calls.append(truth)
        return original(model, image, prompt, resolution, level, truth)

    monkeypatch.setattr(evaluate_module, "predict_mesh", spy)
    options = EvalOptions(resolution=32, surface_samples=500, views_per_object=1, oracle=True, baselines=False)
    with one_torch_thread():
        rows = evaluate_dataset(model, [tiny_run.data], options, limit=1)
    assert {r["method"] for r in rows} == {"model", *ORACLES}
    assert len(rows) == 2 * (1 + len(ORACLES))  # one view, clean and occluded
    assert [None if c is None else tuple(sorted(c)) for c in calls[: 1 + len(ORACLES)]] == [
        None,
        ("visible_mask",),
        ("depth", "intrinsics"),
        ("depth", "intrinsics", "visible_mask"),
    ]
    clean_mask, occluded_mask = calls[1]["visible_mask"], calls[1 + 1 + len(ORACLES)]["visible_mask"]
    assert occluded_mask.sum() < clean_mask.sum()  # the cut-out hides part of the object
    K = calls[2]["intrinsics"]
    assert K.shape == (3, 3)
    assert K[2, 2] == 1.0
    assert set(METHODS) >= {"model", *ORACLES}
    result = format_tables(tables(rows))
    assert "| oracle-all | clean | 1 |" in result
    with pytest.raises(ValueError, match="Pix3D"):
        evaluate_module.evaluate_pix3d(model, tiny_run.data, options)


def test_balanced_category_accuracy_is_not_inflated_by_answering_object():
    """A head that answers "object" always is right on 8 of 10 views here, but on one of two categories."""

    def row(category: str) -> dict:
        return {"condition": "clean", "category": category, "category_top": "object", "category_auto": "object"}

    rows = [row("object")] * 8 + [row("chair")] * 2
    for r in rows:
        r["category_correct"] = r["category_top"] == r["category"]
    scene = scene_table(rows)
    assert scene["clean"]["category_accuracy"] == pytest.approx(0.8)
    assert scene["clean"]["category_accuracy_balanced"] == pytest.approx(0.5)
    assert scene["clean"]["category_accuracy_named"] == 0.0
    assert "gravity_error_deg_median" not in scene["clean"]  # a category head without a gravity head
    table = format_tables({"overall": {}, "per_category": {}, "scene": scene})
    assert "| clean | 10 | 80% | 50% | 0% | 0% |" in table  # no gravity columns without a gravity head
    assert "Category head" in table
    assert "gravity" not in table
