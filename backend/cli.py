"""The `zeroshape-w` command (also `python -m backend`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

PAPER_PARAMETERS = 193.7e6
"""ZeroShape-W's published parameter count (text encoder excluded)."""

# Parameters in ZeroShape's own count (and so, presumably, in the 193.7M) that this implementation does
# not build because nothing reads them: DPT's unused skip unit of the deepest fusion block, the ViT's
# classifier norm and head, and the part of the 24×24 (384 px) position table beyond the 14×14 grid.
UNBUILT_ZEROSHAPE_PARAMETERS = {
    "DPT refinenet4.resConfUnit1": 2 * (256 * 256 * 9 + 256),
    "ViT classifier head and norm": 1000 * 768 + 1000 + 2 * 768,
    "384 px position table (577 vs 197 tokens)": (577 - 197) * 768,
}


def _format_millions(count: int) -> str:
    return f"{count / 1e6:9.3f}M"


def command_params(args: argparse.Namespace) -> int:
    from backend.model.config import CONFIGS
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
            unbuilt = sum(UNBUILT_ZEROSHAPE_PARAMETERS.values())
            print(f"  paper reports 193.700M: difference {delta:+.2%} (target: within ±2%)")
            print(
                f"  with the {unbuilt / 1e6:.3f}M parameters ZeroShape counts but nothing reads "
                f"({'; '.join(UNBUILT_ZEROSHAPE_PARAMETERS)}): "
                f"{(total + unbuilt) / 1e6:.3f}M, {(total + unbuilt - PAPER_PARAMETERS) / PAPER_PARAMETERS:+.2%}"
            )
    return 0


def command_benchmark(args: argparse.Namespace) -> int:
    if args.mode == "load":
        return benchmark_load(args)
    from backend.benchmark import forward_latency, train_throughput
    from training.recipes import get_recipe

    recipe = get_recipe(args.config)
    if args.mode == "reconstruct":
        from backend.benchmark import BENCHMARK_HEADER, reconstruct_benchmark

        if args.threads:
            __import__("torch").set_num_threads(args.threads)
        configs = ["tiny", "small", "paper"] if args.all_configs else [args.config]
        print(BENCHMARK_HEADER)
        for name in configs:
            result = reconstruct_benchmark(
                name,
                str(args.image),
                args.resolution,
                args.device,
                compare_dense=not args.no_dense,
                checkpoint=args.checkpoint if len(configs) == 1 else None,
                precision=args.precision,
            )
            print(result.row(), flush=True)
        return 0
    if args.mode == "forward":
        points = args.points or 4096
        times = forward_latency(args.config, points, args.steps, args.device, args.threads)
        print(f"config={args.config} device={args.device} threads={__import__('torch').get_num_threads()}")
        print(f"forward seconds (1 image, {points} query points): {', '.join(f'{t:.3f}' for t in times)}")
        print(f"median forward: {sorted(times)[len(times) // 2]:.3f} s")
        return 0
    result = train_throughput(
        args.config,
        batch_size=args.batch_size or recipe.batch_size,
        query_points=args.points or recipe.query_points,
        steps=args.steps,
        warmup=args.warmup,
        device=args.device,
        threads=args.threads,
        stage=args.stage,
        precision=args.precision,
        channels_last=args.channels_last,
    )
    print(result.report())
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
    from backend.pipeline import BadBoxError, EmptyMeshError, ReconstructOptions, Reconstructor
    from backend.preprocess import ImageError, load_photo

    images, unmatched = expand_inputs(args.images, args.recursive)
    for message in unmatched:
        print(f"zeroshape-w: error: {message}", file=sys.stderr)
    if not images:
        print("zeroshape-w: error: no images to reconstruct", file=sys.stderr)
        return 1
    resolution = args.resolution
    if resolution < 32 or resolution > 512 or resolution & (resolution - 1):
        print(
            f"zeroshape-w: error: --resolution must be a power of two from 32 to 512, got {resolution}", file=sys.stderr
        )
        return 2
    reconstructor = Reconstructor(args.checkpoint, args.device, args.open_clip_weights)
    options = ReconstructOptions(
        resolution=resolution,
        category=args.category or "object",
        frame=args.frame,
        color=not args.no_color,
        box=tuple(args.box) if args.box else None,
        largest_component=not args.keep_fragments,
        max_faces=args.max_faces,
        precision=args.precision,
    )
    taken: set[Path] = set()
    failures = len(unmatched)
    bar = tqdm(images, unit="image", disable=len(images) < 2 or args.quiet, dynamic_ncols=True)
    for source in bar:
        bar.set_postfix_str(source.name)
        try:
            photo = load_photo(source)
            reconstruction = reconstructor.reconstruct(photo, options)
            mesh_path, _ = write_reconstruction(
                reconstruction, _output_path(args.output, source, args.format, taken), args.format
            )
            message = f"{source} -> {mesh_path} ({len(reconstruction.faces)} faces)"
            if args.preview:
                from backend.preview_render import PreviewError, render_preview, stamp_label

                try:
                    preview = render_preview(mesh_path, mesh_path.with_suffix(".png"), photo_path=source)
                    if reconstructor.untrained:
                        stamp_label(preview, "UNTRAINED MODEL (random weights): this mesh is not a reconstruction")
                    message += f", preview {preview}"
                except PreviewError as error:
                    message += f" (no preview: {error})"
            if not args.quiet:
                tqdm.write(message)
        except (ImageError, EmptyMeshError, BadBoxError) as error:
            failures += 1
            tqdm.write(f"zeroshape-w: error: {error}", file=sys.stderr)
        except OSError as error:
            failures += 1
            tqdm.write(f"zeroshape-w: error: {source}: cannot write the result ({error})", file=sys.stderr)
    if failures:
        print(f"zeroshape-w: {failures} of {len(images) + len(unmatched)} inputs failed", file=sys.stderr)
    return 1 if failures else 0


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
        worker_of=args.worker_of,
    )
    try:
        if args.workers > 1:
            from backend.broker import Broker

            return Broker(config, args.workers).serve()
        return Server(config).serve()
    except ServerError as error:
        print(f"zeroshape-w: error: {error}", file=sys.stderr)
        return 2


