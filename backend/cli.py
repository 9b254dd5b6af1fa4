"""The backend's commands: reconstruct, serve, keys, benchmark and the checkpoint tools (`python -m backend`).

Each command of some size has its module (`cli_reconstruct`, `cli_serve`, `cli_benchmark`); `add_commands`
registers them all on the `zeroshape-w` parser, which `zeroshape_w.cli` composes with the training
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


def add_commands(commands) -> None:
    """Register the backend's commands on an argparse subparsers object, the ones an artist uses first."""
    from backend.cli_benchmark import add_benchmark_command
    from backend.cli_reconstruct import add_reconstruct_command
    from backend.cli_serve import add_serve_commands

    add_reconstruct_command(commands)
    add_serve_commands(commands)
    add_benchmark_command(commands)
    add_checkpoint_commands(commands)


def add_checkpoint_commands(commands) -> None:
    """Register the model tools: params, convert-zeroshape, init-checkpoint, checkpoint-info."""
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

    init = commands.add_parser(
        "init-checkpoint", help="write an UNTRAINED checkpoint (random weights) for wiring and tests"
    )
    init.add_argument("--config", default="small", choices=CONFIG_NAMES)
    init.add_argument("-o", "--output", type=Path, required=True)
    init.add_argument("--seed", type=int, default=0)
    init.set_defaults(run=command_init_checkpoint)

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
