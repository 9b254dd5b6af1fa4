"""Client of the ZeroShape-W backend, used by the Blender add-on, the command line and the tests.

No bpy here. pyzmq is imported lazily, so this module imports even where pyzmq is missing and the error
can say what to do. Each job uses its own DEALER socket in the thread that runs it; `submit` runs that in a
background thread and reports through a queue that Blender's timer can drain on the main thread.

Reliability (zguide's Lazy Pirate, for the idempotent `ping` and `info`): wait a short time, then close the
socket, open a new one and ask again, a few times, then give up with a clear error. A reconstruction is not
retried (it is not idempotent); instead the client expects a message at least every 2 s while the job runs or
waits in the server's queue, and gives up with a clear error when the server has been silent for
`heartbeat_timeout_s`. A client that gives up on a job for any reason (silence, an exception, its caller
going away) sends `cancel` first, so the server does not go on computing a mesh nobody will read.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import protocol
from .protocol import ProtocolError, ReconstructOptions, Request


class BackendError(Exception):
    """Anything that went wrong talking to the backend; the message is meant for a person."""


class BackendUnavailableError(BackendError):
    """No answer: the backend is not running, not reachable, or stopped responding."""


class BackendBusyError(BackendError):
    """The backend's queue is full (or it is shutting down); try again later."""


