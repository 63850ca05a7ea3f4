"""A real local worker process warms its style cache at start: a preset job then skips the pass."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest
from jobhelpers import make_config, style_passes, tiny_params

from nstbot.config import BotConfig, StylesConfig
from nstbot.jobs.model import Finished, Job
from nstbot.jobs.runtime import WorkerSettings
from nstbot.jobs.scheduler import Scheduler
from nstbot.quality import Limits, build_params
from nstbot.styles import builtin_style


async def test_a_preset_job_after_the_workers_warm_up_skips_the_style_pass(
    tmp_path: Path, data_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config = dataclasses.replace(
        make_config(tmp_path, job_timeout_s=120.0),
        bot=BotConfig(hardware="cpu", max_size=64, max_steps=2),
        styles=StylesConfig(warm_up=True),
    )
    scheduler = Scheduler(config)
    await scheduler.start()
    try:
        # The worker process logs to the inherited stderr once the warm-up is done.
        seen, deadline = "", time.monotonic() + 120
        while "style cache warmed" not in seen:
            assert time.monotonic() < deadline, seen
            await asyncio.sleep(0.2)
            seen += capfd.readouterr().err
        assert "style cache warmed: 3 targets" in seen  # each built-in at 64 px

        params, _ = build_params(
            quality="balanced", hardware="cpu", limits=Limits(max_size=64, max_steps=2)
        )
        photo = (data_dir / "content-astronaut.jpg").read_bytes()
        starry = builtin_style("starry-night")
        assert starry is not None
        passes = await style_passes(
            scheduler,
            params,
            photo,
            starry.read_bytes(),
            (data_dir / "style-gravel.jpg").read_bytes(),
        )
        assert passes == {"preset": 0, "upload": 1}
    finally:
        await scheduler.stop()


async def test_a_job_that_arrives_during_the_warm_up_goes_first(
    tmp_path: Path, data_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # The CPU presets' full sizes: a warm-up of many steps, far longer than one tiny job.
    config = dataclasses.replace(make_config(tmp_path), styles=StylesConfig(warm_up=True))
    assert len(WorkerSettings.from_config(config).warm_params["cpu"]) == 3
    scheduler = Scheduler(config)
    await scheduler.start()
    try:
        job = Job.new(user_id=1, channel_id=3, params=tiny_params(steps=1))
        photo = (data_dir / "content-coffee.jpg").read_bytes()
        style = (data_dir / "style-brick.jpg").read_bytes()
        result = await (await scheduler.submit(job, content=photo, styles=[style])).wait()
        assert isinstance(result, Finished), result
    finally:
        await scheduler.stop()  # the stop, too, is served between two warm-up steps
    log = capfd.readouterr().err
    assert "stylized" in log
    assert "style cache warmed" not in log.split("stylized")[0]
