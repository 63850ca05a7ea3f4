"""What to do at start with the jobs the journal remembers (runs on the journal thread)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from nstbot.jobs.journal import Journal, JournalRow
from nstbot.jobs.model import Failed, Finished, JobState
from nstbot.jobs.storage import JobFiles

log = logging.getLogger(__name__)

# A job that was running when the whole process died this many times is not tried again: it may
# be what kills the process.
MAX_RECOVERED_ATTEMPTS = 3

MSG_INPUTS_GONE = "Your job was lost while the bot restarted (its images are gone); please retry."
MSG_BAD_PARAMS = "Your job could not be resumed after the bot was updated; please resubmit."
MSG_POISON = "Your job stopped the bot repeatedly, so it was not tried again."
MSG_RESULT_GONE = "Your image was finished, but the file was lost while the bot restarted."


@dataclass
class RecoveryPlan:
    """Jobs to queue again, and jobs that ended (now or before) whose outcome is undelivered."""

    requeue: list[JournalRow] = field(default_factory=list)
    ended: list[tuple[JournalRow, Finished | Failed]] = field(default_factory=list)


def recover(journal: Journal, files: JobFiles) -> RecoveryPlan:
    """Sort the journal's unfinished and undelivered jobs, updating the journal to match."""
    plan = RecoveryPlan()
    for row in journal.active():
        problem = _problem(row)
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
            plan.ended.append((row, Failed(MSG_RESULT_GONE, "result file missing")))
            continue
        name = Path(row.result_path or "nstbot.png").name
        plan.ended.append((row, Finished(image=image, stats=row.stats or {}, filename=name)))
    return plan


def _problem(row: JournalRow) -> tuple[str, str] | None:
    if row.bad_params:
        return MSG_BAD_PARAMS, f"stored parameters invalid: {row.bad_params}"
    missing = [p for p in row.inputs if not Path(p).is_file()]
    if missing or not row.inputs:
        return MSG_INPUTS_GONE, f"input files missing: {', '.join(missing) or 'none recorded'}"
    if row.state is JobState.RUNNING and row.attempts >= MAX_RECOVERED_ATTEMPTS:
        return MSG_POISON, f"running at {row.attempts} restarts"
    return None
