"""The server's address, its security and its sockets: shared by the single server and the broker.

A configuration is checked before anything is loaded (`check_security`): limits that cannot work, and a
non-loopback address without CurveZMQ, are refused with a ServerError that says what to do. The public socket
(`open_router`) bounds every message (ZMQ_MAXMSGSIZE, high-water marks, LINGER), binds IPv4 and IPv6
loopback alike and, with `--auth`, admits only the allowed clients' keys through a ZAP handler.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from blender_addon import protocol


@dataclass(frozen=True)
class ServerConfig:
    address: str = protocol.DEFAULT_ADDRESS
    checkpoint: Path | None = None
    device: str = "auto"
    open_clip_weights: Path | None = None
    queue_size: int = 8
    """Jobs waiting behind the running one; more are answered "busy"."""
    max_resolution: int = 256
    job_deadline_s: float = 600.0
    max_message_bytes: int = protocol.MAX_MESSAGE_BYTES
    heartbeat_s: float = 1.0
    """Progress events are sent at least this often while a job runs (the protocol promises ≤ 2 s)."""
    grace_s: float = 10.0
    """On SIGINT/SIGTERM: how long the running job may finish before it is cancelled."""
    auth: bool = False
    server_secret_key: Path | None = None
    """A `zeroshape-w keys` secret key file (NAME.key_secret) for CURVE."""
    allowed_clients: Path | None = None
    """A folder of allowed client public keys (NAME.key)."""
    token_file: Path | None = None
    warmup: bool = True
    worker_of: str | None = None
    """Run as one worker of a broker: connect to this endpoint instead of listening (see `Broker`)."""
    parent_pid: int | None = None
    """Stop, as on SIGTERM, once this process is gone (`--parent-pid`: the Blender that started the backend, so a
    crashed Blender leaves no orphan holding the port and the memory)."""

    def to_json(self) -> str:
        """The whole configuration as JSON: how a broker hands it to its workers, field by field untouched."""
        return json.dumps({f.name: _plain(getattr(self, f.name)) for f in fields(self)})

    @classmethod
    def from_json(cls, text: str) -> ServerConfig:
        data = json.loads(text)
        paths = {f.name for f in fields(cls) if "Path" in str(f.type)}
        return cls(**{k: Path(v) if k in paths and v is not None else v for k, v in data.items()})


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


class ServerError(Exception):
    """The server cannot start; the message says why and what to do."""


def check_security(config: ServerConfig) -> None:
    """Refuses (ServerError) a configuration that is unsafe or cannot work, before anything is loaded."""
    limits = (
        (config.queue_size >= 1, f"--queue-size must be at least 1 (got {config.queue_size})"),
        (
            32 <= config.max_resolution <= 512,
            f"--max-resolution must be from 32 to 512 (got {config.max_resolution})",
        ),
        (config.job_deadline_s > 0, f"--deadline must be a positive number of seconds (got {config.job_deadline_s})"),
        (config.max_message_bytes >= 2**20, "--max-message-mb must be at least 1"),
        (config.grace_s >= 0, f"--grace must not be negative (got {config.grace_s})"),
    )
    for ok, message in limits:
        if not ok:
            raise ServerError(message)
    if config.worker_of is not None:
        return  # a worker only connects to its broker's private endpoint
    if not protocol.is_loopback(config.address) and not config.auth:
        raise ServerError(
            f"refusing to listen on {config.address} without authentication: a non-loopback address is reachable "
            "from other machines. Pass --auth with --server-key and --allowed-clients (make keys with "
            "`zeroshape-w keys`), or listen on tcp://127.0.0.1"
        )
    if config.auth:
        for label, path in (("--server-key", config.server_secret_key), ("--allowed-clients", config.allowed_clients)):
            if path is None:
                raise ServerError(f"--auth needs {label}")
        if not Path(config.server_secret_key).is_file():
            raise ServerError(f"{config.server_secret_key}: server key file not found")
        if not Path(config.allowed_clients).is_dir():
            raise ServerError(f"{config.allowed_clients}: allowed-clients folder not found")


def default_token_file(address: str) -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR") or str(Path.home() / ".cache")
    safe = "".join(c if c.isalnum() else "_" for c in address)
    return Path(runtime) / "zeroshape-w" / f"server-{safe}.token"


def open_router(context, config: ServerConfig):
    """The public ROUTER socket: bounded (ZMQ_MAXMSGSIZE, HWM, LINGER), with CURVE and a ZAP handler that
    admits only allowed client keys when `config.auth`. Returns (socket, authenticator or None)."""
    import zmq

    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.IPV6, int(protocol.is_ipv6_endpoint(config.address)))
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # sending to a client that is gone fails: see `deliver`
    router.setsockopt(zmq.MAXMSGSIZE, config.max_message_bytes)
    router.setsockopt(zmq.LINGER, 1000)
    router.setsockopt(zmq.RCVHWM, 1000)
    router.setsockopt(zmq.SNDHWM, 1000)
    authenticator = None
    if config.auth:
        import zmq.auth
        from zmq.auth.thread import ThreadAuthenticator

        public, secret = zmq.auth.load_certificate(str(config.server_secret_key))
        if secret is None:
            raise ServerError(f"{config.server_secret_key}: not a secret key file (NAME.key_secret)")
        authenticator = ThreadAuthenticator(context)
        authenticator.start()
        authenticator.configure_curve(domain="*", location=str(config.allowed_clients))
        router.curve_secretkey = secret
        router.curve_publickey = public
        router.curve_server = True
    try:
        router.bind(config.address)
    except zmq.ZMQError as error:
        router.close(linger=0)  # an open socket would keep context.term() waiting for ever
        if authenticator is not None:
            authenticator.stop()
        raise ServerError(f"cannot listen on {config.address}: {error}") from error
    return router, authenticator


def watch_parent(pid: int, on_gone, poll_s: float = 0.5) -> None:
    """Call `on_gone()` (once, from a daemon thread) when process `pid` has ended. When `pid` is this process's
    parent, a change of parent is the sign (immune to the pid being reused); otherwise the pid is probed."""
    import threading
    import time

    is_parent = pid == os.getppid()

    def alive() -> bool:
        if is_parent:
            return os.getppid() == pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # it exists, under another user
            return True
        return True

    def watch() -> None:
        while alive():
            time.sleep(poll_s)
        on_gone()

    threading.Thread(target=watch, name="zeroshape-parent-pid-watch", daemon=True).start()


def worker_identity(pid: int) -> bytes:
    """The ZeroMQ routing id of a broker's worker process."""
    return f"worker-{pid}".encode()


def deliver(socket, frames: list[bytes]) -> bool:
    """Send without blocking; False only when the addressed peer is gone (EHOSTUNREACH from a ROUTER with
    ZMQ_ROUTER_MANDATORY). A full queue to a slow peer, or any other failure to send, drops the message but
    reports the peer as present: a vanished client must never stop the server, a slow one is not vanished."""
    import zmq

    try:
        socket.send_multipart(frames, zmq.NOBLOCK)
    except zmq.ZMQError as error:
        return error.errno != errno.EHOSTUNREACH
    return True


def error_fields(code: str, message: str) -> dict[str, Any]:
    """The fields of an error response."""
    return {"code": code, "message": message}


def write_token_file(path: Path, token: str) -> Path:
    """Write the shutdown token readable by its owner only (0600), also when the file already existed with
    wider permissions (O_CREAT's mode applies only to a new file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # before the token is written, not after
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token)
    return path


def generate_keys(folder: Path, name: str) -> tuple[Path, Path]:
    """A CURVE key pair: NAME.key (public, give it to the other side) and NAME.key_secret (keep it)."""
    import zmq.auth

    folder.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(folder), name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)
