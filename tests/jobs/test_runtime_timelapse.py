"""The worker runtime records a timelapse with the real engine (random weights, 32 px): frames
come with Finished when the settings ask for them, and a recording failure costs the frames only."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest
from jobhelpers import png, tiny_job
from PIL import Image

from nstbot.engine.timelapse import FrameRecorder
from nstbot.images.animation import unpack_frames
from nstbot.jobs import faults
from nstbot.jobs.model import RunRequest
from nstbot.jobs.runtime import EngineSettings, RunSettings, run_job


class Outcome:
    """A Reporter keeping how the run ended."""

    def __init__(self) -> None:
        self.ended: tuple[str, Any] | None = None

    def started(self, device: str, attempt: int) -> None:
        pass

    def progress(self, progress: Any) -> None:
        pass

    def finished(self, image: bytes, stats: dict[str, Any], timelapse: bytes | None) -> None:
        self.ended = ("finished", (image, stats, timelapse))

    def failed(self, message: str, detail: str | None) -> None:
        self.ended = ("failed", message)

    def cancelled(self) -> None:
        self.ended = ("cancelled", None)


class NeverStop:
    def is_set(self) -> bool:
        return False


@pytest.fixture(scope="module")
def engine() -> Any:
    settings = EngineSettings(
        device="cpu", weights="random", precision="fp32", allow_download=False, cache_bytes=1 << 20
    )
    return settings.load()


def run(
    engine: Any, tmp_path: Path, side: int, photo: tuple[int, int] = (48, 32), **extra: Any
) -> tuple[bytes, dict[str, Any], bytes | None]:
    job = tiny_job(steps=4, **extra)
    paths = []
    for name, data in (("content.img", png("red", photo)), ("style.img", png("blue"))):
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    settings = RunSettings(progress_interval_s=0, preview_interval_s=3600, timelapse_side=side)
    outcome = Outcome()
    request = RunRequest(job, paths, 1)
    run_job(faults.for_run(engine, request), request, settings, outcome, NeverStop())
    assert outcome.ended is not None and outcome.ended[0] == "finished", outcome.ended
    return outcome.ended[1]


def test_frames_come_with_the_result_when_asked(engine: Any, tmp_path: Path) -> None:
    png_bytes, stats, timelapse = run(engine, tmp_path, side=24)
    assert png_bytes.startswith(b"\x89PNG") and timelapse is not None
    frames = unpack_frames(timelapse)
    assert len(frames) >= 3  # the photo, some steps, the result
    assert frames[0].size == (24, 16)  # the output's 3:2 aspect, at most 24 px
    assert stats["timelapse_frames"] == len(frames)


def test_an_out_of_memory_retry_records_afresh_at_the_smaller_size(
    engine: Any, tmp_path: Path
) -> None:
    png_bytes, stats, timelapse = run(engine, tmp_path, side=64, photo=(32, 32), test_fault="oom")
    assert stats["oom_retries"] == 1 and timelapse is not None
    frames = unpack_frames(timelapse)
    result = Image.open(io.BytesIO(png_bytes))
    assert max(result.size) == 22  # 32 px at 0.7
    assert {f.size for f in frames} == {result.size}  # every frame from the retry alone
    assert stats["timelapse_frames"] == len(frames)


def test_no_frames_unless_asked(engine: Any, tmp_path: Path) -> None:
    _, stats, timelapse = run(engine, tmp_path, side=0)
    assert timelapse is None and "timelapse_frames" not in stats


def test_a_recording_failure_costs_the_frames_never_the_job(
    engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: FrameRecorder, image: Any, step: int) -> None:
        raise RuntimeError("recorder out of order")

    monkeypatch.setattr(FrameRecorder, "add", broken)
    with caplog.at_level(logging.WARNING):
        png_bytes, stats, timelapse = run(engine, tmp_path, side=24)
    assert png_bytes.startswith(b"\x89PNG") and timelapse is None
    assert "timelapse_frames" not in stats
    assert "recorder out of order" in caplog.text
