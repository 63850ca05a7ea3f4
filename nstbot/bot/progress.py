"""Progress message text and the throttled editor that keeps one message per job up to date."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

BAR_WIDTH = 20


def format_duration(seconds: float | None) -> str:
    """Short human duration: 45s, 3m 05s, 1h 02m; '?' when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A text bar like `[██████░░░░]` for a fraction in [0, 1]."""
    fraction = min(1.0, max(0.0, fraction))
    filled = int(fraction * width + 1e-9)
    return "[" + "█" * filled + "░" * (width - filled) + "]"


def render_queued(position: int) -> str:
    """Text for a job waiting in the queue."""
    if position <= 1:
        return "⏳ Queued: next in line."
    return f"⏳ Queued: position {position} in the queue."


def render_progress(step: int, total: int, eta: float | None) -> str:
    """Text for a running job: bar, step, percentage and ETA."""
    fraction = step / total if total else 0.0
    return (
        f"🎨 Painting… {progress_bar(fraction)} {fraction * 100:.0f}%\n"
        f"step {step}/{total} · ETA {format_duration(eta)}"
    )


class Throttle:
    """Allows an action at most once per `interval` seconds of `clock` time."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: float | None = None

    def wait_time(self) -> float:
        """Seconds until the next action is allowed (0 when allowed now)."""
        if self._last is None:
            return 0.0
        return max(0.0, self._last + self.interval - self._clock())

    def ready(self) -> bool:
        """Whether an action is allowed now."""
        return self.wait_time() == 0.0

    def mark(self) -> None:
        """Record that the action happened now."""
        self._last = self._clock()


@dataclass
class _Pending:
    content: str
    preview: bytes | None


EditFn = Callable[[str, bytes | None], Awaitable[bool]]


class ProgressReporter:
    """Coalesces progress updates and edits the message at a throttled rate.

    `edit(content, preview)` performs one edit and returns False when the message can no longer be
    edited (then the reporter stops trying). Only the newest state is ever sent.
    """

    def __init__(
        self,
        edit: EditFn,
        *,
        interval: float,
        preview_interval: float,
        job_id: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._edit = edit
        self._throttle = Throttle(interval, clock)
        self._preview_throttle = Throttle(preview_interval, clock)
        self._job_id = job_id
        self._pending: _Pending | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._dead = False
        self._editing = False
        self.edits = 0

    def update(self, content: str, preview: bytes | None = None) -> None:
        """Queue the newest state; a preview sticks until a later one replaces it."""
        if self._dead:
            return
        if preview is None and self._pending is not None:
            preview = self._pending.preview
        self._pending = _Pending(content, preview)
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"progress-{self._job_id}")

    async def _run(self) -> None:
        while not self._dead:
            await self._wake.wait()
            delay = self._throttle.wait_time()
            if delay:
                await asyncio.sleep(delay)
            self._wake.clear()
            pending, self._pending = self._pending, None
            if pending is None:
                continue
            preview = pending.preview
            if preview is not None and self._preview_throttle.ready():
                self._preview_throttle.mark()
            else:
                preview = None
            self._throttle.mark()
            self._editing = True
            try:
                ok = await self._edit(pending.content, preview)
            except Exception:
                log.exception("job %s: progress edit failed", self._job_id)
                ok = True
            finally:
                self._editing = False
            self.edits += 1
            if not ok:
                self._dead = True

    async def close(self) -> None:
        """Stop editing; a pending update is dropped (the final message replaces it)."""
        self._dead = True
        task, self._task = self._task, None
        if task is None:
            return
        # An edit already on the wire must land before the final message, never after it.
        if not self._editing:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
