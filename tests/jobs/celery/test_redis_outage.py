"""Fault 1 on Celery: Redis goes away for a few seconds (restarted with its data, as a managed
Redis does) while jobs wait and while one paints. A real redis-server of this module's own, one
real `nstbot worker`, a real Scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery_helpers import Workers, celery_config
from jobhelpers import collect, png, tiny_job, until
from redis_server import _wait_for, free_port, redis_available

from nstbot.jobs.model import Finished, Progress, Started
from nstbot.jobs.scheduler import Scheduler

IMG, STYLE = png("red"), png("blue")
OUTAGE_S = 4.0  # longer than worker_timeout_s (3 s in these tests), shorter than the grace


class RestartableRedis:
    """A redis-server that can be shut down (saving its data) and started again on its port."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                "--dir", str(self.folder), "--save", "", "--appendonly", "no",
                "--logfile", str(self.folder / "redis.log")]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(self.port, self.proc, 10.0, self.folder / "redis.log", tls=False)

    def stop(self) -> None:
        client = redis.Redis.from_url(self.url)
        with contextlib.suppress(redis.ConnectionError):
            client.shutdown(save=True)  # keys and their expiry times survive the restart
        assert self.proc is not None
        self.proc.wait(10)


@pytest.fixture(scope="module")
def server() -> Iterator[RestartableRedis]:
    if not redis_available():
        pytest.skip("redis-server is not installed")
    with tempfile.TemporaryDirectory(prefix="nstbot-outage-") as folder:
        server = RestartableRedis(Path(folder))
        server.start()
        try:
            yield server
        finally:
            if server.proc is not None and server.proc.poll() is None:
                server.proc.terminate()
                server.proc.wait(5)


@pytest.fixture(scope="module")
def workers(server: RestartableRedis, tmp_path_factory: pytest.TempPathFactory):
    pool = Workers(server.url, f"o{uuid.uuid4().hex[:8]}", tmp_path_factory.mktemp("w"))
    pool.start(1)
    try:
        pool.wait_ready(1)
        yield pool
    finally:
        pool.stop()


async def test_jobs_sent_during_an_outage_wait_then_run(server, workers, tmp_path) -> None:
    config = celery_config(tmp_path / "data", server.url, workers.queue)
    scheduler = Scheduler(config)
    await scheduler.start()
    try:
        server.stop()
        handles = [
            await scheduler.submit(tiny_job(user), content=IMG, styles=[STYLE]) for user in (1, 2)
        ]
        await asyncio.sleep(OUTAGE_S)
        server.start()
        results = [(await collect(h, 90))[-1] for h in handles]
        assert all(isinstance(r, Finished) for r in results), results
        assert all(r.stats["attempt"] == 1 for r in results)
    finally:
        await scheduler.stop()


async def test_a_job_painting_through_an_outage_is_not_sent_again(server, workers, tmp_path):
    workers.wait_ready(1)
    config = celery_config(tmp_path / "data", server.url, workers.queue)
    scheduler = Scheduler(config)
    await scheduler.start()
    try:
        handle = await scheduler.submit(
            tiny_job(steps=40, test_step_sleep=0.2), content=IMG, styles=[STYLE]
        )
        events = []
        async for event in handle.events():
            events.append(event)
            if isinstance(event, Progress):
                break
        server.stop()
        await asyncio.sleep(OUTAGE_S)
        server.start()
        # The event subscription comes back by itself (redis-py's Retry on its client).
        channel = f"nstbot:{workers.queue}:events"
        with redis.Redis.from_url(server.url) as raw:
            await until(lambda: raw.pubsub_numsub(channel)[0][1] >= 1, 30, "a new subscription")
        events += await collect(handle, 120)
        result = events[-1]
        assert isinstance(result, Finished), events
        # One run, painted through the outage: not restarted from scratch on another send.
        assert [e.attempt for e in events if isinstance(e, Started)] == [1]
        assert result.stats["attempt"] == 1 and result.stats["attempts"] == 1
    finally:
        await scheduler.stop()
