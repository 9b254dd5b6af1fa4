"""`zeroshape-w reconstruct`: photos, folders or patterns in; a mesh, its JSON and the mask it was built from out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from blender_addon.protocol import SHAPES


def expand_inputs(inputs: list[str], recursive: bool = False) -> tuple[list[Path], list[str]]:
    """Files, folders and glob patterns → (image files in a stable order, inputs that matched nothing)."""
    import glob

    from backend.preprocess import SUPPORTED_SUFFIXES

    found: list[Path] = []
    unmatched: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            images = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
            found.extend(images) if images else unmatched.append(f"{item}: no supported images in this folder")
        elif path.exists() or not glob.has_magic(item):
            found.append(path)  # a missing file is reported by the loader, in the same words as a bad one
        else:
            matches = sorted(Path(m) for m in glob.glob(item, recursive=recursive) if Path(m).is_file())
            found.extend(matches) if matches else unmatched.append(f"{item}: the pattern matches no file")
    unique = list(dict.fromkeys(found))
    return unique, unmatched


def _output_path(out_dir: Path, source: Path, file_format: str, taken: set[Path]) -> Path:
    candidate = out_dir / f"{source.stem}.{file_format}"
    number = 2
    while candidate in taken:
        candidate = out_dir / f"{source.stem}-{number}.{file_format}"
        number += 1
    taken.add(candidate)
    return candidate


def command_reconstruct(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from backend.export import write_reconstruction
    from backend.object_mask import MaskError, read_mask_file
    from backend.pipeline import BadBoxError, EmptyMeshError, ReconstructOptions, Reconstructor
    from backend.preprocess import ImageError, load_photo

    images, unmatched = expand_inputs(args.images, args.recursive)
    for message in unmatched:
        print(f"zeroshape-w: error: {message}", file=sys.stderr)
    if not images:
        print("zeroshape-w: error: no images to reconstruct", file=sys.stderr)
        return 1
    if args.mask and len(images) + len(unmatched) != 1:
        print("zeroshape-w: error: --mask belongs to one photo: give exactly one image with it", file=sys.stderr)
        return 2
    try:
        options = ReconstructOptions(
            resolution=args.resolution,
            category=args.category or "auto",
            frame=args.frame,
            color=not args.no_color,
            box=tuple(args.box) if args.box else None,
            largest_component=not args.keep_fragments,
            upright=not args.camera_up,
            max_faces=args.max_faces,
            precision=args.precision,
            shape=args.shape,
            refine_mask=not args.no_refine_mask,
            use_alpha=not args.ignore_alpha,
        )
    except ValueError as error:  # the options' own rules, as a request over the wire meets them
        print(f"zeroshape-w: error: --{str(error).replace('_', '-')}", file=sys.stderr)
        return 2
    reconstructor = Reconstructor(args.checkpoint, args.device, args.open_clip_weights)
    taken: set[Path] = set()
    failures = len(unmatched)
    bar = tqdm(images, unit="image", disable=len(images) < 2 or args.quiet, dynamic_ncols=True)
    for source in bar:
        bar.set_postfix_str(source.name)
        try:
            photo = load_photo(source)
            mask = read_mask_file(args.mask, photo.size_in_file) if args.mask else None
            reconstruction = reconstructor.reconstruct(photo, options, mask=mask)
            mesh_path, _ = write_reconstruction(
                reconstruction, _output_path(args.output, source, args.format, taken), args.format
            )
            message = f"{source} -> {mesh_path} ({len(reconstruction.faces)} faces)"
            if args.preview:
                from backend.preview_render import PreviewError, render_preview, stamp_label

                try:
                    views = preview_views(reconstruction.metadata)
                    preview = render_preview(mesh_path, mesh_path.with_suffix(".png"), photo_path=source, views=views)
                    if reconstructor.untrained:
                        stamp_label(preview, "UNTRAINED MODEL (random weights): this mesh is not a reconstruction")
                    message += f", preview {preview}"
                except PreviewError as error:
                    message += f" (no preview: {error})"
            if not args.quiet:
                tqdm.write(message)
        except (ImageError, EmptyMeshError, BadBoxError, MaskError) as error:
            failures += 1
            tqdm.write(f"zeroshape-w: error: {error}", file=sys.stderr)
        except OSError as error:
            failures += 1
            tqdm.write(f"zeroshape-w: error: {source}: cannot write the result ({error})", file=sys.stderr)
    if failures:
        print(f"zeroshape-w: {failures} of {len(images) + len(unmatched)} inputs failed", file=sys.stderr)
    return 1 if failures else 0


def preview_views(metadata: dict) -> list[tuple[str, float, float]] | None:
    """The preview's views of a reconstruction in the blender frame: from the photo's direction (in front, −Y, at the
    camera's elevation when the mesh was stood upright on the predicted ground) and from the side. None for the
    camera frame, where Blender's up is not the mesh's: the default 3/4 view."""
    if metadata.get("frame") != "blender":
        return None
    up = metadata.get("up") or {}
    elevation = float(up.get("elevation_deg", 0.0)) if up.get("source") == "gravity head" else 0.0
    return [("front: the photo's direction", 0.0, elevation), ("side", 90.0, 10.0)]


def add_reconstruct_command(commands) -> None:
    """Register `reconstruct` on an argparse subparsers object."""
    reconstruct = commands.add_parser(
        "reconstruct",
        help="reconstruct meshes from photos",
        description="Reconstruct a 3D mesh from each photo. Writes MESH, a JSON of camera, frame and timings, and "
        "NAME-mask.png (the object mask the mesh was built from: edit it and give it back with --mask) beside it. "
        "The object's outline comes from, best first: --mask, the photo's alpha channel, the model's mask sharpened "
        "by GrabCut. One bad image is reported and the others go on; the exit status is 1 if any failed.",
    )
    reconstruct.add_argument("images", nargs="+", help="image files, folders of images, or glob patterns")
    reconstruct.add_argument("-o", "--output", type=Path, required=True, help="folder for the meshes")
    reconstruct.add_argument("--format", default="glb", choices=["glb", "obj", "ply", "stl"], help="default glb")
    reconstruct.add_argument("--resolution", type=int, default=128, help="grid cells per side, 32-512 (default 128)")
    reconstruct.add_argument(
        "--category",
        help='object category prompt, e.g. "chair"; "object" is category-agnostic; default "auto": the model '
        'chooses when it is confident (models without a category head use "object")',
    )
    reconstruct.add_argument("--checkpoint", type=Path, help="model file (default: the bundled model)")
    reconstruct.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    reconstruct.add_argument(
        "--open-clip-weights", type=Path, help="local OpenCLIP weights, for models conditioned on OpenCLIP"
    )
    reconstruct.add_argument(
        "--frame",
        default="blender",
        choices=["blender", "camera"],
        help="blender: Z-up, facing -Y, unit height on z=0 (default); camera: OpenCV axes, overlays the photo",
    )
    reconstruct.add_argument("--no-color", action="store_true", help="do not colour vertices from the photo")
    reconstruct.add_argument(
        "--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"), help="object box in photo pixels"
    )
    reconstruct.add_argument("--max-faces", type=int, help="decimate to at most this many faces")
    reconstruct.add_argument("--keep-fragments", action="store_true", help="keep parts not connected to the main one")
    reconstruct.add_argument(
        "--camera-up",
        action="store_true",
        help="blender frame: keep the camera's up instead of standing the object on the ground the model predicts",
    )
    reconstruct.add_argument("--recursive", action="store_true", help="look into sub-folders too")
    reconstruct.add_argument("--preview", action="store_true", help="also render a PNG preview next to each mesh")
    reconstruct.add_argument("-q", "--quiet", action="store_true", help="print errors only")

    add_shape_arguments(reconstruct)
    reconstruct.set_defaults(run=command_reconstruct)


def add_shape_arguments(reconstruct: argparse.ArgumentParser) -> None:
    """The options that choose the shape and the outline it is built from."""
    reconstruct.add_argument(
        "--shape",
        default="inflate",
        choices=list(SHAPES),
        help="inflate: a round body grown from the object's outline (default; fast, no decoder); body: the same "
        "body tilted and thickened as the model's body head estimates from the mask (better seen from above, "
        "worse level with the object: docs/MODEL_CARD.md); learned: the occupancy decoder, cut to the outline's "
        "visual cone",
    )
    reconstruct.add_argument(
        "--mask",
        type=Path,
        metavar="FILE",
        help="the object's mask for a single photo: an image of the photo's size, white (or opaque) on the object",
    )
    reconstruct.add_argument(
        "--ignore-alpha",
        action="store_true",
        help="do not take a photo's alpha channel as the object's mask (the model finds the object instead)",
    )
    reconstruct.add_argument(
        "--no-refine-mask",
        action="store_true",
        help="use the model's object mask as it is instead of sharpening it to the photo's edges with GrabCut",
    )
    reconstruct.add_argument(
        "--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="network arithmetic (fp16: GPU only)"
    )
