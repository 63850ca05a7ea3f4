"""The real worker process (CPU, random weights, 32 px, a few steps), shared by this module.

Each test leaves the worker idle for the next. Faults come from params.extra (see
nstbot.jobs.faults.TEST_FAULTS_ENV, enabled in conftest.py).
"""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import time

import pytest
import pytest_asyncio
from jobhelpers import collect, make_config, png, tiny_job, until, until_idle
from PIL import Image

from nstbot.jobs.model import Cancelled, Failed, Finished, Progress, Queued, Started
from nstbot.jobs.scheduler import Scheduler

pytestmark = pytest.mark.asyncio(loop_scope="module")

IMG, STYLE = png("red"), png("blue")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sched(tmp_path_factory):
    config = make_config(
        tmp_path_factory.mktemp("worker"),
        max_queue=0, per_user_queued=0, per_user_running=0,
        job_timeout_s=120.0, heartbeat_timeout_s=8.0, restart_backoff_max_s=2.0,
    )  # fmt: skip
    scheduler = Scheduler(config)
    await scheduler.start()
    assert scheduler.health().ok, scheduler.health()
    yield scheduler
    await scheduler.stop()


async def submit(s: Scheduler, user: int = 1, content: bytes = IMG, **kw):
    return await s.submit(tiny_job(user, **kw), content=content, styles=[STYLE])


def worker_pid(s: Scheduler) -> int:
    pid = s.health().workers[0].pid
    assert pid is not None
    return pid


async def test_a_job_streams_progress_and_finishes_with_a_png(sched: Scheduler) -> None:
    await until_idle(sched)
    handle = await submit(sched, steps=3)
    events = await collect(handle)
    assert isinstance(events[0], Queued) and isinstance(events[1], Started)
    assert events[1].device == "cpu"
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress and progress[-1].step == 3 and progress[-1].total == 3
    assert all(len(e.preview) <= 100_000 for e in progress if e.preview)
    result = events[-1]
    assert isinstance(result, Finished), result
    image = Image.open(io.BytesIO(result.image))
    assert image.format == "PNG" and max(image.size) == 32
    stats = result.stats
    assert stats["device"] == "cpu" and stats["attempts"] == 1
    assert stats["retried_smaller"] is False and stats["seconds"] > 0
    assert handle.position == 0 and handle.done


async def test_alpha_of_the_content_is_kept(sched: Scheduler) -> None:
    await until_idle(sched)
    handle = await submit(sched, content=png(size=(40, 40), mode="RGBA"))
    result = await handle.wait()
    assert isinstance(result, Finished), result
    assert Image.open(io.BytesIO(result.image)).mode == "RGBA" and result.stats["has_alpha"]


async def test_fair_order_with_a_busy_worker(sched: Scheduler) -> None:
    await until_idle(sched)
    blocker = await submit(sched, user=9, steps=3, test_step_sleep=0.3)
    # Users not served before in this module, so only this test's jobs decide the order.
    a = [await submit(sched, user=101) for _ in range(3)]
    b = await submit(sched, user=102)
    assert [h.position for h in (*a, b)] == [1, 3, 4, 2]
    handles = (blocker, *a, b)
    results = [await h.wait() for h in handles]
    assert all(isinstance(r, Finished) for r in results), results
    done_at = {h.id: r.stats["worker_done_at"] for h, r in zip(handles, results, strict=True)}
    order = sorted(done_at, key=done_at.get)
    assert order == [blocker.id, a[0].id, b.id, a[1].id, a[2].id]


