"""Where a request came from (an interaction or a message) and how to answer it there."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

import discord

from nstbot.bot.delivery import (
    DEFAULT_UPLOAD_LIMIT,
    NO_MENTIONS,
    http_code,
    http_error_summary,
)

log = logging.getLogger(__name__)

REFUSAL_DELETE_AFTER_S = 60.0
# Discord error codes of an interaction that takes no response any more.
UNKNOWN_INTERACTION = 10062
ALREADY_ACKNOWLEDGED = 40060


class InteractionGone(Exception):
    """The interaction can no longer be answered (expired, or answered elsewhere)."""


async def tell_privately(interaction: discord.Interaction[Any], text: str) -> None:
    """An ephemeral answer, as the response or as a follow-up when one was already sent."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        else:
            await interaction.response.send_message(
                text, ephemeral=True, allowed_mentions=NO_MENTIONS
            )
    except discord.HTTPException as exc:
        log.info("interaction %s: could not answer: HTTP %s", interaction.id, exc.status)


class Origin(Protocol):
    """The surface a request arrived on."""

    kind: str
    user_id: int
    guild_id: int | None
    channel_id: int
    parent_channel_id: int | None
    permissions: discord.Permissions | None

    async def ack(self) -> None:
        """Acknowledge at once (Discord allows 3 seconds for interactions)."""

    async def refuse(self, text: str) -> None:
        """Tell only the requester why nothing will happen and what to do instead."""

    async def open_progress(self) -> int | None:
        """The id of the message that will show the job's progress."""

    def delivery_fields(self) -> dict[str, Any]:
        """The DeliveryInfo fields this origin knows."""


def _parent_id(channel: Any) -> int | None:
    return getattr(channel, "parent_id", None)


class InteractionOrigin:
    """A slash command, context-menu command or button press."""

    kind = "interaction"

    def __init__(self, interaction: discord.Interaction[Any], clock: Callable[[], float]) -> None:
        self.interaction = interaction
        self.clock = clock
        self.user_id = interaction.user.id
        self.guild_id = interaction.guild_id
        self.channel_id = interaction.channel_id or 0
        self.parent_channel_id = _parent_id(interaction.channel)
        self.permissions = interaction.permissions if interaction.guild_id else None
        self.arrived = clock()
        self._message_id: int | None = None

    async def ack(self) -> None:
        """Defer with 'thinking': the deferred message becomes the job's progress message.

        InteractionGone when Discord says the interaction is dead or already answered.
        """
        try:
            response = await self.interaction.response.defer(thinking=True)
        except discord.InteractionResponded:
            raise InteractionGone("interaction already answered") from None
        except discord.HTTPException as exc:
            if http_code(exc) not in (UNKNOWN_INTERACTION, ALREADY_ACKNOWLEDGED):
                raise
            raise InteractionGone(
                f"interaction {self.interaction.id} is gone on defer ({exc.status}, "
                f"code {http_code(exc)})"
            ) from None
        self._message_id = getattr(response, "message_id", None)

    async def refuse(self, text: str) -> None:
        """Ephemeral follow-up, then remove the public 'thinking' message."""
        try:
            await self.interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            # The refusal itself is logged already; a token that died meanwhile takes no answer.
            log.info(
                "interaction %s: refusal not delivered: %s",
                self.interaction.id,
                http_error_summary(exc),
            )
        with contextlib.suppress(discord.HTTPException):
            await self.interaction.delete_original_response()

    async def open_progress(self) -> int | None:
        """The deferred response's message id (asked for when the callback did not say)."""
        if self._message_id is None:
            message = await self.interaction.original_response()
            self._message_id = message.id
        return self._message_id

    def delivery_fields(self) -> dict[str, Any]:
        """Token, its birth time by the bot's clock, application and upload limit."""
        return {
            "kind": "interaction",
            "application_id": self.interaction.application_id,
            "interaction_token": self.interaction.token,
            "token_created": self.arrived,
            "upload_limit": self.interaction.filesize_limit or DEFAULT_UPLOAD_LIMIT,
        }


class MessageOrigin:
    """A prefix command or a mention of the bot."""

    kind = "message"

    def __init__(self, message: discord.Message) -> None:
        self.message = message
        self.user_id = message.author.id
        self.guild_id = message.guild.id if message.guild else None
        self.channel_id = message.channel.id
        self.parent_channel_id = _parent_id(message.channel)
        author = message.author
        channel = message.channel
        self.permissions = (
            channel.permissions_for(author)  # type: ignore[union-attr,arg-type]
            if isinstance(author, discord.Member) and hasattr(channel, "permissions_for")
            else None
        )
        self._progress: discord.Message | None = None

    async def ack(self) -> None:
        """Nothing to do: messages have no deadline."""

    async def refuse(self, text: str) -> None:
        """Messages cannot be ephemeral: a reply that deletes itself, and no progress message."""
        if self._progress is not None:
            with contextlib.suppress(discord.HTTPException):
                await self._progress.delete()
        try:
            await self.message.reply(
                text,
                mention_author=False,
                allowed_mentions=NO_MENTIONS,
                delete_after=REFUSAL_DELETE_AFTER_S,
            )
        except discord.HTTPException as exc:
            # E.g. the request was deleted meanwhile: the refusal is logged, nothing to answer.
            log.info(
                "message %s: refusal not delivered: %s", self.message.id, http_error_summary(exc)
            )

    async def open_progress(self) -> int | None:
        """Reply to the request; that reply is edited as the job goes."""
        self._progress = await self.message.reply(
            "⏳ Queued…", mention_author=False, allowed_mentions=NO_MENTIONS
        )
        return self._progress.id

    def delivery_fields(self) -> dict[str, Any]:
        """The server's upload limit (messages carry no interaction token)."""
        guild = self.message.guild
        limit = guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT
        return {"kind": "message", "upload_limit": limit}


def permission_label(name: str) -> str:
    """A permission's name as Discord's client shows it (manage_guild: Manage Server)."""
    return name.replace("guild", "server").replace("_", " ").title()


async def tell_without_channel(message: discord.Message, missing: list[str]) -> None:
    """The bot may not answer in a request's channel: tell the member by DM, else react."""
    needed = ", ".join(permission_label(p) for p in missing)
    text = (
        f"I can't answer in <#{message.channel.id}> (I lack {needed} there), so I did not "
        "start your request. Ask a server admin, or use /stylize."
    )
    how = "DM"
    try:
        await message.author.send(text)
    except discord.HTTPException:
        how = "reaction"
        try:
            await message.add_reaction(NO_ENTRY)
        except discord.HTTPException:
            how = "nothing (DMs closed, reactions refused)"
    log.info(
        "request by user %s in channel %s not started: bot lacks %s; told by %s",
        message.author.id,
        message.channel.id,
        ", ".join(missing),
        how,
    )


NO_ENTRY = "\N{NO ENTRY SIGN}"