def benchmark_load(args: argparse.Namespace) -> int:
    from backend.serve_load import run_load
    from blender_addon.client import BackendError, Client
    from blender_addon.protocol import ReconstructOptions

    try:
        server = Client(args.address).info()
    except BackendError as error:
        print(f"zeroshape-w: error: {error}", file=sys.stderr)
        return 1
    workers = len(server.get("workers") or []) or 1
    print(f"{args.address}: model {server['model']} on {server['device']}, {workers} worker(s)")
    print(f"{args.clients} stock clients × {args.jobs} jobs at resolution {args.resolution}", flush=True)
    result = run_load(
        args.address,
        args.image.read_bytes(),
        ReconstructOptions(resolution=args.resolution),
        clients=args.clients,
        jobs=args.jobs,
        kill_worker_after_s=args.kill_worker_after,
    )
    print(result.report())
    return 0


def command_keys(args: argparse.Namespace) -> int:
    from backend.endpoint import generate_keys

    public, secret = generate_keys(args.dir, args.name)
    print(f"public key: {public}  (give it to the other side: a server's to clients, a client's to the server's")
    print("            --allowed-clients folder)")
    print(f"secret key: {secret}  (keep it private; readable only by you)")
    return 0


def parse_loss_weights(items: list[str]) -> tuple[tuple[str, float], ...]:
    """`--loss-weight camera=1 --loss-weight depth=2` → (("camera", 1.0), ("depth", 2.0)); names are checked by
    the training code, which knows the loss terms."""
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = None
        if not sep or not name.strip() or weight is None:
            raise ValueError(f"--loss-weight {item!r}: expected TERM=WEIGHT, e.g. camera=1")
        pairs.append((name.strip(), weight))
    return tuple(pairs)


