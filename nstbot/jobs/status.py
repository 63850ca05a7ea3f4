"""What the scheduler reports about itself: queue lines, running figures, health."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

from nstbot.jobs.backend import WorkerStatus


class QueueEntry(NamedTuple):
    """One line of `queue_snapshot()`; position 0 means running."""

    job_id: str
    user_id: int
    guild_id: int | None
    state: str
    position: int


@dataclass(frozen=True)
class Health:
    """What `health()` reports."""

    accepting: bool
    workers_alive: int
    workers_total: int
    last_error: str | None
    """The latest worker error (a failed start first), for operators."""
    unavailable_reason: str | None
    """Set when no worker can start: submit refuses with WorkersUnavailable."""
    queued: int
    running: int
    workers: tuple[WorkerStatus, ...] = ()

    @property
    def ok(self) -> bool:
        """Accepting jobs with at least one live worker."""
        return self.accepting and self.workers_alive > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["ok"] = self.ok
        out["workers"] = [dataclasses.asdict(w) for w in self.workers]
        return out


class Tally:
    """Outcome counts and mean run and wait times since start."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._run_s = 0.0
        self._runs = 0
        self._wait_s = 0.0
        self._waits = 0

    def add_run(self, seconds: float) -> None:
        """A finished job's run time."""
        self._run_s += seconds
        self._runs += 1

    def add_wait(self, seconds: float) -> None:
        """Time from submit to first start of a job."""
        self._wait_s += seconds
        self._waits += 1

    def as_dict(self, queued: int, running: int) -> dict[str, Any]:
        """The figures `Scheduler.stats()` returns."""
        names = ("submitted", "refused", "finished", "failed", "cancelled", "retried", "timed_out")
        out: dict[str, Any] = {name: self.counts[name] for name in names}
        out.update(
            queued=queued,
            running=running,
            mean_run_s=round(self._run_s / self._runs, 3) if self._runs else None,
            mean_wait_s=round(self._wait_s / self._waits, 3) if self._waits else None,
        )
        return out
