"""Camera geometry: pixel rays, unprojection, normalisation into the unit ball, mask-aware resizing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from backend.model.geometry import Normalisation, normalise_points, pixel_rays, resize_coordinate_map, unproject_depth


def intrinsics(f: float, cx: float, cy: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor([[[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]]], dtype=dtype)


# --- pixel_rays ------------------------------------------------------------------------------------------------


def test_pixel_rays_are_hand_computed_without_half_pixel_offset():
    # H=2 rows, W=3 columns, so a swapped (row, column) convention changes the shape and the values.
    K = intrinsics(f=2.0, cx=1.5, cy=0.5)
    rays = pixel_rays(K, height=2, width=3)

    assert rays.shape == (1, 3, 2, 3)
    assert rays.dtype == torch.float64
    expected_x = torch.tensor([[-0.75, -0.25, 0.25], [-0.75, -0.25, 0.25]], dtype=torch.float64)  # (u - 1.5) / 2
    expected_y = torch.tensor([[-0.25, -0.25, -0.25], [0.25, 0.25, 0.25]], dtype=torch.float64)  # (v - 0.5) / 2
    torch.testing.assert_close(rays[0, 0], expected_x)
    torch.testing.assert_close(rays[0, 1], expected_y)
    torch.testing.assert_close(rays[0, 2], torch.ones(2, 3, dtype=torch.float64))
    # Pixel (u=2, v=0): column 2 of row 0.
    torch.testing.assert_close(rays[0, :, 0, 2], torch.tensor([0.25, -0.25, 1.0], dtype=torch.float64))


def test_pixel_rays_principal_point_pixel_is_the_optical_axis():
    K = intrinsics(f=10.0, cx=3.0, cy=1.0)
    rays = pixel_rays(K, height=4, width=5)
    torch.testing.assert_close(rays[0, :, 1, 3], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))


def test_pixel_rays_use_each_samples_own_intrinsics():
    K = torch.cat([intrinsics(1.0, 0.0, 0.0), intrinsics(4.0, 2.0, 1.0)])
    rays = pixel_rays(K, height=3, width=3)

    assert rays.shape == (2, 3, 3, 3)
    # Pixel (u=2, v=1) in each sample.
    torch.testing.assert_close(rays[0, :, 1, 2], torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(rays[1, :, 1, 2], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))


def test_pixel_rays_with_non_square_pixels_and_skew_free_k():
    K = torch.tensor([[[2.0, 0.0, 1.0], [0.0, 4.0, 2.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    rays = pixel_rays(K, height=3, width=4)
    # Pixel (u=3, v=0): ((3 - 1) / 2, (0 - 2) / 4, 1).
    torch.testing.assert_close(rays[0, :, 0, 3], torch.tensor([1.0, -0.5, 1.0], dtype=torch.float64))


# --- unproject_depth -------------------------------------------------------------------------------------------


def test_constant_depth_unprojects_to_constant_z():
    K = intrinsics(f=2.0, cx=1.5, cy=0.5)
    depth = torch.full((1, 1, 2, 3), 3.0, dtype=torch.float64)
    points = unproject_depth(depth, K)

    assert points.shape == (1, 3, 2, 3)
    torch.testing.assert_close(points[0, 2], torch.full((2, 3), 3.0, dtype=torch.float64))
    # x = d (u - cx) / f, y = d (v - cy) / f.
    torch.testing.assert_close(points[0, :, 1, 0], torch.tensor([-2.25, 0.75, 3.0], dtype=torch.float64))


def test_unprojection_scales_each_pixels_ray_by_its_own_depth():
    K = intrinsics(f=1.0, cx=0.0, cy=0.0)
    depth = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64)
    points = unproject_depth(depth, K)

    expected = torch.tensor(
        [
            [[0.0, 2.0], [0.0, 4.0]],  # x = d · u
            [[0.0, 0.0], [3.0, 4.0]],  # y = d · v
            [[1.0, 2.0], [3.0, 4.0]],  # z = d
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(points[0], expected)


def test_unprojection_reprojects_onto_the_pixel_grid():
    K = intrinsics(f=5.0, cx=2.0, cy=3.0)
    depth = torch.rand(1, 1, 6, 4, dtype=torch.float64) + 0.5
    points = unproject_depth(depth, K)
    projected = torch.einsum("ij,jhw->ihw", K[0], points[0])
    u = projected[0] / projected[2]
    v = projected[1] / projected[2]
    rows, cols = torch.meshgrid(torch.arange(6.0), torch.arange(4.0), indexing="ij")
    torch.testing.assert_close(u, cols.double())
    torch.testing.assert_close(v, rows.double())


# --- normalise_points ------------------------------------------------------------------------------------------


def test_normalise_points_hand_computed():
    # Valid points: centroid (1, 2, 3) ± (2, 0, 0) and ± (0, 1, 0), so the centroid is (1, 2, 3) and the largest
    # distance is 2. The fifth pixel is invalid and far away: it must not move the centroid or the scale.
    centroid = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    offsets = torch.tensor([[2.0, 0, 0], [-2.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]], dtype=torch.float64)
    points = torch.cat([centroid + offsets, torch.tensor([[100.0, 100.0, 100.0]], dtype=torch.float64)])
    points = points.T.reshape(1, 3, 1, 5)
    valid = torch.tensor([True, True, True, True, False]).reshape(1, 1, 1, 5)

    normalised, normalisation = normalise_points(points, valid)

    assert isinstance(normalisation, Normalisation)
    torch.testing.assert_close(normalisation.centroid, centroid[None])
    torch.testing.assert_close(normalisation.scale, torch.tensor([2.0], dtype=torch.float64))
    expected = torch.cat([offsets / 2, torch.zeros(1, 3, dtype=torch.float64)]).T.reshape(1, 3, 1, 5)
    torch.testing.assert_close(normalised, expected)


def random_valid_mask(batch: int, height: int, width: int) -> torch.Tensor:
    valid = torch.rand(batch, 1, height, width) > 0.4
    valid[:, :, 0, 0] = True  # never empty
    return valid


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.float32])
def test_normalise_points_properties_on_random_data(mask_dtype):
    points = torch.randn(3, 3, 7, 9, dtype=torch.float64) * torch.tensor([1.0, 4.0, 0.1]).view(1, 3, 1, 1).double()
    points = points + torch.tensor([5.0, -3.0, 10.0], dtype=torch.float64).view(1, 3, 1, 1)
    valid = random_valid_mask(3, 7, 9)

    normalised, normalisation = normalise_points(points, valid.to(mask_dtype))

    assert normalisation.centroid.shape == (3, 3)
    assert normalisation.scale.shape == (3,)
    for b in range(3):
        mask = valid[b, 0]
        inside = normalised[b][:, mask]  # [3, N]
        torch.testing.assert_close(inside.mean(dim=1), torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
        torch.testing.assert_close(inside.norm(dim=0).max(), torch.tensor(1.0, dtype=torch.float64))
        assert (normalised[b][:, ~mask] == 0).all()
        # The normalisation maps the normalised points back to camera coordinates on valid pixels.
        restored = normalised[b] * normalisation.scale[b] + normalisation.centroid[b][:, None, None]
        torch.testing.assert_close(restored[:, mask], points[b][:, mask])
        # And it is the hand-computable centroid / max distance of that sample's valid points.
        raw = points[b][:, mask]
        torch.testing.assert_close(normalisation.centroid[b], raw.mean(dim=1))
        torch.testing.assert_close(normalisation.scale[b], (raw - raw.mean(dim=1, keepdim=True)).norm(dim=0).max())


def test_empty_mask_falls_back_to_all_pixels_and_stays_finite():
    points = torch.randn(2, 3, 4, 5, dtype=torch.float64) + 2.0
    valid = torch.zeros(2, 1, 4, 5, dtype=torch.bool)
    valid[1, :, 1:3, 1:4] = True  # sample 1 has a real mask, sample 0 has none

    normalised, normalisation = normalise_points(points, valid)

    assert torch.isfinite(normalised).all()
    assert torch.isfinite(normalisation.centroid).all()
    assert torch.isfinite(normalisation.scale).all()
    # Sample 0 uses every pixel.
    everything = points[0].reshape(3, -1)
    torch.testing.assert_close(normalisation.centroid[0], everything.mean(dim=1))
    expected_scale = (everything - everything.mean(dim=1, keepdim=True)).norm(dim=0).max()
    torch.testing.assert_close(normalisation.scale[0], expected_scale)
    torch.testing.assert_close(normalised[0].norm(dim=0).max(), torch.tensor(1.0, dtype=torch.float64))
    # Sample 1 is unaffected by sample 0's fallback: zero outside its own mask.
    assert (normalised[1][:, ~valid[1, 0]] == 0).all()
    torch.testing.assert_close(normalisation.centroid[1], points[1][:, valid[1, 0]].mean(dim=1))


def test_single_point_shape_uses_the_minimum_scale_and_stays_finite():
    points = torch.full((1, 3, 2, 2), 7.0)
    valid = torch.ones(1, 1, 2, 2, dtype=torch.bool)

    normalised, normalisation = normalise_points(points, valid, eps=1e-3)

    torch.testing.assert_close(normalisation.scale, torch.tensor([1e-3]))
    torch.testing.assert_close(normalised, torch.zeros_like(normalised))


def test_gradients_are_finite_when_a_point_coincides_with_the_centroid():
    # The middle point (1, 1, 1) is exactly the centroid of the three valid points: its distance is 0, where the
    # derivative of a plain sqrt is infinite.
    points = torch.tensor(
        [[0.0, 1.0, 2.0, 9.0], [1.0, 1.0, 1.0, 9.0], [1.0, 1.0, 1.0, 9.0]], dtype=torch.float64
    ).reshape(1, 3, 1, 4)
    points.requires_grad_(True)
    valid = torch.tensor([True, True, True, False]).reshape(1, 1, 1, 4)

    normalised, normalisation = normalise_points(points, valid)
    weights = torch.randn_like(normalised)
    ((normalised * weights).sum() + normalisation.scale.sum() + normalisation.centroid.sum()).backward()

    assert points.grad is not None
    assert torch.isfinite(points.grad).all()
    torch.testing.assert_close(normalised[0, :, 0, 1], torch.zeros(3, dtype=torch.float64))
    # The invalid pixel takes no part in the result.
    torch.testing.assert_close(points.grad[0, :, 0, 3], torch.zeros(3, dtype=torch.float64))


def test_gradients_are_finite_for_a_fully_degenerate_shape():
    points = torch.ones(1, 3, 3, 3, requires_grad=True)
    normalised, normalisation = normalise_points(points, torch.ones(1, 1, 3, 3))
    (normalised.sum() + normalisation.scale.sum()).backward()
    assert torch.isfinite(points.grad).all()


# --- resize_coordinate_map -------------------------------------------------------------------------------------


def test_resize_at_the_same_size_returns_the_input_unchanged():
    points = torch.randn(2, 3, 8, 8)
    mask = (torch.rand(2, 1, 8, 8) > 0.5).float()
    resized = resize_coordinate_map(points * mask, mask, 8)
    assert resized.shape == points.shape
    assert torch.equal(resized, points * mask)


def blob_mask(size: int) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = (size - 1) / 2
    return (((rows - centre) ** 2 + (cols - centre * 0.7) ** 2) < (size / 3) ** 2).float()[None, None]


@pytest.mark.parametrize(("source", "target"), [(16, 8), (16, 5), (20, 7), (6, 13)])
def test_resize_keeps_a_constant_vector_inside_the_mask(source, target):
    c = torch.tensor([0.5, -2.0, 3.0]).view(1, 3, 1, 1)
    mask = blob_mask(source)
    points = c * mask  # zero in the background, as the function expects

    resized = resize_coordinate_map(points, mask, target)

    assert resized.shape == (1, 3, target, target)
    weight = F.interpolate(mask, size=(target, target), mode="bilinear", align_corners=False)
    inside = weight[0, 0] > 1e-6
    outside = weight[0, 0] == 0
    assert inside.any()
    assert outside.any()
    torch.testing.assert_close(resized[0][:, inside], c.view(3, 1).expand(3, int(inside.sum())))
    assert (resized[0][:, outside] == 0).all()
    # The fixture is a real test: a plain bilinear resize does pull some boundary pixels toward 0.
    naive = F.interpolate(points, size=(target, target), mode="bilinear", align_corners=False)
    assert not torch.allclose(naive[0][:, inside], c.view(3, 1).expand(3, int(inside.sum())))


def test_resize_with_soft_mask_weights_points_by_the_mask():
    # Column 0 holds a with mask 1, column 1 holds b with mask 0.25. Upsampling 2 → 4 (align_corners=False) reads
    # source columns -0.25, 0.25, 0.75, 1.25: column 1 mixes a and b by 0.75·1 : 0.25·0.25 = 12 : 1 and column 2
    # by 0.25·1 : 0.75·0.25 = 4 : 3, i.e. by bilinear weight times mask weight, normalised.
    a = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).view(3, 1)
    b = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).view(3, 1)
    mask = torch.tensor([[1.0, 0.25], [1.0, 0.25]], dtype=torch.float64)[None, None]
    points = torch.stack([a.expand(3, 2), b.expand(3, 2)], dim=-1)[None]  # [1, 3, 2, 2]

    resized = resize_coordinate_map(points, mask, 4)

    expected_columns = torch.cat([a, (12 * a + b) / 13, (4 * a + 3 * b) / 7, b], dim=1)  # [3, 4]
    for row in range(4):
        torch.testing.assert_close(resized[0, :, row, :], expected_columns)
