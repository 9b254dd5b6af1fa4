"""The server's books of jobs: the queue, the running job and how each ended, kept under one lock.

Two threads use them: the main thread adds jobs, cancels them and answers `info`; the worker thread takes
the next job and finishes it. A job moves from the queue to "running" (or to its counted outcome, when it
ended while queued) in one step under the lock, so no reader ever sees it in between: in the gap a
`cancel` would find no job to cancel (the job then runs on until its client is found gone) and `info`
would report an empty queue while no outcome had been counted yet (seen once in CI as a flaky test).
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field

from blender_addon import protocol

from .server_metrics import ServerMetrics


@dataclass
class QueuedJob:
    envelope: list[bytes]
    request_id: str
    image: bytes
    options: protocol.ReconstructOptions
    deadline_s: float
    """Seconds from acceptance: time waiting in the queue counts, as it does for the client waiting."""
    mask: bytes | None = None
    """The user's object mask, an image file's bytes (the request's second frame), or None."""
    cancel: threading.Event = field(default_factory=threading.Event)
    accepted_at: float = field(default_factory=time.monotonic)
    started: float | None = None
    abandoned: bool = False
    """Stopped because its client was gone, not because anyone asked."""
    answered: bool = False
    """Its final answer is already sent (a queued job past its deadline): the worker skips it silently."""

    def expired(self, now: float) -> bool:
        return now - self.accepted_at > self.deadline_s

    def belongs_to(self, request_id: str, envelope: list[bytes]) -> bool:
        return self.request_id == request_id and self.envelope == envelope


class JobBook:
    """At most `size` queued jobs plus the running one; outcomes are counted in `metrics`."""

    def __init__(self, size: int, metrics: ServerMetrics):
        self.size = size
        self.metrics = metrics
        self._lock = threading.Condition()
        self._queued: collections.deque[QueuedJob] = collections.deque()
        self._running: QueuedJob | None = None

    # ------------------------------------------------------------------------------------ main thread
    def add(self, job: QueuedJob) -> int | None:
        """Queue `job`; its place counting the running job (1 = next to run), or None when the queue is full."""
        with self._lock:
            if len(self._queued) >= self.size:
                return None
            self._queued.append(job)
            self._lock.notify()
            return len(self._queued) + (self._running is not None)

    def jobs(self) -> tuple[QueuedJob | None, list[QueuedJob]]:
        """The running job (or None) and the queued ones in order, as one consistent view."""
        with self._lock:
            return self._running, list(self._queued)

    def running(self) -> QueuedJob | None:
        return self._running

    def cancel(self, request_id: str, envelope: list[bytes]) -> bool:
        """Ask the queued or running job `request_id` of this client to stop; False when there is none."""
        with self._lock:
            found = False
            for job in [self._running, *self._queued]:
                if job is not None and job.belongs_to(request_id, envelope):
                    job.cancel.set()
                    found = True
            return found

    def expire_in_queue(self, job: QueuedJob) -> bool:
        """A queued job is past its deadline and is answered now: count it, and the worker will skip it.
        False when it is no longer queued (the worker took it and answers it itself)."""
        with self._lock:
            if job not in self._queued:
                return False
            job.answered = True
            job.cancel.set()
            self.metrics.count("expired")
            return True

    def drain(self) -> list[QueuedJob]:
        """Empty the queue (the server is stopping); the jobs removed, which will not run."""
        with self._lock:
            drained = list(self._queued)
            self._queued.clear()
            return drained

    def status(self) -> tuple[int, dict[str, int]]:
        """Jobs queued or running, and the outcome counts so far, read together: a job is always in one of them."""
        with self._lock:
            return len(self._queued) + (self._running is not None), dict(self.metrics.counts)

    # ------------------------------------------------------------------------------------ worker thread
    def take(self, timeout_s: float) -> tuple[QueuedJob, str | None] | None:
        """Wait up to `timeout_s` for the next job and take it off the queue. Returns None when none came;
        (job, None) when it is now the running job; (job, outcome) when it had already ended in the queue:
        "cancelled", "abandoned" or "expired", counted here, for the caller to answer; "answered" for one
        already counted and answered, to skip."""
        with self._lock:
            if not self._queued and not self._lock.wait_for(lambda: self._queued, timeout=timeout_s):
                return None
            job = self._queued.popleft()
            if job.answered:
                return job, "answered"
            if job.cancel.is_set():
                outcome = "abandoned" if job.abandoned else "cancelled"
            elif job.expired(time.monotonic()):
                outcome = "expired"
            else:
                job.started = time.monotonic()
                self._running = job
                return job, None
            self.metrics.count(outcome)
            return job, outcome

    def finish(self, outcome: str) -> None:
        """The running job ended with `outcome` (one of server_metrics.OUTCOMES): count it, and it is off the books."""
        with self._lock:
            self.metrics.count(outcome)
            self._running = None
