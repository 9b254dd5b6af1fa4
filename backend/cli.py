"""The backend's commands: reconstruct, serve, keys and the checkpoint tools (`python -m backend`).

`add_commands` registers them on the `zeroshape-w` parser, which `zeroshape_w.cli` composes with the training
package's commands; `run` is the shared way to parse, set up logging and turn errors into one line. Nothing
here imports `training`: the backend sits below it in the house.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from blender_addon.protocol import SHAPES

PAPER_PARAMETERS = 193.7e6
"""ZeroShape-W's published parameter count (text encoder excluded)."""


# The presets of `backend.model.config.CONFIGS`, written out so `--help` imports no torch; one tuple for every
# command's --config, which a test keeps in step with CONFIGS.
CONFIG_NAMES = ("paper", "small", "medium", "tiny")


def _format_millions(count: int) -> str:
    return f"{count / 1e6:9.3f}M"


def command_params(args: argparse.Namespace) -> int:
    from backend.model.config import CONFIGS
    from backend.model.convert import UNBUILT_PARAMETER_COUNTS
    from backend.model.zeroshape import COMPONENTS, ZeroShapeW

    names = args.config or list(CONFIGS)
    for name in names:
        config = CONFIGS[name]
        # The meta device allocates no memory: the full-size model is counted in a second.
        with __import__("torch").device("meta"):
            model = ZeroShapeW(config)
        counts = model.parameter_counts()
        total = sum(counts.values())
        print(f"\n{name}  (image {config.image_size}², text encoder: {config.text.kind})")
        for component in COMPONENTS:
            note = ""
            if component == "text_encoder" and model.text_encoder.frozen_external:
                external = sum(p.numel() for p in model.text_encoder.parameters())
                note = f"  (frozen OpenCLIP {config.text.open_clip_model} text tower, {external / 1e6:.1f}M, excluded)"
            print(f"  {component:<20}{_format_millions(counts[component])}{note}")
        print(f"  {'total':<20}{_format_millions(total)}")
        if name == "paper":
            delta = (total - PAPER_PARAMETERS) / PAPER_PARAMETERS
            unbuilt = sum(UNBUILT_PARAMETER_COUNTS.values())
            print(f"  paper reports 193.700M: difference {delta:+.2%} (target: within ±2%)")
            print(
                f"  with the {unbuilt / 1e6:.3f}M parameters ZeroShape counts but nothing reads "
                f"({'; '.join(UNBUILT_PARAMETER_COUNTS)}): "
                f"{(total + unbuilt) / 1e6:.3f}M, {(total + unbuilt - PAPER_PARAMETERS) / PAPER_PARAMETERS:+.2%}"
            )
    return 0


def command_convert(args: argparse.Namespace) -> int:
    from backend.model.checkpoint import save_checkpoint
    from backend.model.convert import convert_zeroshape_checkpoint

    model, report, provenance = convert_zeroshape_checkpoint(args.source, open_clip_weights=args.open_clip_weights)
    output = save_checkpoint(model, args.output, provenance=provenance)
    print(report.summary())
    for key, reason in sorted(report.dropped.items()):
        print(f"  unused: {key} ({reason})")
    print(f"wrote {output}")
    return 0


def command_checkpoint_info(args: argparse.Namespace) -> int:
    from backend.model.checkpoint import read_header

    print(json.dumps(read_header(args.checkpoint), indent=2))
    return 0


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


def command_init_checkpoint(args: argparse.Namespace) -> int:
    import torch

    from backend.model.checkpoint import save_checkpoint
    from backend.model.config import get_config
    from backend.model.zeroshape import ZeroShapeW

    torch.manual_seed(args.seed)
    model = ZeroShapeW(get_config(args.config))
    provenance = {
        "untrained": True,
        "warning": "random initial weights: for wiring and tests only, meshes are meaningless",
        "seed": args.seed,
    }
    print(f"wrote {save_checkpoint(model, args.output, provenance=provenance)} (UNTRAINED, random weights)")
    return 0


def command_serve(args: argparse.Namespace) -> int:
    from backend.endpoint import ServerConfig, ServerError
    from backend.server import Server

    if args.worker_config:  # a broker's worker: its configuration is the broker's, from the file it wrote
        config = ServerConfig.from_json(args.worker_config.read_text())
    else:
        config = ServerConfig(
            address=args.address,
            checkpoint=args.checkpoint,
            device=args.device,
            open_clip_weights=args.open_clip_weights,
            queue_size=args.queue_size,
            max_resolution=args.max_resolution,
            job_deadline_s=args.deadline,
            max_message_bytes=args.max_message_mb * 1024 * 1024,
            grace_s=args.grace,
            auth=args.auth,
            server_secret_key=args.server_key,
            allowed_clients=args.allowed_clients,
            token_file=args.token_file,
        )
    try:
        if args.workers > 1:
            from backend.broker import Broker

            return Broker(config, args.workers).serve()
        return Server(config).serve()
    except ServerError as error:
        print(f"zeroshape-w: error: {error}", file=sys.stderr)
        return 2


def command_keys(args: argparse.Namespace) -> int:
    from backend.endpoint import generate_keys

    public, secret = generate_keys(args.dir, args.name)
    print(f"public key: {public}  (give it to the other side: a server's to clients, a client's to the server's")
    print("            --allowed-clients folder)")
    print(f"secret key: {secret}  (keep it private; readable only by you)")
    return 0


