"""The training package's commands: data, train, train-mask, train-body, evaluate, photo-bench, release and
benchmark-train, one module each (`training/cli_*.py`).

`add_commands` registers them on the `zeroshape-w` parser (see `zeroshape_w.cli`); `python -m training`
runs them alone.
"""

from __future__ import annotations

import argparse

from backend.cli import new_parser, run


def add_commands(commands) -> None:
    """Register the training package's commands on an argparse subparsers object, in the order a run uses them."""
    from training.cli_benchmark import add_benchmark_train_command
    from training.cli_body import add_train_body_command
    from training.cli_data import add_data_commands
    from training.cli_evaluate import add_evaluate_command
    from training.cli_mask import add_train_mask_command
    from training.cli_photo_bench import add_photo_bench_commands
    from training.cli_release import add_release_command
    from training.cli_train import add_train_command

    add_data_commands(commands)
    add_train_command(commands)
    add_train_mask_command(commands)
    add_train_body_command(commands)
    add_evaluate_command(commands)
    add_photo_bench_commands(commands)
    add_release_command(commands)
    add_benchmark_train_command(commands)


def build_parser() -> argparse.ArgumentParser:
    """The training commands alone (`python -m training`)."""
    parser, commands = new_parser("ZeroShape-W training: data, train, evaluate, release, benchmark-train.")
    add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)
