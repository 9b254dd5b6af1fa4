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


class BackendRejectedError(BackendUnavailableError):
    """The backend is there but refused this client's CurveZMQ key (or the two sides' encryption settings
    differ)."""


class BackendKeyRefusedError(BackendRejectedError):
    """The handshake worked, and the backend refused this client's key: it is not in --allowed-clients."""


class MessageTooLargeError(BackendError):
    """The request is larger than the backend accepts."""


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
        _zmq()
        import zmq.auth

        keys = []
        for label, path in (("server public key", server_public_file), ("your secret key", client_secret_file)):
            if not str(path) or not Path(path).is_file():
                raise BackendError(f"{label} {path or '(not set)'}: no such file; make keys with `zeroshape-w keys`")
            try:
                keys.append(zmq.auth.load_certificate(str(path)))
            except (OSError, ValueError) as error:  # pyzmq raises OSError("Invalid certificate file: ...")
                raise BackendError(
                    f"{label} {path}: not a CurveZMQ key file ({error}); make keys with `zeroshape-w keys`"
                ) from None
        (server_public, _), (client_public, client_secret) = keys
        if client_secret is None:
            raise BackendError(f"{client_secret_file}: not a secret key file (NAME.key_secret)")
        return cls(server_public, client_public, client_secret)


class ConnectionWatch:
    """What ZeroMQ saw of one socket's connection (its monitor events), to say *why* nobody answered: nothing
    listening, a refused key, a handshake that never finished, or a server that hung up on a message."""

    def __init__(self, socket):
        self._monitor = socket.get_monitor_socket()
        self.seen: set[str] = set()

    def drain(self) -> set[str]:
        from zmq.utils.monitor import recv_monitor_message

        zmq = _zmq()
        with contextlib.suppress(zmq.ZMQError):
            while self._monitor.poll(0):
                self.seen.add(zmq.Event(recv_monitor_message(self._monitor)["event"]).name)
        return self.seen

    def close(self, socket) -> None:
        zmq = _zmq()
        with contextlib.suppress(zmq.ZMQError):
            socket.disable_monitor()
        self._monitor.close(linger=0)

    def no_answer(self, address: str, waited: str) -> BackendError:
        """The error that says best why `address` did not answer (after `waited`, e.g. "3 tries")."""
        seen = self.drain()
        start_it = "Start it with `zeroshape-w serve` (or the add-on's Start local backend)"
        if "HANDSHAKE_FAILED_AUTH" in seen:
            return BackendKeyRefusedError(
                f"the ZeroShape-W backend at {address} refused this client's key: add the client's public key "
                "(NAME.key from `zeroshape-w keys`) to the server's --allowed-clients folder"
            )
        if seen & {"HANDSHAKE_FAILED_PROTOCOL", "HANDSHAKE_FAILED_NO_DETAIL"}:
            return BackendRejectedError(
                f"the connection to {address} failed in the handshake: the server runs with --auth and this client "
                "has no keys or the wrong server key, or the other way round"
            )
        if "HANDSHAKE_SUCCEEDED" in seen and "DISCONNECTED" in seen:
            return MessageTooLargeError(
                f"the ZeroShape-W backend at {address} closed the connection on this request: it was probably "
                "larger than the server's message limit (--max-message-mb, 64 MiB by default)"
            )
        if "CONNECTED" in seen and "HANDSHAKE_SUCCEEDED" not in seen:
            return BackendRejectedError(
                f"something listens at {address} but did not finish the ZeroMQ handshake: if it is a ZeroShape-W "
                "backend started with --auth, this client needs its keys (the server's NAME.key and a client "
                "NAME.key_secret)"
            )
        if "HANDSHAKE_SUCCEEDED" in seen:
            return BackendUnavailableError(
                f"the ZeroShape-W backend at {address} is connected but did not answer after {waited}: it may be "
                "overloaded or hung"
            )
        return BackendUnavailableError(
            f"no answer from the ZeroShape-W backend at {address} after {waited}: nothing listens there; is it "
            f"running? {start_it}"
        )


