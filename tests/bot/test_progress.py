"""Progress text, throttling and the coalescing progress reporter."""

from __future__ import annotations

import asyncio

import pytest

from nstbot.bot.progress import (
    ProgressReporter,
    Throttle,
    format_duration,
    progress_bar,
    render_progress,
    render_queued,
)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "?"),
        (-1, "?"),
        (float("nan"), "?"),
        (0, "0s"),
        (44.6, "45s"),
        (65, "1m 05s"),
        (3599, "59m 59s"),
        (3600 * 2 + 60 * 3, "2h 03m"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_progress_bar_fills_with_fraction_and_clamps() -> None:
    assert progress_bar(0.0, 10) == "[░░░░░░░░░░]"
    assert progress_bar(0.35, 10) == "[███░░░░░░░]"
    assert progress_bar(1.0, 10) == "[██████████]"
    assert progress_bar(7.0, 4) == "[████]"
    assert progress_bar(-1.0, 4) == "[░░░░]"


def test_render_progress_has_bar_step_percent_and_eta() -> None:
    text = render_progress(30, 120, 75.0)
    assert "[█████░░░░░░░░░░░░░░░]" in text
    assert "25%" in text and "step 30/120" in text and "ETA 1m 15s" in text
    assert "ETA ?" in render_progress(1, 10, None)


def test_render_queued() -> None:
    assert "next in line" in render_queued(1)
    assert "position 4" in render_queued(4)


def test_throttle_with_a_fake_clock() -> None:
    now = [100.0]
    throttle = Throttle(3.0, clock=lambda: now[0])
    assert throttle.ready() and throttle.wait_time() == 0.0
    throttle.mark()
    assert not throttle.ready()
    now[0] += 1.0
    assert throttle.wait_time() == pytest.approx(2.0)
    now[0] += 2.0
    assert throttle.ready()


async def test_reporter_sends_first_state_then_only_the_latest() -> None:
    edits: list[tuple[str, bytes | None]] = []
    in_flight = asyncio.Event()
    gate = asyncio.Event()

    async def edit(content: str, preview: bytes | None) -> bool:
        edits.append((content, preview))
        in_flight.set()
        await gate.wait()
        return True

    reporter = ProgressReporter(edit, interval=0.01, preview_interval=100.0, job_id="j")
    reporter.update("one", b"p1")
    await in_flight.wait()
    for text in ("two", "three", "four"):
        reporter.update(text)
    gate.set()
    while len(edits) < 2:
        await asyncio.sleep(0.01)
    await reporter.close()
    # "two" and "three" were superseded while the first edit was in flight.
    assert [c for c, _ in edits] == ["one", "four"]
    # The first preview went out; the second edit falls inside the preview interval.
    assert edits[0][1] == b"p1" and edits[1][1] is None


async def test_reporter_stops_when_the_message_is_gone() -> None:
    calls = []

    async def edit(content: str, preview: bytes | None) -> bool:
        calls.append(content)
        return False

    reporter = ProgressReporter(edit, interval=0.0, preview_interval=0.0)
    reporter.update("a")
    while not calls:
        await asyncio.sleep(0.01)
    reporter.update("b")
    await asyncio.sleep(0.05)
    await reporter.close()
    assert calls == ["a"]


async def test_close_waits_for_an_edit_in_flight() -> None:
    finished = []
    started = asyncio.Event()

    async def edit(content: str, preview: bytes | None) -> bool:
        started.set()
        await asyncio.sleep(0.05)
        finished.append(content)
        return True

    reporter = ProgressReporter(edit, interval=0.0, preview_interval=0.0)
    reporter.update("x")
    await started.wait()
    await reporter.close()
    assert finished == ["x"]  # never cancelled mid-request: it lands before the final message
