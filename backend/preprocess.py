"""Photos → network input. Reading is strict and bounded; every failure names the file in one line.

Accepted: JPEG, PNG (8/16-bit, palette, RGBA, greyscale), WebP, TIFF, BMP. EXIF orientation is applied.
A real alpha channel (one that is not fully opaque) is kept as the object's mask. The decoded size is
bounded by Pillow's decompression-bomb limit, lowered here and treated as an error, and a photo larger than
WORKING_MAX_SIDE is downscaled while it is decoded (JPEG: by the decoder itself), so a small file that claims
a huge size costs little memory: the network sees 224 pixels, and `Photo.scale` maps back to the file's pixels.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.model.config import PreprocessConfig

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP")
"""Pillow's decoders tried on a file, and no other (Image.open(formats=...)); JPEG also opens MPO, the
multi-picture JPEG of some cameras."""
SUPPORTED_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}
MAX_PIXELS = 64_000_000
"""Largest image accepted (64 MP: beyond any camera a user would photograph an object with). JPEGs are
decoded at a reduced scale (libjpeg's DCT scaling), so this size costs little memory for them."""
MAX_FULL_DECODE_PIXELS = 24_000_000
"""Largest image of a format that must be decoded at full size before it can be downscaled (PNG, WebP,
TIFF, BMP): 24 MP is 6000×4000, and costs at most ~100 MB while decoding."""
WORKING_MAX_SIDE = 2048
"""Photos whose longer side is larger are downscaled to it on decoding (float32 RGB: at most 48 MB)."""
MAX_FILE_BYTES = 200 * 1024 * 1024
MIN_SIDE = 32
"""Smaller images carry too little of the object to reconstruct."""
MAX_DECODE_BYTES = 100 * 1024 * 1024
"""Largest pixel buffer a file may make the decoder fill (its size as decoded, JPEGs at their reduced scale, times
its bytes per pixel: CMYK, alpha and 16-bit samples count), checked before any pixel is decoded. With the
conversions and the resize that follow, decoding stays within about three times this."""


class ImageError(Exception):
    """An input image cannot be used; the message names the file and says why."""


@dataclass
class Photo:
    rgb: np.ndarray
    """[H, W, 3] float32 in [0, 1], orientation applied."""
    alpha: np.ndarray | None
    """[H, W] float32 in [0, 1] when the file has a real (not fully opaque) alpha channel."""
    source: str
    scale: float = 1.0
    """Pixels of `rgb` per pixel of the file (below 1 when a large photo was downscaled on decoding). Boxes,
    focal lengths and principal points reported to the user are in the file's pixels: see `to_file_pixels`."""
    file_size: tuple[int, int] | None = None
    """(width, height) of the file's image, orientation applied; None: the same as `size`."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of `rgb` in pixels."""
        return self.rgb.shape[1], self.rgb.shape[0]

    @property
    def size_in_file(self) -> tuple[int, int]:
        """(width, height) of the image in the file, orientation applied."""
        return self.file_size or self.size

    def to_file_pixels(self, value: float) -> float:
        """A length or an edge coordinate in `rgb` pixels → the same in the file's pixels."""
        return value / self.scale

    def from_file_pixels(self, value: float) -> float:
        """A length or an edge coordinate in the file's pixels → the same in `rgb` pixels."""
        return value * self.scale


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

    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError(f"{source}: the image is empty (0 bytes)")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            # Pillow only warns between the limit and twice it; any bomb warning is an error here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS) as image:
                image, scale, file_size = _decode_bounded(image, source, len(data))
                rgb, alpha = _to_float_arrays(image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        import re

        pixels = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(pixels.group(1)) / 1e6:.0f} MP" if pixels else "its size"
        # Pillow refuses at open, before the format's own limit is known: name the limit that applies to this file.
        jpeg = data[:3] == b"\xff\xd8\xff"
        limit = MAX_PIXELS if jpeg else min(MAX_FULL_DECODE_PIXELS, MAX_PIXELS)
        kinds = "JPEG images" if jpeg else "PNG, WebP, TIFF and BMP images"
        raise ImageError(
            f"{source}: the image is too large to decode safely ({size}, the limit is {limit // 10**6} MP for "
            f"{kinds}); downscale the photo first"
        ) from error
    except UnidentifiedImageError:
        kind = _sniff_unsupported_format(data)
        if kind:
            raise ImageError(f"{source}: {kind} images are not supported (use JPEG, PNG, WebP, TIFF or BMP)") from None
        raise ImageError(
            f"{source}: not an image file this program can read (is it really an image? JPEG, PNG, WebP, TIFF "
            "and BMP are)"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{source}: the image is damaged or truncated ({error})") from error
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise ImageError(
            f"{source}: too thin: {rgb.shape[1]}×{rgb.shape[0]} pixels once its longer side is brought to "
            f"{WORKING_MAX_SIDE} (at least {MIN_SIDE} per side)"
        )
    if not (np.isfinite(rgb).all() and (alpha is None or np.isfinite(alpha).all())):
        raise ImageError(f"{source}: the image holds NaN or infinite pixel values (a floating-point TIFF?)")
    return Photo(rgb=rgb, alpha=alpha, source=source, scale=scale, file_size=file_size)


def _sniff_unsupported_format(data: bytes) -> str | None:
    """The name of a common image format no decoder here opens, from its first bytes; None if not one."""
    if data[:4] == b"GIF8":
        return "GIF"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
            return "HEIC"
        if brand in (b"avif", b"avis"):
            return "AVIF"
    if data[:4] == b"8BPS":
        return "Photoshop (PSD)"
    if data[:4] in (b"\x00\x00\x01\x00", b"icns"):
        return "icon"
    return None


def _decode_bounded(image, source: str, file_bytes: int):
    """An opened Pillow image → (the decoded image, oriented and at most WORKING_MAX_SIDE on its longer side;
    pixels of it per pixel of the file; the file's (width, height) oriented). Sizes, the buffer the decoder will
    fill, and (JPEG) whether the file holds enough data for the size its header claims are checked before any
    pixel is decoded."""
    from PIL import Image, ImageOps

    width, height = image.size
    full_decode = image.format not in ("JPEG", "MPO")
    limit = min(MAX_FULL_DECODE_PIXELS, MAX_PIXELS) if full_decode else MAX_PIXELS
    if width * height > limit:
        raise ImageError(
            f"{source}: {width}×{height} pixels is more than the {limit // 10**6} MP limit for "
            f"{image.format} images; downscale the photo first"
        )
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"{source}: {width}×{height} pixels is too small (at least {MIN_SIDE} per side)")
    if not full_decode:
        _check_jpeg_data(image, source, file_bytes)
    scale = min(1.0, WORKING_MAX_SIDE / max(width, height))
    if scale < 1.0 and not full_decode:
        # libjpeg decodes at 1/2, 1/4 or 1/8 of the size directly: the full-size image never exists. Ask for the
        # working size on both sides (a square request would keep a long thin image at full size).
        wanted = (max(1, round(width * scale)), max(1, round(height * scale)))
        image.draft(image.mode if image.mode in ("RGB", "L", "CMYK") else None, wanted)
    buffer = image.size[0] * image.size[1] * _bytes_per_pixel(image.mode)
    if buffer > MAX_DECODE_BYTES:
        raise ImageError(
            f"{source}: decoding {width}×{height} {image.mode} pixels would take {buffer / 2**20:.0f} MB, more than "
            f"the {MAX_DECODE_BYTES // 2**20} MB allowed; save it smaller, or as an 8-bit RGB JPEG"
        )
    if scale == 1.0:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # not a copy: a second full-size buffer is what we avoid
        return image, 1.0, image.size
    image.load()
    if image.mode not in ("RGB", "RGBA", "L", "LA", "F") or "transparency" in image.info:
        # Palettes resize by nearest neighbour only, 16-bit and CMYK not at all, and a colour key means nothing
        # after resampling: convert to plain RGB(A) first.
        keeps_alpha = image.mode in ("P", "PA", "RGBA", "LA") or "transparency" in image.info
        image = image.convert("RGBA" if keeps_alpha else "RGB")
    drafted = image.size
    ImageOps.exif_transpose(image, in_place=True)
    turned = image.size != drafted  # a quarter turn swapped width and height
    file_size = (height, width) if turned else (width, height)
    target = tuple(max(1, round(side * scale)) for side in file_size)
    return image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0), scale, file_size