def add_commands(commands) -> None:
    """Register the backend's commands on an argparse subparsers object."""
    params = commands.add_parser("params", help="print parameter counts of each model config, by component")
    params.add_argument("--config", action="append", choices=CONFIG_NAMES, help="only this config")
    params.set_defaults(run=command_params)

    convert = commands.add_parser(
        "convert-zeroshape",
        help="warm-start a `paper` ZeroShape-W checkpoint from an official ZeroShape shape.ckpt",
    )
    convert.add_argument("source", type=Path, help="official ZeroShape checkpoint (torch file with a 'graph' dict)")
    convert.add_argument("-o", "--output", type=Path, required=True, help="ZeroShape-W checkpoint to write")
    convert.add_argument("--open-clip-weights", type=Path, help="local OpenCLIP ViT-B-32 weights to record")
    convert.set_defaults(run=command_convert)

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
    reconstruct.add_argument("--keep-fragments", action="store_true", help="keep parts not connected to the main one")
    reconstruct.add_argument(
        "--camera-up",
        action="store_true",
        help="blender frame: keep the camera's up instead of standing the object on the ground the model predicts",
    )
    reconstruct.add_argument("--recursive", action="store_true", help="look into sub-folders too")
    reconstruct.add_argument("--preview", action="store_true", help="also render a PNG preview next to each mesh")
    reconstruct.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    reconstruct.set_defaults(run=command_reconstruct)

    init = commands.add_parser(
        "init-checkpoint", help="write an UNTRAINED checkpoint (random weights) for wiring and tests"
    )
    init.add_argument("--config", default="small", choices=CONFIG_NAMES)
    init.add_argument("-o", "--output", type=Path, required=True)
    init.add_argument("--seed", type=int, default=0)
    init.set_defaults(run=command_init_checkpoint)

    serve = commands.add_parser(
        "serve",
        help="run the inference server for the Blender add-on (ZeroMQ)",
        description="Serve reconstructions over ZeroMQ. Listens on loopback only unless --auth is given; prints "
        "'ready' once the model is loaded and warmed up. SIGINT/SIGTERM let the running job finish (--grace) "
        "and refuse new ones.",
    )
    serve.add_argument("--address", default="tcp://127.0.0.1:5557", help="ZeroMQ endpoint (default %(default)s)")
    serve.add_argument("--checkpoint", type=Path, help="model file (default: the bundled model)")
    serve.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    serve.add_argument("--open-clip-weights", type=Path, help="local OpenCLIP weights, if the model needs them")
    serve.add_argument("--queue-size", type=int, default=8, help="jobs that may wait (default 8); more get 'busy'")
    serve.add_argument("--max-resolution", type=int, default=256, help="largest grid resolution a request may ask")
    serve.add_argument("--deadline", type=float, default=600.0, help="seconds a job may run (default 600)")
    serve.add_argument("--max-message-mb", type=int, default=64, help="largest message accepted, MiB (default 64)")
    serve.add_argument("--grace", type=float, default=10.0, help="seconds to finish a job on shutdown (default 10)")
    serve.add_argument("--auth", action="store_true", help="require CurveZMQ keys (needed off loopback)")
    serve.add_argument("--server-key", type=Path, help="with --auth: the server's NAME.key_secret file")
    serve.add_argument("--allowed-clients", type=Path, help="with --auth: folder of allowed clients' NAME.key files")
    serve.add_argument("--token-file", type=Path, help="where to write the shutdown token (default: runtime dir)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run N worker processes behind one address (one per GPU with --device auto)",
    )
    serve.add_argument("--worker-config", type=Path, metavar="FILE", help="run as a broker's worker (internal)")
    serve.set_defaults(run=command_serve)

    keys = commands.add_parser("keys", help="generate a CurveZMQ key pair for --auth")
    keys.add_argument("--dir", type=Path, required=True, help="folder to write NAME.key and NAME.key_secret into")
    keys.add_argument("--name", default="zeroshape", help="file name stem (default zeroshape)")
    keys.set_defaults(run=command_keys)

    info = commands.add_parser("checkpoint-info", help="print a checkpoint's config and provenance")
    info.add_argument("checkpoint", type=Path)
    info.set_defaults(run=command_checkpoint_info)


def new_parser(description: str) -> tuple[argparse.ArgumentParser, object]:
    """The `zeroshape-w` parser with its global options, and its (empty) subcommands."""
    parser = argparse.ArgumentParser(prog="zeroshape-w", description=description)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser, parser.add_subparsers(dest="command", required=True, metavar="COMMAND")


def build_parser() -> argparse.ArgumentParser:
    """The backend's commands alone (`python -m backend`); `zeroshape-w` has the training commands too."""
    parser, commands = new_parser("ZeroShape-W inference backend: reconstruct, serve, keys, checkpoint tools.")
    add_commands(commands)
    return parser


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse, set up logging, run the chosen command; expected failures become one line on stderr."""
    # No model hub is ever contacted: every weight comes from a local file.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parser.parse_args(argv)
    # Third-party libraries (open_clip, timm) log chatter at INFO; only our own packages speak at INFO.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    for package in ("backend", "training"):
        logging.getLogger(package).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    from backend.model.checkpoint import CheckpointError

    try:
        return args.run(args)
    except (CheckpointError, FileNotFoundError, ValueError) as error:
        print(f"zeroshape-w: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("zeroshape-w: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)
