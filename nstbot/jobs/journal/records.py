"""The journal and the job files behind one background thread, so the event loop never waits on
the disk and writes land in the order they were made."""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from nstbot.jobs.errors import JournalUnavailable
from nstbot.jobs.journal.journal import Journal
from nstbot.jobs.journal.recovery import RecoveryPlan, recover
from nstbot.jobs.journal.storage import FULL_BELOW_BYTES, JobFiles, is_disk_full
from nstbot.jobs.model import Cancelled, Failed, Finished, Job, final_state
from nstbot.jobs.retry import RetryPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")


class Records:
    """`<data_dir>/journal.sqlite3` and `<data_dir>/jobs/`, written from one thread in order."""

    def __init__(self, data_dir: str | Path, files: JobFiles | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.files = files if files is not None else JobFiles(self.data_dir / "jobs")
        self.journal: Journal | None = None
        self._io = ThreadPoolExecutor(1, thread_name_prefix="nstbot-journal")

    async def open(
        self,
        retention_hours: float,
        policy: RetryPolicy | None = None,
        *,
        timelapse_hours: float | None = None,
    ) -> RecoveryPlan:
        """Open the journal, prune old jobs, stray folders and timelapse frames older than
        `timelapse_hours`, and sort out unfinished jobs (by `policy`); JournalUnavailable (one
        line) when the data folder is full or unreadable."""
        try:
            return await self._call(self._open, retention_hours, policy, timelapse_hours)
        except (OSError, sqlite3.Error) as exc:
            raise JournalUnavailable(self._why(exc)) from exc

    def _open(
        self, retention_hours: float, policy: RetryPolicy | None, timelapse_hours: float | None
    ) -> RecoveryPlan:
        self.files.root.parent.mkdir(parents=True, exist_ok=True)
        if self.files.free_bytes() < FULL_BELOW_BYTES:
            raise OSError(28, "No space left on device")  # checked first: SQLite says "I/O error"
        self.journal = Journal(self.data_dir / "journal.sqlite3")
        # Nothing is being submitted yet, so any folder the journal does not know is debris.
        gone = self.journal.prune(time.time() - retention_hours * 3600, self.files.root)
        orphans = self.files.remove_orphans(self.journal.known_ids(), 0.0)
        if gone or orphans:
            log.info("pruned %d old jobs and %d stray folders", len(gone), len(orphans))
        self._sweep_timelapses(timelapse_hours)
        return recover(self.journal, self.files, policy)

    def _why(self, exc: BaseException) -> str:
        try:
            free = self.files.free_bytes()
        except OSError:
            free = None
        if is_disk_full(exc) or (free is not None and free < FULL_BELOW_BYTES):
            left = f"{free / 2**20:.1f} MiB free" if free is not None else "no space left"
            return (
                f"the data folder {self.data_dir} is full ({left}); free some space and start again"
            )
        return f"the journal in {self.data_dir} cannot be opened: {exc}"

    async def close(self) -> None:
        """Finish pending writes and close the journal."""
        if self.journal is not None:
            await self._call(self.journal.close)
            self.journal = None
        self._io.shutdown(wait=True)

    async def store(self, job: Job, content: bytes, styles: list[bytes]) -> list[str]:
        """Write the input images, then the journal entry; returns the input paths."""
        return await self._call(self._store, job, content, styles)

    def running(self, job_id: str, attempts: int, started_at: float) -> None:
        """The job went to a worker."""
        self._write(lambda j: j.mark_running(job_id, attempts, started_at))

    def requeued(self, job_id: str, attempts: int) -> None:
        """The job waits again (worker crash retry, or interrupted by shutdown)."""
        self._write(lambda j: j.mark_queued(job_id, attempts))

    def ended(
        self, job_id: str, inputs: list[str], event: Finished | Failed | Cancelled, at: float
    ) -> None:
        """The job ended: keep a result for (re-)delivery, drop the inputs."""
        self._write(lambda j: self._ended(j, job_id, inputs, event, at))

    def forget(self, job_id: str) -> None:
        """Drop a job that was journaled but never queued."""
        self._write(lambda j: self._ended(j, job_id, [], Cancelled("not queued"), time.time()))

    async def record_delivery(self, job_id: str, ok: bool, detail: str | None) -> bool:
        """Note the delivery; a delivered result's folder is deleted. False if unknown."""
        journal = self.journal
        if journal is None:
            return False

        def record() -> bool:
            found = journal.record_delivery(job_id, ok, detail)
            if ok and found:
                self.files.remove_delivered(job_id)
            return found

        return await self._call(record)

    async def prune(
        self,
        retention_hours: float,
        orphan_age_s: float = 3600.0,
        *,
        timelapse_hours: float | None = None,
    ) -> None:
        """Forget jobs that ended over `retention_hours` ago, with their files, and delete
        timelapse frames older than `timelapse_hours`."""
        journal = self.journal
        if journal is None:
            return
        before = time.time() - retention_hours * 3600

        def prune() -> None:
            gone = journal.prune(before, self.files.root)
            orphans = self.files.remove_orphans(journal.known_ids(), orphan_age_s)
            if gone or orphans:
                log.info("pruned %d old jobs and %d stray folders", len(gone), len(orphans))
            self._sweep_timelapses(timelapse_hours)

        await self._call(prune)

    async def read_timelapse(self, job_id: str) -> bytes | None:
        """A job's kept frames, None when not kept; OSError when the file cannot be read."""
        return await self._call(self.files.read_timelapse, job_id)

    # -- on the journal thread ---------------------------------------------------------------

    def _sweep_timelapses(self, hours: float | None) -> None:
        if hours is None:
            return
        gone = self.files.remove_timelapses(hours * 3600)
        if gone:
            log.info("removed the timelapse frames of %d jobs (kept %g h)", len(gone), hours)

    def _store(self, job: Job, content: bytes, styles: list[bytes]) -> list[str]:
        assert self.journal is not None
        inputs = self.files.write_inputs(job.id, content, styles)
        try:
            self.journal.add(job, inputs)
        except BaseException:
            self.files.remove(job.id)  # a refused submit leaves no folder behind
            raise
        return inputs

    def _ended(
        self,
        journal: Journal,
        job_id: str,
        inputs: list[str],
        event: Finished | Failed | Cancelled,
        at: float,
    ) -> None:
        result_path = None
        if isinstance(event, Finished):
            try:
                result_path = self.files.write_result(job_id, event.image, event.filename)
            except OSError as exc:
                # The user gets the image now all the same; the journal says it finished, with
                # no file to hand over again should the bot stop before delivering it.
                log.error("job %s: cannot keep its result file: %s", job_id, exc)
            if event.timelapse is not None:
                try:
                    self.files.write_timelapse(job_id, event.timelapse)
                except OSError as exc:
                    # The frames travel with this delivery all the same; later presses of the
                    # Timelapse button are told they are not kept.
                    log.error("job %s: cannot keep its timelapse frames: %s", job_id, exc)
            self.files.remove_files(inputs)
        else:
            self.files.remove(job_id)
        error = detail = None
        if isinstance(event, Failed):
            error, detail = event.message, event.detail
        # Should this write fail too (the journal's disk full), the row stays "running"; once a
        # delivery is recorded, recovery knows not to run it again.
        journal.mark_done(
            job_id,
            final_state(event),
            finished_at=at,
            error=error,
            error_detail=detail,
            stats=event.stats if isinstance(event, Finished) else None,
            result_path=result_path,
        )

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, functools.partial(fn, *args))

    def _write(self, fn: Callable[[Journal], Any]) -> None:
        # Fire and forget: the single thread keeps writes in order, failures are logged.
        journal = self.journal
        if journal is None:
            return
        future = self._io.submit(fn, journal)
        future.add_done_callback(_log_failure)


def _log_failure(future: Future[Any]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("journal write failed: %r", exc)
