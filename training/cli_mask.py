"""`zeroshape-w train-mask`: teach the object-mask head real photos (training.mask_finetune)."""

from __future__ import annotations

import argparse
from pathlib import Path


def command_train_mask(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from backend.pipeline import default_checkpoint
    from training.mask_finetune import MaskFinetuneOptions, finetune_mask

    if args.threads:
        torch.set_num_threads(args.threads)
    options = MaskFinetuneOptions(
        init=args.init or default_checkpoint(),
        out=args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        backbone_rate_scale=args.backbone_rate_scale,
        render_data=tuple(args.render_data or ()),
        render_share=args.render_share,
        distill_weight=args.distill_weight,
        time_budget_min=args.time_budget,
        seed=args.seed,
        stamps=args.stamps,
    )
    path = finetune_mask(options, progress=lambda **kw: tqdm(unit="step", dynamic_ncols=True, **kw))
    print(f"wrote {path}")
    if args.release_to:
        from backend.model.checkpoint import read_header
        from training.mask_finetune import release_mask_checkpoint

        if read_header(path)["provenance"].get("step") != args.steps:
            print("zeroshape-w: not released: the run has not reached --steps yet (run the same command again)")
            return 1
        # The init's provenance is read before the release may overwrite the init itself (the bundled model).
        print(f"released {release_mask_checkpoint(path, args.release_to)} (float16)")
    return 0


def add_train_mask_command(commands) -> None:
    parser = commands.add_parser(
        "train-mask",
        help="fine-tune the object-mask head on photo cut-outs pasted on real backgrounds",
        description="Fine-tune the backbone and the visible-mask head on Tux Paint photo cut-outs (training split "
        "of the even-hash stamps) pasted on real backgrounds, mixed with rendered views; the other heads are held "
        "to the starting checkpoint's outputs. Resumes when run again with the same --out.",
    )
    parser.add_argument("--init", type=Path, help="checkpoint to start from (default: the bundled model)")
    parser.add_argument("--out", type=Path, required=True, help="run folder (model.safetensors, state.pt, log.jsonl)")
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps in all (default 1500)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step (default 8)")
    parser.add_argument("--learning-rate", type=float, default=3e-4, help="the mask head's (default 3e-4)")
    parser.add_argument(
        "--backbone-rate-scale", type=float, default=0.1, help="backbone rate / head rate; 0 freezes it (default 0.1)"
    )
    parser.add_argument("--render-data", type=Path, action="append", help="rendered dataset to mix in; repeatable")
    parser.add_argument("--render-share", type=float, default=0.3, help="share of rendered views (default 0.3)")
    parser.add_argument(
        "--distill-weight", type=float, default=1.0, help="weight of holding the other heads' outputs (default 1)"
    )
    parser.add_argument("--time-budget", type=float, metavar="MIN", help="stop after MIN minutes; rerun to resume")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stamps", type=Path, help="the Tux Paint stamps folder (default: Debian's)")
    parser.add_argument(
        "--release-to", type=Path, metavar="FILE", help="when the run is complete, also write it as a float16 release"
    )
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.set_defaults(run=command_train_mask)
