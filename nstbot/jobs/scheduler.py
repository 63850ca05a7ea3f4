"""The scheduler: the asyncio API the bot uses to queue, watch and cancel style-transfer jobs.

Policy lives here (fair order, limits, retries, timeouts, the journal); running jobs is the
backend's business (`nstbot.jobs.backend`). This module never imports torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from nstbot.config import Config
from nstbot.jobs import messages
from nstbot.jobs.backend import Backend, WorkerLost
from nstbot.jobs.errors import (
    GuildQueueFull,
    QueueCounts,
    QueueFull,
    SchedulerStopped,
    StorageFailed,
    SubmitRefused,
    UserQueueFull,
    WorkersUnavailable,
    check_limits,
)
from nstbot.jobs.fairqueue import FairQueue
from nstbot.jobs.handle import JobHandle
from nstbot.jobs.journal.records import Records
from nstbot.jobs.model import (
    Cancelled,
    Event,
    Failed,
    Finished,
    Job,
    JobState,
    Progress,
    Queued,
    RunRequest,
    Started,
    final_state,
)
from nstbot.jobs.retry import RetryPolicy
from nstbot.jobs.status import Health, QueueEntry, Tally

__all__ = [
    "GuildQueueFull",
    "Health",
    "JobHandle",
    "QueueEntry",
    "QueueFull",
    "Scheduler",
    "SchedulerStopped",
    "StorageFailed",
    "SubmitRefused",
    "UserQueueFull",
    "WorkersUnavailable",
]

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0


@dataclass
class _Entry:
    job: Job
    handle: JobHandle
    inputs: list[str]
    state: JobState = JobState.QUEUED
    attempts: int = 0
    """Runs begun (the one attempt counter: journalled, read by the retry policy)."""
    started_at: float | None = None
    first_started_at: float | None = None
    cancel_reason: str | None = None
    timed_out: bool = False
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class Scheduler:
    """Fair queue in front of warm workers, with a journal so a restart loses nothing."""

    def __init__(
        self, config: Config, backend: Backend | None = None, records: Records | None = None
    ) -> None:
        self.config = config
        self.ex = config.executor
        self.retry = RetryPolicy.from_config(config)
        self.timelapse_hours = config.timelapse_hours
        self._backend = backend if backend is not None else _make_backend(config)
        self._records = records if records is not None else Records(config.data_dir)
        self._queue = FairQueue()
        self._entries: dict[str, _Entry] = {}
        self._pending: dict[str, Job] = {}  # submits between the limit check and the queue
        self._running_by_user: Counter[int] = Counter()
        self._recovered: list[JobHandle] = []
        self._accepting = False
        self._dispatching = False
        self._started = False
        self._tally = Tally()
        self._prune_task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, *, wait_ready: bool = True) -> None:
        """Open the journal, start workers, re-queue unfinished jobs; see `recovered()`."""
        if self._started:
            raise RuntimeError("a Scheduler starts once; make a new one to start again")
        self._started = True
        plan = await self._records.open(
            self.ex.retention_hours, self.retry, timelapse_hours=self.timelapse_hours
        )
        await self._backend.start(self)
        # Jobs still running remotely (Celery) hold a worker already: they go first.
        live = await self._backend.resumable([row.job.id for row in plan.requeue])
        self._dispatching = True
        for row in plan.requeue:
            entry = self._add_entry(row.job, row.inputs, recovered=True)
            entry.attempts = row.attempts
            self._queue.push(row.job.id, row.job.user_id, front=row.job.id in live)
            log.info("job %s recovered from the journal (was %s)", row.job.id, row.state.value)
        for row, event in plan.ended:
            handle = self._new_handle(row.job, recovered=True)
            handle._set(state=final_state(event))
            handle._push(replace(event, job_id=row.job.id))
            log.info("job %s recovered as ended: %s", row.job.id, type(event).__name__)
        self._publish_positions()
        if wait_ready:
            await self._backend.wait_ready(self.ex.worker_start_timeout_s)
        self._accepting = True
        self.capacity_changed()
        self._prune_task = asyncio.create_task(self._prune_loop(), name="nstbot-journal-prune")

    async def stop(self) -> None:
        """Stop workers; unfinished jobs stay in the journal for the next start."""
        self._accepting = False
        self._dispatching = False
        if self._prune_task is not None:
            self._prune_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prune_task
        await self._backend.stop()
        for entry in list(self._entries.values()):
            if entry.timer is not None:
                entry.timer.cancel()
            if entry.state is JobState.RUNNING:
                # Interrupted by us, not by the job: that attempt does not count.
                self._records.requeued(entry.job.id, max(0, entry.attempts - 1))
            log.info("job %s interrupted by shutdown (was %s)", entry.job.id, entry.state.value)
            entry.handle._close()
        self._entries.clear()
        self._queue = FairQueue()
        self._running_by_user.clear()
        await self._records.close()

    # -- the API -----------------------------------------------------------------------------

    async def submit(self, job: Job, *, content: bytes, styles: Sequence[bytes]) -> JobHandle:
        """Store the inputs, journal the job and queue it; raises a SubmitRefused subclass."""
        if not self._accepting:
            raise SchedulerStopped()
        if not styles:
            raise ValueError("at least one style image is needed")
        if job.id in self._entries or job.id in self._pending:
            raise ValueError(f"job {job.id} was already submitted")
        try:
            reason = self._backend.unavailable_reason()
            if reason:
                raise WorkersUnavailable(reason)
            check_limits(self.ex, self._queue_counts(job), job.guild_id)
        except SubmitRefused as exc:
            self._tally.counts["refused"] += 1
            log.info("job %s refused (%s) user=%s", job.id, type(exc).__name__, job.user_id)
            raise
        self._pending[job.id] = job
        try:
            inputs = await self._records.store(job, content, list(styles))
        except Exception as exc:
            log.exception("job %s: could not store inputs", job.id)
            raise StorageFailed() from exc
        finally:
            self._pending.pop(job.id, None)
        if not self._accepting:
            # Stopped while we were writing: forget the job rather than run it after a restart
            # the caller does not expect.
            self._records.forget(job.id)
            raise SchedulerStopped()
        entry = self._add_entry(job, inputs)
        self._queue.push(job.id, job.user_id)
        self._tally.counts["submitted"] += 1
        self._publish_positions()
        log.info(
            "job %s queued user=%s guild=%s position=%d",
            job.id, job.user_id, job.guild_id, entry.handle.position,
        )  # fmt: skip
        self._dispatch()
        return entry.handle

    async def cancel(self, job_id: str, reason: str = "cancelled") -> bool:
        """Cancel a queued or running job; False if it is unknown or has ended."""
        entry = self._entries.get(job_id)
        if entry is None:
            return False
        if entry.state is JobState.QUEUED:
            self._queue.remove(job_id)
            self._end(entry, Cancelled(reason=reason))
            return True
        if entry.cancel_reason is None:
            entry.cancel_reason = reason
            log.info("job %s cancel requested: %s", job_id, reason)
            self._backend.cancel(job_id)
        return True

    def recovered(self) -> list[JobHandle]:
        """Handles of jobs found unfinished or undelivered in the journal at start."""
        return list(self._recovered)

    def handle(self, job_id: str) -> JobHandle | None:
        """The handle of a queued or running job."""
        entry = self._entries.get(job_id)
        return entry.handle if entry else None

    async def record_delivery(self, job_id: str, ok: bool, detail: str | None = None) -> bool:
        """Note whether a result reached the user (a delivered result's file is deleted)."""
        found = await self._records.record_delivery(job_id, ok, detail)
        log.info("job %s delivery %s: %s", job_id, "ok" if ok else "failed", detail or "-")
        return found

    async def timelapse(self, job_id: str) -> bytes | None:
        """A finished job's kept frames (`images.animation.unpack_frames` reads them), or None
        once they are gone; OSError when they cannot be read."""
        return await self._records.read_timelapse(job_id)

    def queue_snapshot(self) -> list[QueueEntry]:
        """Running jobs (position 0) then waiting jobs in expected start order."""
        entries = sorted(self._entries.values(), key=lambda e: e.handle.position)
        return [
            QueueEntry(e.job.id, e.job.user_id, e.job.guild_id, e.state.value, e.handle.position)
            for e in entries
        ]

    def stats(self) -> dict[str, Any]:
        """Counts by outcome since start, mean run and wait seconds, current queue figures."""
        return self._tally.as_dict(len(self._queue), sum(self._running_by_user.values()))

    def health(self) -> Health:
        """Workers alive/total, the latest worker error, whether jobs are accepted."""
        workers = self._backend.workers()
        errors = [w.last_error for w in workers if w.last_error and w.start_failed]
        errors += [w.last_error for w in workers if w.last_error and not w.start_failed]
        return Health(
            accepting=self._accepting,
            workers_alive=sum(1 for w in workers if w.alive),
            workers_total=len(workers),
            last_error=errors[0] if errors else None,
            unavailable_reason=self._backend.unavailable_reason(),
            queued=len(self._queue),
            running=sum(self._running_by_user.values()),
            workers=tuple(workers),
        )

    # -- BackendListener ---------------------------------------------------------------------

    def job_event(self, job_id: str, event: Event | WorkerLost) -> None:
        """Called by the backend with a worker's event for a running job."""
        entry = self._entries.get(job_id)
        if entry is None or entry.state is not JobState.RUNNING:
            return
        if isinstance(event, Started | Progress):
            if isinstance(event, Started):
                log.info("job %s started on %s (attempt %d)", job_id, event.device, event.attempt)
                if event.attempt != entry.attempts:
                    # Adopted after a restart (Celery): the run began as an earlier attempt,
                    # and the journal counts runs, not dispatches.
                    entry.attempts = event.attempt
                    self._records.running(job_id, entry.attempts, entry.started_at or time.time())
            entry.handle._push(replace(event, job_id=job_id))
        elif isinstance(event, Finished):
            stats = dict(event.stats)
            stats.update(attempts=entry.attempts, wait_s=round(self._wait_of(entry), 3))
            self._end(entry, replace(event, stats=stats))
        elif isinstance(event, Failed):
            self._end(entry, event)
        elif isinstance(event, Cancelled):
            self._end(entry, self._timeout_failure() if entry.timed_out else _cancelled(entry))
        elif isinstance(event, WorkerLost):
            self._worker_lost(entry, event)

    def capacity_changed(self) -> None:
        """Called by the backend when workers come, go or become free."""
        reason = self._backend.unavailable_reason()
        if reason and self._dispatching:
            # Nothing can run: tell waiting users now rather than let them wait for nothing.
            for job_id in list(self._queue):
                self._queue.remove(job_id)
                entry = self._entries[job_id]
                self._end(entry, Failed(messages.unavailable(reason)))
        self._dispatch()

    # -- internals ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        if not self._dispatching:
            return
        loop = asyncio.get_running_loop()
        changed = False
        while self._backend.free_slots() > 0:
            job_id = self._queue.pop_next(self._may_run, self._running_by_user.__getitem__)
            if job_id is None:
                break
            changed = True
            entry = self._entries[job_id]
            entry.state = JobState.RUNNING
            entry.attempts += 1
            entry.started_at = time.time()
            entry.first_started_at = entry.first_started_at or entry.started_at
            entry.handle._set(state=JobState.RUNNING, position=0)
            self._running_by_user[entry.job.user_id] += 1
            if self.ex.job_timeout_s > 0:
                entry.timer = loop.call_later(self.ex.job_timeout_s, self._on_timeout, job_id)
            self._records.running(job_id, entry.attempts, entry.started_at)
            log.info("job %s dispatched (attempt %d)", job_id, entry.attempts)
            self._backend.dispatch(RunRequest(entry.job, entry.inputs, entry.attempts))
        if changed:
            self._publish_positions()

    def _may_run(self, user_id: int) -> bool:
        limit = self.ex.per_user_running
        return not limit or self._running_by_user[user_id] < limit

    def _publish_positions(self) -> None:
        for job_id, position in self._queue.positions(self._running_by_user.__getitem__).items():
            handle = self._entries[job_id].handle
            if handle.position != position:
                handle._set(position=position)
                handle._push(Queued(position=position, job_id=job_id))

    def _on_timeout(self, job_id: str) -> None:
        entry = self._entries.get(job_id)
        if entry is None or entry.state is not JobState.RUNNING or entry.timed_out:
            return
        entry.timed_out = True
        log.warning("job %s timed out after %g s", job_id, self.ex.job_timeout_s)
        self._backend.cancel(job_id)

    def _timeout_failure(self) -> Failed:
        return Failed(messages.timed_out(self.ex.job_timeout_s), "timeout")

    def _worker_lost(self, entry: _Entry, lost: WorkerLost) -> None:
        if entry.cancel_reason is not None:
            self._end(entry, _cancelled(entry))
        elif entry.timed_out:
            self._end(entry, replace(self._timeout_failure(), detail=lost.detail))
        elif self.retry.retries_lost(entry.attempts):
            self._release(entry)
            entry.state = JobState.QUEUED
            entry.handle._set(state=JobState.QUEUED)
            self._queue.push(entry.job.id, entry.job.user_id, front=True)
            self._tally.counts["retried"] += 1
            self._records.requeued(entry.job.id, entry.attempts)
            log.warning("job %s worker lost (%s); retrying", entry.job.id, lost.detail)
            self._publish_positions()
            self._dispatch()
        else:
            log.warning("job %s worker lost (%s) at attempt %d; failing it", entry.job.id,
                        lost.detail, entry.attempts)  # fmt: skip
            self._end(entry, self.retry.gave_up(entry.attempts, lost.detail))

    def _release(self, entry: _Entry) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        if entry.state is JobState.RUNNING:
            self._running_by_user[entry.job.user_id] -= 1
            if self._running_by_user[entry.job.user_id] <= 0:
                del self._running_by_user[entry.job.user_id]

    def _end(self, entry: _Entry, event: Finished | Failed | Cancelled) -> None:
        job_id = entry.job.id
        self._release(entry)
        self._entries.pop(job_id, None)
        state = final_state(event)
        entry.state = state
        finished_at = time.time()
        counts = self._tally.counts
        counts[state.value] += 1
        if isinstance(event, Finished):
            self._tally.add_run(finished_at - (entry.started_at or finished_at))
            log.info("job %s finished in %.1f s", job_id, event.stats.get("seconds", 0.0))
        elif isinstance(event, Failed):
            if entry.timed_out:
                counts["timed_out"] += 1
            log.info("job %s failed: %s (%s)", job_id, event.message, event.detail)
        else:
            log.info("job %s cancelled (%s)", job_id, event.reason)
        if entry.first_started_at is not None:
            self._tally.add_wait(entry.first_started_at - entry.job.created_at)
        self._records.ended(job_id, entry.inputs, event, finished_at)
        entry.handle._set(state=state, position=0)
        entry.handle._push(replace(event, job_id=job_id))
        self._publish_positions()
        self._dispatch()

    def _wait_of(self, entry: _Entry) -> float:
        return (entry.first_started_at or time.time()) - entry.job.created_at

    def _add_entry(self, job: Job, inputs: list[str], *, recovered: bool = False) -> _Entry:
        handle = self._new_handle(job, recovered=recovered)
        entry = _Entry(job=job, handle=handle, inputs=inputs)
        self._entries[job.id] = entry
        return entry

    def _new_handle(self, job: Job, *, recovered: bool) -> JobHandle:
        handle = JobHandle(job, self.cancel)
        handle.recovered = recovered
        if recovered:
            self._recovered.append(handle)
        return handle

    def _queue_counts(self, job: Job) -> QueueCounts:
        in_flight = [e.job for e in self._entries.values()] + list(self._pending.values())
        return QueueCounts(
            waiting=len(self._queue) + len(self._pending),
            user=sum(1 for j in in_flight if j.user_id == job.user_id),
            guild=sum(
                1 for j in in_flight if j.guild_id is not None and j.guild_id == job.guild_id
            ),
        )

    async def _prune_loop(self) -> None:
        shortest = min(self.ex.retention_hours, self.timelapse_hours)
        every = min(PRUNE_EVERY_S, max(60.0, shortest * 900))
        while True:
            await asyncio.sleep(every)
            try:
                await self._records.prune(
                    self.ex.retention_hours, timelapse_hours=self.timelapse_hours
                )
            except Exception:
                log.exception("pruning the journal failed")


def _cancelled(entry: _Entry) -> Cancelled:
    return Cancelled(reason=entry.cancel_reason or "cancelled")


def _make_backend(config: Config) -> Backend:
    name = config.executor.backend
    if name == "local":
        from nstbot.jobs.local.backend import LocalBackend

        return LocalBackend(config)
    if name == "celery":
        from nstbot.jobs.celery.backend import CeleryBackend

        return CeleryBackend(config)
    raise ValueError(f"executor.backend {name!r} is not available (use local or celery)")
