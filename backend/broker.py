"""`zeroshape-w serve --workers N`: one public endpoint, N worker processes (one per GPU when there are GPUs).

ZeroMQ's broker pattern with a ROUTER on each side: clients talk to the public ROUTER exactly as to a single
server; workers (ordinary servers started with the broker's configuration, children of the broker) connect their DEALER
sockets to a private backend ROUTER on an ipc endpoint in a folder only this user can open. The broker
validates each request, sends a reconstruction to the ready worker with the fewest unfinished jobs, sends
`cancel` to the worker that has the job, answers `ping` and `shutdown` itself, and answers `info` with its own
view (workers, job counts, queue, its authentication) over a live worker's figures, or over the last ones it has
when no worker answers within INFO_WAIT_S. Jobs are keyed by (client, request id), and an id a client reuses
while its first job runs is tracked once per job: every accepted job gets exactly one answer.

Supervision: a worker says "hello" when it connects, "ready" once its model is loaded, and "alive" every
second. A worker that dies, or stays silent for WORKER_SILENCE_S (hung: stopped, deadlocked), is killed, its
unfinished jobs are answered with `worker_died`, and another is started in its place; a worker that dies
before it was ever ready stops the broker with an error (a bad checkpoint would fail every restart). Workers
exit when the broker does. Workers on other machines are not supported: every worker is a local child.
"""

from __future__ import annotations

import dataclasses
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
from dataclasses import dataclass
from pathlib import Path

from blender_addon import protocol
from blender_addon.protocol import ProtocolError, Response

