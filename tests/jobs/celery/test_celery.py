"""The Celery backend end to end: a real redis-server, two real `nstbot worker` processes (CPU,
random weights, 32 px), and real Schedulers in this process.

The workers are shared by the module; each test waits until both are idle. The destructive test
(a whole worker killed) runs last.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from celery_helpers import Workers, celery_config
from jobhelpers import ManualBackend, collect, png, tiny_job, until
from PIL import Image

from nstbot.config import TimelapseConfig
from nstbot.images.animation import unpack_frames
from nstbot.jobs import messages
from nstbot.jobs.celery import backend as celery_backend
from nstbot.jobs.journal.journal import Journal
from nstbot.jobs.model import Cancelled, Failed, Finished, JobState, Progress, Queued, Started
from nstbot.jobs.scheduler import Scheduler

IMG, STYLE = png("red"), png("blue")


@pytest.fixture(scope="module")
def queue() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def workers(redis_url: str, queue: str, tmp_path_factory: pytest.TempPathFactory):
    pool = Workers(redis_url, queue, tmp_path_factory.mktemp("workers"))
    pool.start(2)
    try:
        pool.wait_ready(2)
        yield pool
    finally:
        pool.stop()


@pytest.fixture
async def sched(redis_url: str, queue: str, workers: Workers, tmp_path: Path):
    workers.wait_ready(2)
    scheduler = Scheduler(celery_config(tmp_path / "data", redis_url, queue))
    await scheduler.start()
    assert scheduler.health().workers_alive == 2, scheduler.health()
    yield scheduler
    await scheduler.stop()


def job_keys(workers: Workers, job_id: str) -> list[bytes]:
    return list(workers.redis.scan_iter(f"nstbot:{workers.queue}:job:{job_id}:*"))


def finals(events: list) -> list:
    return [e for e in events if isinstance(e, Finished | Failed | Cancelled)]


async def submit(s: Scheduler, user: int = 1, **kw):
    return await s.submit(tiny_job(user, **kw), content=IMG, styles=[STYLE])


async def running_on(s: Scheduler, job_id: str, timeout: float = 30.0):
    """The worker status of the worker running `job_id`, once it shows."""
    found = []

    def check() -> bool:
        found[:] = [w for w in s.health().workers if w.job_id == job_id]
        return bool(found)

    await until(check, timeout, f"job {job_id} on a worker")
    return found[0]


async def test_a_job_streams_progress_and_its_keys_are_removed(sched, workers) -> None:
    handle = await submit(sched, steps=4)
    events = await collect(handle)
    assert isinstance(events[0], Queued) and isinstance(events[1], Started), events
    assert events[1].device == "cpu" and events[1].attempt == 1
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].step == 4 and progress[-1].total == 4
    previews = [e.preview for e in progress if e.preview]
    assert previews and all(len(p) <= 100_000 for p in previews)
    assert Image.open(io.BytesIO(previews[0])).format in ("JPEG", "WEBP")
    (result,) = finals(events)
    assert isinstance(result, Finished), result
    image = Image.open(io.BytesIO(result.image))
    assert image.format == "PNG" and max(image.size) == 32
    assert result.stats["worker"] in workers.statuses() and result.stats["attempts"] == 1
    # Inputs, markers and the result leave Redis once the journal has the outcome.
    await until(lambda: not job_keys(workers, handle.id), 15, "the job's keys to be removed")


def gradient() -> bytes:
    """A photo whose painting changes from step to step (identical frames pack into one)."""
    img = Image.linear_gradient("L").resize((40, 40)).convert("RGB")
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


async def test_timelapse_frames_travel_through_redis_with_the_result(sched, workers) -> None:
    handle = await sched.submit(tiny_job(steps=4), content=gradient(), styles=[STYLE])
    result = await handle.wait()
    assert isinstance(result, Finished) and result.timelapse, result
    assert Image.open(io.BytesIO(result.image)).format == "PNG"  # split cleanly from the frames
    frames = unpack_frames(result.timelapse)
    assert len(frames) > 1 and max(frames[0].size) == 32
    assert result.stats["timelapse_frames"] == len(frames)
    # The bot keeps them in the job's folder for the Timelapse button.
    assert await sched.timelapse(result.job_id) == result.timelapse


async def test_a_bot_with_timelapses_off_gets_no_frames(
    redis_url, queue, workers, tmp_path
) -> None:
    config = celery_config(tmp_path / "data", redis_url, queue)
    config = dataclasses.replace(config, timelapse=TimelapseConfig(enabled=False))
    scheduler = Scheduler(config)
    await scheduler.start()
    try:
        result = await (await submit(scheduler, steps=3)).wait()
        assert isinstance(result, Finished) and result.timelapse is None
        assert "timelapse_frames" not in result.stats
    finally:
        await scheduler.stop()


async def test_without_pub_sub_the_poll_still_brings_progress_and_the_result(
    redis_url, queue, workers, tmp_path, monkeypatch
) -> None:
    async def deaf(*args, **kwargs) -> None:  # as if every subscription failed
        await asyncio.Event().wait()

    monkeypatch.setattr(celery_backend, "listen", deaf)
    scheduler = Scheduler(celery_config(tmp_path / "data", redis_url, queue))
    await scheduler.start()
    try:
        events = await collect(await submit(scheduler, steps=8, test_step_sleep=0.1), 60)
        assert [type(e) for e in events[:2]] == [Queued, Started]
        assert any(isinstance(e, Progress) for e in events)
        assert isinstance(events[-1], Finished), events
    finally:
        await scheduler.stop()


async def test_two_workers_share_jobs_in_fair_order(sched) -> None:
    # User 1 submits three jobs, then user 2 one: user 2 must not wait behind all of user 1's.
    handles = [await submit(sched, 1, steps=6, test_step_sleep=0.15) for _ in range(3)]
    late = await submit(sched, 2, steps=6, test_step_sleep=0.15)
    await until(lambda: sum(h.state is JobState.RUNNING for h in handles) == 2, 20, "two running")
    # Only as many jobs as idle workers went to Celery; the rest wait in the bot's fair queue.
    running = [e for e in sched.queue_snapshot() if e.position == 0]
    assert len(running) == 2 and late.position == 1 and handles[2].position == 2
    results = [await h.wait() for h in [*handles, late]]
    assert all(isinstance(r, Finished) for r in results), results
    assert len({r.stats["worker"] for r in results}) == 2
    assert sched.stats()["finished"] == 4


async def test_cancel_queued_and_running_jobs(sched, workers) -> None:
    long = [await submit(sched, u, steps=200, test_step_sleep=0.1) for u in (1, 2)]
    waiting = await submit(sched, 3, steps=2)
    await until(lambda: all(h.state is JobState.RUNNING for h in long), 20, "both running")
    assert waiting.position == 1
    assert await waiting.cancel("changed my mind")
    assert isinstance(await asyncio.wait_for(waiting.wait(), 2), Cancelled)
    for handle in long:
        async for event in handle.events():
            if isinstance(event, Progress):
                break
        asked = time.monotonic()
        assert await handle.cancel()
        outcome = await asyncio.wait_for(handle.wait(), 15)
        assert isinstance(outcome, Cancelled), outcome
        assert time.monotonic() - asked < 5
    workers.wait_ready(2, timeout=20)
    assert sched.stats()["cancelled"] == 3


async def test_a_killed_pool_process_reruns_the_job_elsewhere_once(sched, workers) -> None:
    handle = await submit(sched, steps=30, test_step_sleep=0.1)
    events: list = []
    async for event in handle.events():
        events.append(event)
        if isinstance(event, Progress):
            break
    victim = await running_on(sched, handle.id)
    os.kill(victim.pid, signal.SIGKILL)  # the pool process running the job: a CUDA crash, say
    events += await collect(handle, 120)
    starts = [e for e in events if isinstance(e, Started)]
    assert [s.attempt for s in starts] == [1, 2], events
    (result,) = finals(events)
    assert isinstance(result, Finished), result
    assert result.stats["worker"] != victim.name and result.stats["attempts"] == 2
    await until(lambda: not job_keys(workers, handle.id), 15, "the job's keys to be removed")
    workers.wait_ready(2)  # the victim's main process started a new pool process


async def test_one_pool_crash_costs_one_attempt_and_reruns_on_a_ready_worker(
    sched, workers, tmp_path
) -> None:
    # The other worker is busy when the pool process dies and free a moment later, while the
    # victim is still reloading: the re-run must wait for the ready one, not for the victim, and
    # run exactly once more (Celery re-queuing the message as well cost a second attempt).
    crashing = await submit(sched, 1, steps=40, test_step_sleep=0.1)
    victim = await running_on(sched, crashing.id)
    short = await submit(sched, 2, steps=6, test_step_sleep=0.3)
    helper = await running_on(sched, short.id)
    events: list = []
    async for event in crashing.events():
        events.append(event)
        if isinstance(event, Progress):
            break
    os.kill(victim.pid, signal.SIGKILL)
    events += await collect(crashing, 120)
    assert isinstance(await short.wait(), Finished)
    starts = [e for e in events if isinstance(e, Started)]
    assert [s.attempt for s in starts] == [1, 2], events
    (result,) = finals(events)
    assert isinstance(result, Finished), result
    assert result.stats["worker"] == helper.name != victim.name
    assert result.stats["attempts"] == 2
    workers.wait_ready(2)  # the victim's new pool process is up, and took nothing meanwhile
    logs = "".join(p.read_text(errors="replace") for p in workers.log_dir.glob("worker*.log"))
    runs = [line for line in logs.splitlines() if f"job {crashing.id}: attempt" in line]
    assert len(runs) == 2, runs
    assert f"job {crashing.id}: task" not in logs  # no stale copy was delivered anywhere
    journal = Journal(tmp_path / "data" / "journal.sqlite3")  # read beside the scheduler's
    try:
        await until(lambda: journal.get(crashing.id).state is JobState.FINISHED, 10, "journal")
        assert journal.get(crashing.id).attempts == 2
    finally:
        journal.close()


async def test_a_job_that_kills_its_worker_every_time_fails(sched, workers) -> None:
    handle = await submit(sched, test_fault="crash_always")
    events = await collect(handle, 120)
    (result,) = finals(events)
    assert isinstance(result, Failed), result
    assert result.message == messages.stopped_repeatedly(2)  # max_attempts = 2 in these tests
    assert [e.attempt for e in events if isinstance(e, Started)][-1] == 2
    workers.wait_ready(2)


class NewerBot(celery_backend.CeleryBackend):
    """A bot of a later version: its payloads carry what these workers do not know."""

    def payload(self, request):
        data = super().payload(request)
        skew = request.job.params.extra.get("skew")
        if skew == "param":
            data["job"]["params"]["brush_texture"] = "oil"
        elif skew == "version":
            data["version"] = 99
        return data


@pytest.mark.parametrize(("skew", "named"), [("param", "brush_texture"), ("version", "99")])
async def test_a_payload_the_worker_cannot_read_fails_clearly(
    redis_url, queue, workers, tmp_path, skew, named
):
    workers.wait_ready(2)
    config = celery_config(tmp_path / "data", redis_url, queue)
    scheduler = Scheduler(config, backend=NewerBot(config))
    await scheduler.start()
    try:
        before = workers.statuses()
        handle = await submit(scheduler, skew=skew)
        events = await collect(handle, 30)  # not the job timeout (120 s here, 900 s by default)
        (result,) = finals(events)
        assert isinstance(result, Failed), events
        assert result.message == messages.VERSION_SKEW and named in (result.detail or "")
        assert not any(isinstance(e, Started) for e in events)
        after = workers.wait_ready(2)
        # The same pool processes, still up: nothing crashed.
        assert {n: s["pid"] for n, s in after.items()} == {n: s["pid"] for n, s in before.items()}
        assert isinstance(await (await submit(scheduler)).wait(), Finished)
    finally:
        await scheduler.stop()


async def test_a_bot_restart_mid_job_delivers_each_result_once(redis_url, queue, workers, tmp_path):
    config = celery_config(tmp_path / "data", redis_url, queue)
    first = Scheduler(config)
    await first.start()
    slow = await submit(first, 1, steps=30, test_step_sleep=0.15)
    quick = await submit(first, 2, steps=8, test_step_sleep=0.1)
    for handle in (slow, quick):
        async for event in handle.events():
            if isinstance(event, Progress):
                break
    await first.stop()
    assert slow.interrupted and quick.interrupted
    # The workers carry on without the bot; the quick job ends while it is away.
    final_key = f"nstbot:{queue}:job:{quick.id}:final"
    await until(lambda: workers.redis.exists(final_key), 30, "the quick job to end remotely")
    restarted_at = time.time()

    second = Scheduler(config)
    await second.start()
    handles = {h.id: h for h in second.recovered()}
    assert set(handles) == {slow.id, quick.id}
    slow_events = await collect(handles[slow.id], 60)
    quick_events = await collect(handles[quick.id], 60)
    done_slow, done_quick = finals(slow_events)[0], finals(quick_events)[0]
    assert isinstance(done_slow, Finished) and isinstance(done_quick, Finished)
    # The quick one was delivered from Redis, not run again; the slow one was adopted while
    # still running: its progress kept flowing and it ran once.
    assert done_quick.stats["worker_done_at"] < restarted_at
    assert done_quick.stats["attempt"] == 1 and done_slow.stats["attempt"] == 1
    assert any(isinstance(e, Progress) for e in slow_events)
    for job_id in handles:
        await second.record_delivery(job_id, True, None)
    await second.stop()
    third = Scheduler(config, backend=ManualBackend())
    await third.start()
    assert third.recovered() == []  # delivered once, never again
    await third.stop()
    for job_id in handles:
        await until(lambda j=job_id: not job_keys(workers, j), 15, "keys removed")


async def test_a_dead_worker_host_is_noticed_and_the_job_sent_again(sched, workers) -> None:
    # Last: kills a whole worker (main and pool process), as when its host goes away.
    handle = await submit(sched, steps=30, test_step_sleep=0.1)
    async for event in handle.events():
        if isinstance(event, Progress):
            break
    victim = await running_on(sched, handle.id)
    os.killpg(workers.main_pid(victim.name), signal.SIGKILL)
    lost_at = time.monotonic()
    events = await collect(handle, 120)
    (result,) = finals(events)
    assert isinstance(result, Finished), result
    assert result.stats["worker"] != victim.name and result.stats["attempts"] == 2
    # Noticed by its status expiring (worker_timeout_s = 3), not the visibility timeout (90 s).
    assert time.monotonic() - lost_at < 30
