"""`zeroshape-w serve` (one server, or a broker with workers) and `zeroshape-w keys` (CurveZMQ key pairs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def command_serve(args: argparse.Namespace) -> int:
    from backend.endpoint import ServerConfig, ServerError
    from backend.server import Server

    if args.worker_config:  # a broker's worker: its configuration is the broker's, from the file it wrote
        config = ServerConfig.from_json(args.worker_config.read_text())
    else:
        config = ServerConfig(
            address=args.address,
            checkpoint=args.checkpoint,
            device=args.device,
            open_clip_weights=args.open_clip_weights,
            queue_size=args.queue_size,
            max_resolution=args.max_resolution,
            job_deadline_s=args.deadline,
            max_message_bytes=args.max_message_mb * 1024 * 1024,
            grace_s=args.grace,
            auth=args.auth,
            server_secret_key=args.server_key,
            allowed_clients=args.allowed_clients,
            token_file=args.token_file,
            parent_pid=args.parent_pid,
        )
    try:
        if args.workers > 1:
            from backend.broker import Broker

            return Broker(config, args.workers).serve()
        return Server(config).serve()
    except ServerError as error:
        print(f"zeroshape-w: error: {error}", file=sys.stderr)
        return 2


def command_keys(args: argparse.Namespace) -> int:
    from backend.endpoint import generate_keys

    public, secret = generate_keys(args.dir, args.name)
    print(f"public key: {public}  (give it to the other side: a server's to clients, a client's to the server's")
    print("            --allowed-clients folder)")
    print(f"secret key: {secret}  (keep it private; readable only by you)")
    return 0


def add_serve_commands(commands) -> None:
    """Register `serve` and `keys` on an argparse subparsers object."""
    serve = commands.add_parser(
        "serve",
        help="run the inference server for the Blender add-on (ZeroMQ)",
        description="Serve reconstructions over ZeroMQ. Listens on loopback only unless --auth is given; prints "
        "'ready' once the model is loaded and warmed up. SIGINT/SIGTERM let the running job finish (--grace) "
        "and refuse new ones.",
    )
    serve.add_argument("--address", default="tcp://127.0.0.1:5557", help="ZeroMQ endpoint (default %(default)s)")
    serve.add_argument("--checkpoint", type=Path, help="model file (default: the bundled model)")
    serve.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    serve.add_argument("--open-clip-weights", type=Path, help="local OpenCLIP weights, if the model needs them")
    serve.add_argument("--queue-size", type=int, default=8, help="jobs that may wait (default 8); more get 'busy'")
    serve.add_argument("--max-resolution", type=int, default=256, help="largest grid resolution a request may ask")
    serve.add_argument("--deadline", type=float, default=600.0, help="seconds a job may run (default 600)")
    serve.add_argument("--max-message-mb", type=int, default=64, help="largest message accepted, MiB (default 64)")
    serve.add_argument("--grace", type=float, default=10.0, help="seconds to finish a job on shutdown (default 10)")
    serve.add_argument("--auth", action="store_true", help="require CurveZMQ keys (needed off loopback)")
    serve.add_argument("--server-key", type=Path, help="with --auth: the server's NAME.key_secret file")
    serve.add_argument("--allowed-clients", type=Path, help="with --auth: folder of allowed clients' NAME.key files")
    serve.add_argument("--token-file", type=Path, help="where to write the shutdown token (default: runtime dir)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run N worker processes behind one address (one per GPU with --device auto)",
    )
    serve.add_argument(
        "--parent-pid",
        type=int,
        metavar="PID",
        help="stop (as on SIGTERM) once process PID is gone; the Blender add-on passes its own, so a crashed Blender "
        "leaves no backend behind",
    )
    serve.add_argument("--worker-config", type=Path, metavar="FILE", help="run as a broker's worker (internal)")
    serve.set_defaults(run=command_serve)

    keys = commands.add_parser("keys", help="generate a CurveZMQ key pair for --auth")
    keys.add_argument("--dir", type=Path, required=True, help="folder to write NAME.key and NAME.key_secret into")
    keys.add_argument("--name", default="zeroshape", help="file name stem (default zeroshape)")
    keys.set_defaults(run=command_keys)
