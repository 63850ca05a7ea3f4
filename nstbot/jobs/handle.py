"""JobHandle: the caller's view of one job (live position, event stream, cancel)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from nstbot.jobs.model import (
    Cancelled,
    Event,
    Failed,
    Finished,
    Job,
    JobState,
    Progress,
    Queued,
    is_terminal,
)


class JobHandle:
    """One submitted job: `position`, `events()`, `cancel()`, `wait()`.

    Events are buffered until read, and a slow reader never slows a worker: consecutive Progress
    events collapse into the latest one (keeping the latest preview), and consecutive Queued
    events into the latest position, so the buffer stays a handful of events long.
    """

    def __init__(
        self, job: Job, canceller: Callable[[str, str], Awaitable[bool]] | None = None
    ) -> None:
        self.job = job
        self._canceller = canceller
        self._buffer: deque[Event] = deque()
        self._wakeup = asyncio.Event()
        self._state = JobState.QUEUED
        self._position = 0
        self._outcome: Finished | Failed | Cancelled | None = None
        self._closed = False
        self.recovered = False
        """True for handles re-created from the journal at start."""

    def __repr__(self) -> str:
        return f"<JobHandle {self.job.id} {self._state.value} position={self._position}>"

    @property
    def id(self) -> str:
        """The job's id."""
        return self.job.id

    @property
    def position(self) -> int:
        """1-based place in the queue; 0 once running or ended."""
        return self._position

    @property
    def state(self) -> JobState:
        """queued, running, finished, failed or cancelled."""
        return self._state

    @property
    def done(self) -> bool:
        """Whether the job has ended."""
        return self._outcome is not None

    @property
    def outcome(self) -> Finished | Failed | Cancelled | None:
        """The final event, once there is one."""
        return self._outcome

    @property
    def interrupted(self) -> bool:
        """True when the scheduler stopped before the job ended (it resumes on the next start)."""
        return self._closed and self._outcome is None

    async def events(self) -> AsyncIterator[Event]:
        """Queued / Started / Progress events, then exactly one final event.

        Meant for one reader; a reader arriving after the end still gets the final event. If the
        scheduler stops first, the iteration ends without a final event (see `interrupted`).
        """
        while True:
            if self._buffer:
                event = self._buffer.popleft()
                yield event
                if is_terminal(event):
                    return
            elif self._outcome is not None:
                yield self._outcome
                return
            elif self._closed:
                return
            else:
                self._wakeup.clear()
                await self._wakeup.wait()

    async def wait(self) -> Finished | Failed | Cancelled | None:
        """Wait for the final event (None if the scheduler stopped first); leaves events() be."""
        while self._outcome is None and not self._closed:
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._outcome

    async def cancel(self, reason: str = "cancelled by the user") -> bool:
        """Cancel the job: at once if queued, within one step if running; False if it had ended."""
        if self.done or self._canceller is None:
            return False
        return await self._canceller(self.job.id, reason)

    # -- used by the scheduler ---------------------------------------------------------------

    def _push(self, event: Event) -> None:
        if self._outcome is not None or self._closed:
            return
        last = self._buffer[-1] if self._buffer else None
        if isinstance(event, Progress) and isinstance(last, Progress):
            if event.preview is None and last.preview is not None:
                event = dataclasses.replace(event, preview=last.preview)
            self._buffer[-1] = event
        elif isinstance(event, Queued) and isinstance(last, Queued):
            self._buffer[-1] = event
        else:
            self._buffer.append(event)
        if isinstance(event, Finished | Failed | Cancelled):
            self._outcome = event
            self._position = 0
        self._wakeup.set()

    def _set(self, *, state: JobState | None = None, position: int | None = None) -> None:
        if state is not None:
            self._state = state
        if position is not None:
            self._position = position

    def _close(self) -> None:
        self._closed = True
        self._wakeup.set()
