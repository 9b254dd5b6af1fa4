"""`zeroshape-w release`: a trained checkpoint → the shipped float16 file, its occupancy level chosen on
training views."""

from __future__ import annotations

import argparse
from pathlib import Path


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


def add_release_command(commands) -> None:
    """Register `release` on an argparse subparsers object."""
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
