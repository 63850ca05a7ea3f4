"""Timelapse frames in the job's folder: kept past the delivery for `timelapse.keep_hours`,
written by the one writer (a full disk costs the frames, never the job), and read back by
recovery whether they are there, gone or unreadable."""

from __future__ import annotations

import dataclasses
import errno
import os
import time
from pathlib import Path

from jobhelpers import ManualBackend, make_config, png, tiny_job

from nstbot.config import TimelapseConfig
from nstbot.jobs.journal.records import Records
from nstbot.jobs.journal.storage import TIMELAPSE_FILE, JobFiles
from nstbot.jobs.model import Finished, Started
from nstbot.jobs.scheduler import Scheduler

IMG, STYLE = png("red"), png("blue")
FRAMES = b"RIFF....WEBPpacked-frames"


class FramesDiskFull(JobFiles):
    """A disk with room for everything but the timelapse frames."""

    def write_file(self, path: Path, data: bytes) -> None:
        if path.name == TIMELAPSE_FILE:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        super().write_file(path, data)


def scheduler_for(tmp_path: Path, files: JobFiles | None = None, **timelapse: float) -> Scheduler:
    config = make_config(tmp_path)
    config = dataclasses.replace(config, timelapse=TimelapseConfig(**timelapse))
    records = Records(tmp_path, files=files) if files is not None else None
    return Scheduler(config, ManualBackend(), records=records)


async def finish(scheduler: Scheduler, frames: bytes | None = FRAMES) -> str:
    """Submit one job and play its worker finishing it with `frames`."""
    backend = scheduler._backend
    assert isinstance(backend, ManualBackend)
    handle = await scheduler.submit(tiny_job(), content=IMG, styles=[STYLE])
    backend.emit(handle.id, Started(device="cpu", attempt=1))
    backend.emit(handle.id, Finished(image=IMG, stats={}, timelapse=frames))
    assert isinstance(await handle.wait(), Finished)
    return handle.id


async def finish_undelivered(tmp_path: Path, **timelapse: float) -> str:
    """Finish one job with frames, then stop the scheduler before the bot delivers it."""
    scheduler = scheduler_for(tmp_path, **timelapse)
    await scheduler.start()
    try:
        return await finish(scheduler)
    finally:
        await scheduler.stop()


async def test_frames_outlive_the_delivery_and_go_after_keep_hours(tmp_path: Path) -> None:
    scheduler = scheduler_for(tmp_path, keep_hours=2.0)
    await scheduler.start()
    try:
        job_id = await finish(scheduler)
        assert await scheduler.timelapse(job_id) == FRAMES
        assert await scheduler.record_delivery(job_id, True, None)
        folder = tmp_path / "jobs" / job_id
        assert sorted(p.name for p in folder.iterdir()) == [TIMELAPSE_FILE]  # result gone
        assert await scheduler.timelapse(job_id) == FRAMES

        # Three hours later the sweep takes the frames and their folder.
        old = time.time() - 3 * 3600
        os.utime(folder / TIMELAPSE_FILE, (old, old))
        await scheduler._records.prune(72.0, timelapse_hours=scheduler.timelapse_hours)
        assert await scheduler.timelapse(job_id) is None
        assert not folder.exists()
    finally:
        await scheduler.stop()


async def test_a_job_without_frames_leaves_no_folder_once_delivered(tmp_path: Path) -> None:
    scheduler = scheduler_for(tmp_path)
    await scheduler.start()
    try:
        job_id = await finish(scheduler, frames=None)
        assert await scheduler.record_delivery(job_id, True, None)
        assert not (tmp_path / "jobs" / job_id).exists()
        assert await scheduler.timelapse(job_id) is None
    finally:
        await scheduler.stop()


async def test_old_frames_are_swept_at_start_but_an_undelivered_result_stays(
    tmp_path: Path,
) -> None:
    job_id = await finish_undelivered(tmp_path, keep_hours=1.0)
    frames = tmp_path / "jobs" / job_id / TIMELAPSE_FILE
    old = time.time() - 2 * 3600
    os.utime(frames, (old, old))

    again = scheduler_for(tmp_path, keep_hours=1.0)
    await again.start()
    try:
        (replayed,) = again.recovered()
        outcome = replayed.outcome
        assert isinstance(outcome, Finished) and outcome.image == IMG
        assert outcome.timelapse is None  # swept before recovery read the folder
        assert not frames.exists()
    finally:
        await again.stop()


async def test_recovery_hands_over_the_frames_with_the_result(tmp_path: Path) -> None:
    job_id = await finish_undelivered(tmp_path)
    again = scheduler_for(tmp_path)
    await again.start()
    try:
        (replayed,) = again.recovered()
        assert replayed.id == job_id and isinstance(replayed.outcome, Finished)
        assert replayed.outcome.timelapse == FRAMES
    finally:
        await again.stop()


async def test_unreadable_frames_do_not_stop_recovery_of_the_result(tmp_path: Path) -> None:
    job_id = await finish_undelivered(tmp_path)
    frames = tmp_path / "jobs" / job_id / TIMELAPSE_FILE
    frames.unlink()
    frames.mkdir()  # reading it raises IsADirectoryError, as an unreadable file would
    again = scheduler_for(tmp_path)
    await again.start()
    try:
        (replayed,) = again.recovered()
        outcome = replayed.outcome
        assert isinstance(outcome, Finished) and outcome.image == IMG
        assert outcome.timelapse is None
    finally:
        await again.stop()


async def test_a_full_disk_costs_the_frames_never_the_result(tmp_path: Path) -> None:
    scheduler = scheduler_for(tmp_path, files=FramesDiskFull(tmp_path / "jobs"))
    await scheduler.start()
    try:
        job_id = await finish(scheduler)
        assert await scheduler.timelapse(job_id) is None
        assert (tmp_path / "jobs" / job_id / "nstbot.png").is_file()
        assert not list((tmp_path / "jobs" / job_id).glob("*.tmp"))
    finally:
        await scheduler.stop()


def test_keep_hours_is_bounded_by_the_retention(tmp_path: Path) -> None:
    config = make_config(tmp_path, retention_hours=6.0)
    config = dataclasses.replace(config, timelapse=TimelapseConfig(keep_hours=24.0))
    assert Scheduler(config, ManualBackend()).timelapse_hours == 6.0
