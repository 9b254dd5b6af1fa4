"""What a running server reports about itself in `info`: job outcomes, job times, queue and memory.

The numbers an operator of an inference server asks for (TorchServe, Triton and Ray Serve report the same
kinds): how many jobs ended how, how long they took (percentiles over the most recent ones), and how much
memory a job may cost. A job's peak is measured by the kernel: the process's high-water mark is reset before
the job (/proc/self/clear_refs) and read after it (VmHWM), so short spikes between two samples still count.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from pathlib import Path
from typing import Any

OUTCOMES = ("done", "failed", "cancelled", "abandoned", "expired")
"""How a job can end. "abandoned": dropped or stopped because its client was gone; "expired": its deadline
passed (in the queue or while running)."""
RECENT_JOBS = 1000
"""Job times kept for the percentiles."""


def _status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status in MiB (VmRSS, VmHWM); None where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def resident_mb() -> float | None:
    """This process's resident memory now, MiB."""
    return _status_mb("VmRSS")


def reset_peak_memory() -> bool:
    """Start a new high-water mark of resident memory at the current size (Linux 4.0+). False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_memory_mb() -> float | None:
    """The high-water mark of resident memory since the last reset (or since start), MiB."""
    return _status_mb("VmHWM")


class ServerMetrics:
    """Counts and timings of the jobs of one server process; safe to update from the worker thread while the
    main thread reads them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self._seconds: collections.deque[float] = collections.deque(maxlen=RECENT_JOBS)
        self._peak_rise_mb: float | None = None
        self._last_peak_rise_mb: float | None = None
        self._started = time.monotonic()

    def count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1

    def job_started(self) -> float | None:
        """Call before a job runs; returns the resident memory it starts from (MiB) if peaks can be measured."""
        return resident_mb() if reset_peak_memory() else None

    def job_finished(self, seconds: float, start_mb: float | None) -> float | None:
        """Record a job's run time (s) and its peak memory rise over `start_mb`; returns that rise (MiB)."""
        peak = peak_memory_mb() if start_mb is not None else None
        rise = max(0.0, peak - start_mb) if peak is not None else None
        with self._lock:
            self._seconds.append(seconds)
            if rise is not None:
                self._last_peak_rise_mb = rise
                self._peak_rise_mb = max(rise, self._peak_rise_mb or 0.0)
        return rise

    def snapshot(self, queue_length: int) -> dict[str, Any]:
        """The `metrics` object of `info`."""
        with self._lock:
            seconds = sorted(self._seconds)
            counts = dict(self.counts)
            peak, last = self._peak_rise_mb, self._last_peak_rise_mb

        def percentile(fraction: float) -> float | None:
            if not seconds:
                return None
            return round(seconds[min(len(seconds) - 1, int(fraction * len(seconds)))], 3)

        return {
            "jobs": counts,
            "queue_length": queue_length,
            "job_seconds": {
                "count": len(seconds),
                "p50": percentile(0.5),
                "p90": percentile(0.9),
                "p99": percentile(0.99),
                "max": round(seconds[-1], 3) if seconds else None,
            },
            "memory_mb": {
                "resident": _rounded(resident_mb()),
                "job_peak_rise_max": _rounded(peak),
                "job_peak_rise_last": _rounded(last),
            },
            "uptime_s": round(time.monotonic() - self._started, 1),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
