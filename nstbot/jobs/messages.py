"""Every message the job layer shows users about how a job ended, in one place.

Both backends and the journal's recovery say the same thing for the same outcome. Each message is
short and fit to show as it is; the matching `detail` (for logs) is the caller's business.
"""

from __future__ import annotations

CRASHED = "The worker painting your image stopped unexpectedly; please try again."
INPUTS_GONE = "Your job's images are gone (no longer stored); please submit it again."
RESULT_GONE = "Your image was finished, but the result was lost before it could be delivered."
BAD_PARAMS = "Your job could not be resumed after the bot was updated; please resubmit."
OUT_OF_MEMORY = (
    "Your image is too large for the GPU's memory, even at a smaller size; try a smaller size."
)
RUN_FAILED = "Something went wrong while painting your image."
VERSION_SKEW = (
    "The GPU worker runs a different version of nstbot and cannot read this job; "
    "the operator needs to update the bot and its workers to the same version."
)
"""A payload the worker cannot parse: another payload version or an unknown parameter."""


def stopped_repeatedly(times: int) -> str:
    """A job whose worker (or the bot) died under it `times` times is not tried again."""
    return (
        f"The worker painting your image stopped unexpectedly {times} times, "
        "so it was not tried again."
    )


def engine_failed(reason: str) -> str:
    """The engine refused or failed the run for a reason fit to show."""
    return f"Style transfer failed: {reason}"


def unavailable(reason: str) -> str:
    """No worker can run jobs now (every start failed, Redis unreachable...)."""
    return f"Style transfer is unavailable right now: {reason}"


def timed_out(limit_s: float) -> str:
    """The job ran longer than `executor.job_timeout_s`."""
    minutes = limit_s / 60
    limit = f"{minutes:g} minutes" if minutes >= 1 else f"{limit_s:g} seconds"
    return f"Your image took longer than the {limit} limit and was stopped."