def command_train(args: argparse.Namespace) -> int:
    from training.train import TrainOptions, train

    aux_model = None
    if args.aux_depth_model:
        from training.losses import load_auxiliary_depth_model

        aux_model = load_auxiliary_depth_model(args.aux_depth_model)
    options = TrainOptions(
        data=tuple(str(d) for d in args.data),
        out=str(args.out),
        config=args.config,
        max_steps=args.max_steps,
        time_budget_minutes=args.time_budget,
        init=str(args.init) if args.init else None,
        init_matching=args.init_matching,
        stage1_fraction=args.stage1_fraction,
        shape_stage_fraction=args.shape_stage_fraction,
        pixel_aligned=args.pixel_aligned,
        teacher_forcing=tuple(args.teacher_forcing) if args.teacher_forcing else None,
        corrupt_teacher_forcing=args.corrupt_teacher_forcing,
        loss_weights=parse_loss_weights(args.loss_weight),
        grad_clip=args.grad_clip,
        seed=args.seed,
        batch_size=args.batch_size,
        query_points=args.query_points,
        learning_rate=args.learning_rate,
        device=args.device,
        precision=args.precision,
        workers=args.workers,
        threads=args.threads,
        checkpoint_every=args.checkpoint_every,
        open_clip_weights=str(args.open_clip_weights) if args.open_clip_weights else None,
    )
    result = train(options, aux_depth_model=aux_model)
    if int(os.environ.get("RANK", "0")) == 0:
        losses = ", ".join(f"{k} {v:.4f}" for k, v in result.last_losses.items())
        state = "finished" if result.finished else f"stopped ({result.stopped_because}); run again to continue"
        print(
            f"step {result.step}: {state}. {result.samples_per_second:.2f} samples/s over {result.seconds:.0f} s; "
            f"last losses: {losses}\ncheckpoint: {result.checkpoint}"
        )
    return 0


