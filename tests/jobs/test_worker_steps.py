"""The worker's step callback in isolation: throttled progress, throttled previews, cancel."""

from __future__ import annotations

import types

from PIL import Image

from nstbot.jobs.worker import _StepHandler


class FakeRunner:
    def __init__(self, progress_s: float, preview_s: float) -> None:
        self.progress_interval = progress_s
        self.preview_interval = preview_s
        self.cancel_token = types.SimpleNamespace(value=0)
        self.sent: list[tuple] = []
        self.sender = types.SimpleNamespace(send=self.sent.append)
        self.images = types.SimpleNamespace(encode_preview=lambda im, **kw: b"jpeg")


def info(step: int, total: int = 5):
    return types.SimpleNamespace(
        step=step, total=total, eta=1.0, scale=0, scales=1, elapsed=0.1,
        preview=lambda side: Image.new("RGB", (side, side)),
    )  # fmt: skip


def test_progress_is_throttled_but_the_last_step_always_goes_out() -> None:
    runner = FakeRunner(progress_s=3600, preview_s=3600)
    handler = _StepHandler(runner, seq=7, attempt=1, fault=None, step_sleep=0.0)  # type: ignore[arg-type]
    for step in range(1, 6):
        assert handler(info(step)) is False
    assert [m[2]["step"] for m in runner.sent] == [1, 5]
    assert all(m[0] == "progress" and m[1] == 7 and m[3] is None for m in runner.sent)


def test_previews_come_at_their_own_pace() -> None:
    runner = FakeRunner(progress_s=0, preview_s=0)
    handler = _StepHandler(runner, seq=1, attempt=1, fault=None, step_sleep=0.0)  # type: ignore[arg-type]
    for step in range(1, 6):
        handler(info(step))
    assert [m[3] for m in runner.sent] == [b"jpeg"] * 4 + [None]  # none on the final step


def test_a_cancel_for_this_run_stops_it_and_one_for_another_does_not() -> None:
    runner = FakeRunner(progress_s=0, preview_s=3600)
    handler = _StepHandler(runner, seq=3, attempt=1, fault=None, step_sleep=0.0)  # type: ignore[arg-type]
    runner.cancel_token.value = 2  # an earlier run's cancel, arriving late
    assert handler(info(1)) is False
    runner.cancel_token.value = 3
    assert handler(info(2)) is True
