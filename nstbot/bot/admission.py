"""Admission: the one gate every request passes, whatever surface it arrived on.

Slash command, message command, `!stylize` (also in a reply), a mention and "Run again" all call
`Admission.admit()`: the channel allow-list, the member's queue limit and the cooldown are checked
and *taken* in one synchronous step, so a burst of simultaneous requests cannot all pass before any
of them counts. The returned `Ticket` is settled once the job is submitted (the cooldown stays, the
queue slot passes to the scheduler's own count) or released when the request fails on the way (both
given back). The cooldown is discord.py's `DynamicCooldownMapping`; the queue slot is a small
counter because the library's `max_concurrency` only holds for the length of a command call, not
for a job that outlives it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from nstbot.bot.origin import tell_privately
from nstbot.bot.progress import format_duration
from nstbot.bot.settings import SettingsStore

log = logging.getLogger(__name__)

TICKET_KEY = "nstbot.admission"
"""Where an interaction's admission check leaves its Ticket (`Interaction.extras`)."""


class RequestRefused(app_commands.CheckFailure, commands.CheckFailure):
    """A request turned away at admission; `message` is short and fit for the requester.

    It is both an app-command and a prefix-command check failure, so that the tree's error handler
    and `on_command_error` translate the same refusal the same way.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ChannelNotAllowed(RequestRefused):
    """The server accepts requests only in some channels."""


class CoolingDown(RequestRefused):
    """The member asked too recently; `retry_after` seconds are left."""

    def __init__(self, retry_after: float) -> None:
        wait = format_duration(retry_after)
        super().__init__(f"Slow down a little: you can ask again in {wait}.")
        self.retry_after = retry_after


class MemberQueueFull(RequestRefused):
    """The member already has as many jobs in progress here as the server allows."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"You already have {limit} image(s) in progress here; "
            "wait for one to finish or cancel one."
        )
        self.limit = limit


class NotStarted(RequestRefused):
    """The job queue is not up yet."""

    def __init__(self) -> None:
        super().__init__("I'm still starting up; try again in a minute.")


@dataclass(frozen=True)
class Requester:
    """Who asks, and where: all admission needs of a request."""

    user_id: int
    guild_id: int | None
    channel_id: int
    parent_channel_id: int | None = None

    @classmethod
    def of_interaction(cls, interaction: discord.Interaction[Any]) -> Requester:
        """From a slash command, message command or button press."""
        return cls(
            interaction.user.id,
            interaction.guild_id,
            interaction.channel_id or 0,
            getattr(interaction.channel, "parent_id", None),
        )

    @classmethod
    def of_message(cls, message: discord.Message) -> Requester:
        """From a prefix command or a mention."""
        guild_id = message.guild.id if message.guild else None
        parent = getattr(message.channel, "parent_id", None)
        return cls(message.author.id, guild_id, message.channel.id, parent)


class Ticket:
    """One admitted request's hold on its member's cooldown and queue slot."""

    def __init__(
        self, admission: Admission, who: Requester, cooldown: app_commands.Cooldown | None
    ) -> None:
        self._admission = admission
        self.who = who
        self._cooldown = cooldown
        self._open = True

    def settle(self) -> None:
        """The job was submitted: the cooldown runs, the scheduler now counts the job."""
        if self._open:
            self._open = False
            self._admission._free_slot(self.who)

    def release(self) -> None:
        """The request failed before a job existed: give the cooldown and the slot back."""
        if self._open:
            self._open = False
            self._admission._free_slot(self.who)
            if self._cooldown is not None:
                # Rate 1: this request took the only token, so a reset restores exactly that.
                self._cooldown.reset()