from .endpoint import (
    ServerConfig,
    ServerError,
    check_security,
    default_token_file,
    deliver,
    error_fields,
    open_router,
    watch_parent,
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


WORKER_SILENCE_S = 6.0
"""A connected worker silent this long (it says "alive" every second) is taken for hung and replaced."""
WORKER_FRESH_S = 1.5
"""A ready worker heard from this recently (it says "alive" every second) is asked for `info`; others are not."""
INFO_WAIT_S = 0.5
"""How long the broker waits for a worker's `info` before it answers from what it knows."""
BROKER_ENVELOPE = b"zeroshape-broker"
"""The routing id the broker's own requests to a worker carry, so their answers stay in the broker."""
WORKER_CONNECT_S = 60.0
"""A started worker that has not connected after this long is taken for stuck and replaced."""


@dataclass
class WorkerSlot:
    """One worker process as the broker sees it."""

    process: subprocess.Popen
    device: str
    started_at: float
    identity: bytes
    state: str = "starting"
    """"starting" (not connected), "loading" (connected, model loading), "ready"."""
    last_seen: float = 0.0
    outstanding: int = 0
    """Reconstructions sent to it and not yet finished."""
    was_ready: bool = False


class Broker:
    def __init__(self, config: ServerConfig, workers: int):
        if workers < 1:
            raise ServerError("--workers must be at least 1")
        check_security(config)
        self.config = config
        self.worker_count = workers
        self.stopping = threading.Event()
        self.token = os.urandom(18).hex()
        self.counts = {"done": 0, "failed": 0, "cancelled": 0, "busy": 0, "worker_died": 0}
        """Final answers the broker passed to clients, by kind."""
        self.worker_info: dict | None = None
        """A worker's last `info` (model, device, versions, capabilities): what the broker answers with by itself."""

    def _start_worker(self, endpoint: str, device: str) -> WorkerSlot:
        # The worker gets the broker's whole configuration (a file in the private folder), with its own device and
        # endpoint: a new server option reaches the workers without the broker knowing of it.
        config = dataclasses.replace(
            self.config,
            worker_of=endpoint,
            device=device,
            auth=False,
            server_secret_key=None,
            allowed_clients=None,
            token_file=None,
            parent_pid=None,  # a worker follows its broker, which follows the parent
        )
        config_file = Path(endpoint.removeprefix("ipc://")).with_name(f"worker-{device.replace(':', '-')}.json")
        config_file.write_text(config.to_json())
        command = [sys.executable, "-m", "backend", "serve", "--worker-config", str(config_file)]
        log.info("starting a worker on %s", device)
        env = dict(os.environ)
        if device == "cpu" and "OMP_NUM_THREADS" not in env:
            # N CPU workers share the cores: each taking all of them (torch's default) oversubscribes them.
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.worker_count))
        # Its readiness comes over the socket; its errors go to the broker's stderr.
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
        return WorkerSlot(process, device, time.monotonic(), worker_identity(process.pid))

    def serve(self) -> int:
        import zmq

        private = Path(tempfile.mkdtemp(prefix="zeroshape-w-broker-"))
        os.chmod(private, 0o700)
        endpoint = f"ipc://{private}/workers"
        context = zmq.Context()
        backend = context.socket(zmq.ROUTER)
        backend.setsockopt(zmq.LINGER, 0)
        backend.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a worker that is not connected fails, not vanishes
        backend.bind(endpoint)
        try:  # the public address first: a broker that cannot listen must not leave workers behind
            frontend, authenticator = open_router(context, self.config)
        except ServerError:
            backend.close(linger=0)
            context.term()
            shutil.rmtree(private, ignore_errors=True)
            raise
        slots = [
            self._start_worker(endpoint, device) for device in worker_devices(self.worker_count, self.config.device)
        ]
        token_path = write_token_file(self.config.token_file or default_token_file(self.config.address), self.token)
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: self.stopping.set())
        if self.config.parent_pid is not None:
            watch_parent(self.config.parent_pid, self.stopping.set)
        print(f"zeroshape-w broker listening on {self.config.address}; starting {len(slots)} workers", flush=True)
        try:
            return self._loop(zmq, frontend, backend, endpoint, slots)
        finally:
            self._stop_workers(slots)
            frontend.close(linger=1000)
            backend.close(linger=0)
            if authenticator is not None:
                authenticator.stop()
            context.term()
            token_path.unlink(missing_ok=True)
            shutil.rmtree(private, ignore_errors=True)

    def _stop_workers(self, slots: list[WorkerSlot]) -> None:
        for slot in slots:
            if slot.process.poll() is None:
                slot.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.grace_s + 30
        for slot in slots:
            try:
                slot.process.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                slot.process.kill()
                slot.process.wait()

    def _loop(self, zmq, frontend, backend, endpoint: str, slots: list[WorkerSlot]) -> int:
        # (client identity, request id) → the workers running its jobs, oldest first: a client may reuse an id while
        # its first job runs, and each job is answered (as a single server does).
        jobs: dict[tuple[bytes, str], list[bytes]] = {}
        pending_info: dict[tuple[bytes, str], tuple[float, list[bytes]]] = {}  # → (deadline, client envelope)
        announced = False
        poller = zmq.Poller()
        poller.register(frontend, zmq.POLLIN)
        poller.register(backend, zmq.POLLIN)

        def send(socket, frames) -> bool:
            return deliver(socket, frames)  # a vanished peer must not stop the broker; False: it is gone

        def reply(envelope, response: Response) -> None:
            send(frontend, [*envelope, *protocol.encode_response(response)])

        def reply_error(envelope, request_id, code, message) -> None:
            reply(envelope, Response(request_id, "error", error_fields(code, message)))

        def by_identity(identity: bytes) -> WorkerSlot | None:
            return next((slot for slot in slots if slot.identity == identity), None)

        def state() -> str:
            if self.stopping.is_set():
                return "stopping"
            return "ready" if any(slot.state == "ready" for slot in slots) else "loading"

        def supervise() -> None:
            """Replace dead, hung and stuck workers; answer the jobs they held."""
            now = time.monotonic()
            for index, slot in enumerate(slots):
                silent = slot.state != "starting" and now - slot.last_seen > WORKER_SILENCE_S
                stuck = slot.state == "starting" and now - slot.started_at > WORKER_CONNECT_S
                if slot.process.poll() is None and not (silent or stuck):
                    continue
                if slot.process.poll() is None:
                    what = "silent" if silent else "not connected"
                    log.warning("worker pid %d is %s for too long: killing it", slot.process.pid, what)
                    slot.process.kill()
                status = slot.process.wait()
                if not slot.was_ready:
                    raise ServerError(
                        f"a worker exited before its model was ready (status {status}); its error is above"
                    )
                log.warning("worker pid %d stopped (status %s); starting another", slot.process.pid, status)
                for key, holders in list(jobs.items()):
                    for _ in range(holders.count(slot.identity)):  # every job it held gets its one answer
                        holders.remove(slot.identity)
                        self.counts["worker_died"] += 1
                        message = "the worker running this job stopped; the broker is restarting it: try again"
                        reply_error([key[0]], key[1], "worker_died", message)
                    if not holders:
                        del jobs[key]
                slots[index] = self._start_worker(endpoint, slot.device)

        def answer_overdue_info() -> None:
            """`info` a worker did not answer in time (stopped, busy): the broker answers from what it knows."""
            now = time.monotonic()
            for key, (deadline, envelope) in list(pending_info.items()):
                if now >= deadline:
                    del pending_info[key]
                    reply(envelope, self._broker_info(key[1], slots, state()))

        def from_worker(frames: list[bytes]) -> None:
            nonlocal announced
            slot = by_identity(frames[0])
            if slot is None:
                return  # a replaced worker's last words, or a stranger on the private endpoint
            slot.last_seen = time.monotonic()
            rest = frames[1:]
            if rest in ([b"hello"], [b"alive"]):
                slot.state = "loading" if slot.state == "starting" else slot.state
                return
            if rest == [b"ready"]:
                slot.state, slot.was_ready = "ready", True
                ask = protocol.Request(f"broker-info-{slot.process.pid}", "info", {})
                send(backend, [slot.identity, BROKER_ENVELOPE, *protocol.encode_request(ask)])  # for its own info
                if not announced and all(s.state == "ready" for s in slots):
                    announced = True
                    print(f"zeroshape-w broker ready on {self.config.address} with {len(slots)} workers", flush=True)
                return
            try:
                envelope, body = protocol.split_envelope(rest)
                header = json.loads(body[0])
            except (ProtocolError, ValueError, IndexError):
                return
            key = (envelope[0] if envelope else b"", header.get("id"))
            kind = header.get("type")
            if kind == "info" and isinstance(header.get("info"), dict):
                self.worker_info = header["info"]  # what the broker tells when no worker answers in time
            if envelope == [BROKER_ENVELOPE]:
                return  # the broker's own question
            final = kind in FINAL_TYPES
            holders = jobs.get(key)
            if final and holders and slot.identity in holders:
                holders.remove(slot.identity)
                if not holders:
                    del jobs[key]
                slot.outstanding = max(0, slot.outstanding - 1)
                self.counts[{"result": "done", "error": "failed"}.get(kind, kind)] += 1
            if kind == "info":
                if pending_info.pop(key, None) is None:
                    return  # answered by the broker already: too late
                rest = [*envelope, *protocol.encode_response(self._with_broker_view(header, slots, state()))]
            if not send(frontend, rest) and not final and key in jobs:
                # The client is gone: its worker should stop computing (the worker answers "cancelled",
                # which is dropped here like anything else addressed to that client).
                cancel = protocol.Request(f"drop-{key[1]}"[:64], "cancel", {"target": key[1]})
                send(backend, [slot.identity, *envelope, *protocol.encode_request(cancel)])

        def from_client(frames: list[bytes]) -> None:
            try:
                envelope, body = protocol.split_envelope(frames)
                request = protocol.decode_request(body)
            except ProtocolError as error:
                reply_error(frames[:1], error.request_id or "unknown", error.code, str(error))
                return
            if request.op == "shutdown":
                if hmac.compare_digest(request.options["token"].encode(), self.token.encode()):
                    reply(envelope, Response(request.request_id, "ok", {"message": "shutting down"}))
                    self.stopping.set()
                else:
                    reply_error(envelope, request.request_id, "forbidden", "wrong shutdown token")
                return
            if request.op == "ping":
                reply(envelope, Response(request.request_id, "pong", {"state": state()}))
                return
            connected = [slot for slot in slots if slot.state != "starting"]
            if not connected:
                reply_error(envelope, request.request_id, "no_workers", "no worker is connected yet: try again soon")
                return
            if request.op == "cancel":
                holders = jobs.get((envelope[0], request.options["target"]))
                if not holders:
                    message = f"no job {request.options['target']} of yours is queued or running"
                    reply(envelope, Response(request.request_id, "ok", {"message": message}))
                    return
                worker = holders[0]  # with a reused id: the oldest of its jobs
            elif request.op == "info":
                # A live worker's figures if it answers at once (a stopped or busy one must not hold up info).
                now = time.monotonic()
                fresh = [s for s in connected if s.state == "ready" and now - s.last_seen < WORKER_FRESH_S]
                if not fresh:
                    reply(envelope, self._broker_info(request.request_id, slots, state()))
                    return
                worker = min(fresh, key=lambda slot: slot.outstanding).identity
                pending_info[(envelope[0], request.request_id)] = (now + INFO_WAIT_S, envelope)
            else:  # reconstruct: the ready worker with the fewest unfinished jobs (loading ones queue)
                ready = [slot for slot in connected if slot.state == "ready"] or connected
                chosen = min(ready, key=lambda slot: slot.outstanding)
                worker = chosen.identity
                chosen.outstanding += 1
                jobs.setdefault((envelope[0], request.request_id), []).append(worker)
            if not send(backend, [worker, *frames]):
                reply_error(envelope, request.request_id, "worker_died", "the worker is gone: try again")

        while not self.stopping.is_set():
            supervise()
            answer_overdue_info()
            ready = dict(poller.poll(100 if pending_info else 200))
            if backend in ready:
                for _ in range(100):
                    try:
                        from_worker(backend.recv_multipart(zmq.NOBLOCK))
                    except zmq.Again:
                        break
            if frontend in ready:
                try:
                    frames = protocol.receive_request_frames(frontend)
                except ProtocolError as error:  # too many frames or bytes: dropped, sender told
                    reply_error(error.envelope, "unknown", error.code, str(error))
                    continue
                from_client(frames)
        return 0

    def _broker_info(self, request_id: str, slots: list[WorkerSlot], state: str) -> Response:
        """`info` answered by the broker alone: its view, and a worker's last info for the model and versions."""
        header = {"id": request_id, "info": {**(self.worker_info or {}), "answered_by": "broker"}}
        header["info"].pop("metrics", None)  # one worker's figures, from an earlier moment: not the broker's now
        return self._with_broker_view(header, slots, state)

    def _with_broker_view(self, header: dict, slots: list[WorkerSlot], state: str) -> Response:
        """A worker's info reply with the broker's own view: its state, its authentication, the jobs of all
        workers, each worker (with how long ago it was last heard from)."""
        now = time.monotonic()
        info = dict(header.get("info") or {})
        info["state"] = state
        info["auth"] = self.config.auth  # the broker's front socket: its workers listen on a private one
        info["queue_length"] = sum(slot.outstanding for slot in slots)
        info["jobs"] = dict(self.counts)
        info["workers"] = [
            {
                "pid": slot.process.pid,
                "device": slot.device,
                "state": slot.state,
                "outstanding": slot.outstanding,
                "last_seen_s": round(now - slot.last_seen, 1) if slot.last_seen else None,
            }
            for slot in slots
        ]
        return Response(header.get("id", "unknown"), "info", {"info": info})
