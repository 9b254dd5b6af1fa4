"""`zeroshape-w serve --workers N`: one public endpoint, N worker processes (one per GPU when there are GPUs).

ZeroMQ's broker pattern with a ROUTER on each side: clients talk to the public ROUTER exactly as to a single
server; workers (ordinary servers started with `worker_of`) connect their DEALER sockets to a private
backend ROUTER on an ipc endpoint in a folder only this user can open. The broker validates each request,
sends a reconstruction to the worker with the fewest unfinished jobs, sends `cancel` to the worker that has
the job, spreads `ping`/`info` round-robin, and handles `shutdown` itself. Workers on other machines can be
added the same way by pointing `worker_of` at a tcp endpoint (with CURVE).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from blender_addon import protocol
from blender_addon.protocol import ProtocolError, Response

from .server import (
    ServerConfig,
    ServerError,
    _error,
    check_security,
    default_token_file,
    deliver,
    open_router,
    worker_identity,
    write_token_file,
)

log = logging.getLogger(__name__)

FINAL_TYPES = {"result", "error", "cancelled", "busy"}


def worker_devices(count: int, device: str) -> list[str]:
    """One device per worker: cuda:0..N-1 when `device` is auto and GPUs exist, else `device` for all."""
    if device == "auto":
        import torch

        gpus = torch.cuda.device_count()
        if gpus:
            return [f"cuda:{i % gpus}" for i in range(count)]
        return ["cpu"] * count
    return [device] * count


class Broker:
    def __init__(self, config: ServerConfig, workers: int):
        if workers < 1:
            raise ServerError("--workers must be at least 1")
        check_security(config)
        self.config = config
        self.worker_count = workers
        self.stopping = threading.Event()
        self.token = os.urandom(18).hex()

    def _start_worker(self, endpoint: str, device: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "backend", "serve", "--worker-of", endpoint, "--device", device]
        command += ["--queue-size", str(self.config.queue_size), "--max-resolution", str(self.config.max_resolution)]
        command += ["--deadline", str(self.config.job_deadline_s), "--grace", str(self.config.grace_s)]
        if self.config.checkpoint:
            command += ["--checkpoint", str(self.config.checkpoint)]
        if self.config.open_clip_weights:
            command += ["--open-clip-weights", str(self.config.open_clip_weights)]
        log.info("starting a worker on %s", device)
        return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)

    def _start_workers(self, endpoint: str, devices: list[str]) -> list[subprocess.Popen]:
        """A worker per device, each waited for until it prints "ready"; if one fails, none is left running."""
        processes = []
        try:
            for device in devices:
                processes.append(self._start_worker(endpoint, device))
            for process in processes:
                for line in process.stdout:
                    if "ready" in line:
                        break
                else:
                    raise ServerError(f"a worker exited before it was ready (status {process.wait()})")
        except BaseException:
            for process in processes:
                process.kill()
                process.wait()
            raise
        return processes

    def serve(self) -> int:
        import zmq

        private = Path(tempfile.mkdtemp(prefix="zeroshape-w-broker-"))
        os.chmod(private, 0o700)
        endpoint = f"ipc://{private}/workers"
        context = zmq.Context()
        backend = context.socket(zmq.ROUTER)
        backend.setsockopt(zmq.LINGER, 0)
        backend.bind(endpoint)
        try:  # the public address first: a broker that cannot listen must not leave workers behind
            frontend, authenticator = open_router(context, self.config)
        except ServerError:
            backend.close(linger=0)
            context.term()
            shutil.rmtree(private, ignore_errors=True)
            raise
        device_list = worker_devices(self.worker_count, self.config.device)
        try:
            workers = self._start_workers(endpoint, device_list)
        except BaseException:
            frontend.close(linger=0)
            backend.close(linger=0)
            if authenticator is not None:
                authenticator.stop()
            context.term()
            shutil.rmtree(private, ignore_errors=True)
            raise
        devices = {process.pid: device for process, device in zip(workers, device_list, strict=True)}
        token_path = write_token_file(self.config.token_file or default_token_file(self.config.address), self.token)
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: self.stopping.set())

        identities: list[bytes] = []  # workers that have spoken (DEALER identities assigned by the ROUTER)
        outstanding: dict[bytes, int] = {}
        jobs: dict[tuple[bytes, str], bytes] = {}  # (client identity, request id) → worker
        turn = 0
        poller = zmq.Poller()
        poller.register(frontend, zmq.POLLIN)
        poller.register(backend, zmq.POLLIN)
        # A ROUTER learns a peer's identity only from a message: each worker greets with b"hello" when it
        # connects, before it prints "ready", so every worker is known here already or very soon.
        print(f"zeroshape-w broker ready on {self.config.address} with {len(workers)} workers", flush=True)

        def send(socket, frames) -> bool:
            return deliver(socket, frames)  # a vanished peer must not stop the broker; False: it is gone

        def reply_error(envelope, request_id, code, message) -> None:
            send(frontend, [*envelope, *protocol.encode_response(Response(request_id, "error", _error(code, message)))])

        def replace_dead_workers() -> None:
            """A worker process that died: forget it, answer its unfinished jobs, start another in its place."""
            for index, process in enumerate(workers):
                if process.poll() is None:
                    continue
                dead = worker_identity(process.pid)
                log.warning(
                    "worker %d (pid %d) died with status %s; restarting it", index, process.pid, process.returncode
                )
                if dead in outstanding:
                    identities.remove(dead)
                    del outstanding[dead]
                for key, worker in list(jobs.items()):
                    if worker == dead:
                        del jobs[key]
                        message = "the worker running this job stopped; the broker is restarting it: try again"
                        reply_error([key[0]], key[1], "worker_died", message)
                device = devices.pop(process.pid)
                replacement = self._start_worker(endpoint, device)
                devices[replacement.pid] = device
                workers[index] = replacement  # it greets the backend socket when it is up

        try:
            while not self.stopping.is_set():
                replace_dead_workers()
                ready = dict(poller.poll(200))
                if backend in ready:
                    frames = backend.recv_multipart()
                    worker, rest = frames[0], frames[1:]
                    if worker not in outstanding:
                        identities.append(worker)
                        outstanding[worker] = 0
                    if rest == [b"hello"]:
                        continue
                    try:
                        envelope, body = protocol.split_envelope(rest)
                        header = json.loads(body[0])
                    except (ProtocolError, ValueError, IndexError):
                        continue
                    key = (envelope[0] if envelope else b"", header.get("id"))
                    final = header.get("type") in FINAL_TYPES
                    if final and jobs.pop(key, None) is not None:
                        outstanding[worker] = max(0, outstanding[worker] - 1)
                    if not send(frontend, rest) and not final and key in jobs:
                        # The client is gone: its worker should stop computing (the worker answers "cancelled",
                        # which is dropped here like anything else addressed to that client).
                        cancel = protocol.Request(f"drop-{key[1]}"[:64], "cancel", {"target": key[1]})
                        send(backend, [worker, *envelope, *protocol.encode_request(cancel)])
                if frontend in ready:
                    try:
                        frames = protocol.receive_request_frames(frontend)
                    except ProtocolError as error:  # too many frames or bytes: dropped, sender told
                        reply_error(error.envelope, "unknown", error.code, str(error))
                        continue
                    try:
                        envelope, body = protocol.split_envelope(frames)
                        request = protocol.decode_request(body)
                    except ProtocolError as error:
                        reply_error(frames[:1], error.request_id or "unknown", error.code, str(error))
                        continue
                    if request.op == "shutdown":
                        if hmac.compare_digest(request.options["token"].encode(), self.token.encode()):
                            ok = Response(request.request_id, "ok", {"message": "shutting down"})
                            send(frontend, [*envelope, *protocol.encode_response(ok)])
                            self.stopping.set()
                        else:
                            reply_error(envelope, request.request_id, "forbidden", "wrong shutdown token")
                        continue
                    if not identities:
                        reply_error(envelope, request.request_id, "no_workers", "no worker is connected yet")
                        continue
                    if request.op == "reconstruct":
                        worker = min(identities, key=lambda w: outstanding[w])
                        outstanding[worker] += 1
                        jobs[(envelope[0], request.request_id)] = worker
                    elif request.op == "cancel":
                        worker = jobs.get((envelope[0], request.options["target"])) or identities[0]
                    else:
                        worker = identities[turn % len(identities)]
                        turn += 1
                    send(backend, [worker, *frames])
        finally:
            for process in workers:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.config.grace_s + 30
            for process in workers:
                try:
                    process.wait(timeout=max(1.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
            frontend.close(linger=1000)
            backend.close(linger=0)
            if authenticator is not None:
                authenticator.stop()
            context.term()
            token_path.unlink(missing_ok=True)
            for leftover in private.iterdir():
                leftover.unlink(missing_ok=True)
            private.rmdir()
        return 0