class Admission:
    """Channel allow-list, member queue limit and cooldown, read from the server's settings."""

    def __init__(
        self,
        settings: SettingsStore,
        active_jobs: Callable[[int | None, int], int] | None,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.active_jobs = active_jobs
        """Jobs of (guild, user) waiting or running in the scheduler; None until it has started."""
        self.clock = clock
        self.cooldowns: commands.DynamicCooldownMapping[Requester] = (
            commands.DynamicCooldownMapping(self._cooldown_for, self._cooldown_key)
        )
        self._held: Counter[tuple[int | None, int]] = Counter()

    def _cooldown_for(self, who: Requester) -> app_commands.Cooldown | None:
        seconds = self.settings.get(who.guild_id).cooldown_s
        return app_commands.Cooldown(1, seconds) if seconds > 0 else None

    def _cooldown_key(self, who: Requester) -> tuple[int | None, int, float]:
        # The length is part of the key: a changed setting applies from the next request on.
        return (who.guild_id, who.user_id, self.settings.get(who.guild_id).cooldown_s)

    def check_channel(self, who: Requester) -> None:
        """ChannelNotAllowed when the server accepts requests only elsewhere."""
        settings = self.settings.get(who.guild_id)
        if not settings.allows_channel(who.channel_id, who.parent_channel_id):
            where = ", ".join(f"<#{c}>" for c in settings.allowed_channels)
            raise ChannelNotAllowed(f"I don't paint in this channel here; try {where}.")

    def admit(self, who: Requester) -> Ticket:
        """Check and take everything at once (no await inside); a RequestRefused subclass if not."""
        if self.active_jobs is None:
            raise NotStarted()
        self.check_channel(who)
        limit = self.settings.get(who.guild_id).per_user_queue
        member = (who.guild_id, who.user_id)
        if limit and self.active_jobs(*member) + self._held[member] >= limit:
            raise MemberQueueFull(limit)
        now = self.clock()
        bucket = self.cooldowns.get_bucket(who, now)
        if bucket is not None:
            retry_after = bucket.update_rate_limit(now)
            if retry_after:
                raise CoolingDown(retry_after)
        self._held[member] += 1
        return Ticket(self, who, bucket)

    def _free_slot(self, who: Requester) -> None:
        member = (who.guild_id, who.user_id)
        self._held[member] -= 1
        if self._held[member] <= 0:
            del self._held[member]


# --- the same admission as discord.py checks ------------------------------------------------


def _admission(client: Any) -> Admission:
    return client.admission  # type: ignore[no-any-return]


async def channel_allowed(interaction: discord.Interaction[Any]) -> bool:
    """App-command check: the server's channel allow-list."""
    _admission(interaction.client).check_channel(Requester.of_interaction(interaction))
    return True


async def admitted(interaction: discord.Interaction[Any]) -> bool:
    """App-command check: admit the request; its Ticket waits in `interaction.extras`."""
    ticket = _admission(interaction.client).admit(Requester.of_interaction(interaction))
    interaction.extras[TICKET_KEY] = ticket
    return True


def take_ticket(interaction: discord.Interaction[Any]) -> Ticket | None:
    """The Ticket the admission check left on an interaction (only once)."""
    ticket = interaction.extras.pop(TICKET_KEY, None)
    return ticket if isinstance(ticket, Ticket) else None


def release_ticket(interaction: discord.Interaction[Any]) -> None:
    """Give back what an admitted interaction held when its command did not run to the end."""
    ticket = take_ticket(interaction)
    if ticket is not None:
        ticket.release()


async def message_channel_allowed(ctx: commands.Context[Any]) -> bool:
    """Prefix-command check: the server's channel allow-list."""
    _admission(ctx.bot).check_channel(Requester.of_message(ctx.message))
    return True


def log_refusal(error: RequestRefused, who: Requester) -> None:
    """The operator's one log line for a refusal."""
    log.info(
        "user %s in guild %s channel %s refused (%s): %s",
        who.user_id,
        who.guild_id,
        who.channel_id,
        type(error).__name__,
        error.message,
    )


async def answer_refusal(interaction: discord.Interaction[Any], error: RequestRefused) -> None:
    """Log a refused interaction and tell only the requester why."""
    log_refusal(error, Requester.of_interaction(interaction))
    await tell_privately(interaction, error.message)
