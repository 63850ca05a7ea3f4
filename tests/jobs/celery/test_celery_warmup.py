"""A real `nstbot worker` warms its style cache before it reports ready: presets skip the pass."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from celery_helpers import Workers, celery_config
from jobhelpers import style_passes

from nstbot.jobs.scheduler import Scheduler
from nstbot.quality import Limits, build_params
from nstbot.styles import builtin_style

pytestmark = pytest.mark.timeout(240)


async def test_a_preset_job_on_a_warmed_celery_worker_skips_the_style_pass(
    redis_url: str, tmp_path: Path, data_dir: Path
) -> None:
    queue = f"w{uuid.uuid4().hex[:8]}"
    workers = Workers(redis_url, queue, tmp_path)
    # The bot's caps bound the warm-up sizes: 64 px keeps it short.
    workers.start(
        1, NSTBOT_STYLES_WARM_UP="true", NSTBOT_BOT_MAX_SIZE="64", NSTBOT_BOT_MAX_STEPS="2"
    )
    scheduler = None
    try:
        workers.wait_ready(1)
        assert "style cache warmed: 3 targets" in workers.logs()
        scheduler = Scheduler(celery_config(tmp_path / "data", redis_url, queue))
        await scheduler.start()
        params, _ = build_params(
            quality="fast", hardware="cpu", limits=Limits(max_size=64, max_steps=2)
        )
        photo = (data_dir / "content-coffee.jpg").read_bytes()
        preset = builtin_style("woman-with-a-hat")
        assert preset is not None
        passes = await style_passes(
            scheduler,
            params,
            photo,
            preset.read_bytes(),
            (data_dir / "style-brick.jpg").read_bytes(),
        )
        assert passes == {"preset": 0, "upload": 1}
    finally:
        if scheduler is not None:
            await scheduler.stop()
        workers.stop()
