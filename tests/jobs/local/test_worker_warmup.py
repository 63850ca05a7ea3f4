"""A real local worker process warms its style cache at start: a preset job then skips the pass."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest
from jobhelpers import make_config

from nstbot.config import BotConfig, StylesConfig
from nstbot.jobs.model import Finished, Job
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
        passes = {}
        for label, style in (("preset", starry.read_bytes()),
                             ("upload", (data_dir / "style-gravel.jpg").read_bytes())):  # fmt: skip
            job = Job.new(user_id=1, channel_id=3, params=params)
            result = await (await scheduler.submit(job, content=photo, styles=[style])).wait()
            assert isinstance(result, Finished), result
            passes[label] = result.stats["style_passes"]
        assert passes == {"preset": 0, "upload": 1}
    finally:
        await scheduler.stop()
