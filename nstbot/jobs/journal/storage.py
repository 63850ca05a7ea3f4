"""Job files on disk: `<data_dir>/jobs/<id>/content.img, style0.img, ... result.png` and
`timelapse.frames`.

Inputs live until the job ends; a result lives until its delivery is recorded (so a restart can
deliver it again) or the retention period passes; timelapse frames live on after the delivery,
until `timelapse.keep_hours` pass (their file's age) or the retention period does. Synchronous:
call from a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import time
from pathlib import Path

FULL_BELOW_BYTES = 8 << 20
"""A data folder with less free space than this reads as full."""
TIMELAPSE_FILE = "timelapse.frames"
"""A job's packed frames (`images.animation.pack_frames`), in its folder."""


class JobFiles:
    """The folder of every job's files."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def folder(self, job_id: str) -> Path:
        """The folder of one job."""
        if not job_id or "/" in job_id or job_id.startswith("."):
            raise ValueError(f"bad job id {job_id!r}")
        return self.root / job_id

    def write_inputs(self, job_id: str, content: bytes, styles: list[bytes]) -> list[str]:
        """Store the input images; returns their paths, content first."""
        folder = self.folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / "content.img"] + [folder / f"style{i}.img" for i in range(len(styles))]
        try:
            for path, data in zip(paths, [content, *styles], strict=True):
                self.write_file(path, data)
        except BaseException:
            # A refused submit leaves nothing behind (a full disk must not fill up with folders).
            self.remove(job_id)
            raise
        return [str(p) for p in paths]

    def write_result(self, job_id: str, data: bytes, name: str = "result.png") -> str:
        """Store a finished job's image; returns its path."""
        folder = self.folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        self.write_file(path, data)
        return str(path)

    def write_timelapse(self, job_id: str, data: bytes) -> str:
        """Store a finished job's packed frames; returns their path."""
        return self.write_result(job_id, data, TIMELAPSE_FILE)

    def timelapse_path(self, job_id: str) -> Path:
        """Where a job's frames are kept (whether or not they are)."""
        return self.folder(job_id) / TIMELAPSE_FILE

    def read_timelapse(self, job_id: str) -> bytes | None:
        """A job's packed frames, or None when they are not kept (OSError when unreadable)."""
        try:
            return self.timelapse_path(job_id).read_bytes()
        except FileNotFoundError:
            return None

    def write_file(self, path: Path, data: bytes) -> None:
        """Write one file whole or not at all (the one place job files are written)."""
        # Write then rename, so a crash never leaves a half-written image under the final name.
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def free_bytes(self) -> int:
        """Free space where the job files live."""
        where = self.root if self.root.exists() else self.root.parent
        return shutil.disk_usage(where).free

    @staticmethod
    def remove_files(paths: list[str]) -> None:
        """Delete some files, ignoring those already gone."""
        for path in paths:
            Path(path).unlink(missing_ok=True)

    def remove(self, job_id: str) -> None:
        """Delete a job's folder."""
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def remove_delivered(self, job_id: str) -> None:
        """Delete a delivered job's files but its timelapse frames (the folder, when none)."""
        folder = self.folder(job_id)
        if not (folder / TIMELAPSE_FILE).is_file():
            self.remove(job_id)
            return
        for entry in folder.iterdir():
            if entry.name == TIMELAPSE_FILE:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def remove_timelapses(self, older_than_s: float) -> list[str]:
        """Delete frames kept longer than `older_than_s` (and the folders they were alone in);
        returns the ids of the jobs whose frames went."""
        if not self.root.is_dir():
            return []
        removed = []
        cutoff = time.time() - older_than_s
        for path in self.root.glob(f"*/{TIMELAPSE_FILE}"):
            try:
                if path.stat().st_mtime >= cutoff:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue
            removed.append(path.parent.name)
            with contextlib.suppress(OSError):  # not empty: the result still waits for delivery
                path.parent.rmdir()
        return removed

    def remove_orphans(self, known: set[str], older_than_s: float) -> list[str]:
        """Delete folders of jobs the journal does not know, if untouched for a while."""
        if not self.root.is_dir():
            return []
        removed = []
        cutoff = time.time() - older_than_s
        for entry in self.root.iterdir():
            # The age check keeps a folder being written by a submit that has not reached the
            # journal yet.
            if entry.is_dir() and entry.name not in known and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
        return removed


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error is the disk running out of space (OSError ENOSPC, SQLite's "full")."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)
