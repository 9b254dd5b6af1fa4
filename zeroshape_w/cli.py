"""The `zeroshape-w` command: every command of the backend and of the training package, one parser."""

from __future__ import annotations

import argparse
import sys

from backend import cli as backend_cli
from training import cli as training_cli


def build_parser() -> argparse.ArgumentParser:
    parser, commands = backend_cli.new_parser("ZeroShape-W: 3D shape from a single image, for Blender. Model tools.")
    backend_cli.add_commands(commands)
    training_cli.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    return backend_cli.run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
