"""`zeroshape-w train-body`: teach a trained model how its silhouette bodies stand (training.body_fit)."""

from __future__ import annotations

import argparse
from pathlib import Path


def command_train_body(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from backend.model.checkpoint import load_checkpoint, read_header, save_checkpoint
    from backend.pipeline import default_checkpoint
    from training.body_fit import BodyFitOptions, fit_body_head

    if args.threads:
        torch.set_num_threads(args.threads)
    options = BodyFitOptions(
        checkpoint=args.init or default_checkpoint(),
        data=tuple(args.data),
        out=args.out,
        kind=args.kind,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
    )
    summary = fit_body_head(options, progress=lambda items: tqdm(items, dynamic_ncols=True))
    monitor = summary["monitor_loss"]
    if monitor:
        print(
            f"held-out objects' depth error: head {monitor['head']:.4f}, round body {monitor['round']:.4f}, "
            f"the fitted bodies {monitor['fitted']:.4f}"
        )
    print(f"wrote {args.out / 'model.safetensors'} and {args.out / 'summary.json'}")
    if args.release_to:
        run_model = args.out / "model.safetensors"
        provenance = read_header(run_model)["provenance"]
        provenance["body_head"] |= {"held_out_depth_error": monitor} if monitor else {}
        model = load_checkpoint(run_model)
        print(f"released {save_checkpoint(model, args.release_to, provenance, dtype=torch.float16)} (float16)")
    return 0


def add_train_body_command(commands) -> None:
    parser = commands.add_parser(
        "train-body",
        help="train the head that tilts and thickens the silhouette's inflated body",
        description="Add a body head to a trained model: from the backbone's global features and the visible mask "
        "it predicts the tilt of the inflated body's mirror plane and the body's depth in front of and behind it, "
        "fitted per view to the rendered objects (docs/experiments/body-head.md). The backbone's features are computed "
        "once and cached in --out; only the head trains, in minutes on a CPU, and nothing else in the model changes.",
    )
    parser.add_argument("data", type=Path, nargs="+", help="rendered training datasets (zeroshape-w data render)")
    parser.add_argument("--out", type=Path, required=True, help="run folder (examples cache, model, summary)")
    parser.add_argument("--init", type=Path, help="the trained model to add the head to (default: the bundled one)")
    parser.add_argument(
        "--kind",
        choices=("image", "mask", "constant"),
        default="image",
        help="what the head reads: image features and mask (default), the mask alone, or nothing (one body for all)",
    )
    parser.add_argument("--steps", type=int, default=3000, help="optimiser steps (default 3000)")
    parser.add_argument("--batch-size", type=int, default=64, help="views per step (default 64)")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="peak of the one-cycle rate (default 2e-3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--release-to", type=Path, metavar="FILE", help="also write the model as a float16 release")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.set_defaults(run=command_train_body)
