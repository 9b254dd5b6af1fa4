"""`zeroshape-w benchmark --mode load`: many stock clients against a running server, as users would be.

Each client is the add-on's own `Client` (its heartbeat timeout, its retries) sending its jobs one after
another; every answer is checked to be for its own request (the server names the photo after the request).
Optionally one of a broker's workers is killed part way, to see that every job is still answered. Prints
the outcomes and the latencies; nothing here is a pass/fail test.
"""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from blender_addon.client import Client, JobFailedError
from blender_addon.protocol import ReconstructOptions


@dataclass
class LoadResult:
    outcomes: dict[tuple[int, int], str] = field(default_factory=dict)
    """(client, job) → "result", "mixed" (an answer to another request), an error code, or "Error: message"."""
    seconds: list[float] = field(default_factory=list)
    """Wall time of each job that returned a mesh, from sending to the answer."""
    wall_s: float = 0.0
    killed_worker: int | None = None

    def counts(self) -> Counter:
        return Counter(self.outcomes.values())

    def report(self) -> str:
        counts = ", ".join(f"{kind} {n}" for kind, n in sorted(self.counts().items()))
        lines = [f"{len(self.outcomes)} jobs in {self.wall_s:.1f} s: {counts}"]
        if self.seconds:
            ordered = sorted(self.seconds)
            p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
            lines.append(
                f"job latency (s, queue included): median {statistics.median(ordered):.1f}, p90 {p90:.1f}, "
                f"max {ordered[-1]:.1f}"
            )
        if self.killed_worker is not None:
            lines.append(f"killed worker pid {self.killed_worker} part way")
        return "\n".join(lines)


def run_load(
    address: str,
    image: bytes,
    options: ReconstructOptions,
    clients: int = 8,
    jobs: int = 5,
    kill_worker_after_s: float | None = None,
    progress=None,
    timeout_s: float = 3600.0,
) -> LoadResult:
    """`clients` threads × `jobs` reconstructions each. With `kill_worker_after_s`, SIGKILL the first worker a
    broker's `info` lists (local brokers only) after that many seconds. `progress(stage, fraction)` sees every
    client's progress events (from their threads)."""
    result = LoadResult()
    lock = threading.Lock()

    def one_client(index: int) -> None:
        client = Client(address)
        for number in range(jobs):
            request_id = f"load-c{index}-j{number}"
            started = time.monotonic()
            try:
                mesh = client.reconstruct(image, options, progress=progress, request_id=request_id)
                outcome = "result" if mesh.metadata.get("source") == f"request {request_id}" else "mixed"
            except JobFailedError as error:
                outcome = error.code
            except Exception as error:  # what the user would see: "stopped responding", "busy", ...
                outcome = f"{type(error).__name__}: {error}"
            with lock:
                result.outcomes[(index, number)] = outcome
                if outcome == "result":
                    result.seconds.append(time.monotonic() - started)

    start = time.monotonic()
    threads = [threading.Thread(target=one_client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    if kill_worker_after_s is not None:
        time.sleep(kill_worker_after_s)
        workers = Client(address).info().get("workers") or []
        if not workers:
            raise RuntimeError(f"{address} is not a broker (its info lists no workers): nothing to kill")
        result.killed_worker = workers[0]["pid"]
        os.kill(result.killed_worker, signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=max(1.0, timeout_s - (time.monotonic() - start)))
    result.wall_s = time.monotonic() - start
    return result
