"""`zeroshape-w evaluate`: score a checkpoint with ZeroShape's protocol (training.evaluate)."""

from __future__ import annotations

import argparse
from pathlib import Path

SHAPE_METHOD_NAMES = [
    "inflate-true-mask",
    "inflate-predicted-mask",
    "inflate-refined-mask",
    "model-carved",
    "body-true-mask",
    "body-refined-mask",
    "body-oracle-true-mask",
]
"""`training.silhouette_eval.SHAPE_METHODS`, spelled out so that `--help` imports no torch (a test holds them equal)."""


def command_evaluate(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from backend.device import resolve_device
    from backend.model.checkpoint import load_checkpoint
    from backend.pipeline import default_checkpoint
    from training.evaluate import EvalOptions, evaluate_dataset, evaluate_pix3d, format_tables, tables, write_results
    from training.silhouette_eval import SHAPE_METHODS

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
        prompt="object" if args.agnostic else args.prompt,
        seed=args.seed,
        oracle=args.oracle,
        shapes=args.shapes,
        shape_methods=tuple(args.shape_methods or SHAPE_METHODS),
        model_row=not args.no_model_row,
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


def add_evaluate_command(commands) -> None:
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
    evaluate.add_argument(
        "--prompt",
        choices=("true", "object", "auto"),
        default="true",
        help='category prompt: the view\'s true category (default), "object", or "auto" (the model chooses)',
    )
    evaluate.add_argument("--agnostic", action="store_true", help="the same as --prompt object")
    evaluate.add_argument(
        "--oracle",
        action="store_true",
        help="also score the model given the true visible mask (oracle-mask), the true depth and intrinsics "
        "(oracle-depth-K) and all three (oracle-all) on the same views: where the error lives",
    )
    evaluate.add_argument(
        "--shapes",
        action="store_true",
        help="also score the silhouette-first shapes on the same views (round bodies inflated from the true, the "
        "predicted and the GrabCut-refined mask; bodies shaped by the model's body head; the model carved by the "
        "mask's cone) and every mesh's silhouette IoU from the front, the side and the top",
    )
    evaluate.add_argument(
        "--shape-methods",
        nargs="+",
        choices=SHAPE_METHOD_NAMES,
        help="with --shapes: only these of them (inflate-*: the round body, --shape inflate; body-*: the body "
        "head's, --shape body; body-oracle-true-mask: the body fitted to the true object)",
    )
    evaluate.add_argument(
        "--no-model-row", action="store_true", help="do not mesh the model's own occupancy (only the other rows)"
    )
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--device", default="auto", help="auto, cpu or cuda")
    evaluate.add_argument("--threads", type=int, help="CPU threads for torch")
    evaluate.add_argument("--open-clip-weights", type=Path, help="local OpenCLIP weights, if the model needs them")
    evaluate.set_defaults(run=command_evaluate)
