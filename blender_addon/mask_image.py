"""Object masks between Blender and the backend: pure Python and numpy (no bpy), so it is tested without Blender.

A Blender image's pixels are floats in [0, 1], `channels` per pixel (RGBA for a loaded PNG), the first row at the
BOTTOM. A mask on the wire is an image file of the photo's size, the first row at the TOP, white (or opaque) on
the object, which the backend reads by its brightness (`backend.object_mask.decode_mask_bytes`).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def pixels_to_mask(pixels, width: int, height: int, channels: int = 4) -> np.ndarray:
    """A Blender image's pixels → the mask as the backend reads it.

    Brightness is the mean of the colour channels; where the image has alpha, transparent pixels are background
    (painting with an erasing brush removes the object there as black paint does).

    Args:
        pixels: [height * width * channels] floats, Blender's order (the first row at the bottom).
    Returns:
        [height, width] uint8, the first row at the top, 255 on the object.
    """
    array = np.asarray(pixels, dtype=np.float32).reshape(height, width, channels)[::-1]
    grey = array[..., :3].mean(axis=-1) if channels >= 3 else array[..., 0]
    if channels in (2, 4):
        grey = grey * array[..., -1]
    return (np.clip(grey, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def grey_png(image: np.ndarray) -> bytes:
    """An 8-bit greyscale image [H, W] uint8 → the bytes of a PNG file (zlib only: Blender bundles no Pillow).

    Every row is stored unfiltered (filter type 0); a mask's long runs of 0 and 255 compress well without filters.
    See the PNG specification (https://www.w3.org/TR/png/) for the chunks: IHDR, IDAT, IEND.
    """
    image = np.ascontiguousarray(image, dtype=np.uint8)
    height, width = image.shape
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise ValueError(f"a PNG cannot be {width}×{height} pixels")
    rows = np.zeros((height, width + 1), dtype=np.uint8)  # a filter-type byte (0: none) before each row
    rows[:, 1:] = image
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit, greyscale, deflate, no interlace
    data = zlib.compress(rows.tobytes(), 6)
    return b"".join((PNG_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", data), _chunk(b"IEND", b"")))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
