"""Photos → network input. Reading is strict and bounded; every failure names the file in one line.

Accepted: JPEG, PNG (8/16-bit, palette, RGBA, greyscale), WebP, TIFF, BMP. EXIF orientation is applied.
A real alpha channel (one that is not fully opaque) is kept as the object's mask. The decoded size is
bounded by Pillow's decompression-bomb limit, lowered here and treated as an error.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.model.config import PreprocessConfig

SUPPORTED_FORMATS = {"JPEG", "PNG", "WEBP", "TIFF", "BMP", "MPO"}
SUPPORTED_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}
MAX_PIXELS = 64_000_000
"""Largest decoded image accepted (64 MP: beyond any camera a user would photograph an object with)."""
MAX_FILE_BYTES = 200 * 1024 * 1024
MIN_SIDE = 32
"""Smaller images carry too little of the object to reconstruct."""


class ImageError(Exception):
    """An input image cannot be used; the message names the file and says why."""


@dataclass
class Photo:
    rgb: np.ndarray
    """[H, W, 3] float32 in [0, 1], orientation applied."""
    alpha: np.ndarray | None
    """[H, W] float32 in [0, 1] when the file has a real (not fully opaque) alpha channel."""
    source: str

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.rgb.shape[1], self.rgb.shape[0]


def load_photo(path: str | Path) -> Photo:
    """Decode an image file safely. Raises ImageError naming the file."""
    path = Path(path)
    return decode_photo(_read_bytes(path), str(path))


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise ImageError(f"{path}: the file is empty (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise ImageError(f"{path}: the file is {size / 2**20:.0f} MB, more than the {MAX_FILE_BYTES // 2**20} MB limit")
    return path.read_bytes()


def decode_photo(data: bytes, source: str = "<image>") -> Photo:
    """Decode image bytes (from a file or the network) with bounded size and accepted formats only."""
    import io

    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise ImageError(f"{source}: the image is empty (0 bytes)")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            # Pillow only warns between the limit and twice it; any bomb warning is an error here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.format not in SUPPORTED_FORMATS:
                    raise ImageError(
                        f"{source}: {image.format or 'unknown'} images are not supported "
                        f"(use JPEG, PNG, WebP, TIFF or BMP)"
                    )
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ImageError(
                        f"{source}: {width}×{height} pixels is more than the {MAX_PIXELS // 10**6} MP limit; "
                        "downscale the photo first"
                    )
                image.load()
                image = ImageOps.exif_transpose(image)
                rgb, alpha = _to_float_arrays(image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        import re

        pixels = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(pixels.group(1)) / 1e6:.0f} MP" if pixels else "its size"
        raise ImageError(
            f"{source}: the image is too large to decode safely ({size}, the limit is {MAX_PIXELS / 1e6:.0f} MP); "
            "downscale the photo first"
        ) from error
    except UnidentifiedImageError:
        raise ImageError(f"{source}: not an image file Pillow can read (is it really an image?)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{source}: the image is damaged or truncated ({error})") from error
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise ImageError(f"{source}: {rgb.shape[1]}×{rgb.shape[0]} pixels is too small (at least {MIN_SIDE} per side)")
    return Photo(rgb=rgb, alpha=alpha, source=source)


def _to_float_arrays(image) -> tuple[np.ndarray, np.ndarray | None]:
    """Any Pillow mode → RGB float32 [H, W, 3] in [0, 1] and alpha [H, W] or None."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and 32-bit greyscale: scale by the type's range, not by the image's own maximum.
        grey = np.asarray(image, dtype=np.float32)
        scale = 65535.0 if mode.startswith("I;16") or grey.max() > 255 else 255.0
        if mode == "F":
            scale = max(1.0, float(grey.max()))
        grey = np.clip(grey / scale, 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=2), None
    # A tRNS colour key (palette, greyscale or RGB PNGs) is transparency too.
    has_alpha = mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    converted = image.convert("RGBA" if has_alpha else "RGB")
    array = np.asarray(converted, dtype=np.float32) / 255.0
    if not has_alpha:
        return array, None
    alpha = array[..., 3]
    if alpha.min() >= 1.0:
        return array[..., :3], None  # an alpha channel that hides nothing is no mask
    return array[..., :3], alpha


def square_box_around(box: tuple[float, float, float, float], margin: float) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) → a square of side margin·max(w, h) with the same centre, in pixels."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0, 1.0) * margin
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


def full_frame_box(photo: Photo) -> tuple[float, float, float, float]:
    """The square that contains the whole photo, centred on it (the rest is padded)."""
    width, height = photo.size
    side = max(width, height)
    return (width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2


def mask_box(mask: np.ndarray, threshold: float = 0.5) -> tuple[float, float, float, float] | None:
    """Bounding box (x0, y0, x1, y1) of mask > threshold, in pixels; None when empty."""
    rows = np.flatnonzero((mask > threshold).any(axis=1))
    cols = np.flatnonzero((mask > threshold).any(axis=0))
    if not len(rows):
        return None
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


@dataclass
class Crop:
    """A square window of the photo resampled to the network input."""

    rgb: np.ndarray
    """[S, S, 3] float32 in [0, 1]; outside the photo filled with the background colour."""
    alpha: np.ndarray | None
    """[S, S] float32 when the photo has alpha (0 outside the photo)."""
    box: tuple[float, float, float, float]
    """The window in photo pixels (x0, y0, x1, y1); may extend past the photo's edges."""

    @property
    def scale(self) -> float:
        """Network-input pixels per photo pixel."""
        return self.rgb.shape[1] / (self.box[2] - self.box[0])


def crop_photo(photo: Photo, box: tuple[float, float, float, float], config: PreprocessConfig) -> Crop:
    """Resample a square window of the photo to config.image_size² (bilinear; box-averaged first when
    shrinking by more than 2×, so a large photo does not alias). Outside the photo: background colour.

    With a real alpha channel the RGB is composited over the background colour: the alpha already
    separates the object, and the model sees what it saw in training behind cut-outs.
    """
    from PIL import Image

    size = config.image_size
    rgb = photo.rgb
    if photo.alpha is not None:
        background = np.asarray(config.background_rgb, dtype=np.float32)
        rgb = rgb * photo.alpha[..., None] + background * (1 - photo.alpha[..., None])
    channels = [rgb[..., c] for c in range(3)] + ([photo.alpha] if photo.alpha is not None else [])
    fills = [*config.background_rgb, 0.0]
    factor = max(1, int((box[2] - box[0]) / (2 * size)))
    scaled_box = tuple(v / factor for v in box)
    resampled = []
    for channel, fill in zip(channels, fills, strict=False):
        image = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32), mode="F")
        if factor > 1:
            image = image.reduce(factor)
        out = image.transform(
            (size, size), Image.Transform.EXTENT, scaled_box, resample=Image.Resampling.BILINEAR, fillcolor=fill
        )
        resampled.append(np.asarray(out, dtype=np.float32))
    stacked = np.clip(np.stack(resampled[:3], axis=-1), 0.0, 1.0)
    alpha = np.clip(resampled[3], 0.0, 1.0) if photo.alpha is not None else None
    return Crop(rgb=stacked, alpha=alpha, box=box)
