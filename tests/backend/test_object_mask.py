"""The object mask: reading a user's file, the bad-mask cases, GrabCut refinement and mapping back to the photo."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from backend.object_mask import (
    MIN_OBJECT_PIXELS,
    MaskError,
    check_mask,
    crop_to_photo,
    decode_mask_bytes,
    mask_png_bytes,
    read_mask_file,
    refine_with_grabcut,
    write_mask_png,
)


def square_mask(height=100, width=120, box=(30, 20, 70, 60)) -> np.ndarray:
    mask = np.zeros((height, width), np.float32)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = 1.0
    return mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


# ------------------------------------------------------------------------------------------- reading a file
def test_a_greyscale_mask_reads_as_its_brightness(tmp_path):
    path = write_mask_png(square_mask(), tmp_path / "m.png")
    mask = read_mask_file(path, (120, 100))
    assert mask.shape == (100, 120)
    assert (mask >= 0.5).sum() == 40 * 40


def test_an_rgba_mask_reads_as_its_alpha(tmp_path):
    rgba = np.zeros((100, 120, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere: only the alpha says where the object is
    rgba[20:60, 30:70, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "cutout.png")
    mask = read_mask_file(tmp_path / "cutout.png", (120, 100))
    assert (mask >= 0.5).sum() == 40 * 40


def test_a_mask_of_the_wrong_size_is_a_clear_error(tmp_path):
    path = write_mask_png(square_mask(50, 60, (10, 10, 30, 30)), tmp_path / "small.png")
    with pytest.raises(MaskError, match=r"small\.png is 60×50 pixels but the photo is 120×100"):
        read_mask_file(path, (120, 100))


def test_mask_bytes_from_the_network_read_as_a_file_does(tmp_path):
    path = write_mask_png(square_mask(), tmp_path / "m.png")
    np.testing.assert_array_equal(decode_mask_bytes(path.read_bytes(), (120, 100)), read_mask_file(path, (120, 100)))
    with pytest.raises(MaskError, match=r"^the mask is 120×100 pixels but the photo is 60×50"):
        decode_mask_bytes(path.read_bytes(), (60, 50))
    with pytest.raises(MaskError, match="not an image"):
        decode_mask_bytes(b"not an image", (120, 100))


def test_mask_bytes_are_read_with_the_photo_decoders_only(tmp_path):
    Image.fromarray((square_mask() * 255).astype(np.uint8)).save(tmp_path / "m.gif")
    assert (read_mask_file(tmp_path / "m.gif", (120, 100)) >= 0.5).sum() == 40 * 40  # a file the user chose
    with pytest.raises(MaskError, match="not an image"):  # a stranger's bytes: JPEG, PNG, WebP, TIFF, BMP only
        decode_mask_bytes((tmp_path / "m.gif").read_bytes(), (120, 100))


def test_mask_png_bytes_match_the_file_written(tmp_path):
    mask = square_mask() >= 0.5
    png = mask_png_bytes(mask, (240, 200))
    written = write_mask_png(mask, tmp_path / "m.png", (240, 200))
    np.testing.assert_array_equal(decode_mask_bytes(png, (240, 200)), read_mask_file(written, (240, 200)))
    assert (decode_mask_bytes(png, (240, 200)) >= 0.5).sum() == 80 * 80


def test_a_file_that_is_no_image_is_a_clear_error(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(MaskError, match="not an image"):
        read_mask_file(tmp_path / "notes.png", (120, 100))
    with pytest.raises(MaskError, match="cannot read"):
        read_mask_file(tmp_path / "missing.png", (120, 100))


# ------------------------------------------------------------------------------------------- bad masks
def test_an_empty_mask_is_refused():
    with pytest.raises(MaskError, match="is empty"):
        check_mask(np.zeros((100, 120)), "the mask")


def test_a_few_pixels_are_refused():
    mask = np.zeros((100, 120))
    mask[50:53, 50:53] = 1
    with pytest.raises(MaskError, match=f"only 9 pixels .*at least {MIN_OBJECT_PIXELS}"):
        check_mask(mask, "the mask")


def test_an_inverted_mask_is_refused_when_given_and_a_warning_from_the_network():
    inverted = 1.0 - square_mask()
    with pytest.raises(MaskError, match="looks inverted"):
        check_mask(inverted, "the mask")
    checked = check_mask(inverted, "the model's object mask", given=False)
    assert checked.mask.sum() == inverted.sum()
    assert "the outline is a guess" in checked.warnings[0]


def test_a_mask_touching_every_border_but_small_is_a_warning():
    mask = np.zeros((100, 120))
    mask[50, :] = 1  # a cross: touches all four borders, covers little
    mask[:, 60] = 1
    checked = check_mask(mask, "the mask")
    assert checked.mask.sum() == mask.sum()
    assert checked.warnings == ["the mask touches all four edges of the photo: the object may be cut off"]


def test_several_blobs_keep_the_largest_and_say_so():
    mask = square_mask()
    mask[70:90, 90:110] = 1.0  # a second part, a quarter of the first
    checked = check_mask(mask, "the mask")
    assert checked.mask.sum() == 40 * 40
    assert checked.mask[30, 40]
    assert checked.warnings == ["the mask has 2 separate parts; kept the largest (80% of the mask's pixels)"]


def test_several_blobs_keep_the_one_the_hint_points_at():
    mask = square_mask()
    mask[70:90, 90:110] = 1.0
    hint = np.zeros((100, 120), bool)
    hint[75:85, 95:105] = True
    checked = check_mask(mask, "the mask", keep_near=hint)
    assert checked.mask.sum() == 20 * 20
    assert "the one the object's box points at" in checked.warnings[0]


def test_stray_pixels_are_dropped_silently():
    mask = square_mask()
    mask[5, 5] = mask[95, 110] = 1.0
    checked = check_mask(mask, "the photo's alpha channel")
    assert checked.mask.sum() == 40 * 40
    assert checked.warnings == []


# ------------------------------------------------------------------------------------------- GrabCut
def photo_of_a_disc(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """[S, S, 3] a red disc on a noisy green-grey background, and its true mask."""
    rng = np.random.default_rng(seed)
    size = 224
    rows, columns = np.mgrid[0:size, 0:size]
    truth = (columns - 100) ** 2 + (rows - 120) ** 2 <= 55**2
    rgb = np.clip(rng.normal([0.35, 0.5, 0.35], 0.08, (size, size, 3)), 0, 1)
    rgb[truth] = np.clip(rng.normal([0.8, 0.15, 0.1], 0.05, (int(truth.sum()), 3)), 0, 1)
    return rgb.astype(np.float32), truth


def test_grabcut_sharpens_a_blurry_shifted_mask_to_the_edges():
    rgb, truth = photo_of_a_disc()
    rows, columns = np.mgrid[0:224, 0:224]
    rough = ((columns - 110) ** 2 + (rows - 112) ** 2 <= 62**2).astype(np.float32) * 0.9  # off by 13 px
    assert iou(rough >= 0.5, truth) < 0.75
    refined = refine_with_grabcut(rgb, rough)
    assert iou(refined, truth) > 0.95


def test_grabcut_keeps_the_rough_mask_when_there_is_nothing_to_seed():
    rgb, _ = photo_of_a_disc()
    tiny = np.zeros((224, 224), np.float32)
    tiny[100:104, 100:104] = 1.0
    assert (refine_with_grabcut(rgb, tiny) == (tiny >= 0.5)).all()


# ------------------------------------------------------------------------------------------- back to the photo
def test_a_crop_mask_lands_on_the_photo_where_it_was_cut():
    truth = square_mask(100, 120, (30, 20, 70, 60)) >= 0.5
    box = (10.0, 0.0, 90.0, 80.0)  # an 80-pixel square around the object
    size = 224
    per_pixel = size / 80.0
    rows, columns = np.mgrid[0:size, 0:size]
    photo_x = box[0] + (columns + 0.5) / per_pixel - 0.5
    photo_y = box[1] + (rows + 0.5) / per_pixel - 0.5
    crop = (photo_x >= 29.5) & (photo_x < 69.5) & (photo_y >= 19.5) & (photo_y < 59.5)
    back = crop_to_photo(crop, box, (100, 120))
    assert back.shape == (100, 120)
    assert iou(back, truth) > 0.97
    assert not back[:, 95:].any()  # outside the crop: background
