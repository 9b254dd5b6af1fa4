"""Pillow compositing of preview renders (no Blender; used by the render subprocess of backend.preview_render): the
photo beside its renders, captions, and a render over its photo."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

LETTERBOX_GREY = (231, 231, 231)
"""sRGB 8-bit fill around the photo in side-by-side mode: the same grey as the rendered background."""


def side_by_side(
    photo_path: Path, render_paths: Sequence[Path], out_path: Path, size: int, labels: Sequence[str] = ()
) -> None:
    """Write a ((1 + renders)·size)×size RGB PNG: the photo letterboxed onto grey at left, then each size×size render,
    each captioned with its label (when labels are given; the photo's is "photo").

    A photo with transparency (e.g. a cut-out object) is composited over the same grey.
    """
    from PIL import Image, ImageOps

    canvas = Image.new("RGB", ((1 + len(render_paths)) * size, size), LETTERBOX_GREY)
    with Image.open(photo_path) as photo:
        photo = ImageOps.exif_transpose(photo).convert("RGBA")
        photo.thumbnail((size, size), Image.Resampling.LANCZOS)
        if photo.size[0] < size and photo.size[1] < size:
            # thumbnail() only shrinks; a small photo is enlarged so both halves have the same scale.
            scale = size / max(photo.size)
            photo = photo.resize((round(photo.size[0] * scale), round(photo.size[1] * scale)), Image.Resampling.LANCZOS)
        offset = ((size - photo.size[0]) // 2, (size - photo.size[1]) // 2)
        canvas.paste(photo, offset, mask=photo)
    for number, render_path in enumerate(render_paths, start=1):
        with Image.open(render_path) as render:
            canvas.paste(render.convert("RGB"), (number * size, 0))
    if labels:
        _caption(canvas, ["photo", *labels], size)
    canvas.save(out_path)


def renders_side_by_side(render_paths: Sequence[Path], out_path: Path, size: int, labels: Sequence[str]) -> None:
    """Several size×size renders in a row, captioned."""
    from PIL import Image

    canvas = Image.new("RGB", (len(render_paths) * size, size), LETTERBOX_GREY)
    for number, render_path in enumerate(render_paths):
        with Image.open(render_path) as render:
            canvas.paste(render.convert("RGB"), (number * size, 0))
    _caption(canvas, labels, size)
    canvas.save(out_path)


def _caption(canvas, labels: Sequence[str], size: int) -> None:
    """Write each panel's label in its top-left corner, dark on the light grey."""
    from PIL import ImageDraw, ImageFont

    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(10, size // 24))
    for number, label in enumerate(labels):
        draw.text((number * size + size // 40, size // 60), label, fill=(60, 60, 60), font=font)


def over_photo(photo_path: Path, render_path: Path, out_path: Path, opacity: float = 0.7) -> None:
    """Write the render (RGBA, the size of the photo or smaller, same aspect) over the photo: the mesh through the
    match camera, at `opacity`, so a person sees how well it lines up with what was photographed."""
    from PIL import Image, ImageOps

    with Image.open(render_path) as render:
        render = render.convert("RGBA")
    with Image.open(photo_path) as photo:
        photo = ImageOps.exif_transpose(photo).convert("RGB").resize(render.size, Image.Resampling.LANCZOS)
    alpha = render.getchannel("A").point(lambda value: round(value * opacity))
    photo.paste(render.convert("RGB"), (0, 0), mask=alpha)
    photo.save(out_path)
