"""`zeroshape-w data render` and `data relabel`: training data rendered from assets with Blender."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def command_data_relabel(args: argparse.Namespace) -> int:
    from training.data.render import relabel_inside_out

    for dataset in args.dataset:
        changed = relabel_inside_out(dataset)
        listed = f": {', '.join(changed[:5])}{', ...' if len(changed) > 5 else ''}" if changed else ""
        print(f"{dataset}: {len(changed)} inside-out objects relabelled{listed}")
    return 0


def command_data_render(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from training.data.render import RenderSettings, render_dataset
    from training.data.sources import collect_sources, shard, split

    settings = RenderSettings(  # first: a bad setting is refused before the sources are read
        views=args.views,
        samples=args.samples,
        own_appearance=args.own_appearance,
        timeout_s=args.timeout,
        clutter=args.clutter,
        occlusion=args.occlusion,
        hdri=args.hdri,
        every_condition=args.every_condition,
        **({"elevation_deg": tuple(args.elevation)} if args.elevation else {}),
    )
    objects = split(collect_sources(args.source, args.per_category, args.seed, args.up_axis), args.split)
    manifest = "manifest.jsonl"
    if args.shard:
        objects = shard(objects, args.shard)
        index, count = args.shard.split("/")
        manifest = f"manifest.shard-{index}-of-{count}.jsonl"
    if args.limit:
        objects = objects[: args.limit]
    bar = tqdm(total=len(objects), unit="object", dynamic_ncols=True)

    def progress(object_id: str, ok: bool) -> None:
        bar.update(1)
        if not ok:
            tqdm.write(f"zeroshape-w: {object_id} failed (see errors.log)", file=sys.stderr)

    report = render_dataset(objects, args.out, settings, progress=progress, manifest_name=manifest)
    bar.update(report["skipped_finished"])
    bar.close()
    print(
        f"{report['rendered']} objects rendered, {report['skipped_finished']} already done, {report['failed']} failed; "
        f"{report['views']} views in {report['seconds']:.1f} s = {report['views_per_second']:.2f} views/s "
        f"(all outputs written); dataset in {args.out}"
    )
    return 1 if report["failed"] else 0


def add_data_commands(commands) -> None:
    """Register `data render` and `data relabel` on an argparse subparsers object."""
    data = commands.add_parser("data", help="make training data")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    render = data_commands.add_parser(
        "render",
        help="render a dataset from assets with Blender",
        description="Turn objects into training data: normalised meshes, occupancy samples, surface points and "
        "Cycles renders (RGB, depth, mask, camera). Resumable: finished objects are skipped.",
    )
    render.add_argument(
        "--source",
        action="append",
        required=True,
        help="a folder of assets (OBJ, GLB/GLTF, PLY, STL, OFF, FBX, .blend) or of Sweet Home 3D catalogues "
        "(*.sh3f); 'procedural'; 'random-objects' (pybullet's 1000); 'sweethome3d' (Debian's "
        "sweethome3d-furniture); '0ad' (Debian's 0ad-data: animals); repeatable",
    )
    render.add_argument(
        "--split",
        default="all",
        choices=["all", "train", "val"],
        help="asset objects held out for validation: 'val' keeps one object in ten (chosen by a hash of its id, "
        "stable as sources grow), 'train' the other nine (default all)",
    )
    render.add_argument(
        "--up-axis",
        default="auto",
        choices=["auto", "y", "z"],
        help="which axis of the asset files points up; auto (default): Y for OBJ and glTF, Z for PLY, STL and OFF "
        "(FBX and .blend: Blender's own axes)",
    )
    render.add_argument("--out", type=Path, required=True, help="dataset folder (created; resumed if it exists)")
    render.add_argument("--views", type=int, default=8, help="views per object (default 8)")
    render.add_argument("--per-category", type=int, default=20, help="procedural objects per category (default 20)")
    render.add_argument("--seed", type=int, default=0, help="procedural seed (default 0)")
    render.add_argument("--shard", help="i/N: render every N-th object starting at i (0-based)")
    render.add_argument("--timeout", type=float, default=120.0, help="seconds per object before giving up")
    render.add_argument("--limit", type=int, help="only the first N objects (after sharding)")
    add_scene_arguments(render)
    render.set_defaults(run=command_data_render)
    relabel = data_commands.add_parser(
        "relabel",
        help="repair the occupancy labels of inside-out meshes in a dataset rendered before they were handled",
        description="Datasets rendered before inside-out meshes were recognised (0 A.D.'s models wind their "
        "triangles clockwise, as do a few Sweet Home 3D models) hold all-empty occupancy labels for them. This turns "
        "each such mesh.ply the right way out and labels its samples again, in seconds per object; renders are kept. "
        "Safe to interrupt and repeat.",
    )
    relabel.add_argument("dataset", type=Path, nargs="+", help="rendered dataset folder(s)")
    relabel.set_defaults(run=command_data_relabel)


def add_scene_arguments(render: argparse.ArgumentParser) -> None:
    """How each view is lit, dressed and seen."""
    render.add_argument(
        "--samples", type=int, default=4, help="Cycles samples per pixel (default 4; 8 is cleaner, at half the speed)"
    )
    render.add_argument(
        "--own-appearance",
        type=float,
        default=0.5,
        metavar="FRACTION",
        help="share of textured assets (glTF, OBJ with materials, FBX, .blend) rendered with their own materials "
        "instead of a drawn colour × material (default 0.5)",
    )
    render.add_argument(
        "--clutter",
        type=float,
        default=0.3,
        metavar="FRACTION",
        help="share of views with 2-4 other objects standing beside and behind the object (default 0.3)",
    )
    render.add_argument(
        "--occlusion",
        type=float,
        default=0.2,
        metavar="FRACTION",
        help="share of views with clutter and a 3D object standing in front, hiding 15-60%% of it (default 0.2)",
    )
    render.add_argument(
        "--hdri",
        type=float,
        default=0.3,
        metavar="FRACTION",
        help="share of objects lit by one of the 8 HDRIs inside the bpy wheel instead of a plain sky (default 0.3)",
    )
    render.add_argument(
        "--every-condition",
        action="store_true",
        help="render each camera clean, cluttered and occluded (3 × --views views): for validation splits",
    )
    render.add_argument(
        "--elevation",
        type=float,
        nargs=2,
        metavar=("LOWEST", "HIGHEST"),
        help="range of the cameras' elevation above the object, in degrees, 0 = from the side, at most 85 "
        "(default 5 65); e.g. 0 65 adds the side views that photos are often taken from",
    )
