"""`zeroshape-w photo-bench build | run`: the photo benchmark's commands (training.photo_benchmark)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def command_build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from training.photo_benchmark import build

    count = build(args.out, args.stamps, progress=lambda items: tqdm(items, unit="stamp", dynamic_ncols=True))
    print(f"{count} benchmark stamps, each as a cut-out, on a flat colour and on a real photo, in {args.out}")
    return 0


def command_run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from backend.pipeline import Reconstructor
    from training.photo_benchmark import run, table

    if not (args.data / "manifest.json").is_file():
        raise FileNotFoundError(f"{args.data}: no photo benchmark here; make it with `zeroshape-w photo-bench build`")
    if args.threads:
        torch.set_num_threads(args.threads)
    reconstructor = Reconstructor(args.checkpoint, args.device)
    progress = lambda jobs: tqdm(jobs, unit="image", dynamic_ncols=True)  # noqa: E731
    rows = run(reconstructor, args.data, args.shape, progress, args.limit)
    text = table(rows)
    print(f"checkpoint: {reconstructor.checkpoint}  shape: {args.shape}\n\n{text}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        (args.out / "table.md").write_text(text + "\n")
        print(f"\nrows and table written to {args.out}")
    return 0


def add_photo_bench_commands(commands) -> None:
    from training.photo_benchmark import STAMPS_ROOT

    bench = commands.add_parser(
        "photo-bench",
        help="the photo benchmark: Tux Paint photo cut-outs as cut-outs, on flat colours and on real photos",
        description="Build the photo benchmark from Debian's tuxpaint-stamps-default (one even-hash stamp in four; "
        "odd-hash stamps are held out and never read) and score masks and mesh outlines on it.",
    )
    bench_commands = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCH_COMMAND")
    build = bench_commands.add_parser("build", help="write the benchmark images and their true masks")
    build.add_argument("--out", type=Path, required=True, help="folder to write (e.g. data/photo-bench)")
    build.add_argument("--stamps", type=Path, default=STAMPS_ROOT, help="the stamps folder (default %(default)s)")
    build.set_defaults(run=command_build)
    run = bench_commands.add_parser(
        "run",
        help="reconstruct every benchmark image and report mask and outline IoUs",
        description="Mask IoU: the mask a mesh was built from against the stamp's alpha. Outline IoU: the mesh seen "
        "through the camera its JSON reports, against the alpha. Cut-outs once (their alpha is the mask); the "
        "others with the network's mask raw and refined by GrabCut.",
    )
    run.add_argument("--data", type=Path, required=True, help="a benchmark folder made by `photo-bench build`")
    run.add_argument("--checkpoint", type=Path, help="model file (default: the bundled model)")
    run.add_argument("--shape", default="inflate", choices=["inflate", "body", "learned"], help="default inflate")
    run.add_argument("--limit", type=int, help="only the first N stamps (quick checks)")
    run.add_argument("--out", type=Path, help="folder for rows.jsonl and table.md")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda")
    run.add_argument("--threads", type=int, help="CPU threads for torch")
    run.set_defaults(run=command_run)
