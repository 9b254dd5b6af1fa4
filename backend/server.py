"""`zeroshape-w serve`: the inference server the Blender add-on talks to over ZeroMQ.

One ROUTER socket, touched only by the main thread, which validates every message (blender_addon.protocol),
answers at once (accepted, busy, error, pong, info), forwards job events and sends a heartbeat. One worker
thread runs jobs in order on the model's device. They talk through an inproc PUSH/PULL pair, because
ZeroMQ sockets must not be shared between threads.

Threat model: the server executes nothing a client sends; messages are JSON plus raw bytes, never pickle;
every size a client controls is bounded (ZMQ_MAXMSGSIZE on the socket, header, image and mask limits in the
protocol, Pillow's decompression-bomb limit lowered and its warning an error, a maximum resolution, a
bounded queue, a deadline per job). By default it listens on loopback only, so only programs on this
machine can reach it; loopback does not separate users of a shared machine, nor stop malware running as
you. `--auth` (required for any non-loopback address) turns on CurveZMQ: traffic is encrypted and a ZAP
handler admits only clients whose public key is in the allowed-keys folder. Shutdown over the wire needs a
token that the server writes to a file only its user can read.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path

from blender_addon import protocol
from blender_addon.protocol import ProtocolError, Request, Response

from .endpoint import (
    ServerConfig,
    check_security,
    default_token_file,
    deliver,
    error_fields,
    open_router,
    watch_parent,
    worker_identity,
    write_token_file,
)
from .job_book import JobBook, QueuedJob
from .server_metrics import ServerMetrics

log = logging.getLogger(__name__)


class JobAbortedError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def return_large_buffers_to_the_system() -> bool:
    """Make glibc give every buffer over 256 KiB back to the system when it is freed (Linux only).

    glibc raises its mmap threshold each time a large block is freed, up to 32 MiB: after one 300-frame
    message of 1 MB, later megabyte frames come from the heap and the server's memory stays up by the whole
    message (measured: +546 MB retained). A fixed threshold keeps large frames and images in their own
    mappings, released on free. Returns whether the setting took (False off glibc)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 256 * 1024))
    except (OSError, AttributeError):
        return False


WORKER_ALIVE_S = 1.0
"""A broker's worker tells the broker it is alive this often (from its I/O loop, not its compute thread)."""
M_MMAP_THRESHOLD = -3
"""glibc's mallopt parameter number (malloc.h)."""


