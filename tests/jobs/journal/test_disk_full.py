"""Fault 2: the disk fills up. The storage layer's one writer (`JobFiles.write_file`) and its
free-space figure are the seam: `FullDisk` fails them as a full disk does, deterministically.
What the journal says and what the user got never contradict each other."""

from __future__ import annotations

import errno
import sqlite3
import time
from pathlib import Path

import pytest
from jobhelpers import ManualBackend, make_config, png, tiny_job

from nstbot.jobs import messages
from nstbot.jobs.errors import JournalUnavailable, StorageFailed
from nstbot.jobs.journal.journal import Journal
from nstbot.jobs.journal.records import Records
from nstbot.jobs.journal.recovery import recover
from nstbot.jobs.journal.storage import JobFiles
from nstbot.jobs.model import Failed, Finished, JobState, Started
from nstbot.jobs.scheduler import Scheduler

IMG, STYLE = png("red"), png("blue")


class FullDisk(JobFiles):
    """Job files on a disk that fills up when told to."""

    full = False

    def write_file(self, path: Path, data: bytes) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        super().write_file(path, data)

    def free_bytes(self) -> int:
        return 0 if self.full else super().free_bytes()


def full_disk_scheduler(tmp_path: Path, backend=None) -> tuple[Scheduler, FullDisk]:
    config = make_config(tmp_path, heartbeat_timeout_s=8.0)
    files = FullDisk(tmp_path / "jobs")
    return Scheduler(config, backend, records=Records(tmp_path, files=files)), files


def journal_row(tmp_path: Path, job_id: str) -> sqlite3.Row:
    db = sqlite3.connect(tmp_path / "journal.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        db.close()


@pytest.mark.parametrize("delivered", [True, False])
async def test_a_result_that_cannot_be_stored_is_never_run_again(
    tmp_path: Path, delivered: bool
) -> None:
    scheduler, files = full_disk_scheduler(tmp_path)
    await scheduler.start()
    try:
        handle = await scheduler.submit(tiny_job(steps=3), content=IMG, styles=[STYLE])
        async for event in handle.events():
            if isinstance(event, Started):
                files.full = True  # the disk fills up while the job paints
                break
        outcome = await handle.wait()
        assert isinstance(outcome, Finished) and outcome.image.startswith(b"\x89PNG")
        if delivered:
            assert await scheduler.record_delivery(handle.id, True, None)
    finally:
        await scheduler.stop()
    row = journal_row(tmp_path, handle.id)
    assert row["state"] == JobState.FINISHED.value and row["result_path"] is None

    # After a restart (space back or not) the job is not painted again.
    backend = ManualBackend()
    again = Scheduler(make_config(tmp_path), backend=backend)
    await again.start()
    try:
        assert backend.dispatched == []
        if delivered:
            assert again.recovered() == []
        else:
            (replayed,) = again.recovered()  # never delivered: said plainly, not re-run
            assert isinstance(replayed.outcome, Failed)
            assert replayed.outcome.message == messages.RESULT_GONE
    finally:
        await again.stop()


async def test_a_submit_refused_for_a_full_disk_leaves_no_folder(tmp_path: Path) -> None:
    scheduler, files = full_disk_scheduler(tmp_path, ManualBackend())
    await scheduler.start()
    try:
        files.full = True
        job = tiny_job()
        with pytest.raises(StorageFailed):
            await scheduler.submit(job, content=IMG, styles=[STYLE])
        assert not (tmp_path / "jobs" / job.id).exists()
        assert journal_row(tmp_path, job.id) is None
    finally:
        await scheduler.stop()


async def test_starting_with_the_disk_full_says_so_in_one_line(tmp_path: Path) -> None:
    files = FullDisk(tmp_path / "jobs")
    files.full = True
    scheduler = Scheduler(
        make_config(tmp_path), backend=ManualBackend(), records=Records(tmp_path, files=files)
    )
    with pytest.raises(JournalUnavailable) as refused:
        await scheduler.start()
    text = str(refused.value)
    assert text.startswith(f"the data folder {tmp_path} is full") and "\n" not in text


def test_a_delivered_job_whose_end_was_never_journaled_is_not_run_again(tmp_path: Path) -> None:
    # The journal's own disk was full as the job ended: the row stayed "running", but the
    # delivery was recorded once space came back.
    journal, files = Journal(tmp_path / "journal.sqlite3"), JobFiles(tmp_path / "jobs")
    job = tiny_job()
    journal.add(job, files.write_inputs(job.id, IMG, [STYLE]))
    journal.mark_running(job.id, 1, time.time())
    journal.record_delivery(job.id, True, None)
    plan = recover(journal, files)
    assert plan.requeue == [] and plan.ended == []
    assert journal.get(job.id).state is JobState.FINISHED  # type: ignore[union-attr]
    assert not files.folder(job.id).exists()
    journal.close()
