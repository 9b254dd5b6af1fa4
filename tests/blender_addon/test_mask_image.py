"""Masks between Blender's pixels and the backend (blender_addon/mask_image.py), without Blender: the PNG it writes is
read back by Pillow and by the backend's own mask reader."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from backend.object_mask import decode_mask_bytes
from blender_addon.mask_image import grey_png, pixels_to_mask


def blender_pixels(rgba_top_down: np.ndarray) -> np.ndarray:
    """[H, W, 4] floats, first row at the top → Blender's flat pixel list (first row at the bottom)."""
    return rgba_top_down[::-1].ravel()


def test_the_png_reads_back_exactly():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(37, 53), dtype=np.uint8)
    png = grey_png(image)
    with Image.open(io.BytesIO(png)) as read:
        assert (read.format, read.mode, read.size) == ("PNG", "L", (53, 37))
        np.testing.assert_array_equal(np.asarray(read), image)


def test_pixels_are_flipped_to_the_top_row_first():
    height, width = 6, 4
    rgba = np.ones((height, width, 4), np.float32)
    rgba[:2, :, :3] = 0.0  # painted black along the TOP of the picture
    mask = pixels_to_mask(blender_pixels(rgba), width, height)
    assert mask.dtype == np.uint8
    assert (mask[:2] == 0).all()
    assert (mask[2:] == 255).all()


def test_transparent_pixels_are_background_and_grey_stays_grey():
    rgba = np.ones((2, 3, 4), np.float32)
    rgba[0, 0, 3] = 0.0  # erased with an alpha brush
    rgba[1, 2, :3] = 0.5  # a soft brush edge
    mask = pixels_to_mask(blender_pixels(rgba), 3, 2)
    assert mask[0, 0] == 0
    assert mask[1, 2] == 128
    assert mask[0, 1] == 255


@pytest.mark.parametrize("channels", [1, 3])
def test_images_without_alpha(channels):
    pixels = np.zeros((4, 5, channels), np.float32)
    pixels[1:3, 1:4] = 1.0
    mask = pixels_to_mask(pixels[::-1].ravel(), 5, 4, channels)
    assert mask.sum() == 6 * 255


def test_the_backend_reads_what_the_add_on_sends():
    rgba = np.zeros((40, 60, 4), np.float32)
    rgba[..., 3] = 1.0
    rgba[10:30, 5:50, :3] = 1.0
    png = grey_png(pixels_to_mask(blender_pixels(rgba), 60, 40))
    mask = decode_mask_bytes(png, (60, 40))
    np.testing.assert_array_equal(mask >= 0.5, rgba[..., 0] >= 0.5)
