"""`zeroshape-w serve --workers N`: the broker's bookkeeping against real processes (issue 41). A reused request id,
a killed or stopped worker: every accepted job gets exactly one answer, and `info` stays honest and quick."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time

import pytest
import zmq

from blender_addon import protocol
from blender_addon.client import Client

from .test_server import PHOTO, ServerProcess

FINAL = {"result", "error", "cancelled", "busy"}


@pytest.fixture
def broker(checkpoint, tmp_path):
    process = ServerProcess(checkpoint, tmp_path, "--workers", "2", "--device", "cpu").wait_ready(timeout=120)
    yield process
    for worker in _workers(process.address):  # a stopped worker would hold the broker's shutdown
        _signal(worker["pid"], signal.SIGCONT)
    process.stop()


def _workers(address: str) -> list[dict]:
    try:
        return Client(address).info(timeout_s=2, retries=2).get("workers") or []
    except Exception:
        return []


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _send_reconstruct(socket, request_id: str, resolution: int) -> None:
    request = protocol.Request(request_id, "reconstruct", {"resolution": resolution}, payload=[PHOTO.read_bytes()])
    socket.send_multipart(protocol.encode_request(request))


def _final_answers(socket, count: int, timeout_s: float) -> list[dict]:
    """The next `count` final answers (result, error, ...) on a raw DEALER socket, progress skipped."""
    answers, deadline = [], time.monotonic() + timeout_s
    while len(answers) < count and time.monotonic() < deadline:
        if socket.poll(200):
            header = json.loads(socket.recv_multipart()[1])
            if header["type"] in FINAL:
                answers.append(header)
    return answers


@pytest.fixture
def dealer():
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    yield socket
    socket.close()
    context.term()


def test_a_reused_id_is_answered_once_per_job_and_the_books_balance(broker, dealer):
    dealer.connect(broker.address)
    for _ in range(3):
        _send_reconstruct(dealer, "same", 32)
    answers = _final_answers(dealer, 3, timeout_s=120)
    assert [a["type"] for a in answers] == ["result"] * 3
    info = Client(broker.address).info()
    assert info["queue_length"] == 0  # once: 2, forever
    assert [w["outstanding"] for w in info["workers"]] == [0, 0]
    assert info["jobs"]["done"] == 3  # once: 1 of 3


def test_a_reused_id_on_a_worker_that_dies_still_gets_its_answer(broker, dealer):
    dealer.connect(broker.address)
    _send_reconstruct(dealer, "same", 256)  # slow enough to be running when its worker dies
    _send_reconstruct(dealer, "same", 256)
    time.sleep(0.5)
    holders = [w for w in _workers(broker.address) if w["outstanding"]]
    assert len(holders) == 2  # one job each: the broker spreads them
    _signal(holders[0]["pid"], signal.SIGKILL)
    answers = _final_answers(dealer, 2, timeout_s=120)
    assert len(answers) == 2, answers  # once: the killed worker's job was never answered
    assert sorted(a.get("code", a["type"]) for a in answers) == ["result", "worker_died"]
    info = Client(broker.address).info()
    assert info["queue_length"] == 0
    assert info["jobs"]["worker_died"] == 1
    assert info["jobs"]["done"] == 1


def test_info_reports_the_brokers_own_auth(checkpoint, tmp_path):
    from backend.endpoint import generate_keys

    server_public, server_secret = generate_keys(tmp_path / "server", "server")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    client_public, client_secret = generate_keys(tmp_path / "alice", "alice")
    (allowed / "alice.key").write_bytes(client_public.read_bytes())
    extra = ("--workers", "2", "--auth", "--server-key", str(server_secret), "--allowed-clients", str(allowed))
    process = ServerProcess(checkpoint, tmp_path, *extra).wait_ready(timeout=120)
    try:
        from blender_addon.client import CurveKeys

        info = Client(process.address, curve=CurveKeys.from_files(server_public, client_secret)).info()
    finally:
        process.stop()
    assert info["auth"] is True  # once: False, the workers' private socket


def test_info_answers_at_once_while_a_worker_is_stopped(broker):
    workers = _workers(broker.address)
    stopped = workers[0]["pid"]  # the one an idle broker would ask first
    _signal(stopped, signal.SIGSTOP)
    try:
        slowest = 0.0
        for _ in range(10):  # over the ~6 s until the broker replaces the stopped worker
            started = time.monotonic()
            info = Client(broker.address).info(timeout_s=2, retries=1)  # once: "did not answer after 3 tries"
            slowest = max(slowest, time.monotonic() - started)
            assert info["model"] == "tiny"
            assert len(info["workers"]) == 2
            time.sleep(0.5)
        assert slowest < 1.5, slowest
    finally:
        _signal(stopped, signal.SIGCONT)
