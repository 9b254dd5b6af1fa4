"""The training package's commands: train, evaluate, release, data render and benchmark.

`add_commands` registers them on the `zeroshape-w` parser (see `zeroshape_w.cli`); `python -m training`
runs them alone.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from backend.cli import CONFIG_NAMES, new_parser, run


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
    from training.options import TrainOptions
    from training.train import train

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
        train_only=tuple(args.train_only),
        freeze=tuple(args.freeze),
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
                shape=args.shape,
                repeats=args.repeats,
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


def add_commands(commands) -> None:
    """Register the training package's commands on an argparse subparsers object."""
    benchmark = commands.add_parser(
        "benchmark",
        help="measure training throughput (forward + backward + AdamW, samples/s) or inference forward time",
    )
    benchmark.add_argument("--config", default="small", choices=CONFIG_NAMES)
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
    benchmark.add_argument(
        "--shape",
        default="inflate",
        choices=["inflate", "body", "learned"],
        help="reconstruct mode: shape (default inflate)",
    )
    benchmark.add_argument(
        "--repeats", type=int, default=5, help="reconstruct mode: timed runs after a warm-up; the median (default 5)"
    )
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
    render.add_argument(
        "--elevation",
        type=float,
        nargs=2,
        metavar=("LOWEST", "HIGHEST"),
        help="range of the cameras' elevation above the object, in degrees, 0 = from the side, at most 85 "
        "(default 5 65); e.g. 0 65 adds the side views that photos are often taken from",
    )
    render.add_argument("--timeout", type=float, default=120.0, help="seconds per object before giving up")
    render.add_argument("--limit", type=int, help="only the first N objects (after sharding)")
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

    train = commands.add_parser(
        "train",
        help="train a model on rendered datasets",
        description="Train ZeroShape-W in two stages (pixel-level parts, then everything with the occupancy loss) "
        "on datasets made by `zeroshape-w data render`. Resumable: run the same command again and it continues "
        "from the last checkpoint in --out. Several GPUs or machines: launch it with torchrun.",
    )
    train.add_argument("--config", default="small", choices=CONFIG_NAMES, help="model size")
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
        "--train-only",
        action="append",
        default=[],
        metavar="COMPONENT",
        help="with --init: train only this part of the model, the rest frozen as initialised (weights and "
        "batch-norm statistics); repeatable; a part the model lacks is refused with the list of its parts. E.g. "
        "--init-matching --train-only category_head fits the category head (--category auto) onto a shipped "
        'model and leaves its meshes unchanged; the heads are fitted under the "object" prompt, the category '
        "head on the model's own predictions (joint steps: a small --query-points saves time), and an optional "
        "head that --init lacks and is not trained is left out",
    )
    train.add_argument(
        "--freeze",
        action="append",
        default=[],
        metavar="COMPONENT",
        help="with --init: keep this part of the model as initialised (weights and batch-norm statistics) and train "
        "the rest, the stages unchanged; repeatable; not with --train-only. E.g. --freeze coord_encoder --freeze "
        "decoder keeps a 3D half that reads its evidence, and joint steps train the image side through it",
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
        help="replace one loss weight of the recipe; repeatable. Terms (defaults): camera (10), depth (1), "
        "depth_aux (0.1), depth_gradient (0: MiDaS gradient matching, off), visible_mask (1), occluder_mask (1), "
        "occupancy (1), gravity (1), category (0.2); e.g. camera=1",
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

    from training.cli_evaluate import add_evaluate_command

    add_evaluate_command(commands)

    from training.cli_body import add_train_body_command
    from training.cli_mask import add_train_mask_command
    from training.cli_photo_bench import add_photo_bench_commands

    add_photo_bench_commands(commands)
    add_train_mask_command(commands)
    add_train_body_command(commands)

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


def build_parser() -> argparse.ArgumentParser:
    """The training commands alone (`python -m training`)."""
    parser, commands = new_parser("ZeroShape-W training: data, train, evaluate, release, benchmark.")
    add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)
