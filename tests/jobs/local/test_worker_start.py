"""Fault 3 on the local backend: a worker that dies while starting. Killed by a signal (the OOM
killer, a GPU still resetting) the queue waits through the restart; only a start that keeps
failing makes the backend unavailable, and then with the reason."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from jobhelpers import collect, make_config, png, tiny_job, until

from nstbot.jobs.backend import WorkerState
from nstbot.jobs.model import Failed, Finished
from nstbot.jobs.scheduler import Scheduler

IMG, STYLE = png("red"), png("blue")


async def test_a_worker_killed_while_starting_keeps_the_queue_waiting(tmp_path: Path) -> None:
    config = make_config(tmp_path, heartbeat_timeout_s=8.0, restart_backoff_max_s=2.0)
    scheduler = Scheduler(config)
    await scheduler.start(wait_ready=False)
    try:
        handles = [
            await scheduler.submit(tiny_job(user), content=IMG, styles=[STYLE])
            for user in (1, 2, 3)
        ]
        worker = scheduler.health().workers[0]
        assert worker.state is WorkerState.STARTING and worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        await until(lambda: scheduler.health().workers[0].restarts >= 1, 30, "the death")
        worker = scheduler.health().workers[0]
        assert "while starting" in (worker.last_error or "") and "SIGKILL" in worker.last_error
        assert scheduler.health().unavailable_reason is None
        results = [(await collect(h, 120))[-1] for h in handles]
        assert all(isinstance(r, Finished) for r in results), results
    finally:
        await scheduler.stop()


async def test_starts_that_keep_failing_fail_the_queue_with_the_reason(tmp_path: Path) -> None:
    # A start limit no worker can meet: every start is killed, as a wedged GPU would be.
    config = make_config(
        tmp_path, worker_start_timeout_s=0.3, restart_backoff_max_s=0.5, max_queue=0
    )
    scheduler = Scheduler(config)
    await scheduler.start(wait_ready=False)
    try:
        handle = await scheduler.submit(tiny_job(), content=IMG, styles=[STYLE])
        outcome = await handle.wait()
        assert isinstance(outcome, Failed), outcome
        assert "did not start within" in outcome.message and "3 starts in a row" in outcome.message
        assert scheduler.health().workers[0].restarts >= 3
    finally:
        await scheduler.stop()
