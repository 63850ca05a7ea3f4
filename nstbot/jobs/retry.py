"""The one retry policy: how often a job runs again after its worker (or the bot) died under it.

The scheduler owns it and counts the attempts (one per run, journalled); the journal's recovery
reads the same policy at start; the backends only report that a worker was lost.
"""

from __future__ import annotations

from dataclasses import dataclass

from nstbot.config import Config
from nstbot.jobs import messages
from nstbot.jobs.model import Failed

# A job that was running when the whole process died this many times is not tried again: it may
# be what kills the process.
MAX_RECOVERED_ATTEMPTS = 3


@dataclass(frozen=True)
class RetryPolicy:
    """Limits on runs of one job: after lost workers, and across bot restarts."""

    max_runs: int = 2
    """Runs of one job whose worker died, the first included."""
    max_recovered: int = MAX_RECOVERED_ATTEMPTS
    """Attempts after which a job found running in the journal at start is not resumed."""

    @classmethod
    def from_config(cls, config: Config) -> RetryPolicy:
        """`celery.max_attempts` on Celery; locally one retry unless `retry_crashed` is off."""
        if config.executor.backend == "celery":
            return cls(max_runs=config.celery.max_attempts)
        return cls(max_runs=2 if config.executor.retry_crashed else 1)

    def retries_lost(self, attempts: int) -> bool:
        """Whether a job whose worker died during attempt `attempts` runs again."""
        return attempts < self.max_runs

    def resumes(self, attempts: int) -> bool:
        """Whether a job found running at start, at `attempts`, is queued again."""
        return attempts < self.max_recovered

    def gave_up(self, attempts: int, detail: str | None) -> Failed:
        """The failure of a job whose worker died and that is not run again."""
        message = messages.CRASHED if attempts <= 1 else messages.stopped_repeatedly(attempts)
        return Failed(message, detail)
