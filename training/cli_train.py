"""`zeroshape-w train`: train the model on rendered datasets, resumable, on one device or under torchrun."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


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


def add_train_command(commands) -> None:
    """Register `train` on an argparse subparsers object."""
    from backend.cli import CONFIG_NAMES

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

    add_warm_start_arguments(train)
    add_stage_arguments(train)
    add_loss_arguments(train)
    train.set_defaults(run=command_train)


def add_warm_start_arguments(train: argparse.ArgumentParser) -> None:
    """--init and what of the model it trains or keeps."""
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


def add_stage_arguments(train: argparse.ArgumentParser) -> None:
    """The stages' shares and what stage 2 reads."""
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


def add_loss_arguments(train: argparse.ArgumentParser) -> None:
    """Loss weights and gradient clipping."""
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
