"""What to do at start with the jobs the journal remembers (runs on the journal thread)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from nstbot.jobs import messages
from nstbot.jobs.journal.journal import Journal, JournalRow
from nstbot.jobs.journal.storage import JobFiles
from nstbot.jobs.model import Failed, Finished, JobState
from nstbot.jobs.retry import RetryPolicy

log = logging.getLogger(__name__)


@dataclass
class RecoveryPlan:
    """Jobs to queue again, and jobs that ended (now or before) whose outcome is undelivered."""

    requeue: list[JournalRow] = field(default_factory=list)
    ended: list[tuple[JournalRow, Finished | Failed]] = field(default_factory=list)


def recover(journal: Journal, files: JobFiles, policy: RetryPolicy | None = None) -> RecoveryPlan:
    """Sort the journal's unfinished and undelivered jobs, updating the journal to match."""
    policy = policy or RetryPolicy()
    plan = RecoveryPlan()
    for row in journal.active():
        if row.delivery_status == "ok":
            # Its end never reached the journal (disk full), but the user has the outcome: a
            # delivered job is never run again.
            log.warning("job %s was delivered but not marked ended; marking it now", row.job.id)
            journal.mark_done(row.job.id, JobState.FINISHED, finished_at=time.time())
            files.remove(row.job.id)
            continue
        problem = _problem(row, policy)
        if problem is None:
            journal.mark_queued(row.job.id, row.attempts)
            plan.requeue.append(row)
            continue
        message, detail = problem
        log.warning("job %s cannot be resumed: %s", row.job.id, detail)
        journal.mark_done(
            row.job.id, JobState.FAILED, finished_at=time.time(), error=message, error_detail=detail
        )
        journal.mark_replayed(row.job.id)
        files.remove(row.job.id)
        plan.ended.append((row, Failed(message, detail)))
    for row in journal.undelivered():
        journal.mark_replayed(row.job.id)
        if row.state is JobState.FAILED:
            plan.ended.append((row, Failed(row.error or "The job failed.", row.error_detail)))
            continue
        try:
            image = Path(row.result_path or "").read_bytes()
        except OSError:
            plan.ended.append((row, Failed(messages.RESULT_GONE, "result file missing")))
            continue
        name = Path(row.result_path or "nstbot.png").name
        finished = Finished(
            image=image, stats=row.stats or {}, filename=name, timelapse=_frames(files, row)
        )
        plan.ended.append((row, finished))
    return plan


def _frames(files: JobFiles, row: JournalRow) -> bytes | None:
    # Frames are a bonus: a result whose frames are gone or unreadable is delivered without.
    try:
        return files.read_timelapse(row.job.id)
    except OSError as exc:
        log.warning("job %s: its timelapse frames cannot be read: %s", row.job.id, exc)
        return None


def _problem(row: JournalRow, policy: RetryPolicy) -> tuple[str, str] | None:
    if row.bad_params:
        return messages.BAD_PARAMS, f"stored parameters invalid: {row.bad_params}"
    missing = [p for p in row.inputs if not Path(p).is_file()]
    if missing or not row.inputs:
        return messages.INPUTS_GONE, f"input files missing: {', '.join(missing) or 'none recorded'}"
    if row.state is JobState.RUNNING and not policy.resumes(row.attempts):
        return messages.stopped_repeatedly(row.attempts), f"running at {row.attempts} restarts"
    return None
