"""`zeroshape-w benchmark-train`: training throughput (forward + backward + AdamW, samples/s) on this machine.

The backend's `zeroshape-w benchmark` times inference; this one needs the training recipes for its defaults.
"""

from __future__ import annotations

import argparse


def command_benchmark_train(args: argparse.Namespace) -> int:
    from backend.benchmark import train_throughput
    from training.recipes import get_recipe

    recipe = get_recipe(args.config)
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


def add_benchmark_train_command(commands) -> None:
    """Register `benchmark-train` on an argparse subparsers object."""
    from backend.cli import CONFIG_NAMES

    benchmark = commands.add_parser(
        "benchmark-train",
        help="measure training throughput: forward + backward + AdamW, samples/s",
        description="Time training steps of a randomly initialised model on random batches of the recipe's size "
        "(no data needed): the samples/s that `zeroshape-w train` can reach on this machine.",
    )
    benchmark.add_argument("--config", default="small", choices=CONFIG_NAMES, help="model size (default small)")
    benchmark.add_argument(
        "--stage",
        default="joint",
        choices=["joint", "shape"],
        help="joint = the whole model; shape = the 3D half alone, as the shape stage trains it (default joint)",
    )
    benchmark.add_argument("--batch-size", type=int, help="images per step (default: the config's recipe)")
    benchmark.add_argument("--points", type=int, help="query points per image (default: the recipe's)")
    benchmark.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    benchmark.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    benchmark.add_argument(
        "--precision", default="fp32", choices=["fp32", "bf16"], help="fp32, or bf16 autocast (default fp32)"
    )
    benchmark.add_argument("--channels-last", action="store_true", help="NHWC memory layout for the image side")
    benchmark.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    benchmark.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    benchmark.set_defaults(run=command_benchmark_train)