def _bytes_per_pixel(mode: str) -> int:
    """Bytes one pixel of a Pillow mode takes once decoded: its bands, 16- and 32-bit samples counted as such."""
    from PIL import Image

    wide = {"I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2, "I": 4, "F": 4}
    if mode in wide:
        return wide[mode]
    try:
        return Image.getmodebands(mode)
    except (KeyError, ValueError):  # a mode Pillow does not describe: assume the widest common one
        return 4


def _check_jpeg_data(image, source: str, file_bytes: int) -> None:
    """A JPEG's entropy-coded data needs at least one bit for every 8×8 block of every component, in any scan
    order (baseline or progressive). A file far smaller than that for the size its header claims was cut short or
    forged: libjpeg would fill the missing rows with grey, at the cost of the claimed size. A progressive JPEG
    costs 128 bytes per block whatever the reduced scale. ImageError for either."""
    import math

    layers = getattr(image, "layer", None)  # [(component id, h sampling, v sampling, quant table)]
    if not layers:
        return
    width, height = image.size
    h_max, v_max = max(layer[1] for layer in layers), max(layer[2] for layer in layers)
    mcus = math.ceil(width / (8 * h_max)) * math.ceil(height / (8 * v_max))
    blocks = mcus * sum(layer[1] * layer[2] for layer in layers)
    if file_bytes * 8 < blocks:
        raise ImageError(
            f"{source}: the file holds {file_bytes:,} bytes, too few for the {width}×{height} pixels its header "
            f"claims (at least {math.ceil(blocks / 8):,}): it is cut short or not a real photo"
        )
    coefficients = blocks * 64 * 2  # a progressive JPEG is decoded through all its DCT coefficients, at full size
    if image.info.get("progressive") and coefficients > MAX_DECODE_BYTES:
        raise ImageError(
            f"{source}: decoding this {width}×{height} progressive JPEG would take {coefficients / 2**20:.0f} MB, "
            f"more than the {MAX_DECODE_BYTES // 2**20} MB allowed; save it as a baseline JPEG, or smaller"
        )


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