class Server:
    def __init__(self, config: ServerConfig):
        check_security(config)
        self.config = config
        self.last_event = 0.0
        self.last_progress: tuple[str, float] = ("queued", 0.0)
        self.stopping = threading.Event()
        self.stop_requested_at: float | None = None
        self.token = secrets.token_urlsafe(24)
        self.reconstructor = None
        self.last_queue_heartbeat = 0.0
        self.metrics = ServerMetrics()
        self.book = JobBook(config.queue_size, self.metrics)
        self.loaded = threading.Event()
        """Set once the model is loaded and warmed up: until then requests queue and ping says "loading"."""
        self.load_error: str | None = None
        self.authenticator = None
        """The CurveZMQ authenticator thread while serving with --auth (set by `serve`, stopped on the way out)."""

    # ------------------------------------------------------------------------------------ start-up
    def load(self) -> None:
        from backend.pipeline import Reconstructor

        return_large_buffers_to_the_system()
        self.reconstructor = Reconstructor(self.config.checkpoint, self.config.device, self.config.open_clip_weights)
        if self.config.warmup:
            self._warm_up()
        self.loaded.set()

    @property
    def state(self) -> str:
        """ "loading" (requests queue until the model is ready), "ready" or "stopping"."""
        if self.stopping.is_set():
            return "stopping"
        return "ready" if self.loaded.is_set() else "loading"

    def _warm_up(self) -> None:
        """One small reconstruction, so the first real request does not pay for lazy initialisation."""
        import numpy as np

        from backend.pipeline import EmptyMeshError, ReconstructOptions
        from backend.preprocess import Photo

        rng = np.random.default_rng(0)
        photo = Photo(rgb=rng.random((96, 96, 3), dtype=np.float32), alpha=None, source="warm-up")
        with contextlib.suppress(EmptyMeshError):
            self.reconstructor.reconstruct(photo, ReconstructOptions(resolution=32))

    def _write_token(self) -> Path:
        return write_token_file(self.config.token_file or default_token_file(self.config.address), self.token)

    def _open_socket(self, context):
        import zmq

        if self.config.worker_of is not None:
            # Behind a broker: a DEALER connected to the broker's backend ROUTER. Requests arrive as
            # [client identity, b"", header, ...] and replies go back the same way.
            dealer = context.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 1000)
            # Named after the process, so the broker can tell which worker a dead process was.
            dealer.setsockopt(zmq.ROUTING_ID, worker_identity(os.getpid()))
            dealer.connect(self.config.worker_of)
            dealer.send(b"hello")  # tells the broker this worker exists
            self._die_with_parent()
            return dealer
        router, self.authenticator = open_router(context, self.config)
        return router

    def _die_with_parent(self) -> None:
        """A broker's worker has no purpose without its broker: when the parent process is gone (killed, or
        failed to start), the worker exits within a second instead of holding its memory as an orphan."""
        parent = os.getppid()

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            log.warning("the broker (pid %d) is gone: this worker exits", parent)
            os._exit(0)

        threading.Thread(target=watch, name="zeroshape-parent-watch", daemon=True).start()

    # ------------------------------------------------------------------------------------ main loop
    def serve(self, ready_callback=None) -> int:
        """Bind, then serve until stopped while the worker thread loads and warms up the model (until it is
        ready, ping answers "loading" and jobs wait in the queue). Returns the exit status: 0, or 2 when the
        model cannot be loaded."""
        import zmq

        context = zmq.Context()
        router = self._open_socket(context)
        events = context.socket(zmq.PULL)
        events.bind("inproc://events")
        worker = threading.Thread(target=self._worker, args=(context,), name="zeroshape-worker", daemon=True)
        worker.start()
        # A broker's worker takes orders from its broker only: no token, no shutdown over the wire.
        token_path = self._write_token() if self.config.worker_of is None else None
        self._install_signal_handlers()
        if self.config.parent_pid is not None:
            watch_parent(self.config.parent_pid, lambda: self._stop_for_parent(self.config.parent_pid))
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(events, zmq.POLLIN)
        where = f"worker of {self.config.worker_of}" if self.config.worker_of else self.config.address
        print(f"zeroshape-w server listening on {where}; loading the model", flush=True)
        announced = False
        last_alive = 0.0
        try:
            while True:
                if not announced and self.loaded.is_set():
                    announced = True
                    message = f"zeroshape-w server ready on {where} (device {self.reconstructor.device})"
                    log.info("%s%s", message, f"; shutdown token in {token_path}" if token_path else "")
                    print(message, flush=True)
                    if self.config.worker_of is not None:
                        deliver(router, [b"ready"])  # the broker routes jobs to this worker from now on
                    if ready_callback:
                        ready_callback()
                if self.load_error is not None:
                    print(f"zeroshape-w: error: cannot load the model: {self.load_error}", file=sys.stderr, flush=True)
                    break
                ready = dict(poller.poll(timeout=100))
                if router in ready:
                    for _ in range(100):  # drain a burst without starving the event socket
                        try:
                            frames = protocol.receive_request_frames(router, zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        except ProtocolError as error:  # too many frames or bytes: dropped, sender told
                            self._send(
                                router,
                                error.envelope,
                                Response("unknown", "error", error_fields(error.code, str(error))),
                            )
                            continue
                        self._handle(router, frames)
                if events in ready:
                    while True:
                        try:
                            frames = events.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._forward_event(router, frames)
                self._heartbeat(router)
                if self.config.worker_of is not None and time.monotonic() - last_alive >= WORKER_ALIVE_S:
                    last_alive = time.monotonic()
                    deliver(router, [b"alive"])  # the broker takes a silent worker for hung, and replaces it
                if self.stopping.is_set() and self._shutdown_step(router):
                    break
        finally:
            events.close(linger=0)
            router.close(linger=1000)
            if self.authenticator is not None:
                self.authenticator.stop()
            context.term()
            if token_path is not None:
                token_path.unlink(missing_ok=True)
        log.info("server stopped")
        return 0 if self.load_error is None else 2

    def _stop_for_parent(self, pid: int) -> None:
        log.warning("the process that started this server (pid %d) is gone: stopping", pid)
        self.stopping.set()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def request_stop(signum, frame):
            log.info(
                "signal %s: finishing the running job (grace %.0f s), refusing new ones", signum, self.config.grace_s
            )
            self.stopping.set()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

    def _shutdown_step(self, router) -> bool:
        """Called while stopping; True once it is safe to exit."""
        now = time.monotonic()
        if self.stop_requested_at is None:
            self.stop_requested_at = now
            for job in self.book.drain():  # queued jobs will not run
                self._send(
                    router,
                    job.envelope,
                    Response(job.request_id, "error", error_fields("shutting_down", "the server is shutting down")),
                )
        running = self.book.running()
        if running is None:
            return True
        if now - self.stop_requested_at > self.config.grace_s:
            running.cancel.set()
        return now - self.stop_requested_at > self.config.grace_s + 30  # a stuck job cannot hold us forever

    # ------------------------------------------------------------------------------------ requests
    def _send(self, router, envelope: list[bytes], response: Response) -> bool:
        """Send without blocking; False only when the client is gone (its connection closed), which the
        public ROUTER reports (ZMQ_ROUTER_MANDATORY). A client that is slow to read is not gone."""
        return deliver(router, [*envelope, *protocol.encode_response(response)])

    def _handle(self, router, frames: list[bytes]) -> None:
        envelope, body = [], frames
        try:
            envelope, body = protocol.split_envelope(frames)
            if not envelope:
                return  # cannot happen on a ROUTER socket; nobody to answer
            request = protocol.decode_request(body)
        except ProtocolError as error:
            if not envelope and frames:
                envelope = frames[:1]  # a ROUTER always prepends the sender's identity
            self._send(
                router, envelope, Response(error.request_id or "unknown", "error", error_fields(error.code, str(error)))
            )
            return
        try:
            getattr(self, f"_op_{request.op}")(router, envelope, request)
        except ProtocolError as error:
            self._send(router, envelope, Response(request.request_id, "error", error_fields(error.code, str(error))))
        except Exception as error:  # a bug in one handler must not take the server down
            log.exception("request %s failed", request.request_id)
            self._send(router, envelope, Response(request.request_id, "error", error_fields("internal", str(error))))

    def _op_ping(self, router, envelope, request: Request) -> None:
        self._send(router, envelope, Response(request.request_id, "pong", {"state": self.state}))

    def _op_info(self, router, envelope, request: Request) -> None:
        import torch
        import zmq

        from backend import __version__

        r = self.reconstructor if self.loaded.is_set() else None
        queue_length, counts = self.book.status()
        info = {
            "state": self.state,
            "model": r.model.config.name if r else None,
            "checkpoint": r.checkpoint.name if r else None,
            "checkpoint_sha256": r.checkpoint_sha256 if r else None,
            "untrained": r.untrained if r else None,
            "device": str(r.device) if r else self.config.device,
            "capabilities": r.capabilities() if r else None,
            "queue_length": queue_length,
            "jobs": counts,
            "metrics": self.metrics.snapshot(queue_length),
            "queue_size": self.config.queue_size,
            "max_resolution": self.config.max_resolution,
            "auth": self.config.auth,
            "versions": {
                "zeroshape_w": __version__,
                "protocol": protocol.PROTOCOL_VERSION,
                "torch": torch.__version__,
                "pyzmq": zmq.__version__,
                "libzmq": zmq.zmq_version(),
            },
        }
        self._send(router, envelope, Response(request.request_id, "info", {"info": info}))

    def _op_reconstruct(self, router, envelope, request: Request) -> None:
        options = protocol.ReconstructOptions.from_json(request.options, request.request_id)
        if options.resolution > self.config.max_resolution:
            message = f"resolution {options.resolution} is above this server's limit of {self.config.max_resolution}"
            self._send(router, envelope, Response(request.request_id, "error", error_fields("bad_options", message)))
            return
        if self.stopping.is_set():
            self._send(
                router, envelope, Response(request.request_id, "busy", {"message": "the server is shutting down"})
            )
            return
        deadline = min(options.deadline_s or self.config.job_deadline_s, self.config.job_deadline_s)
        mask = request.payload[1] if len(request.payload) > 1 else None
        job = QueuedJob(envelope, request.request_id, request.payload[0], options, deadline, mask)
        position = self.book.add(job)
        if position is None:
            message = f"{self.config.queue_size} jobs are already waiting; try again later"
            self._send(router, envelope, Response(request.request_id, "busy", {"message": message}))
            return
        self._send(router, envelope, Response(request.request_id, "accepted", {"queue_position": position}))

    def _op_cancel(self, router, envelope, request: Request) -> None:
        target = request.options["target"]
        found = self.book.cancel(target, envelope)
        fields = {"message": "cancelling" if found else f"no job {target} of yours is queued or running"}
        self._send(router, envelope, Response(request.request_id, "ok", fields))

    def _op_shutdown(self, router, envelope, request: Request) -> None:
        if self.config.worker_of is not None:
            self._send(
                router, envelope, Response(request.request_id, "error", error_fields("forbidden", "ask the broker"))
            )
            return
        if not hmac.compare_digest(request.options["token"].encode(), self.token.encode()):
            self._send(
                router,
                envelope,
                Response(request.request_id, "error", error_fields("forbidden", "wrong shutdown token")),
            )
            return
        self._send(router, envelope, Response(request.request_id, "ok", {"message": "shutting down"}))
        self.stopping.set()

    # ------------------------------------------------------------------------------------ events
    def _forward_event(self, router, frames: list[bytes]) -> None:
        """Worker events arrive as [envelope count, *envelope, *response frames]."""
        count = int(frames[0])
        envelope, body = frames[1 : 1 + count], frames[1 + count :]
        event = protocol.decode_response(body[1:])  # [b"", header, *payload]: written by our own worker thread
        if event.type == "progress":
            self.last_progress = (event.fields["stage"], event.fields["fraction"])
        self.last_event = time.monotonic()
        if not deliver(router, [*envelope, *body]):
            self._abandon(self.book.running(), event.request_id, envelope)

    def _abandon(self, job: QueuedJob | None, request_id: str, envelope: list[bytes]) -> None:
        """The client of this job is gone: stop the job (running) or drop it (queued); nobody waits for it."""
        if job is not None and job.belongs_to(request_id, envelope) and not job.cancel.is_set():
            log.info("client of job %s is gone: dropping it", request_id)
            job.cancel.set()
            job.abandoned = True

    def _heartbeat(self, router) -> None:
        """Progress at least every heartbeat_s: the running job's last stage, and each queued job's place in the
        queue (a client waiting behind others must not mistake the silence for a dead server). A heartbeat
        that finds its client gone drops the job."""
        now = time.monotonic()
        job = self.book.running()
        if job is not None and now - self.last_event >= self.config.heartbeat_s:
            stage, fraction = self.last_progress
            fields = {"stage": stage, "fraction": fraction}
            if not self._send(router, job.envelope, Response(job.request_id, "progress", fields)):
                self._abandon(job, job.request_id, job.envelope)
            self.last_event = now
        if now - self.last_queue_heartbeat < self.config.heartbeat_s:
            return
        self.last_queue_heartbeat = now
        running, queued_jobs = self.book.jobs()  # copied once a heartbeat, not on every pass of the loop
        ahead = 1 if running is not None else 0
        for position, queued in enumerate(queued_jobs, start=ahead + 1):
            if queued.cancel.is_set():
                continue
            if queued.expired(now):  # answered now, not when its turn comes
                if not self.book.expire_in_queue(queued):
                    continue  # the worker took it meanwhile and answers it
                message = f"the job waited in the queue longer than its {queued.deadline_s:g} s deadline"
                self._send(
                    router, queued.envelope, Response(queued.request_id, "error", error_fields("deadline", message))
                )
                continue
            fields = {"stage": "queued", "fraction": 0.0, "queue_position": position}
            if not self._send(router, queued.envelope, Response(queued.request_id, "progress", fields)):
                self._abandon(queued, queued.request_id, queued.envelope)

    # ------------------------------------------------------------------------------------ worker
    def _worker(self, context) -> None:
        import zmq

        push = context.socket(zmq.PUSH)
        push.connect("inproc://events")

        def emit(job: QueuedJob, response: Response) -> None:
            push.send_multipart([str(len(job.envelope)).encode(), *job.envelope, *protocol.encode_response(response)])

        try:
            self.load()
        except Exception as error:  # a missing or damaged checkpoint: the main loop reports it and exits
            log.exception("cannot load the model")
            self.load_error = f"{type(error).__name__}: {error}"
            push.close(linger=0)
            return
        while True:
            taken = self.book.take(timeout_s=0.2)
            if taken is None:
                if self.stopping.is_set():
                    break
                continue
            job, ended = taken
            if ended in ("cancelled", "abandoned"):
                answer = error_fields("cancelled", "cancelled before it started")
                emit(job, Response(job.request_id, "cancelled", answer))
            elif ended == "expired":
                message = f"the job waited in the queue longer than its {job.deadline_s:g} s deadline"
                emit(job, Response(job.request_id, "error", error_fields("deadline", message)))
            elif ended is None:
                emit(job, self._run_counted(job, emit))
        push.close(linger=0)

    def _run_counted(self, job: QueuedJob, emit) -> Response:
        """Run the job the book just made the running one; count its outcome, take it off the books, and
        return its final answer (sent only once it is off the books: a client that asks `info` on its answer
        sees it done)."""
        self.last_progress = ("started", 0.0)
        self.last_event = time.monotonic()
        start_mb = self.metrics.job_started()
        outcome = "failed"
        try:
            final = self._run(job, lambda response: emit(job, response))
            outcome = "done" if final.type == "result" else "failed"
        except JobAbortedError as aborted:
            kind = "cancelled" if aborted.code == "cancelled" else "error"
            outcome = "abandoned" if job.abandoned else "cancelled" if kind == "cancelled" else "expired"
            final = Response(job.request_id, kind, error_fields(aborted.code, str(aborted)))
        except Exception as error:  # one bad job must never take the server down
            log.exception("job %s failed", job.request_id)
            final = Response(job.request_id, "error", error_fields("internal", f"{type(error).__name__}: {error}"))
        finally:
            seconds = time.monotonic() - job.started
            rise = self.metrics.job_finished(seconds, start_mb)
            self.book.finish(outcome)
            log.info("job %s: %.2f s, peak memory +%s MB", job.request_id, seconds, rise)
        return final

    def _run(self, job: QueuedJob, emit) -> Response:
        from backend.object_mask import MaskError, decode_mask_bytes, mask_png_bytes
        from backend.pipeline import EmptyMeshError
        from backend.preprocess import ImageError, decode_photo

        def progress(stage: str, fraction: float) -> None:
            if job.cancel.is_set():
                raise JobAbortedError("cancelled", "cancelled")
            if job.expired(time.monotonic()):
                raise JobAbortedError("deadline", f"the job took longer than its {job.deadline_s:.0f} s deadline")
            emit(Response(job.request_id, "progress", {"stage": stage, "fraction": round(float(fraction), 4)}))

        try:
            progress("decode", 0.0)
            photo = decode_photo(job.image, f"request {job.request_id}")
            mask = None if job.mask is None else decode_mask_bytes(job.mask, photo.size_in_file)
            result = self.reconstructor.reconstruct(photo, job.options, progress=progress, mask=mask)
        except ImageError as error:
            raise JobAbortedError("bad_image", str(error)) from None
        except EmptyMeshError as error:
            raise JobAbortedError("empty_mesh", str(error)) from None
        except MaskError as error:  # a ValueError too: before the options' clause
            raise JobAbortedError("bad_mask", str(error)) from None
        except ValueError as error:
            raise JobAbortedError("bad_options", str(error)) from None
        used_mask = None
        if job.options.return_mask and result.mask is not None:
            used_mask = mask_png_bytes(result.mask, result.photo_size)
        fields, frames = protocol.result_payload(result.vertices, result.faces, result.colors, used_mask)
        fields["metadata"] = result.metadata
        return Response(job.request_id, "result", fields, frames)
