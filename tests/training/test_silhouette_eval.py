"""Silhouette IoUs from three directions, and the silhouette-first shapes the evaluation scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from backend.model.config import get_config
from backend.model.zeroshape import ZeroShapeW
from training.silhouette_eval import SHAPE_METHODS, shape_meshes, silhouette_images, silhouette_ious


def test_a_mesh_matches_itself_wherever_it_is_and_however_large():
    mesh = trimesh.creation.capsule(height=1.0, radius=0.3)
    truth = silhouette_images(mesh)
    moved = mesh.copy().apply_scale(3.0).apply_translation([5.0, -2.0, 7.0])
    assert silhouette_ious(moved, truth) == pytest.approx({"iou_front": 1.0, "iou_side": 1.0, "iou_top": 1.0}, abs=0.03)


def test_a_flat_disc_matches_a_sphere_from_the_front_only():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    disc = sphere.copy().apply_scale([1.0, 1.0, 0.2])  # flattened along the viewing axis
    scores = silhouette_ious(disc, silhouette_images(sphere))
    assert scores["iou_front"] > 0.95
    assert scores["iou_side"] < 0.4
    assert scores["iou_top"] < 0.4


def test_silhouettes_are_filled_not_outlines():
    images = silhouette_images(trimesh.creation.box(extents=(1.0, 1.0, 1.0)))
    front = images["front"]
    assert front[60:68, 60:68].all()  # the middle of the face, far from any edge of the surface samples' spread
    assert front.mean() == pytest.approx((1 / 1.5) ** 2, abs=0.03)  # a unit square in a 1.5-wide frame


def test_an_empty_mesh_scores_zero():
    truth = silhouette_images(trimesh.creation.icosphere())
    assert silhouette_ious(trimesh.Trimesh(), truth) == {"iou_front": 0.0, "iou_side": 0.0, "iou_top": 0.0}


def test_shape_meshes_give_every_method_and_the_true_mask_its_outline():
    torch.manual_seed(1)
    model = ZeroShapeW(get_config("tiny")).eval()
    size = model.config.image_size
    image = torch.rand(3, size, size)
    rows, columns = np.mgrid[0:size, 0:size]
    disc = ((columns - size / 2) ** 2 + (rows - size / 2) ** 2 <= (size / 4) ** 2).astype(np.float32)
    with torch.inference_mode():
        latent = model.encode(image[None], ["object"])
    meshes = shape_meshes(model, image, latent, 32, {"visible_mask": torch.from_numpy(disc)[None]})
    # Every method but the body rows, which need a body head (and the oracle a fitted body).
    assert set(meshes) == {method for method in SHAPE_METHODS if not method.startswith("body-")}
    inflated = meshes["inflate-true-mask"]
    assert inflated.is_watertight
    extent = inflated.vertices.max(axis=0) - inflated.vertices.min(axis=0)
    assert extent[0] == pytest.approx(extent[1], rel=0.1)  # a disc seen head-on: as tall as it is wide


def test_shape_meshes_make_only_the_methods_asked_for():
    torch.manual_seed(1)
    model = ZeroShapeW(get_config("tiny")).eval()
    size = model.config.image_size
    image = torch.rand(3, size, size)
    with torch.inference_mode():
        latent = model.encode(image[None], ["object"])
    truth = {"visible_mask": torch.ones(1, size, size)}
    meshes = shape_meshes(model, image, latent, 32, truth, ("inflate-true-mask",))
    assert set(meshes) == {"inflate-true-mask"}


def test_the_evaluate_command_offers_every_shape_method():
    from training.cli_evaluate import SHAPE_METHOD_NAMES

    assert tuple(SHAPE_METHOD_NAMES) == SHAPE_METHODS


def test_body_rows_need_a_body_head_and_the_oracle_row_a_fitted_body():
    import dataclasses

    from backend.silhouette import Thickness

    torch.manual_seed(1)
    size = get_config("tiny").image_size
    image = torch.rand(3, size, size)
    rows, columns = np.mgrid[0:size, 0:size]
    disc = ((columns - size / 2) ** 2 + (rows - size / 2) ** 2 <= (size / 4) ** 2).astype(np.float32)
    methods = ("body-true-mask", "body-oracle-true-mask")
    truth = {"visible_mask": torch.from_numpy(disc)[None]}
    for kind, body, expected in (("none", None, set()), ("constant", Thickness(0.5, 0.5), set(methods))):
        model = ZeroShapeW(dataclasses.replace(get_config("tiny"), body_head=kind)).eval()
        with torch.inference_mode():
            latent = model.encode(image[None], ["object"])
        meshes = shape_meshes(model, image, latent, 32, truth | {"body": body}, methods)
        assert set(meshes) == expected
    # The oracle body is half as deep as the round one; the constant head (zero init) gives the round one.
    depth = {name: np.ptp(mesh.vertices[:, 2]) for name, mesh in meshes.items()}
    assert depth["body-oracle-true-mask"] == pytest.approx(0.5 * depth["body-true-mask"], rel=0.15)
