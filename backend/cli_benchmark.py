"""`zeroshape-w benchmark`: how fast the backend turns a photo into a mesh, runs the network, or serves many clients.

Training throughput is the training package's `zeroshape-w benchmark-train`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from blender_addon.protocol import SHAPES

MODES = ("reconstruct", "forward", "load")


def command_benchmark(args: argparse.Namespace) -> int:
    if args.mode == "load":
        return benchmark_load(args)
    if args.mode == "forward":
        return benchmark_forward(args)
    return benchmark_reconstruct(args)


def benchmark_reconstruct(args: argparse.Namespace) -> int:
    """Each stage of photo → mesh file, for one config or all of them."""
    from backend.benchmark import BENCHMARK_HEADER, reconstruct_benchmark
    from backend.pipeline import EmptyMeshError, default_checkpoint
    from backend.preprocess import ImageError

    if args.threads:
        __import__("torch").set_num_threads(args.threads)
    configs = ["tiny", "small", "paper"] if args.all_configs else [args.config]
    checkpoint = args.checkpoint
    if checkpoint is None and configs == ["small"]:
        checkpoint = default_checkpoint()  # the model an artist gets; other configs have no trained weights
    print(BENCHMARK_HEADER)
    for name in configs:
        try:
            result = reconstruct_benchmark(
                name,
                str(args.image),
                args.resolution,
                args.device,
                compare_dense=not args.no_dense,
                checkpoint=checkpoint if len(configs) == 1 else None,
                precision=args.precision,
                shape=args.shape,
                repeats=args.repeats,
            )
        except (EmptyMeshError, ImageError) as error:
            print(f"zeroshape-w: error: {name}: {error}", file=sys.stderr)
            return 1
        print(result.row(), flush=True)
    return 0


def benchmark_forward(args: argparse.Namespace) -> int:
    """Seconds per forward pass of one image and its query points (random weights)."""
    from backend.benchmark import forward_latency

    times = forward_latency(args.config, args.points, args.steps, args.device, args.threads)
    print(f"config={args.config} device={args.device} threads={__import__('torch').get_num_threads()}")
    print(f"forward seconds (1 image, {args.points} query points): {', '.join(f'{t:.3f}' for t in times)}")
    print(f"median forward: {sorted(times)[len(times) // 2]:.3f} s")
    return 0


def benchmark_load(args: argparse.Namespace) -> int:
    """Many stock clients against a running server or broker."""
    from backend.serve_load import run_load
    from blender_addon.client import BackendError, Client
    from blender_addon.protocol import ReconstructOptions

    try:
        server = Client(args.address).info()
    except BackendError as error:
        print(f"zeroshape-w: error: {error}", file=sys.stderr)
        return 1
    workers = len(server.get("workers") or []) or 1
    print(f"{args.address}: model {server['model']} on {server['device']}, {workers} worker(s)")
    print(f"{args.clients} stock clients × {args.jobs} jobs at resolution {args.resolution}", flush=True)
    result = run_load(
        args.address,
        args.image.read_bytes(),
        ReconstructOptions(resolution=args.resolution),
        clients=args.clients,
        jobs=args.jobs,
        kill_worker_after_s=args.kill_worker_after,
    )
    print(result.report())
    return 0


def add_benchmark_command(commands) -> None:
    """Register `benchmark` on an argparse subparsers object."""
    from backend.cli import CONFIG_NAMES

    benchmark = commands.add_parser(
        "benchmark",
        help="time photo → mesh (each stage), the network's forward pass, or a running server under load",
        description="reconstruct (default): each stage of photo → mesh file, the median of --repeats runs in a warm "
        "process; forward: seconds per forward pass; load: many stock clients against a running `zeroshape-w serve` "
        "at --address. Training throughput: `zeroshape-w benchmark-train`.",
    )
    benchmark.add_argument("--mode", default="reconstruct", choices=MODES, help="what to time (default reconstruct)")
    benchmark.add_argument("--config", default="small", choices=CONFIG_NAMES, help="model size (default small)")
    benchmark.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    benchmark.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    benchmark.add_argument(
        "--image", type=Path, default=Path("examples/coffee.jpg"), help="the photo (default %(default)s)"
    )
    benchmark.add_argument("--resolution", type=int, default=128, help="grid resolution (default 128)")
    reconstruct = benchmark.add_argument_group("reconstruct mode")
    reconstruct.add_argument("--shape", default="inflate", choices=list(SHAPES), help="shape (default inflate)")
    reconstruct.add_argument(
        "--repeats", type=int, default=5, help="timed runs after a warm-up; the median (default 5)"
    )
    reconstruct.add_argument(
        "--checkpoint",
        type=Path,
        help="weights (default: random; backend/weights/zeroshape-w-small.safetensors is the bundled model)",
    )
    reconstruct.add_argument("--all-configs", action="store_true", help="tiny, small and paper, random weights")
    reconstruct.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="network arithmetic")
    reconstruct.add_argument("--no-dense", action="store_true", help="skip the dense-grid comparison (IoU)")
    forward = benchmark.add_argument_group("forward mode")
    forward.add_argument("--points", type=int, default=4096, help="query points per image (default 4096)")
    forward.add_argument("--steps", type=int, default=5, help="timed forward passes (default 5)")
    load = benchmark.add_argument_group("load mode")
    load.add_argument("--address", default="tcp://127.0.0.1:5557", help="the server (default %(default)s)")
    load.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    load.add_argument("--jobs", type=int, default=5, help="jobs per client, one after another (default 5)")
    load.add_argument(
        "--kill-worker-after", type=float, metavar="S", help="SIGKILL one of a local broker's workers after S s"
    )
    benchmark.set_defaults(run=command_benchmark)
