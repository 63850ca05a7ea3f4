"""The boundary between the scheduler and whatever runs jobs: local processes now, Celery later.

The scheduler owns policy (fairness, limits, retries, timeouts, the journal); a backend owns
workers (starting them, handing them one job at a time, noticing when they die). They talk in the
plain data of `nstbot.jobs.model` (a `RunRequest` per attempt) plus the types below.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from nstbot.jobs.model import Event, RunRequest


class WorkerState(StrEnum):
    """Where a worker stands, as both backends report it."""

    STARTING = "starting"
    """Loading its engine."""
    READY = "ready"
    BUSY = "busy"
    DYING = "dying"
    """Its process ended; being reaped (local only)."""
    WAITING = "waiting"
    """Down, to be restarted after a backoff (local only)."""
    STOPPED = "stopped"

    @property
    def alive(self) -> bool:
        """Starting, ready or busy."""
        return self in (WorkerState.STARTING, WorkerState.READY, WorkerState.BUSY)

    @classmethod
    def parse(cls, value: object) -> WorkerState:
        """The state a worker wrote (Celery status JSON); unknown values read as stopped."""
        try:
            return cls(str(value))
        except ValueError:
            return cls.STOPPED


@dataclass(frozen=True)
class WorkerLost:
    """The worker running the job died or was killed before it reported an outcome."""

    detail: str
    """What happened, for logs: exit code, signal, "stopped responding"..."""


class BackendListener(Protocol):
    """What a backend reports to the scheduler (always on the event loop's thread)."""

    def job_event(self, job_id: str, event: Event | WorkerLost) -> None:
        """A Started, Progress or final event from a worker, or the loss of its worker."""

    def capacity_changed(self) -> None:
        """A worker became free, came up, went down or failed to start."""


@dataclass(frozen=True)
class WorkerStatus:
    """One worker as `health()` shows it."""

    name: str
    device: str
    """As configured (auto, cpu, cuda:0...)."""
    resolved_device: str | None
    """What the worker actually uses, once it has started."""
    state: WorkerState
    """Waiting means: to restart, see next_restart_in."""
    pid: int | None
    job_id: str | None
    jobs_done: int
    restarts: int
    last_error: str | None
    start_failed: bool
    """Whether its latest start attempt failed (weights missing, no GPU...)."""
    next_restart_in: float | None

    @property
    def alive(self) -> bool:
        """Ready or busy."""
        return self.state in (WorkerState.READY, WorkerState.BUSY)


class Backend(ABC):
    """Runs jobs on workers, one job per worker at a time."""

    @abstractmethod
    async def start(self, listener: BackendListener) -> None:
        """Start the workers (do not wait for them to be ready)."""

    @abstractmethod
    async def wait_ready(self, timeout: float) -> None:
        """Wait until every worker is either ready or has failed to start, or `timeout` passes."""

    @abstractmethod
    def free_slots(self) -> int:
        """How many jobs could be dispatched right now."""

    @abstractmethod
    def dispatch(self, request: RunRequest) -> None:
        """Hand a job to a free worker (only call while `free_slots()` > 0)."""

    @abstractmethod
    def cancel(self, job_id: str) -> None:
        """Stop a running job within one step; a worker that does not comply is killed."""

    @abstractmethod
    def unavailable_reason(self) -> str | None:
        """Why no job can run now or soon (every worker failed to start), else None."""

    @abstractmethod
    def workers(self) -> list[WorkerStatus]:
        """Status of every worker."""

    def payload(self, request: RunRequest) -> dict[str, Any]:
        """The JSON a worker receives for one attempt (a hook: a newer bot adds to it)."""
        return request.to_dict()

    async def resumable(self, job_ids: list[str]) -> set[str]:
        """Of these jobs (unfinished in the journal at start), those whose run outlived the last
        bot process (still running, or ended with the outcome kept): they are dispatched first."""
        return set()

    @abstractmethod
    async def stop(self) -> None:
        """Interrupt running jobs and stop every worker; reports nothing more to the listener."""


def restart_delay(failures: int, cap: float, base: float = 0.5) -> float:
    """Exponential backoff before restart number `failures` (1-based): base, 2*base, ... cap."""
    return float(min(cap, base * 2 ** max(0, failures - 1)))


async def wait_while(busy: Callable[[], bool], changed: asyncio.Event, timeout: float) -> None:
    """Wait until `busy()` is false, re-checking whenever `changed` fires (or `timeout` passes)."""
    deadline = time.monotonic() + timeout
    while busy():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), min(left, 1.0))
