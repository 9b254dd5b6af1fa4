"""A photo benchmark the project builds itself from Tux Paint's photo cut-outs (`zeroshape-w photo-bench`).

Each benchmark stamp is shown three ways on the same canvas: as the cut-out itself (transparent background: the
alpha is the mask), pasted on a flat colour, and pasted on a blurred real photograph; its alpha is the true mask.
`run` reconstructs every image and reports the mask IoU (the mask the mesh was built from, against the truth) and
the mesh outline's IoU through the camera the reconstruction reports, with the network's mask raw and refined.

Which stamps (by the crc32 of the path under stamps/): odd ones are held out for evaluation outside the project
and never read here; of the even ones, those whose name (without "_mirror") hashes into BENCHMARK_SHARE form the
benchmark and the rest are the cut-outs training may use (`training_stamps`), so a stamp and its mirror image are
never on both sides. Stamps used by examples/ are in neither. Only photographs count: a real alpha, at least
PHOTO_COLOURS distinct colours (drawings have a few hundred) and no "cartoon" in the path.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STAMPS_ROOT = Path("/usr/share/tuxpaint/stamps")
"""Where Debian's tuxpaint-stamps-default puts them (`apt-get install tuxpaint-stamps-default`)."""
EXAMPLE_STAMPS = frozenset(
    {
        "household/Lightbulb.png",
        "household/cylinder.png",
        "food/fruit/Strawberry2.png",
        "food/fruit/Apricot_whole.png",
        "hobbies/music/string/guitar_classical.png",
        "animals/mammals/bears/european-bear.png",
    }
)
"""The stamps examples/ shows (examples/README.md): in no split."""
PHOTO_COLOURS = 3000
BENCHMARK_SHARE = 4
"""One even stamp in this many is a benchmark stamp."""
VARIANTS = ("cutout", "flat", "real")
CANVAS = (384, 288)
"""(width, height) of every benchmark image."""
BENCHMARK_BACKGROUNDS = ("motorcycle_left", "motorcycle_right", "brick", "grass", "gravel", "camera", "coins", "moon")
"""scikit-image sample photos that the renders never use as backgrounds (those are in render_blender.py)."""