@dataclass
class MeshResult:
    vertices: Any
    """float32 [V, 3]."""
    faces: Any
    """uint32 [F, 3]."""
    colors: Any
    """uint8 [V, 4] or None."""
    metadata: dict[str, Any]
    mask: bytes | None = None
    """The mask the mesh was built from, a greyscale PNG's bytes at the photo file's size (white: the object),
    when the options asked for it (`return_mask`); None otherwise."""


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
        """A connected DEALER and the watch on its connection (close both with `_close`)."""
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
        watch = ConnectionWatch(socket)
        socket.connect(self.address)
        return socket, watch

    @staticmethod
    def _close(socket, watch: ConnectionWatch, linger: int = 0) -> None:
        watch.close(socket)
        socket.close(linger=linger)

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
        watch = None
        for _attempt in range(retries):
            socket, watch = self._socket()
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
                watch.drain()
                self._close(socket, watch)
        raise watch.no_answer(self.address, f"{retries} tries of {timeout_s:g} s")

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
        mask: bytes | None = None,
    ) -> MeshResult:
        """Send one photo and wait for its mesh (blocking).

        Args:
            image: the image file's bytes.
            progress: called with (stage, fraction) for each progress event.
            cancel: set it from another thread to cancel the job.
            mask: the object's mask as an image file's bytes (e.g. PNG) of the photo's size: white (or opaque)
                marks the object. A server refuses a mask it cannot use with JobFailedError("bad_mask").
        Raises:
            BackendBusyError, BackendUnavailableError, JobFailedError, JobCancelledError.
        """
        options = options or ReconstructOptions()
        request_id = request_id or uuid.uuid4().hex
        if len(image) > protocol.MAX_IMAGE_BYTES:
            raise MessageTooLargeError(
                f"the image is {len(image) / 2**20:.0f} MB; the backend accepts at most "
                f"{protocol.MAX_IMAGE_BYTES // 2**20} MB: downscale or re-encode it as JPEG"
            )
        if mask is not None and not mask:
            raise BackendError("the mask is empty: give a mask image's bytes, or no mask")
        if mask is not None and len(mask) > protocol.MAX_IMAGE_BYTES:
            raise MessageTooLargeError(
                f"the mask is {len(mask) / 2**20:.0f} MB; the backend accepts at most "
                f"{protocol.MAX_IMAGE_BYTES // 2**20} MB: save it as a greyscale PNG"
            )
        socket, watch = self._socket()
        finished = cancel_sent = False

        def send_cancel() -> None:
            cancel_request = Request(uuid.uuid4().hex, "cancel", {"target": request_id})
            socket.send_multipart(protocol.encode_request(cancel_request), _zmq().NOBLOCK)

        try:
            payload = [image] if mask is None else [image, mask]
            request = Request(request_id, "reconstruct", options.to_json(), payload)
            socket.send_multipart(protocol.encode_request(request))
            response = self._receive(socket, accept_timeout_s)
            if response is None:
                raise watch.no_answer(self.address, f"{accept_timeout_s:g} s")
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
                        metadata = response.fields.get("metadata", {})
                        return MeshResult(vertices, faces, colors, metadata, protocol.result_mask(response))
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
                self._close(socket, watch, linger=500)
            else:
                self._close(socket, watch)

    def submit(self, image: bytes, options: ReconstructOptions | None = None, mask: bytes | None = None) -> Job:
        """Start a reconstruction (with the object's `mask`, as in `reconstruct`) in a background thread; read
        `job.events` (e.g. from a Blender timer)."""
        job = Job(request_id=uuid.uuid4().hex)

        def run() -> None:
            try:
                result = self.reconstruct(
                    image,
                    options,
                    progress=lambda stage, fraction: job.events.put(("progress", stage, fraction)),
                    cancel=job.cancel_requested,
                    request_id=job.request_id,
                    mask=mask,
                )
                job.events.put(("result", result))
            except BackendError as error:
                job.events.put(("error", error))
            except Exception as error:  # never lose the outcome of a job
                job.events.put(("error", BackendError(f"unexpected client error: {type(error).__name__}: {error}")))

        job.thread = threading.Thread(target=run, name=f"zeroshape-job-{job.request_id[:8]}", daemon=True)
        job.thread.start()
        return job
