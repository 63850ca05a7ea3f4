"""Timelapse frames on the worker: a FrameRecorder whose failures cost the frames, never the job.

It imports the engine (and so torch): worker processes only. `runtime` imports it inside a run.
"""

from __future__ import annotations

import logging
from typing import Any

from PIL import Image

from nstbot.engine.timelapse import FrameRecorder

log = logging.getLogger(__name__)


class GuardedRecorder(FrameRecorder):
    """A FrameRecorder that stops recording, with a log line, at its first error."""

    def __init__(self, *, every: int, max_side: int = 320, max_frames: int = 64) -> None:
        super().__init__(every=every, max_side=max_side, max_frames=max_frames)
        self.error: str | None = None
        """Why recording stopped (then `frames` is empty), or None."""

    def begin(self, output_size: tuple[int, int], total_steps: int) -> None:
        """Start a run (see FrameRecorder.begin)."""
        self._guarded(super().begin, output_size, total_steps)

    def due(self, step: int) -> bool:
        """Whether `step` makes a frame; never once recording has failed."""
        return bool(self.error is None and self._guarded(super().due, step))

    def add(self, image: Any, step: int) -> None:
        """Record the engine's image of `step`."""
        self._guarded(super().add, image, step)

    def add_picture(self, picture: Image.Image) -> None:
        """Record the start photo or the result."""
        self._guarded(super().add_picture, picture)

    @property
    def frames(self) -> list[Image.Image]:
        """The frames, or none once recording has failed (a timelapse with a gap would lie)."""
        if self.error is not None:
            return []
        try:
            return super().frames
        except Exception as exc:
            self._failed(exc)
            return []

    def _guarded(self, method: Any, *args: Any) -> Any:
        if self.error is not None:
            return None
        try:
            return method(*args)
        except Exception as exc:
            self._failed(exc)
            return None

    def _failed(self, exc: Exception) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        log.error("timelapse recording stopped, the job goes on without it: %s", self.error)