def stamp_split(relative: str) -> str:
    """ "held-out", "benchmark", "train" or "example" for a stamp's path under stamps/ (forward slashes)."""
    if relative in EXAMPLE_STAMPS:
        return "example"
    if zlib.crc32(relative.encode()) % 2:
        return "held-out"
    name = relative.replace("_mirror", "")
    return "benchmark" if (zlib.crc32(name.encode()) // 2) % BENCHMARK_SHARE == 0 else "train"


def read_stamp(path: Path) -> np.ndarray | None:
    """A photographic stamp as RGBA uint8 [H, W, 4], or None for drawings and stamps with no real alpha."""
    from PIL import Image

    with Image.open(path) as image:
        rgba = np.asarray(image.convert("RGBA"))
    opaque = rgba[..., 3] >= 128
    if opaque.all() or opaque.sum() < 400 or "cartoon" in path.as_posix():
        return None
    colours = rgba[opaque][:, :3].astype(np.int64) @ np.array([65536, 256, 1])
    return rgba if len(np.unique(colours)) >= PHOTO_COLOURS else None


def stamps(split: str, root: Path = STAMPS_ROOT) -> list[tuple[str, np.ndarray]]:
    """(path under stamps/, RGBA) of the photographic stamps of one split, in path order."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no Tux Paint stamps; install them: apt-get install tuxpaint-stamps-default")
    found = []
    for path in sorted(root.rglob("*.png")):
        relative = path.relative_to(root).as_posix()
        if stamp_split(relative) != split:
            continue
        rgba = read_stamp(path)
        if rgba is not None:
            found.append((relative, rgba))
    return found


def place(rgba: np.ndarray, canvas: tuple[int, int], rng: np.random.Generator, fill: tuple[float, float]):
    """The stamp scaled so its longer side is `fill` (a range) of the canvas's shorter side, at a random place
    inside the canvas: (RGB float [H, W, 3] premultiplied by alpha, alpha float [H, W])."""
    from PIL import Image

    width, height = canvas
    side = rng.uniform(*fill) * min(width, height)
    scale = side / max(rgba.shape[:2])
    size = (max(8, round(rgba.shape[1] * scale)), max(8, round(rgba.shape[0] * scale)))
    resized = np.asarray(Image.fromarray(rgba).resize(size, Image.Resampling.LANCZOS), np.float32) / 255.0
    x = int(rng.integers(0, width - size[0] + 1))
    y = int(rng.integers(0, height - size[1] + 1))
    alpha = np.zeros((height, width), np.float32)
    alpha[y : y + size[1], x : x + size[0]] = resized[..., 3]
    rgb = np.zeros((height, width, 3), np.float32)
    rgb[y : y + size[1], x : x + size[0]] = resized[..., :3] * resized[..., 3:]
    return rgb, alpha


def photo_background(names: Iterable[str], canvas: tuple[int, int], rng: np.random.Generator, blur: float):
    """A random crop of one of scikit-image's sample photos, resized to the canvas and blurred: [H, W, 3] float."""
    from PIL import Image, ImageFilter
    from skimage import data

    names = list(names)
    name = names[int(rng.integers(len(names)))]
    if name.startswith("motorcycle_"):  # the two views of scikit-image's stereo pair
        photo = data.stereo_motorcycle()[0 if name.endswith("left") else 1]
    else:
        photo = getattr(data, name)()
    photo = np.stack([photo] * 3, axis=-1) if photo.ndim == 2 else photo[..., :3]
    height, width = photo.shape[:2]
    aspect = canvas[0] / canvas[1]
    crop_height = int(rng.integers(min(height, width / aspect) // 2, min(height, width / aspect) + 1))
    crop_width = int(crop_height * aspect)
    y = int(rng.integers(0, height - crop_height + 1))
    x = int(rng.integers(0, width - crop_width + 1))
    image = Image.fromarray(photo[y : y + crop_height, x : x + crop_width]).resize(canvas, Image.Resampling.BILINEAR)
    return np.asarray(image.filter(ImageFilter.GaussianBlur(blur)), np.float32) / 255.0


def flat_background(canvas: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """One flat colour, light or dark, greyish or tinted: [H, W, 3] float."""
    grey = rng.choice([0.15, 0.5, 0.85])
    colour = np.clip(grey + rng.normal(0.0, 0.12, 3), 0.0, 1.0)
    return np.broadcast_to(colour, (canvas[1], canvas[0], 3)).astype(np.float32)


def build(out: Path, root: Path = STAMPS_ROOT, progress: Callable[[Iterable], Iterable] | None = None) -> int:
    """Write the benchmark: out/<stamp>/{cutout,flat,real}.png, mask.png, and out/manifest.json. Returns the count.
    Deterministic: each stamp's placement and backgrounds are drawn from a generator seeded by its path."""
    from PIL import Image

    chosen = stamps("benchmark", root)
    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for relative, rgba in progress(chosen) if progress else chosen:
        rng = np.random.default_rng(zlib.crc32(relative.encode()))
        rgb, alpha = place(rgba, CANVAS, rng, (0.45, 0.75))
        folder = out / relative.removesuffix(".png").replace("/", "__")
        folder.mkdir(exist_ok=True)
        images = {
            "flat": rgb + flat_background(CANVAS, rng) * (1 - alpha[..., None]),
            "real": rgb + photo_background(BENCHMARK_BACKGROUNDS, CANVAS, rng, 1.5) * (1 - alpha[..., None]),
        }
        for variant, image in images.items():
            Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).save(folder / f"{variant}.png")
        straight = np.where(alpha[..., None] > 0, rgb / np.maximum(alpha[..., None], 1e-6), 0.0)
        cutout = np.concatenate([straight, alpha[..., None]], axis=-1)
        Image.fromarray((np.clip(cutout, 0, 1) * 255 + 0.5).astype(np.uint8), "RGBA").save(folder / "cutout.png")
        Image.fromarray(((alpha >= 0.5) * 255).astype(np.uint8)).save(folder / "mask.png")
        manifest.append({"stamp": relative, "folder": folder.name})
    (out / "manifest.json").write_text(json.dumps({"canvas": CANVAS, "stamps": manifest}, indent=2))
    return len(manifest)


@dataclass(frozen=True)
class BenchmarkRow:
    stamp: str
    variant: str
    mask: str
    """"raw" or "refined" (the network's mask as it is, or sharpened by GrabCut); "alpha" for cut-outs."""
    mask_source: str
    mask_iou: float
    outline_iou: float
    seconds: float


def run(reconstructor, data: Path, shape: str = "inflate", progress=None, limit: int | None = None) -> list[dict]:
    """Reconstruct every benchmark image (cut-outs once; the others with the raw and the refined network mask)
    and score it. `reconstructor`: a backend.pipeline.Reconstructor."""
    import time

    from PIL import Image

    from backend.pipeline import EmptyMeshError, ReconstructOptions
    from backend.preprocess import load_photo
    from backend.silhouette import photo_outline_iou

    manifest = json.loads((data / "manifest.json").read_text())["stamps"][:limit]
    jobs = [(entry, variant, refine) for entry in manifest for variant in VARIANTS for refine in (False, True)]
    jobs = [job for job in jobs if job[1] != "cutout" or not job[2]]
    rows = []
    for entry, variant, refine in progress(jobs) if progress else jobs:
        folder = data / entry["folder"]
        truth = np.asarray(Image.open(folder / "mask.png")) >= 128
        options = ReconstructOptions(shape=shape, refine_mask=refine, category="object", color=False)
        start = time.perf_counter()
        try:
            result = reconstructor.reconstruct(load_photo(folder / f"{variant}.png"), options)
        except EmptyMeshError:
            mask_iou = outline_iou = 0.0
            source = "none"
        else:
            used = result.mask
            mask_iou = float((used & truth).sum() / max(1, (used | truth).sum()))
            outline_iou = photo_outline_iou(result.vertices, result.faces, result.metadata, truth)
            source = result.metadata["mask_source"]
        mask = "alpha" if variant == "cutout" else ("refined" if refine else "raw")
        row = BenchmarkRow(entry["stamp"], variant, mask, source, mask_iou, outline_iou, time.perf_counter() - start)
        rows.append(row.__dict__)
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: mean mask IoU and outline IoU per background and mask, with the view counts."""
    lines = ["| background | mask | images | mask IoU | mesh outline IoU |", "|---|---|---|---|---|"]
    for variant in VARIANTS:
        for mask in ("alpha", "raw", "refined"):
            group = [r for r in rows if r["variant"] == variant and r["mask"] == mask]
            if group:
                mask_iou = np.mean([r["mask_iou"] for r in group])
                outline = np.mean([r["outline_iou"] for r in group])
                lines.append(f"| {variant} | {mask} | {len(group)} | {mask_iou:.3f} | {outline:.3f} |")
    return "\n".join(lines)
