"""The worker's style warm-up: preset jobs then skip the style feature pass, uploads do not."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nstbot.bot.presets import PRESETS, QUALITIES
from nstbot.bot.presets import Limits as BotLimits
from nstbot.bot.presets import build_params as bot_build_params
from nstbot.config import BotConfig, Config, EngineConfig, StylesConfig
from nstbot.engine.style_cache import StyleTargetCache
from nstbot.engine.transfer import StyleTransfer
from nstbot.jobs.model import Job, RunRequest
from nstbot.jobs.runtime import WorkerSettings, run_job
from nstbot.jobs.warmup import StyleWarmUp, warm_params
from nstbot.quality import Limits, build_params
from nstbot.styles import BUILTIN_STYLES

ENTRY_BYTES = 4 * sum(c * c for c in (64, 128, 256, 512, 512))  # fp32 Grams of the default layers


class Outcome:
    """A Reporter that keeps the one outcome."""

    def __init__(self) -> None:
        self.stats: dict[str, Any] | None = None
        self.failure: str | None = None

    def started(self, device: str, attempt: int) -> None:
        pass

    def progress(self, progress: Any) -> None:
        pass

    def finished(self, image: bytes, stats: dict[str, Any], timelapse: bytes | None) -> None:
        self.stats = stats

    def failed(self, message: str, detail: str | None) -> None:
        self.failure = f"{message} {detail}"

    def cancelled(self) -> None:
        self.failure = "cancelled"


class NeverStop:
    def is_set(self) -> bool:
        return False


def small_config(**styles: Any) -> Config:
    # The bot's caps bound the warm-up as they bound jobs: 128 px keeps this test quick.
    return Config(
        engine=EngineConfig(device="cpu", weights="random", allow_download=False),
        bot=BotConfig(hardware="cpu", max_size=128, max_steps=4),
        styles=StylesConfig(**styles),
    )


@pytest.fixture(scope="module")
def engine() -> Iterator[StyleTransfer]:
    yield StyleTransfer(device="cpu", weights="random", allow_download=False, progress=False)


def run(engine: StyleTransfer, tmp_path: Path, content: Path, style: bytes, quality: str) -> dict:
    # As the bot builds a request at this quality, and as the job folder keeps its input copy.
    params, _ = build_params(
        quality=quality, hardware="cpu", limits=Limits(max_size=128, max_steps=4), seed=1
    )
    style_file = tmp_path / f"style-{quality}-{len(list(tmp_path.iterdir()))}"
    style_file.write_bytes(style)
    request = RunRequest(Job.new(user_id=1, params=params), [str(content), str(style_file)], 1)
    outcome = Outcome()
    settings = WorkerSettings.from_config(small_config())
    run_job(engine, request, settings.run, outcome, NeverStop())
    assert outcome.failure is None and outcome.stats is not None
    return outcome.stats


def test_a_preset_job_after_warm_up_does_no_style_pass_and_an_upload_does(
    engine: StyleTransfer, tmp_path: Path, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine.cache = StyleTargetCache(max_bytes=256 << 20)
    settings = WorkerSettings.from_config(small_config())
    with caplog.at_level(logging.INFO, logger="nstbot.jobs.warmup"):
        result = StyleWarmUp(engine, settings).run()
    # fast: 128 px at one scale; balanced and best: 64 and 128 px, all of one decoded image.
    assert result.complete and result.targets == 2 * len(BUILTIN_STYLES)
    assert len(engine.cache) == result.targets
    assert f"style cache warmed: {result.targets} targets" in caplog.text

    content = data_dir / "content-coffee.jpg"
    passes = engine.style_extractions
    for quality in QUALITIES:
        for style in BUILTIN_STYLES:
            stats = run(engine, tmp_path, content, style.read_bytes(), quality)
            assert stats["style_passes"] == 0, (quality, style.name)
    assert engine.style_extractions == passes

    upload = (data_dir / "style-brick.jpg").read_bytes()
    stats = run(engine, tmp_path, content, upload, "balanced")
    assert stats["style_passes"] == 2  # one per scale
    assert engine.style_extractions == passes + 2


def test_the_warm_up_stops_before_the_cache_would_evict(engine: StyleTransfer) -> None:
    engine.cache = StyleTargetCache(max_bytes=int(2.5 * ENTRY_BYTES))
    result = StyleWarmUp(engine, WorkerSettings.from_config(small_config())).run()
    assert not result.complete
    assert result.targets == len(engine.cache) == 2
    assert engine.cache.bytes_used <= engine.cache.max_bytes


def test_warm_up_off_warms_nothing(engine: StyleTransfer) -> None:
    engine.cache = StyleTargetCache(max_bytes=256 << 20)
    warm = StyleWarmUp(engine, WorkerSettings.from_config(small_config(warm_up=False)))
    assert not warm.pending and warm.run().targets == 0 and len(engine.cache) == 0


def test_the_warm_up_uses_the_sizes_the_bot_asks_for() -> None:
    plan = warm_params(Config())
    for hardware in ("cpu", "gpu"):
        expected = [
            bot_build_params(quality=q, hardware=hardware, limits=BotLimits())[0] for q in QUALITIES
        ]
        assert list(plan[hardware]) == expected
        assert [p.size for p in plan[hardware]] == [PRESETS[hardware][q].size for q in QUALITIES]
    forced = warm_params(Config(bot=BotConfig(hardware="cpu")))
    assert forced["gpu"] == forced["cpu"] == plan["cpu"]
    assert warm_params(Config(styles=StylesConfig(warm_up=False))) == {}
