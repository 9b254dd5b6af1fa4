"""Photo decoding and cropping: every accepted format, EXIF orientation, one-line errors, bounded size, crops."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import backend.preprocess as preprocess
from backend.model.config import PreprocessConfig
from backend.preprocess import (
    MIN_SIDE,
    SUPPORTED_SUFFIXES,
    Crop,
    ImageError,
    Photo,
    crop_photo,
    decode_photo,
    full_frame_box,
    load_photo,
    mask_box,
    square_box_around,
)

CONFIG = PreprocessConfig()


def colour_pattern(width: int = 48, height: int = 40) -> np.ndarray:
    """uint8 [H, W, 3]: four flat quadrants of distinct colours (survives JPEG well)."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[: height // 2, : width // 2] = (255, 0, 0)
    image[: height // 2, width // 2 :] = (0, 255, 0)
    image[height // 2 :, : width // 2] = (0, 0, 255)
    image[height // 2 :, width // 2 :] = (255, 255, 0)
    return image


def save(tmp_path: Path, name: str, image: Image.Image, **params) -> Path:
    path = tmp_path / name
    image.save(path, **params)
    return path


def assert_rgb_photo(photo: Photo, width: int, height: int) -> None:
    assert isinstance(photo, Photo)
    assert photo.rgb.dtype == np.float32
    assert photo.rgb.shape == (height, width, 3)
    assert photo.size == (width, height)
    assert photo.rgb.min() >= 0.0
    assert photo.rgb.max() <= 1.0


# ----------------------------------------------------------------------------------------------------------------------
# Formats


def test_jpeg_decodes_to_approximate_colours(tmp_path):
    pattern = colour_pattern()
    path = save(tmp_path, "photo.jpg", Image.fromarray(pattern), quality=95)
    photo = load_photo(path)
    assert_rgb_photo(photo, 48, 40)
    assert photo.alpha is None
    assert photo.source == str(path)
    # Compare away from the quadrant edges (JPEG ringing and chroma subsampling blur them).
    for rows, cols in [(slice(2, 16), slice(2, 20)), (slice(24, 38), slice(28, 46))]:
        expected = pattern[rows, cols].astype(np.float32) / 255
        np.testing.assert_allclose(photo.rgb[rows, cols], expected, atol=0.08)


def test_png_8bit_rgb_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    photo = load_photo(save(tmp_path, "rgb.png", Image.fromarray(pixels)))
    assert_rgb_photo(photo, 50, 40)
    assert photo.alpha is None
    np.testing.assert_array_equal(photo.rgb, pixels.astype(np.float32) / 255)


def test_png_16bit_greyscale_scales_by_the_type_range(tmp_path):
    grey = np.full((40, 40), 1000, dtype=np.uint16)
    grey[:10] = 65535
    grey[10:20] = 32768
    grey[20:30] = 0
    image = Image.fromarray(grey)
    assert image.mode == "I;16"
    photo = load_photo(save(tmp_path, "grey16.png", image))
    assert_rgb_photo(photo, 40, 40)
    assert photo.alpha is None
    np.testing.assert_allclose(photo.rgb[:10], 1.0)
    np.testing.assert_allclose(photo.rgb[10:20], 32768 / 65535, atol=1e-4)
    np.testing.assert_allclose(photo.rgb[20:30], 0.0)
    np.testing.assert_allclose(photo.rgb[30:], 1000 / 65535, atol=1e-5)


def test_png_16bit_greyscale_is_not_normalised_by_its_own_maximum(tmp_path):
    # A dark 16-bit image (maximum 4000, also above 255) must stay dark.
    grey = np.full((40, 40), 4000, dtype=np.uint16)
    grey[:, :20] = 200
    photo = load_photo(save(tmp_path, "dark16.png", Image.fromarray(grey)))
    np.testing.assert_allclose(photo.rgb[:, 20:], 4000 / 65535, atol=1e-5)
    np.testing.assert_allclose(photo.rgb[:, :20], 200 / 65535, atol=1e-5)


def test_palette_png_without_transparency_has_no_alpha(tmp_path):
    image = Image.fromarray(colour_pattern()).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    assert image.mode == "P"
    assert "transparency" not in image.info
    path = save(tmp_path, "palette.png", image)
    photo = load_photo(path)
    assert_rgb_photo(photo, 48, 40)
    assert photo.alpha is None
    np.testing.assert_array_equal(photo.rgb, colour_pattern().astype(np.float32) / 255)


def test_palette_png_with_a_transparent_index_has_alpha(tmp_path):
    indices = np.zeros((40, 48), dtype=np.uint8)
    indices[:, 24:] = 1
    image = Image.fromarray(indices, mode="P")
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * (254 * 3))
    path = save(tmp_path, "palette_t.png", image, transparency=0)
    assert Image.open(path).mode == "P"
    photo = load_photo(path)
    assert_rgb_photo(photo, 48, 40)
    assert photo.alpha is not None
    assert photo.alpha.shape == (40, 48)
    assert photo.alpha.dtype == np.float32
    np.testing.assert_array_equal(photo.alpha[:, :24], 0.0)
    np.testing.assert_array_equal(photo.alpha[:, 24:], 1.0)
    np.testing.assert_array_equal(photo.rgb[:, 24:], np.broadcast_to([0.0, 0.0, 1.0], (40, 24, 3)))


def test_rgba_png_with_real_alpha_keeps_it(tmp_path):
    rgba = np.zeros((40, 48, 4), dtype=np.uint8)
    rgba[..., :3] = colour_pattern()
    rgba[..., 3] = 255
    rgba[:, :10, 3] = 0
    rgba[:, 10:20, 3] = 128
    photo = load_photo(save(tmp_path, "rgba.png", Image.fromarray(rgba)))
    assert_rgb_photo(photo, 48, 40)
    assert photo.alpha is not None
    assert photo.alpha.shape == (40, 48)
    assert photo.alpha.dtype == np.float32
    np.testing.assert_array_equal(photo.alpha, rgba[..., 3].astype(np.float32) / 255)
    # The colour is the file's, not premultiplied or composited at load time.
    np.testing.assert_array_equal(photo.rgb, rgba[..., :3].astype(np.float32) / 255)


def test_fully_opaque_rgba_png_has_no_alpha(tmp_path):
    rgba = np.full((40, 48, 4), 255, dtype=np.uint8)
    rgba[..., :3] = colour_pattern()
    photo = load_photo(save(tmp_path, "opaque.png", Image.fromarray(rgba)))
    assert_rgb_photo(photo, 48, 40)
    assert photo.alpha is None
    np.testing.assert_array_equal(photo.rgb, colour_pattern().astype(np.float32) / 255)


def test_rgb_png_with_a_transparent_colour_key_has_alpha(tmp_path):
    pixels = colour_pattern()
    pixels[:, :10] = 0
    path = save(tmp_path, "rgb_trns.png", Image.fromarray(pixels), transparency=(0, 0, 0))
    assert Image.open(path).info.get("transparency") == (0, 0, 0)
    photo = load_photo(path)
    assert photo.alpha is not None
    np.testing.assert_array_equal(photo.alpha[:, :10], 0.0)
    np.testing.assert_array_equal(photo.alpha[:, 10:], 1.0)


def test_greyscale_l_png(tmp_path):
    grey = np.tile(np.arange(0, 250, 5, dtype=np.uint8), (40, 1))
    photo = load_photo(save(tmp_path, "grey.png", Image.fromarray(grey, mode="L")))
    assert_rgb_photo(photo, 50, 40)
    assert photo.alpha is None
    expected = grey.astype(np.float32) / 255
    for channel in range(3):
        np.testing.assert_array_equal(photo.rgb[..., channel], expected)


def test_greyscale_la_png_keeps_alpha(tmp_path):
    la = np.zeros((40, 40, 2), dtype=np.uint8)
    la[..., 0] = 100
    la[..., 1] = 255
    la[:20, :, 1] = 0
    photo = load_photo(save(tmp_path, "la.png", Image.fromarray(la, mode="LA")))
    assert_rgb_photo(photo, 40, 40)
    np.testing.assert_array_equal(photo.rgb, np.full((40, 40, 3), 100 / 255, dtype=np.float32))
    assert photo.alpha is not None
    np.testing.assert_array_equal(photo.alpha[:20], 0.0)
    np.testing.assert_array_equal(photo.alpha[20:], 1.0)


@pytest.mark.parametrize(
    ("name", "params"),
    [("lossless.webp", {"lossless": True}), ("photo.tif", {}), ("photo.tiff", {}), ("photo.bmp", {})],
)
def test_lossless_formats_decode_exactly(tmp_path, name, params):
    assert Path(name).suffix in SUPPORTED_SUFFIXES
    pattern = colour_pattern()
    pattern[5, 7] = (12, 34, 56)
    photo = load_photo(save(tmp_path, name, Image.fromarray(pattern), **params))
    assert_rgb_photo(photo, 48, 40)
    assert photo.alpha is None
    np.testing.assert_array_equal(photo.rgb, pattern.astype(np.float32) / 255)


def test_lossy_webp_decodes_to_approximate_colours(tmp_path):
    pattern = colour_pattern()
    photo = load_photo(save(tmp_path, "lossy.webp", Image.fromarray(pattern), quality=95))
    assert_rgb_photo(photo, 48, 40)
    np.testing.assert_allclose(photo.rgb[4:16, 4:20], pattern[4:16, 4:20].astype(np.float32) / 255, atol=0.1)
    np.testing.assert_allclose(photo.rgb[24:36, 28:44], pattern[24:36, 28:44].astype(np.float32) / 255, atol=0.1)


def test_decode_photo_accepts_bytes(tmp_path):
    path = save(tmp_path, "rgb.png", Image.fromarray(colour_pattern()))
    photo = decode_photo(path.read_bytes(), "upload")
    assert photo.source == "upload"
    np.testing.assert_array_equal(photo.rgb, colour_pattern().astype(np.float32) / 255)


# ----------------------------------------------------------------------------------------------------------------------
# EXIF orientation


def test_exif_orientation_is_applied(tmp_path):
    # Stored 64 wide × 40 high, grey, with a red top-left corner. Orientation 6: display rotated 90° clockwise,
    # so the display is 40 wide × 64 high and the stored top-left corner shows at the top right.
    stored = np.full((40, 64, 3), 128, dtype=np.uint8)
    stored[:12, :12] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path, "rotated.jpg", Image.fromarray(stored), exif=exif, quality=95)
    with Image.open(path) as raw:
        assert raw.size == (64, 40)
    photo = load_photo(path)
    assert photo.size == (40, 64)
    assert photo.rgb.shape == (64, 40, 3)
    red = np.array([1.0, 0.0, 0.0])
    grey = np.array([128 / 255] * 3)
    np.testing.assert_allclose(photo.rgb[2:10, 30:38].mean(axis=(0, 1)), red, atol=0.08)  # top right
    for corner in (photo.rgb[2:10, 2:10], photo.rgb[54:62, 2:10], photo.rgb[54:62, 30:38]):
        np.testing.assert_allclose(corner.mean(axis=(0, 1)), grey, atol=0.08)


# ----------------------------------------------------------------------------------------------------------------------
# Bad inputs: ImageError, message starts with the file and says why, one line


def assert_one_line_error(error: pytest.ExceptionInfo, path: Path | str, *words: str) -> str:
    message = str(error.value)
    assert message.startswith(str(path)), message
    assert "\n" not in message, message
    assert "\r" not in message, message
    assert len(message) > len(str(path)) + 10, message  # there is a reason after the path
    lowered = message.lower()
    assert any(word in lowered for word in words), message
    return message


def test_truncated_jpeg(tmp_path):
    rng = np.random.default_rng(1)
    path = save(tmp_path, "whole.jpg", Image.fromarray(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)))
    data = path.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as error:
        load_photo(cut)
    assert_one_line_error(error, cut, "truncated", "damaged")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError) as error:
        load_photo(path)
    assert_one_line_error(error, path, "empty", "0 bytes")


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are not the pixels you are looking for\n" * 20)
    with pytest.raises(ImageError) as error:
        load_photo(path)
    assert_one_line_error(error, path, "not an image")


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "photo.jpg"
    with pytest.raises(ImageError) as error:
        load_photo(path)
    assert_one_line_error(error, path, "no such file")


