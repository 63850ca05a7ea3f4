"""Fault 4 on the local backend: a payload the real worker process cannot read (a newer bot's
parameter, another payload version) fails that job clearly, and the worker stays up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jobhelpers import make_config, png, tiny_job

from nstbot.jobs import messages
from nstbot.jobs.local.backend import LocalBackend
from nstbot.jobs.model import Failed, Finished, RunRequest, Started
from nstbot.jobs.scheduler import Scheduler

IMG, STYLE = png("red"), png("blue")


class NewerBot(LocalBackend):
    """A bot of a later version: its payloads carry what this worker does not know."""

    def payload(self, request: RunRequest) -> dict[str, Any]:
        data = super().payload(request)
        if request.job.params.extra.get("skew") == "param":
            data["job"]["params"]["brush_texture"] = "oil"
        elif request.job.params.extra.get("skew") == "version":
            data["version"] = 99
        return data


@pytest.mark.parametrize(
    ("skew", "named"),
    [("param", "brush_texture"), ("version", "payload version 99")],
)
async def test_a_payload_the_worker_cannot_read_fails_clearly_and_the_worker_stays(
    tmp_path: Path, skew: str, named: str
) -> None:
    config = make_config(tmp_path, heartbeat_timeout_s=8.0, restart_backoff_max_s=2.0)
    scheduler = Scheduler(config, backend=NewerBot(config))
    await scheduler.start()
    try:
        pid = scheduler.health().workers[0].pid
        handle = await scheduler.submit(tiny_job(skew=skew), content=IMG, styles=[STYLE])
        events = [e async for e in handle.events()]
        outcome = events[-1]
        assert isinstance(outcome, Failed), events
        assert outcome.message == messages.VERSION_SKEW
        assert named in (outcome.detail or "")
        assert not any(isinstance(e, Started) for e in events)  # refused before running
        worker = scheduler.health().workers[0]
        assert worker.pid == pid and worker.restarts == 0 and worker.alive
        after = await scheduler.submit(tiny_job(), content=IMG, styles=[STYLE])
        assert isinstance(await after.wait(), Finished)
    finally:
        await scheduler.stop()
