"""The SQLite journal: every job is written down before it is queued, so a restart loses nothing.

Synchronous and thread-safe (one connection behind a lock); the scheduler calls it from a single
background thread so the event loop never waits on the disk.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nstbot.jobs.model import Job, JobState
from nstbot.params import ParamsError, TransferParams

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    user_id         INTEGER NOT NULL,
    guild_id        INTEGER,
    channel_id      INTEGER,
    delivery        TEXT NOT NULL,
    params          TEXT NOT NULL,
    inputs          TEXT NOT NULL,
    state           TEXT NOT NULL,
    created_at      REAL NOT NULL,
    started_at      REAL,
    finished_at     REAL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    error_detail    TEXT,
    stats           TEXT,
    result_path     TEXT,
    delivery_status TEXT,
    delivery_detail TEXT,
    delivered_at    REAL,
    replays         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
"""

_ACTIVE = (JobState.QUEUED.value, JobState.RUNNING.value)


@dataclass(frozen=True)
class JournalRow:
    """One job as the journal remembers it."""

    job: Job
    state: JobState
    inputs: list[str]
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None
    error_detail: str | None
    stats: dict[str, Any] | None
    result_path: str | None
    delivery_status: str | None
    delivery_detail: str | None
    bad_params: str | None = None
    """Set when the stored parameters no longer validate (e.g. after an upgrade)."""


class Journal:
    """Jobs and their states in `<data_dir>/journal.sqlite3`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        # WAL: readers never block the writer; NORMAL sync is durable across process crashes,
        # which is the failure this journal exists for (power loss may drop the last commit).
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, tuple(args))

    def add(self, job: Job, inputs: list[str]) -> None:
        """Record a new job as queued."""
        self._exec(
            "INSERT INTO jobs (id, user_id, guild_id, channel_id, delivery, params, inputs, state,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job.id,
                job.user_id,
                job.guild_id,
                job.channel_id,
                json.dumps(job.delivery),
                json.dumps(job.params.to_dict()),
                json.dumps(inputs),
                JobState.QUEUED.value,
                job.created_at or time.time(),
            ),
        )

    def mark_running(self, job_id: str, attempts: int, started_at: float) -> None:
        """The job was handed to a worker (attempt number `attempts`)."""
        self._exec(
            "UPDATE jobs SET state = ?, attempts = ?, started_at = ? WHERE id = ?",
            (JobState.RUNNING.value, attempts, started_at, job_id),
        )

    def mark_queued(self, job_id: str, attempts: int) -> None:
        """The job waits again (retry after a crash, or interrupted by shutdown)."""
        self._exec(
            "UPDATE jobs SET state = ?, attempts = ?, started_at = NULL WHERE id = ?",
            (JobState.QUEUED.value, attempts, job_id),
        )

    def mark_done(
        self,
        job_id: str,
        state: JobState,
        *,
        finished_at: float,
        error: str | None = None,
        error_detail: str | None = None,
        stats: dict[str, Any] | None = None,
        result_path: str | None = None,
    ) -> None:
        """The job ended: finished, failed or cancelled."""
        self._exec(
            "UPDATE jobs SET state = ?, finished_at = ?, error = ?, error_detail = ?, stats = ?,"
            " result_path = ? WHERE id = ?",
            (
                state.value,
                finished_at,
                error,
                error_detail,
                json.dumps(stats) if stats is not None else None,
                result_path,
                job_id,
            ),
        )

    def record_delivery(self, job_id: str, ok: bool, detail: str | None) -> bool:
        """Note whether the result reached the user; False if the job is unknown."""
        cur = self._exec(
            "UPDATE jobs SET delivery_status = ?, delivery_detail = ?, delivered_at = ?"
            " WHERE id = ?",
            ("ok" if ok else "failed", detail, time.time(), job_id),
        )
        return cur.rowcount > 0

    def get(self, job_id: str) -> JournalRow | None:
        """One job, or None."""
        row = self._exec("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row(row) if row else None

    def active(self) -> list[JournalRow]:
        """Jobs that were queued or running, oldest first."""
        rows = self._exec(
            "SELECT * FROM jobs WHERE state IN (?, ?) ORDER BY seq", _ACTIVE
        ).fetchall()
        return [_row(r) for r in rows]

    def undelivered(self) -> list[JournalRow]:
        """Finished or failed jobs with no delivery recorded that were never replayed."""
        rows = self._exec(
            "SELECT * FROM jobs WHERE state IN (?, ?) AND delivery_status IS NULL AND replays = 0"
            " ORDER BY seq",
            (JobState.FINISHED.value, JobState.FAILED.value),
        ).fetchall()
        return [_row(r) for r in rows]

    def mark_replayed(self, job_id: str) -> None:
        """The job's outcome was handed to the caller once more after a restart."""
        self._exec("UPDATE jobs SET replays = replays + 1 WHERE id = ?", (job_id,))

    def prune(self, before: float, jobs_dir: Path | None = None) -> list[str]:
        """Forget jobs that ended before `before` and delete their folders; returns their ids."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM jobs WHERE state NOT IN (?, ?) AND finished_at < ?",
                (*_ACTIVE, before),
            ).fetchall()
            ids = [r["id"] for r in rows]
            self._db.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in ids])
        if jobs_dir is not None:
            for job_id in ids:
                shutil.rmtree(jobs_dir / job_id, ignore_errors=True)
        return ids

    def known_ids(self) -> set[str]:
        """Every job id in the journal."""
        return {r["id"] for r in self._exec("SELECT id FROM jobs").fetchall()}


def _row(row: sqlite3.Row) -> JournalRow:
    bad_params = None
    try:
        params = TransferParams.from_dict(json.loads(row["params"]))
    except (ParamsError, ValueError) as exc:
        params, bad_params = TransferParams(), str(exc)
    job = Job(
        id=row["id"],
        user_id=row["user_id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        params=params,
        delivery=json.loads(row["delivery"]),
        created_at=row["created_at"],
    )
    return JournalRow(
        job=job,
        state=JobState(row["state"]),
        inputs=json.loads(row["inputs"]),
        attempts=row["attempts"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        error=row["error"],
        error_detail=row["error_detail"],
        stats=json.loads(row["stats"]) if row["stats"] else None,
        result_path=row["result_path"],
        delivery_status=row["delivery_status"],
        delivery_detail=row["delivery_detail"],
        bad_params=bad_params,
    )
