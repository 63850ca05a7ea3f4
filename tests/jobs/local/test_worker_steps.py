"""The runtime's step callback in isolation: throttled progress, throttled previews, stop."""

from __future__ import annotations

import types

from PIL import Image

from nstbot.jobs.local.worker import SeqStop
from nstbot.jobs.model import Progress
from nstbot.jobs.runtime import RunSettings, StepReporter


class Recorder:
    """A Reporter that keeps the progress it is given."""

    def __init__(self) -> None:
        self.sent: list[Progress] = []

    def progress(self, progress: Progress) -> None:
        self.sent.append(progress)


def handler(progress_s: float, preview_s: float, token=None, seq: int = 1):
    reporter = Recorder()
    token = token or types.SimpleNamespace(value=0)
    settings = RunSettings(progress_interval_s=progress_s, preview_interval_s=preview_s)
    return StepReporter(reporter, SeqStop(token, seq), settings), reporter  # type: ignore[arg-type]


def info(step: int, total: int = 5):
    return types.SimpleNamespace(
        step=step, total=total, eta=1.0, scale=0, scales=1, elapsed=0.1,
        preview=lambda side: Image.new("RGB", (side, side)),
    )  # fmt: skip


def test_progress_is_throttled_but_the_last_step_always_goes_out() -> None:
    on_step, runner = handler(progress_s=3600, preview_s=3600)
    for step in range(1, 6):
        assert on_step(info(step)) is False
    assert [m.step for m in runner.sent] == [1, 5]
    assert all(isinstance(m, Progress) and m.preview is None for m in runner.sent)


def test_previews_come_at_their_own_pace() -> None:
    on_step, runner = handler(progress_s=0, preview_s=0)
    for step in range(1, 6):
        on_step(info(step))
    previews = [m.preview for m in runner.sent]
    assert all(p and p[:2] == b"\xff\xd8" for p in previews[:4])  # JPEG
    assert previews[4] is None  # none on the final step


def test_a_cancel_for_this_run_stops_it_and_one_for_another_does_not() -> None:
    token = types.SimpleNamespace(value=0)
    on_step, _ = handler(progress_s=0, preview_s=3600, token=token, seq=3)
    token.value = 2  # an earlier run's cancel, arriving late
    assert on_step(info(1)) is False
    token.value = 3
    assert on_step(info(2)) is True