async def test_cancel_queued_and_running(sched: Scheduler) -> None:
    await until_idle(sched)
    pid = worker_pid(sched)
    running = await submit(sched, steps=50, test_step_sleep=0.2)
    queued = await submit(sched, user=2)
    assert await queued.cancel()
    assert isinstance(queued.outcome, Cancelled)
    await until(lambda: running.state.value == "running" and sched.stats()["running"] == 1)
    async for event in running.events():
        if isinstance(event, Progress):
            break
    asked = time.monotonic()
    assert await running.cancel()
    outcome = await running.wait()
    assert isinstance(outcome, Cancelled), outcome
    assert time.monotonic() - asked < 10  # one step is 0.2 s
    after = await (await submit(sched)).wait()
    assert isinstance(after, Finished)
    assert worker_pid(sched) == pid  # the worker was freed, not killed


async def test_sigkill_mid_job_is_retried_and_the_next_job_runs(sched: Scheduler) -> None:
    await until_idle(sched)
    victim = await submit(sched, steps=6, test_step_sleep=0.2)
    follower = await submit(sched, user=2)
    async for event in victim.events():
        if isinstance(event, Progress):
            break
    killed_at = time.monotonic()
    os.kill(worker_pid(sched), signal.SIGKILL)
    await until(
        lambda: victim.state.value == "queued" or victim.done, 20, "the crash to be noticed"
    )
    assert time.monotonic() - killed_at < 20
    events = await collect(victim, 120)
    assert any(isinstance(e, Started) and e.attempt == 2 for e in events)
    result = events[-1]
    assert isinstance(result, Finished) and result.stats["attempts"] == 2
    assert isinstance(await follower.wait(), Finished)
    assert sched.health().workers[0].restarts >= 1


async def test_a_job_that_keeps_crashing_fails_clearly(sched: Scheduler) -> None:
    await until_idle(sched)
    handle = await submit(sched, test_fault="crash_always")
    outcome = await handle.wait()
    assert isinstance(outcome, Failed) and "stopped unexpectedly" in outcome.message
    assert "SIGKILL" in (outcome.detail or "")
    assert isinstance(await (await submit(sched)).wait(), Finished)


async def test_out_of_memory_is_retried_smaller(sched: Scheduler) -> None:
    await until_idle(sched)
    result = await (await submit(sched, test_fault="oom")).wait()
    assert isinstance(result, Finished), result
    assert result.stats["retried_smaller"] is True and result.stats["requested_size"] == 32
    assert max(Image.open(io.BytesIO(result.image)).size) == 22  # 32 x 0.7
    hopeless = await (await submit(sched, test_fault="oom_always")).wait()
    assert isinstance(hopeless, Failed) and "memory" in hopeless.message


async def test_a_hung_worker_is_killed_and_its_job_retried(sched: Scheduler) -> None:
    await until_idle(sched)
    restarts = sched.health().workers[0].restarts
    begun = time.monotonic()
    handle = await submit(sched, test_fault="hang")
    result = await handle.wait()
    assert isinstance(result, Finished), result
    assert result.stats["attempts"] == 2
    assert time.monotonic() - begun < 60
    worker = sched.health().workers[0]
    assert worker.restarts == restarts + 1 and "heartbeat" in (worker.last_error or "")


async def test_a_job_over_the_time_limit_fails(sched: Scheduler) -> None:
    await until_idle(sched)
    saved = sched.ex
    sched.ex = dataclasses.replace(saved, job_timeout_s=1.5)
    try:
        handle = await submit(sched, steps=100, test_step_sleep=0.2)
        outcome = await handle.wait()
    finally:
        sched.ex = saved
    assert isinstance(outcome, Failed) and "limit" in outcome.message, outcome
    assert sched.stats()["timed_out"] >= 1
    assert isinstance(await (await submit(sched)).wait(), Finished)


async def test_snapshot_stats_and_health(sched: Scheduler) -> None:
    await until_idle(sched)
    stats = sched.stats()
    assert stats["finished"] >= 5 and stats["mean_run_s"] > 0 and stats["mean_wait_s"] >= 0
    health = sched.health().to_dict()
    assert health["ok"] and health["workers_alive"] == 1 and health["workers"][0]["pid"]
    assert sched.queue_snapshot() == []
