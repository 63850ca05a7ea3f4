"""Scheduler policy with a hand-driven backend: limits, order, positions, cancel, retries, timeouts.

No worker processes here, so these run in milliseconds; tests/jobs/test_worker*.py use real ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from jobhelpers import ManualBackend, make_config, png, tiny_job

from nstbot.jobs import messages
from nstbot.jobs.backend import WorkerLost
from nstbot.jobs.journal.journal import Journal
from nstbot.jobs.model import Cancelled, Failed, Finished, JobState, Progress, Queued, Started
from nstbot.jobs.scheduler import (
    GuildQueueFull,
    QueueFull,
    Scheduler,
    SchedulerStopped,
    SubmitRefused,
    UserQueueFull,
    WorkersUnavailable,
)

IMG = png()


async def started(tmp_path: Path, slots: int = 1, **executor) -> tuple[Scheduler, ManualBackend]:
    backend = ManualBackend(slots)
    scheduler = Scheduler(make_config(tmp_path, **executor), backend=backend)
    await scheduler.start()
    return scheduler, backend


async def submit(scheduler: Scheduler, user: int = 1, guild: int | None = None, **kw):
    return await scheduler.submit(tiny_job(user, guild, **kw), content=IMG, styles=[IMG])


def drain(handle) -> list:
    """Events buffered so far, without waiting."""
    out = []
    while handle._buffer:
        out.append(handle._buffer.popleft())
    return out


async def test_fair_order_across_users(tmp_path: Path) -> None:
    s, b = await started(tmp_path, per_user_queued=0, per_user_running=0)
    first = await submit(s, user=1)
    a = [await submit(s, user=1) for _ in range(3)]
    c = await submit(s, user=2)
    assert [r.job.id for r in b.dispatched] == [first.id]
    assert c.position == 1  # user 1 already has a job running
    assert [h.position for h in a] == [2, 3, 4]
    order = []
    while b.running:
        (job_id,) = b.running
        order.append(job_id)
        b.emit(job_id, Finished(b"png"))
    assert order == [first.id, c.id, *(h.id for h in a)]
    await s.stop()


async def test_per_user_running_limit_lets_other_users_through(tmp_path: Path) -> None:
    s, b = await started(tmp_path, slots=3, per_user_running=1)
    a1, a2 = await submit(s, user=1), await submit(s, user=1)
    c1 = await submit(s, user=2)
    assert set(b.running) == {a1.id, c1.id}  # a free worker stays idle rather than run a2
    assert a2.position == 1 and a2.state is JobState.QUEUED
    b.emit(a1.id, Finished(b"png"))
    assert a2.id in b.running
    await s.stop()


async def test_every_limit_refuses_with_its_own_class(tmp_path: Path) -> None:
    s, _ = await started(tmp_path, max_queue=5, per_user_queued=2, per_guild_queued=2)
    await submit(s, user=1)  # runs at once: in flight, not waiting
    await submit(s, user=1)
    with pytest.raises(UserQueueFull) as refused:
        await submit(s, user=1)
    assert "2 images waiting" in str(refused.value)
    await submit(s, user=2, guild=7)
    await submit(s, user=3, guild=7)
    with pytest.raises(GuildQueueFull):
        await submit(s, user=4, guild=7)
    await submit(s, user=5)  # no guild (a DM): no guild limit
    await submit(s, user=9)
    with pytest.raises(QueueFull):
        await submit(s, user=6, guild=8)
    assert s.stats()["refused"] == 3 and s.stats()["queued"] == 5
    for exc in (UserQueueFull, GuildQueueFull, QueueFull):
        assert issubclass(exc, SubmitRefused)
    await s.stop()


async def test_zero_means_no_limit(tmp_path: Path) -> None:
    s, _ = await started(tmp_path, max_queue=0, per_user_queued=0, per_guild_queued=0)
    for _ in range(12):
        await submit(s, user=1, guild=1)
    assert s.stats()["queued"] == 11
    await s.stop()


async def test_positions_and_queued_events_follow_the_queue(tmp_path: Path) -> None:
    s, _ = await started(tmp_path, per_user_queued=0)
    running = await submit(s, user=1)
    h1, h2, h3 = [await submit(s, user=u) for u in (2, 3, 4)]
    assert [h.position for h in (running, h1, h2, h3)] == [0, 1, 2, 3]
    assert drain(h3) == [Queued(3, job_id=h3.id)]
    assert await h1.cancel()
    assert [h2.position, h3.position] == [1, 2]
    assert drain(h3) == [Queued(2, job_id=h3.id)]
    snapshot = s.queue_snapshot()
    assert [(e.job_id, e.state, e.position) for e in snapshot] == [
        (running.id, "running", 0),
        (h2.id, "queued", 1),
        (h3.id, "queued", 2),
    ]
    assert snapshot[0].user_id == 1
    await s.stop()


async def test_cancel_queued_is_immediate_and_frees_the_limit(tmp_path: Path) -> None:
    s, _ = await started(tmp_path, per_user_queued=2)  # one running and one waiting
    await submit(s, user=1)
    queued = await submit(s, user=1)
    assert await queued.cancel("changed my mind")
    assert queued.outcome == Cancelled("changed my mind", job_id=queued.id)
    assert queued.state is JobState.CANCELLED and queued.position == 0
    assert not await queued.cancel()
    events = [e async for e in queued.events()]
    assert isinstance(events[-1], Cancelled)
    await submit(s, user=1)  # the slot it held is free again
    assert not (tmp_path / "jobs" / queued.id).exists()
    await s.stop()


async def test_cancel_running_asks_the_backend_and_reports_cancelled(tmp_path: Path) -> None:
    s, b = await started(tmp_path)
    h = await submit(s)
    assert await h.cancel()
    assert b.cancelled == [h.id] and not h.done
    b.emit(h.id, Cancelled())
    assert isinstance(h.outcome, Cancelled) and h.outcome.reason == "cancelled by the user"
    await s.stop()


async def test_progress_is_coalesced_for_a_slow_reader(tmp_path: Path) -> None:
    s, b = await started(tmp_path)
    h = await submit(s)
    b.emit(h.id, Started("cpu"))
    b.emit(h.id, Progress(1, 100, preview=b"p1"))
    for step in range(2, 101):
        b.emit(h.id, Progress(step, 100))
    b.emit(h.id, Finished(b"png", {}))
    events = [e async for e in h.events()]
    assert [type(e).__name__ for e in events] == ["Queued", "Started", "Progress", "Finished"]
    assert events[2].step == 100 and events[2].preview == b"p1"  # latest step, latest preview
    await s.stop()


async def test_worker_lost_is_retried_once_then_failed(tmp_path: Path) -> None:
    s, b = await started(tmp_path, retry_crashed=True)
    h = await submit(s)
    other = await submit(s, user=2)
    b.emit(h.id, WorkerLost("killed by SIGKILL"))
    assert h.state is JobState.RUNNING and b.dispatched[-1].attempt == 2  # retried first
    assert other.position == 1
    b.emit(h.id, WorkerLost("killed by SIGKILL"))
    assert isinstance(h.outcome, Failed) and "stopped unexpectedly" in h.outcome.message
    assert h.outcome.detail == "killed by SIGKILL"
    assert other.id in b.running  # other jobs proceed
    assert s.stats()["retried"] == 1
    await s.stop()


async def test_on_celery_the_scheduler_counts_every_lost_run_against_max_attempts(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path)
    config = dataclasses.replace(
        config,
        executor=dataclasses.replace(config.executor, backend="celery"),
        celery=dataclasses.replace(config.celery, max_attempts=3),
    )
    backend = ManualBackend()
    s = Scheduler(config, backend=backend)
    await s.start()
    h = await submit(s)
    for attempt in (1, 2):
        assert backend.dispatched[-1].attempt == attempt
        backend.emit(h.id, Started("cpu", attempt=attempt))
        backend.emit(h.id, WorkerLost("pool process killed by SIGKILL"))
        assert h.state is JobState.RUNNING  # sent again by the scheduler, one attempt per loss
    backend.emit(h.id, WorkerLost("pool process killed by SIGKILL"))
    assert isinstance(h.outcome, Failed) and h.outcome.message == messages.stopped_repeatedly(3)
    assert len(backend.dispatched) == 3 and s.stats()["retried"] == 2
    await s.stop()
    journal = Journal(tmp_path / "journal.sqlite3")
    assert journal.get(h.id).attempts == 3  # type: ignore[union-attr]
    journal.close()


async def test_worker_lost_without_retry_fails_at_once(tmp_path: Path) -> None:
    s, b = await started(tmp_path, retry_crashed=False)
    h = await submit(s)
    b.emit(h.id, WorkerLost("exit code 1"))
    assert isinstance(h.outcome, Failed)
    await s.stop()


async def test_timeout_cancels_and_reports_failed(tmp_path: Path) -> None:
    s, b = await started(tmp_path, job_timeout_s=0.05)
    h = await submit(s)
    await asyncio.sleep(0.2)
    assert b.cancelled == [h.id]
    b.emit(h.id, Cancelled())
    assert isinstance(h.outcome, Failed) and "0.05 seconds limit" in h.outcome.message
    assert s.stats()["timed_out"] == 1
    await s.stop()


async def test_unavailable_workers_refuse_fast_and_fail_waiting_jobs(tmp_path: Path) -> None:
    s, b = await started(tmp_path)
    await submit(s)
    waiting = await submit(s, user=2)
    b.set_unavailable("no weights file")
    assert isinstance(waiting.outcome, Failed) and "no weights file" in waiting.outcome.message
    with pytest.raises(WorkersUnavailable) as refused:
        await submit(s, user=3)
    assert refused.value.reason == "no weights file"
    health = s.health()
    assert not health.ok and health.unavailable_reason == "no weights file"
    assert health.to_dict()["workers_total"] == 1
    await s.stop()


async def test_finished_job_is_journaled_and_delivery_recorded(tmp_path: Path) -> None:
    s, b = await started(tmp_path)
    h = await submit(s)
    b.emit(h.id, Finished(b"\x89PNG", {"seconds": 0.1}))
    result = await h.wait()
    assert isinstance(result, Finished) and result.stats["attempts"] == 1
    assert await s.record_delivery(h.id, True, "sent")
    await s.stop()
    journal = Journal(tmp_path / "journal.sqlite3")
    row = journal.get(h.id)
    assert row is not None and row.state is JobState.FINISHED and row.delivery_status == "ok"
    assert row.started_at and row.finished_at and row.attempts == 1
    assert not (tmp_path / "jobs" / h.id).exists()  # delivered: its files are gone
    journal.close()


async def test_submit_after_stop_is_refused(tmp_path: Path) -> None:
    s, _ = await started(tmp_path)
    await s.stop()
    with pytest.raises(SchedulerStopped):
        await submit(s)


async def test_stop_ends_event_streams_without_a_final_event(tmp_path: Path) -> None:
    s, _ = await started(tmp_path)
    h = await submit(s)
    reader = asyncio.create_task(_collect(h))
    await asyncio.sleep(0)
    await s.stop()
    events = await asyncio.wait_for(reader, 5)
    assert [type(e) for e in events] == [Queued] and h.interrupted


async def _collect(handle) -> list:
    return [e async for e in handle.events()]
