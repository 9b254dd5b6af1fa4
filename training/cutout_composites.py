"""Real-photo training images for the object-mask head: photo cut-outs pasted on real backgrounds.

A sample is one Tux Paint photo stamp of the training split (`training.photo_benchmark.stamp_split`: even hash,
not a benchmark stamp, not an example) on a background drawn from
* crops of the eight CC0 studio-light HDRIs in the bpy wheel (tone-mapped),
* scikit-image's colour sample photos (the ones the renders already use behind objects),
* flat colours, and blurred noise textures,
framed the two ways `reconstruct` frames a photo: the whole photo padded square (the first pass that locates the
object) or a square around the object with the checkpoint's margin (the pass the mesh is built from), both through
`backend.preprocess.crop_photo` itself. The target is the stamp's alpha, cropped identically.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.model.config import PreprocessConfig
from backend.preprocess import Photo, crop_photo, full_frame_box, mask_box, square_box_around
from training.photo_benchmark import place, stamps


def hdri_paths() -> list[Path]:
    """The bpy wheel's studio-light HDRIs (equirectangular EXR), or [] without bpy."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        return []
    pattern = os.path.join(os.path.dirname(spec.origin), "*", "datafiles", "studiolights", "world", "*.exr")
    return sorted(Path(p) for p in glob.glob(pattern))


def read_hdri(path: Path) -> np.ndarray:
    """An EXR → tone-mapped sRGB-ish float [H, W, 3] in [0, 1] (Reinhard at the image's mean, then gamma 2.2)."""
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2

    radiance = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if radiance is None:
        raise OSError(f"{path}: OpenCV cannot read it (is OPENCV_IO_ENABLE_OPENEXR set before cv2 is imported?)")
    radiance = np.maximum(radiance[..., ::-1].astype(np.float32), 0.0)
    exposed = radiance / (4.0 * float(radiance.mean()) + 1e-6)
    return (exposed / (1.0 + exposed)) ** (1 / 2.2)


@dataclass
class Backgrounds:
    """Everything a background is cut from, loaded once."""

    photos: list[np.ndarray]
    """float [H, W, 3] in [0, 1]: HDRIs and scikit-image photos."""

    @classmethod
    def load(cls) -> Backgrounds:
        from skimage import data

        names = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
        photos = [getattr(data, name)()[..., :3].astype(np.float32) / 255.0 for name in names]
        photos += [read_hdri(path) for path in hdri_paths()]
        return cls(photos)

    def draw(self, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """A background [H, W, 3] of `size` (width, height): a photo crop (60%), flat (20%) or noise (20%)."""
        from PIL import Image, ImageFilter

        width, height = size
        kind = rng.random()
        if kind < 0.2:
            colour = np.clip(rng.choice([0.1, 0.5, 0.9]) + rng.normal(0.0, 0.15, 3), 0.0, 1.0)
            return np.broadcast_to(colour, (height, width, 3)).astype(np.float32).copy()
        if kind < 0.4:
            coarse = rng.random((max(2, height // 16), max(2, width // 16), 3)).astype(np.float32)
            image = Image.fromarray((coarse * 255).astype(np.uint8)).resize(size, Image.Resampling.BICUBIC)
            return np.asarray(image, np.float32) / 255.0
        photo = self.photos[int(rng.integers(len(self.photos)))]
        rows, columns = photo.shape[:2]
        aspect = width / height
        crop_height = int(rng.uniform(0.25, 1.0) * min(rows, columns / aspect))
        crop_width = max(2, int(crop_height * aspect))
        crop_height = max(2, crop_height)
        y = int(rng.integers(0, rows - crop_height + 1))
        x = int(rng.integers(0, columns - crop_width + 1))
        image = Image.fromarray((photo[y : y + crop_height, x : x + crop_width] * 255).astype(np.uint8))
        image = image.resize(size, Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(rng.uniform(0, 2.5)))
        return np.asarray(image, np.float32) / 255.0


class CutoutComposites:
    """Draws (image [3, S, S] float in [0, 1], mask [1, S, S] float in {0, 1}) samples; deterministic in the seed."""

    def __init__(self, preprocess: PreprocessConfig, stamp_root: Path | None = None):
        found = stamps("train", stamp_root) if stamp_root else stamps("train")
        if not found:
            raise FileNotFoundError("no training stamps found (apt-get install tuxpaint-stamps-default)")
        self.stamps = [rgba for _, rgba in found]
        self.names = [name for name, _ in found]
        self.preprocess = preprocess
        self.backgrounds = Backgrounds.load()

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        rgba = self.stamps[int(rng.integers(len(self.stamps)))]
        if rng.random() < 0.5:
            rgba = rgba[:, ::-1]
        width = int(rng.integers(256, 640))
        height = int(width * rng.uniform(0.6, 1.4))
        full_frame = rng.random() < 0.4
        fill = (0.25, 0.8) if full_frame else (0.4, 0.95)
        rgb, alpha = place(np.ascontiguousarray(rgba), (width, height), rng, fill)
        gain = rng.uniform(0.75, 1.25)
        foreground = np.clip(rgb * gain + rng.normal(0.0, 0.04, 3) * alpha[..., None], 0.0, 1.0)
        image = foreground + self.backgrounds.draw((width, height), rng) * (1.0 - alpha[..., None])
        image = np.clip(image + rng.normal(0.0, rng.uniform(0.0, 0.02), image.shape), 0.0, 1.0).astype(np.float32)
        photo = Photo(rgb=image, alpha=None, source="composite")
        if full_frame:
            box = full_frame_box(photo)
        else:
            x0, y0, x1, y1 = mask_box(alpha)
            jitter = rng.normal(0.0, 0.05, 4) * max(x1 - x0, y1 - y0)
            box = square_box_around((x0 + jitter[0], y0 + jitter[1], x1 + jitter[2], y1 + jitter[3]),
                                    self.preprocess.crop_margin * rng.uniform(0.95, 1.15))  # fmt: skip
        crop = crop_photo(photo, box, self.preprocess)
        # The alpha cropped as an alpha channel: where the crop reaches past the photo it is 0, never the object.
        target = crop_photo(Photo(rgb=np.zeros_like(image), alpha=alpha, source="mask"), box, self.preprocess)
        mask = (target.alpha >= 0.5).astype(np.float32)
        return crop.rgb.transpose(2, 0, 1).copy(), mask[None]