def command_evaluate(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from backend.model.checkpoint import load_checkpoint
    from backend.pipeline import default_checkpoint, resolve_device
    from training.evaluate import EvalOptions, evaluate_dataset, evaluate_pix3d, format_tables, tables, write_results

    if not args.data and not args.pix3d:
        raise ValueError("give --data DIR (a rendered dataset) or --pix3d ROOT")
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or default_checkpoint()
    model = load_checkpoint(checkpoint, resolve_device(args.device), args.open_clip_weights)
    options = EvalOptions(
        resolution=args.resolution,
        surface_samples=args.samples,
        views_per_object=args.views_per_object,
        object_stride=args.object_stride,
        conditions=tuple(args.conditions),
        rotation_search=args.rotation_search,
        baselines=not args.no_baselines,
        category_prompt=not args.agnostic,
        seed=args.seed,
        oracle=args.oracle,
    )
    progress = lambda jobs: tqdm(jobs, unit="view", dynamic_ncols=True)  # noqa: E731
    if args.pix3d:
        rows = evaluate_pix3d(model, args.pix3d, options, args.category, args.limit, progress)
    else:
        rows = evaluate_dataset(model, args.data, options, progress, args.limit)
    result = tables(rows)
    print(f"checkpoint: {checkpoint}  ({len(rows)} rows; τ = 0.05, ZeroShape's protocol)\n")
    print(format_tables(result))
    if args.out:
        write_results(rows, result, args.out)
        print(f"\nrows, summary and tables written to {args.out}")
    return 0


def command_release(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from training.release import CANDIDATE_LEVELS, release

    notes = {}
    for note in args.note:
        key, separator, value = note.partition("=")
        if not separator or not key:
            raise ValueError(f"--note {note!r}: write it as KEY=VALUE")
        notes[key] = value
    path, level, scores = release(
        args.checkpoint,
        args.out,
        [str(d) for d in args.data],
        tuple(args.levels or CANDIDATE_LEVELS),
        args.views,
        notes,
        progress=lambda views: tqdm(views, unit="view", dynamic_ncols=True),
    )
    for candidate, score in scores.items():
        marker = "  <- chosen" if candidate == level else ""
        print(f"level {candidate:5g}: F-score@0.05 {score['fscore@0.05']:.3f}, {score['empty']} empty meshes{marker}")
    print(f"wrote {path} (float16, occupancy level {level:g})")
    return 0


def command_data_render(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from training.data.render import RenderSettings, render_dataset
    from training.data.sources import collect_sources, shard, split

    objects = split(collect_sources(args.source, args.per_category, args.seed, args.up_axis), args.split)
    manifest = "manifest.jsonl"
    if args.shard:
        objects = shard(objects, args.shard)
        index, count = args.shard.split("/")
        manifest = f"manifest.shard-{index}-of-{count}.jsonl"
    if args.limit:
        objects = objects[: args.limit]
    settings = RenderSettings(
        views=args.views,
        samples=args.samples,
        own_appearance=args.own_appearance,
        timeout_s=args.timeout,
        clutter=args.clutter,
        occlusion=args.occlusion,
        hdri=args.hdri,
        every_condition=args.every_condition,
    )
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zeroshape-w",
        description="ZeroShape-W: 3D shape from a single image, for Blender. Model tools.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    params = commands.add_parser("params", help="print parameter counts of each model config, by component")
    params.add_argument("--config", action="append", choices=["paper", "small", "tiny"], help="only this config")
    params.set_defaults(run=command_params)

    benchmark = commands.add_parser(
        "benchmark",
        help="measure training throughput (forward + backward + AdamW, samples/s) or inference forward time",
    )
    benchmark.add_argument("--config", default="small", choices=["paper", "small", "tiny"])
    benchmark.add_argument(
        "--mode",
        default="train",
        choices=["train", "forward", "reconstruct", "load"],
        help="train: samples/s; forward: s per image; reconstruct: photo → mesh time per stage; load: many "
        "stock clients against a running `zeroshape-w serve` at --address",
    )
    benchmark.add_argument(
        "--image", type=Path, default=Path("examples/coffee.jpg"), help="reconstruct mode: the photo"
    )
    benchmark.add_argument("--resolution", type=int, default=128, help="reconstruct mode: grid resolution")
    benchmark.add_argument("--checkpoint", type=Path, help="reconstruct mode: weights (default: random)")
    benchmark.add_argument("--all-configs", action="store_true", help="reconstruct mode: tiny, small and paper")
    benchmark.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="network arithmetic in reconstruct and train modes (train: fp32 or bf16 autocast)",
    )
    benchmark.add_argument(
        "--stage",
        default="joint",
        choices=["joint", "shape"],
        help="train mode: joint = the whole model; shape = the 3D half alone, as the shape stage trains it",
    )
    benchmark.add_argument(
        "--channels-last", action="store_true", help="train mode: NHWC memory layout for the image side"
    )
    benchmark.add_argument(
        "--no-dense", action="store_true", help="reconstruct mode: skip the dense-grid comparison (IoU)"
    )
    benchmark.add_argument("--batch-size", type=int, help="images per step (default: the config's recipe)")
    benchmark.add_argument("--points", type=int, help="query points per image (default: the recipe's)")
    benchmark.add_argument("--steps", type=int, default=5, help="timed steps or forward passes (default 5)")
    benchmark.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    benchmark.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    benchmark.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    benchmark.add_argument(
        "--address", default="tcp://127.0.0.1:5557", help="load mode: the server (default %(default)s)"
    )
    benchmark.add_argument("--clients", type=int, default=8, help="load mode: concurrent clients (default 8)")
    benchmark.add_argument(
        "--jobs", type=int, default=5, help="load mode: jobs per client, one after another (default 5)"
    )
    benchmark.add_argument(
        "--kill-worker-after",
        type=float,
        metavar="S",
        help="load mode: SIGKILL one of a local broker's workers after S s",
    )
    benchmark.set_defaults(run=command_benchmark)

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
        description="Reconstruct a 3D mesh from each photo. Writes MESH and a JSON of camera, frame and timings "
        "beside it. One bad image is reported and the others go on; the exit status is 1 if any failed.",
    )
    reconstruct.add_argument("images", nargs="+", help="image files, folders of images, or glob patterns")
    reconstruct.add_argument("-o", "--output", type=Path, required=True, help="folder for the meshes")
    reconstruct.add_argument("--format", default="glb", choices=["glb", "obj", "ply", "stl"], help="default glb")
    reconstruct.add_argument("--resolution", type=int, default=128, help="grid cells per side, 32-512 (default 128)")
    reconstruct.add_argument("--category", help='object category prompt, e.g. "chair" (default "object")')
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
        "--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="network arithmetic (fp16: GPU only)"
    )
    reconstruct.add_argument("--keep-fragments", action="store_true", help="keep parts not connected to the main one")
    reconstruct.add_argument("--recursive", action="store_true", help="look into sub-folders too")
    reconstruct.add_argument("--preview", action="store_true", help="also render a PNG preview next to each mesh")
    reconstruct.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    reconstruct.set_defaults(run=command_reconstruct)

    init = commands.add_parser(
        "init-checkpoint", help="write an UNTRAINED checkpoint (random weights) for wiring and tests"
    )
    init.add_argument("--config", default="small", choices=["paper", "small", "tiny"])
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
    serve.add_argument("--worker-of", metavar="ENDPOINT", help="run as a worker of a broker at ENDPOINT (internal)")
    serve.set_defaults(run=command_serve)

    keys = commands.add_parser("keys", help="generate a CurveZMQ key pair for --auth")
    keys.add_argument("--dir", type=Path, required=True, help="folder to write NAME.key and NAME.key_secret into")
    keys.add_argument("--name", default="zeroshape", help="file name stem (default zeroshape)")
    keys.set_defaults(run=command_keys)

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
    render.add_argument("--timeout", type=float, default=120.0, help="seconds per object before giving up")
    render.add_argument("--limit", type=int, help="only the first N objects (after sharding)")
    render.set_defaults(run=command_data_render)

    train = commands.add_parser(
        "train",
        help="train a model on rendered datasets",
        description="Train ZeroShape-W in two stages (pixel-level parts, then everything with the occupancy loss) "
        "on datasets made by `zeroshape-w data render`. Resumable: run the same command again and it continues "
        "from the last checkpoint in --out. Several GPUs or machines: launch it with torchrun.",
    )
    train.add_argument("--config", default="small", choices=["paper", "small", "tiny"], help="model size")
    train.add_argument("--data", type=Path, action="append", required=True, help="rendered dataset; repeatable")
    train.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, TensorBoard logs)")
    train.add_argument("--max-steps", type=int, help="steps of the whole run (default: the recipe's)")
    train.add_argument("--time-budget", type=float, metavar="MINUTES", help="checkpoint and exit before this")
    train.add_argument("--init", type=Path, help="warm start: our .safetensors or an official ZeroShape file")
    train.add_argument(
        "--init-matching",
        action="store_true",
        help="with --init: the checkpoint may differ in architecture; copy the tensors whose name and shape match "
        "and start the rest fresh (e.g. a wider decoder on a trained backbone)",
    )
    train.add_argument(
        "--stage1-fraction",
        type=float,
        help="share of the steps in stage 1, pixel parts only (default: the recipe's; 0 skips it after a warm start)",
    )
    train.add_argument(
        "--pixel-aligned",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="decoder that reads pixel-aligned evidence (signed distance to the visible surface, masks, fine "
        "features at each point's pixel) or, with --no-pixel-aligned, the token-only decoder of the paper "
        "(default: the config's; small and tiny read evidence, paper does not)",
    )
    train.add_argument(
        "--shape-stage-fraction",
        type=float,
        metavar="F",
        help="share of the steps in the shape stage, run first: the coordinate encoder and decoder alone learn "
        "completion from true visible shapes corrupted like predictions, without the backbone (fast; default: the "
        "recipe's)",
    )
    train.add_argument(
        "--teacher-forcing",
        type=float,
        nargs=2,
        metavar=("START", "END"),
        help="probability that a stage-2 step builds the visible shape from the true depth, camera and mask, at the "
        "stage's start and end, linear in between (default: the recipe's; e.g. 0.2 0.1 to continue a trained run)",
    )
    train.add_argument(
        "--corrupt-teacher-forcing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stage-2 teacher forcing gives the true shape corrupted like predictions (as the shape stage does) "
        "instead of the exact truth (default: the recipe's, off)",
    )
    train.add_argument(
        "--loss-weight",
        action="append",
        default=[],
        metavar="TERM=WEIGHT",
        help="replace one loss weight of the recipe; repeatable. Terms: camera (default 10), depth, depth_aux, "
        "visible_mask, occluder_mask, occupancy; e.g. camera=1",
    )
    train.add_argument(
        "--grad-clip",
        type=float,
        metavar="NORM",
        help="clip the global gradient norm at NORM (default: the recipe's, 1); `train/grad_norm` in TensorBoard "
        "shows how often it binds",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--batch-size", type=int, help="images per step and process (default: the recipe's)")
    train.add_argument("--query-points", type=int, help="occupancy points per image (default: the recipe's)")
    train.add_argument("--learning-rate", type=float, help="peak learning rate (default: the recipe's)")
    train.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    train.add_argument(
        "--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"], help="auto: AMP on a GPU, fp32 on CPU"
    )
    train.add_argument("--workers", type=int, help="data-loading processes (default 1 on CPU, 4 on GPU)")
    train.add_argument("--threads", type=int, help="CPU threads for torch")
    train.add_argument("--checkpoint-every", type=int, default=250, help="steps between checkpoints (default 250)")
    train.add_argument("--open-clip-weights", type=Path, help="local OpenCLIP weights (paper config)")
    train.add_argument(
        "--aux-depth-model",
        type=Path,
        help="a torch.export (.pt2) program image [B,3,H,W] in [0,1] -> disparity [B,1,H,W] (e.g. Depth Anything "
        "V2) for the auxiliary 0.1·L_depth_aux term; off when not given",
    )
    train.set_defaults(run=command_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="score a checkpoint with ZeroShape's protocol",
        description="Score a checkpoint with ZeroShape's protocol: mesh at 128, 10,000 surface samples, both clouds "
        "normalised by centroid and max(x, y extent); Chamfer distance and F-score at τ=0.05, 2τ, 3τ, 5τ, "
        "for the model and the visible-surface and sphere baselines, clean and occluded, overall and per category.",
    )
    evaluate.add_argument("--checkpoint", type=Path, help="model file (default: the bundled model)")
    evaluate.add_argument("--data", type=Path, action="append", help="rendered dataset (validation split); repeatable")
    evaluate.add_argument("--pix3d", type=Path, help="a Pix3D folder (pix3d.json, img/, mask/, model/)")
    evaluate.add_argument("--category", action="append", help="Pix3D: only these categories; repeatable")
    evaluate.add_argument("--limit", type=int, help="only the first N views or images (quick checks)")
    evaluate.add_argument("--out", type=Path, help="folder for rows.jsonl, summary.json and tables.md")
    evaluate.add_argument("--resolution", type=int, default=128, help="mesh grid resolution (default 128)")
    evaluate.add_argument("--samples", type=int, default=10_000, help="surface samples per cloud (default 10000)")
    evaluate.add_argument("--views-per-object", type=int, help="only the first N views of each object")
    evaluate.add_argument(
        "--object-stride",
        type=int,
        default=1,
        metavar="N",
        help="only every N-th object, from the first (default 1: all); e.g. 3 on the training set scores a third of "
        "the objects the model was trained on",
    )
    evaluate.add_argument(
        "--conditions",
        nargs="+",
        default=["clean", "cluttered", "occluded"],
        choices=["clean", "cluttered", "occluded"],
        help="what to score (default all): a split rendered with --every-condition is scored as rendered, each "
        "view under its own condition; a split of clean renders is scored clean and occluded by a pasted cut-out",
    )
    evaluate.add_argument("--rotation-search", action="store_true", help="also search rotations about the up axis")
    evaluate.add_argument("--no-baselines", action="store_true", help="skip the visible-surface and sphere baselines")
    evaluate.add_argument("--agnostic", action="store_true", help='prompt "object" instead of the true category')
    evaluate.add_argument(
        "--oracle",
        action="store_true",
        help="also score the model given the true visible mask (oracle-mask), the true depth and intrinsics "
        "(oracle-depth-K) and all three (oracle-all) on the same views: where the error lives",
    )
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--device", default="auto", help="auto, cpu or cuda")
    evaluate.add_argument("--threads", type=int, help="CPU threads for torch")
    evaluate.add_argument("--open-clip-weights", type=Path, help="local OpenCLIP weights, if the model needs them")
    evaluate.set_defaults(run=command_evaluate)

    release = commands.add_parser(
        "release",
        help="turn a trained checkpoint into the shipped file",
        description="Choose the occupancy level at which meshes are extracted (by mean F-score@0.05 on training "
        "views, never the validation split) and write the checkpoint in float16 with its provenance.",
    )
    release.add_argument("--checkpoint", type=Path, required=True, help="a run's model.safetensors")
    release.add_argument("--data", type=Path, action="append", required=True, help="training dataset; repeatable")
    release.add_argument("--out", type=Path, required=True, help="file to write (e.g. backend/weights/...)")
    release.add_argument("--views", type=int, default=24, help="training views scored per level (default 24)")
    release.add_argument("--levels", type=float, nargs="+", help="occupancy logits to try (default 0 -0.5 -1 -1.5 -2)")
    release.add_argument(
        "--note", action="append", default=[], metavar="KEY=VALUE", help="extra provenance entry; repeatable"
    )
    release.set_defaults(run=command_release)

    info = commands.add_parser("checkpoint-info", help="print a checkpoint's config and provenance")
    info.add_argument("checkpoint", type=Path)
    info.set_defaults(run=command_checkpoint_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    # No model hub is ever contacted: every weight comes from a local file.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
