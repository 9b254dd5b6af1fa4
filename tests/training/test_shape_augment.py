"""training/shape_augment.py: predicted-depth errors imitated on true visible shapes."""

from __future__ import annotations

import dataclasses

import torch

from training.shape_augment import ShapeAugmentation, corrupt_visible_shape


def true_batch(batch: int = 4, size: int = 48) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    visible = torch.zeros(batch, 1, size, size)
    visible[..., 10:38, 14:34] = 1.0
    rows = torch.linspace(0, 1, size)[None, None, :, None]
    depth = (2.0 + 0.3 * rows).expand(batch, 1, size, size) * visible
    K = torch.tensor([[60.0, 0.0, 24.0], [0.0, 60.0, 24.0], [0.0, 0.0, 1.0]]).expand(batch, 3, 3).clone()
    return depth, K, visible


def test_probability_zero_leaves_the_truth_exact():
    depth, K, visible = true_batch()
    never = dataclasses.replace(ShapeAugmentation(), probability=0.0)
    out = corrupt_visible_shape(depth, K, visible, never, torch.Generator().manual_seed(0))
    assert torch.equal(out[0], depth)
    assert torch.equal(out[1], K)
    assert torch.equal(out[2], visible)


def test_corruption_is_reproducible_and_stays_a_valid_visible_shape():
    depth, K, visible = true_batch(batch=16)
    always = dataclasses.replace(ShapeAugmentation(), probability=1.0)
    first = corrupt_visible_shape(depth, K, visible, always, torch.Generator().manual_seed(3))
    again = corrupt_visible_shape(depth, K, visible, always, torch.Generator().manual_seed(3))
    other = corrupt_visible_shape(depth, K, visible, always, torch.Generator().manual_seed(4))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])
    new_depth, new_K, new_mask = first
    assert new_depth.shape == depth.shape
    assert new_K.shape == K.shape
    assert new_mask.shape == visible.shape
    assert set(new_mask.unique().tolist()) <= {0.0, 1.0}
    assert (new_mask.flatten(1).sum(1) > 16).all()
    assert (new_depth[new_mask > 0] > 0).all()  # nothing behind the camera
    assert (new_depth[new_mask == 0] == 0).all()
    # The corruption really happens: depths, focal lengths and masks all differ from the truth somewhere.
    assert not torch.allclose(new_depth * visible, depth * new_mask)
    assert not torch.allclose(new_K[:, 0, 0], K[:, 0, 0])
    assert (new_mask != visible).any()
    # Principal point and the K's structure are untouched; fx = fy still.
    assert torch.equal(new_K[:, :2, 2], K[:, :2, 2])
    assert torch.equal(new_K[:, 0, 0], new_K[:, 1, 1])


def test_relief_error_is_about_the_mean_depth():
    """With only the relief term, the object's mean depth stays and its depth spread scales."""
    depth, K, visible = true_batch(batch=8)
    relief_only = ShapeAugmentation(
        probability=1.0,
        relief_log_range=0.5,
        shift_fraction=0.0,
        focal_log_std=0.0,
        smooth_noise=0.0,
        pixel_noise=0.0,
        blur_probability=0.0,
        max_mask_change=0,
        hole_probability=0.0,
    )
    new_depth, new_K, new_mask = corrupt_visible_shape(depth, K, visible, relief_only, torch.Generator().manual_seed(1))
    assert torch.equal(new_mask, visible)
    assert torch.equal(new_K, K)
    mean = lambda d: (d * visible).flatten(1).sum(1) / visible.flatten(1).sum(1)  # noqa: E731
    assert torch.allclose(mean(new_depth), mean(depth), atol=1e-5)
    spread = lambda d: ((d - mean(d)[:, None, None, None]).abs() * visible).flatten(1).amax(1)  # noqa: E731
    ratio = spread(new_depth) / spread(depth)
    assert ((ratio > 0.6) & (ratio < 1.66)).all()
    assert ratio.std() > 0.01  # each sample draws its own factor
