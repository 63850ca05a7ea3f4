"""The SQLite journal and start-up recovery, on real SQLite files."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path

from jobhelpers import png, tiny_job

from nstbot.jobs.journal.journal import Journal
from nstbot.jobs.journal.recovery import recover
from nstbot.jobs.journal.storage import JobFiles
from nstbot.jobs.model import Failed, Finished, JobState
from nstbot.jobs.retry import MAX_RECOVERED_ATTEMPTS


def setup(tmp_path: Path) -> tuple[Journal, JobFiles]:
    return Journal(tmp_path / "journal.sqlite3"), JobFiles(tmp_path / "jobs")


def add(journal: Journal, files: JobFiles, **kw):
    job = tiny_job(**kw)
    inputs = files.write_inputs(job.id, png("red"), [png("blue"), png("green")])
    journal.add(job, inputs)
    return job, inputs


def test_records_everything_in_wal_mode(tmp_path: Path) -> None:
    journal, files = setup(tmp_path)
    job, inputs = add(journal, files, user_id=5, guild_id=6)
    with contextlib.closing(sqlite3.connect(tmp_path / "journal.sqlite3")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [Path(p).name for p in inputs] == ["content.img", "style0.img", "style1.img"]
    row = journal.get(job.id)
    assert row is not None and row.job == job and row.inputs == inputs
    assert row.state is JobState.QUEUED and row.attempts == 0 and row.created_at > 0
    journal.mark_running(job.id, 1, time.time())
    journal.mark_done(job.id, JobState.FAILED, finished_at=time.time(), error="bad", stats=None)
    assert journal.record_delivery(job.id, False, "channel gone")
    assert not journal.record_delivery("nope", True, None)
    journal.close()
    # Another connection (another process, after a restart) sees the same.
    db = sqlite3.connect(tmp_path / "journal.sqlite3")
    state, attempts, error, status, delivery = db.execute(
        "SELECT state, attempts, error, delivery_status, delivery FROM jobs"
    ).fetchone()
    assert (state, attempts, error, status) == ("failed", 1, "bad", "failed")
    assert json.loads(delivery) == {}


def test_recovery_requeues_and_fails_what_cannot_resume(tmp_path: Path) -> None:
    journal, files = setup(tmp_path)
    queued, _ = add(journal, files)
    running, _ = add(journal, files)
    journal.mark_running(running.id, 1, time.time())
    lost, lost_inputs = add(journal, files)
    Path(lost_inputs[1]).unlink()
    poison, _ = add(journal, files)
    journal.mark_running(poison.id, MAX_RECOVERED_ATTEMPTS, time.time())
    plan = recover(journal, files)
    assert [r.job.id for r in plan.requeue] == [queued.id, running.id]
    failed = {row.job.id: event for row, event in plan.ended}
    assert set(failed) == {lost.id, poison.id}
    assert all(isinstance(e, Failed) for e in failed.values())
    assert "images are gone" in failed[lost.id].message
    assert journal.get(running.id).state is JobState.QUEUED  # type: ignore[union-attr]
    assert journal.get(lost.id).state is JobState.FAILED  # type: ignore[union-attr]
    assert not files.folder(lost.id).exists()
    # Reported once: a second start does not repeat the failures.
    assert recover(journal, files).ended == []


def test_undelivered_results_are_replayed_once(tmp_path: Path) -> None:
    journal, files = setup(tmp_path)
    done, _ = add(journal, files)
    path = files.write_result(done.id, b"\x89PNG result")
    journal.mark_done(done.id, JobState.FINISHED, finished_at=time.time(), stats={"a": 1},
                      result_path=path)  # fmt: skip
    delivered, _ = add(journal, files)
    journal.mark_done(delivered.id, JobState.FINISHED, finished_at=time.time())
    journal.record_delivery(delivered.id, True, None)
    ((row, event),) = recover(journal, files).ended
    assert row.job.id == done.id
    assert isinstance(event, Finished) and event.image == b"\x89PNG result"
    assert event.stats == {"a": 1}
    assert recover(journal, files).ended == []


def test_prune_forgets_old_ended_jobs_and_their_files(tmp_path: Path) -> None:
    journal, files = setup(tmp_path)
    old, _ = add(journal, files)
    journal.mark_done(old.id, JobState.FINISHED, finished_at=time.time() - 7200)
    recent, _ = add(journal, files)
    journal.mark_done(recent.id, JobState.CANCELLED, finished_at=time.time())
    waiting, _ = add(journal, files)
    (files.root / "orphan").mkdir()
    assert journal.prune(time.time() - 3600, files.root) == [old.id]
    assert journal.known_ids() == {recent.id, waiting.id}
    assert not files.folder(old.id).exists() and files.folder(waiting.id).exists()
    assert files.remove_orphans(journal.known_ids(), older_than_s=0.0) == ["orphan"]


def test_stored_params_that_no_longer_validate_fail_recovery_cleanly(tmp_path: Path) -> None:
    journal, files = setup(tmp_path)
    job, _ = add(journal, files)
    db = sqlite3.connect(tmp_path / "journal.sqlite3")
    db.execute("UPDATE jobs SET params = ? WHERE id = ?", (json.dumps({"size": 1}), job.id))
    db.commit()
    plan = recover(journal, files)
    assert plan.requeue == [] and "updated" in plan.ended[0][1].message