def test_too_small_image(tmp_path):
    assert MIN_SIDE > 10
    path = save(tmp_path, "tiny.png", Image.fromarray(colour_pattern(10, 10)))
    with pytest.raises(ImageError) as error:
        load_photo(path)
    message = assert_one_line_error(error, path, "too small")
    assert str(MIN_SIDE) in message


def test_thin_image_is_too_small_on_its_short_side(tmp_path):
    path = save(tmp_path, "strip.png", Image.fromarray(colour_pattern(400, MIN_SIDE - 1)))
    with pytest.raises(ImageError) as error:
        load_photo(path)
    assert_one_line_error(error, path, "too small")
    # One pixel more is accepted.
    assert load_photo(save(tmp_path, "ok.png", Image.fromarray(colour_pattern(400, MIN_SIDE)))).size == (400, MIN_SIDE)


def test_gif_is_rejected_naming_the_supported_formats(tmp_path):
    path = save(tmp_path, "anim.gif", Image.fromarray(colour_pattern(64, 64)))
    with Image.open(path) as image:
        assert image.format == "GIF"
    with pytest.raises(ImageError) as error:
        load_photo(path)
    message = assert_one_line_error(error, path, "not supported")
    assert "GIF" in message
    for name in ("JPEG", "PNG", "WebP", "TIFF", "BMP"):
        assert name in message


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_huge_png(path: Path, side: int = 20000) -> None:
    """A valid 1-bit greyscale PNG of side × side pixels, written without holding the image in memory."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(side)]
    parts.append(compressor.flush())
    idat = b"".join(parts)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def test_huge_png_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    write_huge_png(path)
    assert path.stat().st_size < 1_000_000
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # restored afterwards; decode_photo sets its own
    with Image.open(path) as image:  # the file is a valid PNG (opening reads only the header)
        assert image.size == (20000, 20000)
        assert image.mode == "1"
    with pytest.raises(ImageError) as error:
        load_photo(path)
    assert_one_line_error(error, path, "too large", "limit")


def test_a_100_mp_png_is_refused_with_the_png_limit(tmp_path):
    """Pillow refuses it at open (64-128 MP warns) before the format is known: the message still names the limit
    of PNG images (24 MP), not the JPEG one (64 MP) that Pillow was given."""
    path = tmp_path / "100mp.png"
    write_huge_png(path, side=10_000)
    with pytest.raises(ImageError) as error:
        load_photo(path)
    assert_one_line_error(error, path, "too large")
    assert "(100 MP, the limit is 24 MP for PNG, WebP, TIFF and BMP images)" in str(error.value)


def test_decode_empty_bytes():
    with pytest.raises(ImageError) as error:
        decode_photo(b"", "net")
    assert_one_line_error(error, "net", "empty")


def test_decompression_bomb_warning_is_an_error(tmp_path, monkeypatch):
    # Restore Pillow's global limit afterwards: decode_photo sets it from the module constant.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    monkeypatch.setattr(preprocess, "MAX_PIXELS", 50_000)
    path = save(tmp_path, "bomb.png", Image.fromarray(colour_pattern(300, 300)))  # 90 000 pixels: warn, not error
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageError) as error:
            load_photo(path)
    assert Image.MAX_IMAGE_PIXELS == 50_000  # the module constant is what Pillow checks against
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    # Raised by Pillow's warning itself, not by the explicit size check that follows the open.
    assert isinstance(error.value.__cause__, Image.DecompressionBombWarning)
    assert_one_line_error(error, path, "too large")


def test_size_limit_follows_the_module_constant(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    path = save(tmp_path, "ok.png", Image.fromarray(colour_pattern(300, 300)))
    monkeypatch.setattr(preprocess, "MAX_PIXELS", 90_000)
    assert load_photo(path).size == (300, 300)  # exactly at the limit is accepted
    monkeypatch.setattr(preprocess, "MAX_PIXELS", 20_000)
    with pytest.raises(ImageError) as error:  # beyond twice the limit: Pillow's error
        load_photo(path)
    assert_one_line_error(error, path, "too large")


def gradient(width: int, height: int) -> np.ndarray:
    """uint8 [H, W, 3]: red rises left to right, green top to bottom (smooth: survives JPEG and resampling)."""
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return np.stack([x, y, np.full_like(x, 90)], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("name", ["large.jpg", "large.png"])
def test_a_large_photo_is_downscaled_on_decoding_and_keeps_its_file_scale(tmp_path, name):
    path = save(tmp_path, name, Image.fromarray(gradient(5000, 3000)), **({"quality": 95} if "jpg" in name else {}))
    photo = load_photo(path)
    assert photo.size == (preprocess.WORKING_MAX_SIDE, round(3000 * preprocess.WORKING_MAX_SIDE / 5000))
    assert photo.size_in_file == (5000, 3000)
    assert photo.scale == pytest.approx(preprocess.WORKING_MAX_SIDE / 5000)
    assert photo.to_file_pixels(photo.from_file_pixels(1234.5)) == pytest.approx(1234.5)
    # The same picture, smaller: a file pixel's colour is found at its place in the working image.
    for file_x, file_y in ((500, 300), (2500, 1500), (4500, 2700)):
        x, y = round(photo.from_file_pixels(file_x)), round(photo.from_file_pixels(file_y))
        expected = gradient(5000, 3000)[file_y, file_x] / 255.0
        np.testing.assert_allclose(photo.rgb[y, x], expected, atol=0.03)


def test_a_small_photo_keeps_its_pixels():
    data = Image.fromarray(gradient(640, 480))
    buffer = io.BytesIO()
    data.save(buffer, "PNG")
    photo = decode_photo(buffer.getvalue())
    assert (photo.size, photo.size_in_file, photo.scale) == ((640, 480), (640, 480), 1.0)


def test_a_large_turned_jpeg_reports_its_displayed_file_size(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned by a quarter: 3000 stored wide shows 3000 high
    path = save(tmp_path, "turned.jpg", Image.fromarray(gradient(3000, 2000)), exif=exif, quality=90)
    photo = load_photo(path)
    assert photo.size_in_file == (2000, 3000)
    assert photo.size == (round(2000 * preprocess.WORKING_MAX_SIDE / 3000), preprocess.WORKING_MAX_SIDE)


def test_a_jpeg_cut_short_of_its_claimed_64_megapixels_is_refused_before_decoding(tmp_path):
    # A 10 kB JPEG whose header says 7999 × 7999 (its scan cut short, then closed): libjpeg would fill the missing
    # rows with grey at the claimed size (192 MB as bytes, 768 MB as floats). It is refused from its header and
    # size. Measured in a fresh process, by its peak resident memory.
    buffer = io.BytesIO()
    Image.new("L", (7999, 7999), 128).save(buffer, "JPEG", quality=1)
    path = tmp_path / "claims-64mp.jpg"
    path.write_bytes(buffer.getvalue()[:10_000] + b"\xff\xd9")
    script = (
        "import json, resource, sys\n"
        "from backend.preprocess import ImageError, load_photo\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    load_photo(sys.argv[1]); error = ''\n"
        "except ImageError as caught:\n"
        "    error = str(caught)\n"
        "rise = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024\n"
        "print(json.dumps({'error': error, 'peak_rise_mb': rise}))\n"
    )
    root = Path(__file__).resolve().parents[2]
    output = subprocess.run([sys.executable, "-c", script, str(path)], cwd=root, capture_output=True, text=True)
    assert output.returncode == 0, output.stderr
    measured = json.loads(output.stdout)
    assert "too few for the 7999×7999 pixels its header claims" in measured["error"]
    assert measured["peak_rise_mb"] < 20, measured  # 1.3 GB before decoding at a reduced scale


def test_a_png_beyond_the_full_decode_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(preprocess, "MAX_FULL_DECODE_PIXELS", 100_000)
    path = save(tmp_path, "big.png", Image.fromarray(colour_pattern(400, 300)))
    with pytest.raises(ImageError) as error:
        load_photo(path)
    assert "PNG" in assert_one_line_error(error, path, "limit")
    # A JPEG of the same size is decoded at a reduced scale instead, so it is accepted.
    assert load_photo(save(tmp_path, "big.jpg", Image.fromarray(colour_pattern(400, 300)))).size == (400, 300)


def test_nan_pixels_are_a_clear_error_not_an_empty_mesh(tmp_path):
    pixels = np.full((64, 64), 0.5, dtype=np.float32)
    pixels[10, 10] = np.nan
    path = save(tmp_path, "nan.tif", Image.fromarray(pixels, mode="F"))
    with pytest.raises(ImageError) as error:
        load_photo(path)
    assert_one_line_error(error, path, "nan")


# ----------------------------------------------------------------------------------------------------------------------
# Geometry helpers


def test_mask_box_is_exclusive_at_the_far_edges():
    mask = np.zeros((20, 30), dtype=np.float32)
    mask[5:10, 3:8] = 1.0
    mask[12, 3] = 0.5  # at the threshold: not part of the mask
    assert mask_box(mask) == (3.0, 5.0, 8.0, 10.0)
    assert mask_box(mask, threshold=0.4) == (3.0, 5.0, 8.0, 13.0)


def test_mask_box_of_an_empty_mask_is_none():
    assert mask_box(np.zeros((20, 30), dtype=np.float32)) is None
    assert mask_box(np.full((20, 30), 0.5, dtype=np.float32)) is None


def test_mask_box_covering_everything():
    assert mask_box(np.ones((20, 30), dtype=bool)) == (0.0, 0.0, 30.0, 20.0)


def test_square_box_around_keeps_the_centre():
    box = square_box_around((10.0, 20.0, 30.0, 60.0), 1.2)
    x0, y0, x1, y1 = box
    assert x1 - x0 == pytest.approx(48.0)
    assert y1 - y0 == pytest.approx(48.0)
    assert (x0 + x1) / 2 == pytest.approx(20.0)
    assert (y0 + y1) / 2 == pytest.approx(40.0)
    assert box == pytest.approx((-4.0, 16.0, 44.0, 64.0))
    wide = square_box_around((0.0, 0.0, 100.0, 10.0), 1.0)
    assert wide == pytest.approx((0.0, -45.0, 100.0, 55.0))


def test_full_frame_box():
    landscape = Photo(rgb=np.zeros((400, 600, 3), dtype=np.float32), alpha=None, source="x")
    assert full_frame_box(landscape) == (0, -100, 600, 500)
    portrait = Photo(rgb=np.zeros((600, 400, 3), dtype=np.float32), alpha=None, source="x")
    assert full_frame_box(portrait) == (-100, 0, 500, 600)


# ----------------------------------------------------------------------------------------------------------------------
# Crops


def gradient_photo(width: int = 600, height: int = 400) -> Photo:
    """Horizontal gradient 0 → 0.8 (never white), identical in every row and channel."""
    ramp = (np.arange(width, dtype=np.float32) + 0.5) / width * 0.8
    rgb = np.repeat(np.broadcast_to(ramp, (height, width))[..., None], 3, axis=2).astype(np.float32)
    return Photo(rgb=rgb, alpha=None, source="gradient")


def test_full_frame_crop_pads_with_the_background():
    photo = gradient_photo()
    box = full_frame_box(photo)
    crop = crop_photo(photo, box, CONFIG)
    assert isinstance(crop, Crop)
    assert crop.rgb.shape == (224, 224, 3)
    assert crop.rgb.dtype == np.float32
    assert crop.alpha is None
    assert crop.box == box
    # The photo spans rows 224·100/600 ≈ 37.3 to 224·500/600 ≈ 186.7; bilinear blends one row at each edge.
    np.testing.assert_allclose(crop.rgb[:36], 1.0, atol=1e-5)
    np.testing.assert_allclose(crop.rgb[189:], 1.0, atol=1e-5)
    middle = crop.rgb[40:185]
    assert middle.max() <= 0.81
    row = crop.rgb[112, :, 0]
    assert np.all(np.diff(row) > 0)
    expected = (np.arange(224) + 0.5) / 224 * 0.8
    np.testing.assert_allclose(row[2:-2], expected[2:-2], atol=0.01)
    # Every row of the photo is the same, so is every row of the crop's middle.
    np.testing.assert_allclose(middle, np.broadcast_to(crop.rgb[112], middle.shape), atol=1e-5)


def test_background_colour_comes_from_the_config():
    config = PreprocessConfig(background_rgb=(0.0, 0.5, 1.0))
    crop = crop_photo(gradient_photo(), (0.0, -100.0, 600.0, 500.0), config)
    np.testing.assert_allclose(crop.rgb[:30].reshape(-1, 3), np.broadcast_to([0.0, 0.5, 1.0], (30 * 224, 3)), atol=1e-5)


def test_alpha_photo_is_composited_over_the_background():
    rgb = np.zeros((224, 224, 3), dtype=np.float32)  # black everywhere
    alpha = np.ones((224, 224), dtype=np.float32)
    alpha[:, :100] = 0.0
    alpha[:, 150:] = 0.5
    photo = Photo(rgb=rgb, alpha=alpha, source="cutout")
    crop = crop_photo(photo, (0.0, 0.0, 224.0, 224.0), CONFIG)
    assert crop.alpha is not None
    assert crop.alpha.shape == (224, 224)
    np.testing.assert_allclose(crop.rgb[:, 2:98], 1.0, atol=1e-5)  # hidden black → white background
    np.testing.assert_allclose(crop.rgb[:, 102:148], 0.0, atol=1e-5)  # opaque black stays black
    np.testing.assert_allclose(crop.rgb[:, 152:222], 0.5, atol=1e-5)  # half over white
    np.testing.assert_allclose(crop.alpha[:, 2:98], 0.0, atol=1e-5)
    np.testing.assert_allclose(crop.alpha[:, 102:148], 1.0, atol=1e-5)
    np.testing.assert_allclose(crop.alpha[:, 152:222], 0.5, atol=1e-5)


def test_alpha_is_zero_outside_the_photo():
    rgb = np.zeros((200, 300, 3), dtype=np.float32)
    photo = Photo(rgb=rgb, alpha=np.ones((200, 300), dtype=np.float32), source="cutout")
    crop = crop_photo(photo, full_frame_box(photo), CONFIG)
    assert crop.alpha is not None
    np.testing.assert_allclose(crop.alpha[:36], 0.0, atol=1e-5)
    np.testing.assert_allclose(crop.rgb[:36], 1.0, atol=1e-5)
    np.testing.assert_allclose(crop.alpha[60:160], 1.0, atol=1e-5)
    np.testing.assert_allclose(crop.rgb[60:160], 0.0, atol=1e-5)


def test_large_photo_is_box_averaged_when_shrunk():
    rng = np.random.default_rng(2)
    rgb = rng.random((1200, 1800, 3), dtype=np.float32)
    photo = Photo(rgb=rgb, alpha=None, source="noise")
    box = (0.0, 0.0, 1200.0, 1200.0)  # 1200 → 224: more than 5× smaller
    crop = crop_photo(photo, box, CONFIG)
    assert crop.rgb.shape == (224, 224, 3)
    source_std = float(rgb[:, :1200].std())
    # Point-sampled bilinear would keep about 2/3 of the noise; a box average over ≥ 2×2 keeps at most half.
    assert float(crop.rgb.std()) < 0.4 * source_std
    assert float(crop.rgb.mean()) == pytest.approx(0.5, abs=0.02)


def test_crop_scale_is_input_pixels_per_photo_pixel():
    photo = gradient_photo()
    crop = crop_photo(photo, (100.0, -24.0, 548.0, 424.0), CONFIG)
    assert crop.scale == pytest.approx(224 / 448)
    assert crop_photo(photo, full_frame_box(photo), CONFIG).scale == pytest.approx(224 / 600)
    assert crop_photo(photo, (10.0, 10.0, 122.0, 122.0), CONFIG).scale == pytest.approx(2.0)


def test_crop_of_a_window_shows_that_window():
    # A window inside the gradient: the crop spans the gradient's values at its left and right edges.
    photo = gradient_photo()
    crop = crop_photo(photo, (300.0, 50.0, 450.0, 200.0), CONFIG)
    row = crop.rgb[112, :, 0]
    assert row[1] == pytest.approx(300 / 600 * 0.8, abs=0.01)
    assert row[-2] == pytest.approx(450 / 600 * 0.8, abs=0.01)
    assert crop.rgb.min() > 0.39  # no padding inside the photo
