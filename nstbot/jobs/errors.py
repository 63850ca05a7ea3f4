"""Why `submit` refuses a job: one class per reason, each message fit to show the user."""

from __future__ import annotations

from dataclasses import dataclass

from nstbot.config import ExecutorConfig
from nstbot.jobs import messages


class SubmitRefused(Exception):
    """The job was not queued; `str(exc)` (also `.message`) is short and fit for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class QueueFull(SubmitRefused):
    """The global queue length limit (`max_queue`) is reached."""


class UserQueueFull(SubmitRefused):
    """The user already has `per_user_queued` jobs waiting or running."""


class GuildQueueFull(SubmitRefused):
    """The server already has `per_guild_queued` jobs waiting or running."""


class WorkersUnavailable(SubmitRefused):
    """No worker process can start (missing weights, no GPU...); `.reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(messages.unavailable(reason))
        self.reason = reason


class SchedulerStopped(SubmitRefused):
    """The scheduler is not running (starting up or shutting down)."""

    def __init__(self) -> None:
        super().__init__("The bot is restarting; please try again in a minute.")


class StorageFailed(SubmitRefused):
    """The input images or the journal entry could not be written."""

    def __init__(self) -> None:
        super().__init__("The bot could not store your images right now; please try again later.")


@dataclass(frozen=True)
class QueueCounts:
    """Jobs now: waiting in total; in flight (waiting or running) of the submitting user and of
    their server. A member with one image painting and three waiting has four in flight."""

    waiting: int
    user: int
    guild: int


def check_limits(config: ExecutorConfig, counts: QueueCounts, guild_id: int | None) -> None:
    """Raise the matching SubmitRefused if one more job would break a limit (0 = none)."""
    if config.max_queue and counts.waiting >= config.max_queue:
        raise QueueFull("The queue is full right now; please try again in a few minutes.")
    if config.per_user_queued and counts.user >= config.per_user_queued:
        n = config.per_user_queued
        raise UserQueueFull(
            f"You already have {n} image{'s' if n != 1 else ''} waiting or being painted; "
            "wait for one to finish or cancel one."
        )
    if guild_id is not None and config.per_guild_queued and counts.guild >= config.per_guild_queued:
        raise GuildQueueFull(
            "This server has too many images waiting right now; please try again later."
        )


class JournalUnavailable(RuntimeError):
    """The scheduler cannot start: its data folder is full or the journal cannot be opened;
    `str(exc)` is one line for the operator."""