class JobFailedError(BackendError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class JobCancelledError(BackendError):
    pass


def _stage_text(fields: dict[str, Any]) -> str:
    """A progress event's stage for people: a queued job says its place ("queued (2 ahead)")."""
    stage = str(fields.get("stage", ""))
    position = fields.get("queue_position")
    if stage == "queued" and type(position) is int and position > 0:
        return f"queued ({position - 1} ahead)" if position > 1 else "queued (next)"
    return stage


def _zmq():
    try:
        import zmq
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise BackendError(
            f"pyzmq is not available in this Python ({error}); reinstall the ZeroShape-W add-on, which bundles it"
        ) from None
    return zmq


@dataclass(frozen=True)
class CurveKeys:
    """CurveZMQ keys (Z85 text) for a backend started with --auth."""

    server_public: bytes
    client_public: bytes
    client_secret: bytes

    @classmethod
    def from_files(cls, server_public_file: str | Path, client_secret_file: str | Path) -> CurveKeys:
        """From `zeroshape-w keys` files: the server's NAME.key and this client's NAME.key_secret."""
        import zmq.auth

        server_public, _ = zmq.auth.load_certificate(str(server_public_file))
        client_public, client_secret = zmq.auth.load_certificate(str(client_secret_file))
        if client_secret is None:
            raise BackendError(f"{client_secret_file}: not a secret key file (NAME.key_secret)")
        return cls(server_public, client_public, client_secret)


@dataclass
class MeshResult:
    vertices: Any
    """float32 [V, 3]."""
    faces: Any
    """uint32 [F, 3]."""
    colors: Any
    """uint8 [V, 4] or None."""
    metadata: dict[str, Any]


@dataclass
class Job:
    """A reconstruction running in a background thread. `events` receives, in order:
    ("progress", stage, fraction) ..., then exactly one of ("result", MeshResult) or ("error", BackendError)."""

    request_id: str
    events: queue.Queue = field(default_factory=queue.Queue)
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def cancel(self) -> None:
        self.cancel_requested.set()


class Client:
    def __init__(
        self,
        address: str = protocol.DEFAULT_ADDRESS,
        curve: CurveKeys | None = None,
        heartbeat_timeout_s: float = 10.0,
        max_result_bytes: int = 1 << 30,
    ):
        self.address = address
        self.curve = curve
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.max_result_bytes = max_result_bytes
        self._context = None

    def _socket(self):
        zmq = _zmq()
        if self._context is None:
            self._context = zmq.Context.instance()
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.IPV6, int(protocol.is_ipv6_endpoint(self.address)))
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, self.max_result_bytes)
        if self.curve is not None:
            socket.curve_serverkey = self.curve.server_public
            socket.curve_publickey = self.curve.client_public
            socket.curve_secretkey = self.curve.client_secret
        socket.connect(self.address)
        return socket

    def _receive(self, socket, timeout_s: float):
        """The next response on `socket`, or None after `timeout_s` of silence."""
        zmq = _zmq()
        if not socket.poll(int(timeout_s * 1000), zmq.POLLIN):
            return None
        frames = socket.recv_multipart()
        try:
            _, body = protocol.split_envelope(frames)
            return protocol.decode_response(body)
        except ProtocolError as error:
            raise BackendError(f"the backend at {self.address} sent a malformed message: {error}") from None

    def _ask(self, op: str, options: dict | None = None, timeout_s: float = 2.0, retries: int = 3) -> protocol.Response:
        """Lazy Pirate request for idempotent operations."""
        for _attempt in range(retries):
            socket = self._socket()
            try:
                request_id = uuid.uuid4().hex
                socket.send_multipart(protocol.encode_request(Request(request_id, op, options or {})))
                deadline = time.monotonic() + timeout_s
                while (left := deadline - time.monotonic()) > 0:
                    response = self._receive(socket, left)
                    if response is None:
                        break
                    if response.request_id == request_id:
                        if response.type == "error":
                            raise JobFailedError(
                                response.fields.get("code", "error"), response.fields.get("message", "")
                            )
                        return response
            finally:
                socket.close(linger=0)
        raise BackendUnavailableError(
            f"no answer from the ZeroShape-W backend at {self.address} after {retries} tries; is it running? "
            "Start it with `zeroshape-w serve` (or the add-on's Start local backend)"
        )

    def ping(self, timeout_s: float = 2.0, retries: int = 3) -> float:
        """Round-trip time in seconds; BackendUnavailableError when nobody answers."""
        start = time.monotonic()
        self._ask("ping", timeout_s=timeout_s, retries=retries)
        return time.monotonic() - start

    def info(self, timeout_s: float = 2.0, retries: int = 3) -> dict[str, Any]:
        return self._ask("info", timeout_s=timeout_s, retries=retries).fields["info"]

    def shutdown(self, token: str, timeout_s: float = 5.0) -> None:
        self._ask("shutdown", {"token": token}, timeout_s=timeout_s, retries=1)

    def reconstruct(
        self,
        image: bytes,
        options: ReconstructOptions | None = None,
        progress=None,
        cancel: threading.Event | None = None,
        request_id: str | None = None,
        accept_timeout_s: float = 10.0,
    ) -> MeshResult:
        """Send one photo and wait for its mesh (blocking).

        Args:
            image: the image file's bytes.
            progress: called with (stage, fraction) for each progress event.
            cancel: set it from another thread to cancel the job.
        Raises:
            BackendBusyError, BackendUnavailableError, JobFailedError, JobCancelledError.
        """
        options = options or ReconstructOptions()
        request_id = request_id or uuid.uuid4().hex
        socket = self._socket()
        finished = cancel_sent = False

        def send_cancel() -> None:
            cancel_request = Request(uuid.uuid4().hex, "cancel", {"target": request_id})
            socket.send_multipart(protocol.encode_request(cancel_request), _zmq().NOBLOCK)

        try:
            request = Request(request_id, "reconstruct", options.to_json(), [image])
            socket.send_multipart(protocol.encode_request(request))
            response = self._receive(socket, accept_timeout_s)
            if response is None:
                raise BackendUnavailableError(
                    f"no answer from the ZeroShape-W backend at {self.address} within {accept_timeout_s:.0f} s; "
                    "is it running? Start it with `zeroshape-w serve`"
                )
            while True:
                if response.request_id == request_id:
                    kind = response.type
                    finished = kind in ("busy", "error", "cancelled", "result")
                    if kind == "busy":
                        raise BackendBusyError(f"the backend is busy: {response.fields.get('message', '')}")
                    if kind == "error":
                        raise JobFailedError(response.fields.get("code", "error"), response.fields.get("message", ""))
                    if kind == "cancelled":
                        raise JobCancelledError("the job was cancelled")
                    if kind == "progress" and progress is not None:
                        progress(_stage_text(response.fields), float(response.fields.get("fraction", 0.0)))
                    if kind == "result":
                        vertices, faces, colors = protocol.result_arrays(response)
                        return MeshResult(vertices, faces, colors, response.fields.get("metadata", {}))
                if cancel is not None and cancel.is_set() and not cancel_sent:
                    send_cancel()
                    cancel_sent = True
                wait = 0.25 if cancel is not None and not cancel_sent else self.heartbeat_timeout_s
                silent_since = time.monotonic()
                response = None
                while response is None:
                    response = self._receive(socket, wait)
                    if response is not None:
                        break
                    if time.monotonic() - silent_since >= self.heartbeat_timeout_s:
                        raise BackendUnavailableError(
                            f"the ZeroShape-W backend at {self.address} stopped responding "
                            f"(no message for {self.heartbeat_timeout_s:.0f} s); it may have crashed"
                        )
                    if cancel is not None and cancel.is_set() and not cancel_sent:
                        send_cancel()
                        cancel_sent = True
        finally:
            if not finished and not cancel_sent:
                # Giving up (silence, an exception here or in the caller's progress callback): tell the server,
                # and give the message a moment to leave before the socket closes.
                with contextlib.suppress(Exception):
                    send_cancel()
                socket.close(linger=500)
            else:
                socket.close(linger=0)

    def submit(self, image: bytes, options: ReconstructOptions | None = None) -> Job:
        """Start a reconstruction in a background thread; read `job.events` (e.g. from a Blender timer)."""
        job = Job(request_id=uuid.uuid4().hex)

        def run() -> None:
            try:
                result = self.reconstruct(
                    image,
                    options,
                    progress=lambda stage, fraction: job.events.put(("progress", stage, fraction)),
                    cancel=job.cancel_requested,
                    request_id=job.request_id,
                )
                job.events.put(("result", result))
            except BackendError as error:
                job.events.put(("error", error))
            except Exception as error:  # never lose the outcome of a job
                job.events.put(("error", BackendError(f"unexpected client error: {type(error).__name__}: {error}")))

        job.thread = threading.Thread(target=run, name=f"zeroshape-job-{job.request_id[:8]}", daemon=True)
        job.thread.start()
        return job
