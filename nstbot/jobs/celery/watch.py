"""What the Celery backend watches in Redis: worker statuses, the event channel, job runs.

Each worker writes its status every heartbeat with a TTL of `worker_timeout_s`, so a missing key
means the worker (or its whole host) is gone. The backend counts free workers from these keys
instead of asking every worker over the broker (`celery inspect`), which is slow and chatty.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

from nstbot.config import CeleryConfig
from nstbot.jobs.backend import WorkerState, WorkerStatus
from nstbot.jobs.celery.app import Keys, loads
from nstbot.jobs.model import Progress, RunRequest, Started

log = logging.getLogger(__name__)


@dataclass
class Run:
    """One dispatched job as the backend follows it, and what it has reported of it."""

    request: RunRequest
    task_id: str | None = None
    phase: str = "sending"
    """waiting (for Redis or a ready worker), sending, sent (to `worker`'s own queue) or
    running (on `worker`)."""
    worker: str | None = None
    attempt: int = 0
    step: int = 0
    cancel_at: float | None = None
    lost_since: float | None = None
    collecting: bool = False
    ended: bool = False

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self.request.job.id

    def started(self, device: str, attempt: int) -> Started | None:
        """A Started event for a run not reported yet (a new attempt), else None."""
        if attempt <= self.attempt:
            return None
        self.attempt, self.step = attempt, 0
        return Started(device=device, attempt=attempt)

    def progress(self, event: Progress) -> Progress | None:
        """The event unless it is older than one reported (a poll after pub/sub)."""
        if event.step < self.step or (event.step == self.step and event.preview is None):
            return None
        self.step = event.step
        return event


async def listen(
    redis: Any, channel: str, handle: Callable[[dict[str, Any]], None], stopping: Callable[[], bool]
) -> None:
    """Pass each JSON message of `channel` to `handle` until `stopping()`. `redis` is a client
    that retries (`async_redis(reconnect=True)`): redis-py reconnects and resubscribes after a
    dropped connection; messages missed meanwhile are the poll's to find."""
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(channel)
        while not stopping():
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                handle(loads(message["data"]) or {})
    finally:
        with contextlib.suppress(Exception):
            await pubsub.aclose()


class WorkerRegistry:
    """Worker statuses as last read from Redis, and what follows from them."""

    def __init__(self, cfg: CeleryConfig) -> None:
        self.keys = Keys(cfg.queue)
        self.grace = cfg.no_worker_grace_s
        self.workers: dict[str, dict[str, Any]] = {}
        self.unreachable_since: float | None = None
        self._no_workers_since: float | None = time.monotonic()

    async def refresh(self, redis: Any) -> None:
        """Read every worker's status; forget workers whose status expired."""
        names = sorted(n.decode() for n in await redis.smembers(self.keys.workers))
        raw = await redis.mget([self.keys.worker(n) for n in names]) if names else []
        workers = {n: s for n, r in zip(names, raw, strict=True) if (s := loads(r))}
        for status in workers.values():
            status["state"] = WorkerState.parse(status.get("state"))
        if gone := [n for n in names if n not in workers]:
            await redis.srem(self.keys.workers, *gone)
        self.workers = workers
        if any(w["state"].alive for w in workers.values()):
            self._no_workers_since = None
        elif self._no_workers_since is None:
            self._no_workers_since = time.monotonic()

    def capacity(self, ours: Container[str]) -> int:
        """Idle workers, plus busy ones whose job is in `ours` (those count as handed out)."""
        return sum(
            1
            for w in self.workers.values()
            if w["state"] is WorkerState.READY
            or (w["state"] is WorkerState.BUSY and w.get("job_id") in ours)
        )

    def ready(self, taken: Container[str]) -> str | None:
        """A worker that reports ready and is not in `taken` (sent a job it has not shown yet)."""
        for name, w in sorted(self.workers.items()):
            if w["state"] is WorkerState.READY and name not in taken:
                return name
        return None

    def busy_jobs(self) -> set[str]:
        """Ids of the jobs the workers are running."""
        return {
            w["job_id"]
            for w in self.workers.values()
            if w["state"] is WorkerState.BUSY and w.get("job_id")
        }

    def runs(self, name: str | None, job_id: str) -> bool:
        """Whether worker `name` is alive and running `job_id`."""
        return name is not None and self.workers.get(name, {}).get("job_id") == job_id

    def known(self, name: str | None) -> bool:
        """Whether worker `name` has a live status."""
        return name is not None and name in self.workers

    def reloading(self, name: str | None) -> bool:
        """Whether worker `name` is starting a pool process (its last one died)."""
        return name is not None and self.workers.get(name, {}).get("state") is WorkerState.STARTING

    def mark_idle(self, name: str | None, job_id: str) -> None:
        """The worker ended `job_id` (it writes so itself; this saves waiting for the poll)."""
        if self.runs(name, job_id):
            self.workers[str(name)].update(state=WorkerState.READY, job_id=None)

    def starting(self) -> bool:
        """Whether a worker is still loading its engine."""
        return any(w["state"] is WorkerState.STARTING for w in self.workers.values())

    def states(self) -> tuple[tuple[str, Any], ...]:
        """(name, state) of every worker, to notice changes."""
        return tuple(sorted((n, w.get("state")) for n, w in self.workers.items()))

    def unavailable_reason(self) -> str | None:
        """Redis unreachable, every worker failed to start, or none connected for the grace."""
        now = time.monotonic()
        since = self.unreachable_since
        if self.grace and since is not None and now - since > self.grace:
            return "the job queue (Redis) cannot be reached"
        workers = list(self.workers.values())
        if any(w["state"].alive for w in workers):
            return None
        failed = [w for w in workers if w.get("start_failed")]
        if failed:
            return failed[0].get("last_error") or "the workers failed to start"
        since = self._no_workers_since
        if self.grace and since is not None and now - since > self.grace:
            return "no GPU worker is connected"
        return None

    def statuses(self) -> list[WorkerStatus]:
        """Every worker as `Scheduler.health()` shows it."""
        return [
            WorkerStatus(
                name=name,
                device=w.get("device", ""),
                resolved_device=w.get("resolved_device"),
                state=w["state"],
                pid=w.get("pid"),
                job_id=w.get("job_id"),
                jobs_done=int(w.get("jobs_done", 0)),
                restarts=0,
                last_error=w.get("last_error"),
                start_failed=bool(w.get("start_failed")),
                next_restart_in=None,
            )
            for name, w in sorted(self.workers.items())
        ]
