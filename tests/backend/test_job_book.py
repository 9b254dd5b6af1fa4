"""The server's books of jobs: every job is queued, running or counted, whoever looks and whenever."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from backend.job_book import JobBook, QueuedJob
from backend.server_metrics import ServerMetrics
from blender_addon.protocol import ReconstructOptions


def make_job(name: str, client: bytes = b"client", deadline_s: float = 60.0) -> QueuedJob:
    return QueuedJob([client], name, b"image", ReconstructOptions(), deadline_s)


def jobs_on_the_books(book: JobBook) -> int:
    queue_length, counts = book.status()
    return queue_length + sum(counts.values())


def test_places_count_the_running_job_and_a_full_queue_refuses():
    book = JobBook(2, ServerMetrics())
    assert book.add(make_job("a")) == 1
    assert book.take(timeout_s=0) == (book.running(), None)
    assert book.add(make_job("b")) == 2
    assert book.add(make_job("c")) == 3
    assert book.add(make_job("d")) is None  # two queued: full, the running one aside
    running, queued = book.jobs()
    assert (running.request_id, [job.request_id for job in queued]) == ("a", ["b", "c"])


def test_take_waits_for_a_job_and_returns_none_when_none_comes():
    book = JobBook(4, ServerMetrics())
    start = time.monotonic()
    assert book.take(timeout_s=0.05) is None
    assert time.monotonic() - start >= 0.04
    threading.Timer(0.05, book.add, [make_job("late")]).start()
    job, ended = book.take(timeout_s=5)
    assert (job.request_id, ended, book.running() is job) == ("late", None, True)


def test_a_running_job_is_on_the_books_until_finished_and_counted():
    book = JobBook(4, ServerMetrics())
    book.add(make_job("a"))
    book.take(timeout_s=0)
    assert book.status() == (1, dict.fromkeys(["done", "failed", "cancelled", "abandoned", "expired"], 0))
    assert book.cancel("a", [b"client"])
    assert book.running().cancel.is_set()
    book.finish("cancelled")
    queue_length, counts = book.status()
    assert (queue_length, counts["cancelled"], book.running()) == (0, 1, None)


def test_cancel_finds_only_the_clients_own_job():
    book = JobBook(4, ServerMetrics())
    book.add(make_job("a", client=b"alice"))
    assert not book.cancel("a", [b"mallory"])
    assert not book.cancel("b", [b"alice"])
    assert book.cancel("a", [b"alice"])


@pytest.mark.parametrize(
    ("prepare", "outcome"),
    [
        (lambda job: job.cancel.set(), "cancelled"),
        (lambda job: (job.cancel.set(), setattr(job, "abandoned", True)), "abandoned"),
        (lambda job: setattr(job, "accepted_at", time.monotonic() - 120), "expired"),
    ],
)
def test_a_job_that_ended_in_the_queue_is_counted_when_taken(prepare, outcome):
    book = JobBook(4, ServerMetrics())
    job = make_job("a")
    book.add(job)
    prepare(job)
    assert book.take(timeout_s=0) == (job, outcome)
    queue_length, counts = book.status()
    assert (queue_length, counts[outcome], sum(counts.values()), book.running()) == (0, 1, 1, None)


def test_a_queued_job_expires_once_and_the_worker_then_skips_it():
    book = JobBook(4, ServerMetrics())
    job = make_job("a", deadline_s=0.0)
    book.add(job)
    assert book.expire_in_queue(job)
    assert book.take(timeout_s=0) == (job, "answered")
    assert book.status()[1]["expired"] == 1


def test_a_job_the_worker_took_is_not_expired_by_the_heartbeat():
    book = JobBook(4, ServerMetrics())
    job = make_job("a")
    book.add(job)
    book.take(timeout_s=0)
    assert not book.expire_in_queue(job)
    assert not job.cancel.is_set()
    assert book.status()[1]["expired"] == 0


def test_drain_empties_the_queue_but_leaves_the_running_job():
    book = JobBook(4, ServerMetrics())
    for name in "abc":
        book.add(make_job(name))
    book.take(timeout_s=0)
    assert [job.request_id for job in book.drain()] == ["b", "c"]
    assert book.status()[0] == 1


def test_no_reader_sees_a_job_off_the_books_while_the_worker_moves_it():
    """A worker takes and finishes jobs (some cancelled in the queue) while the main thread reads the books as
    fast as it can, thread switches forced every microsecond: each read accounts for every job added. (The
    server's queue plus a separate "running" field once let a read fall between the two; CI caught it.)"""
    book = JobBook(10_000, ServerMetrics())
    jobs = [make_job(str(number)) for number in range(3000)]
    for number, job in enumerate(jobs):
        book.add(job)
        if number % 3 == 0:
            job.cancel.set()

    def work() -> None:
        while (taken := book.take(timeout_s=0)) is not None:
            if taken[1] is None:
                book.finish("done")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        worker = threading.Thread(target=work)
        worker.start()
        seen = []
        while worker.is_alive():
            seen.append(jobs_on_the_books(book))
        worker.join()
    finally:
        sys.setswitchinterval(interval)
    assert len(seen) > 100
    assert set(seen) == {len(jobs)}
    assert book.status() == (0, {"done": 2000, "failed": 0, "cancelled": 1000, "abandoned": 0, "expired": 0})
