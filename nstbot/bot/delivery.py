"""Where a job's messages go: the interaction's own message, else the channel, else a DM.

Everything needed to reach the user lives in `DeliveryInfo`, which travels in the Job's `delivery`
dict through the journal, so a job recovered after a restart is delivered exactly like a live one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

if TYPE_CHECKING:
    from discord.ext import commands

log = logging.getLogger(__name__)

# Discord error codes (https://discord.com/developers/docs/topics/opcodes-and-status-codes).
INVALID_WEBHOOK_TOKEN = 50027
UNKNOWN_WEBHOOK = 10015
ENTITY_TOO_LARGE = 40005

NO_MENTIONS = discord.AllowedMentions.none()
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
# Multipart framing and the JSON payload ride in the same request as the file.
UPLOAD_HEADROOM = 0.95
SHRINK_FACTOR = 0.6
MAX_SHRINKS = 4
MIN_UPLOAD_BYTES = 256
DEAD_TOKENS_KEPT = 10_000


@dataclass
class DeliveryInfo:
    """How to reach the requester of one job; stored as the Job's `delivery` dict."""

    kind: str
    """'interaction' (slash or context-menu command) or 'message' (prefix or mention)."""
    channel_id: int
    user_id: int
    guild_id: int | None = None
    application_id: int | None = None
    interaction_token: str | None = None
    token_created: float | None = None
    """Clock time the interaction arrived; its token lives 15 minutes from then."""
    message_id: int | None = None
    """The job's progress message."""
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    previews: bool = True
    """False once Discord refused a preview upload: progress goes on as text."""
    summary: str = ""
    """The parameters, as the result message shows them."""
    requested_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict for the journal."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeliveryInfo:
        """Parse `to_dict` output, ignoring unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Outcome:
    """What happened to one delivery: where it went, or why it failed."""

    ok: bool
    route: str
    detail: str | None = None


def http_code(exc: discord.HTTPException) -> int:
    """Discord's JSON error code of an HTTP error (0 when absent)."""
    return int(getattr(exc, "code", 0) or 0)


def token_dead(exc: discord.HTTPException) -> bool:
    """Whether an error means the interaction token can no longer be used."""
    return exc.status == 401 or http_code(exc) in (INVALID_WEBHOOK_TOKEN, UNKNOWN_WEBHOOK)


def too_large(exc: discord.HTTPException) -> bool:
    """Whether an error means the upload was too large."""
    return exc.status == 413 or http_code(exc) == ENTITY_TOO_LARGE


@dataclass
class Encoded:
    """What one encode under a byte budget made: the files of one message, and a note to add
    to its text (what had to be left out)."""

    files: list[tuple[bytes, str]]
    """(data, filename), together within the budget."""
    note: str = ""


Encoder = Callable[[int], Encoded]
"""Encode the result (and whatever travels with it) under a byte budget for all its files."""
View = discord.ui.View | None
Sender = Callable[[str, list[discord.File], View], Awaitable[None]]


class Deliverer:
    """Edits progress messages and delivers results, falling back channel → DM."""

    def __init__(
        self,
        bot: commands.Bot,
        *,
        clock: Callable[[], float] = time.time,
        token_lifetime_s: float = 900.0,
        token_margin_s: float = 60.0,
    ) -> None:
        self.bot = bot
        self.clock = clock
        self.token_lifetime_s = token_lifetime_s
        self.token_margin_s = token_margin_s
        self._dead_tokens: set[str] = set()

    def token_valid(self, info: DeliveryInfo) -> bool:
        """Whether the interaction token can still be used, by the clock and by past errors."""
        if info.kind != "interaction" or not info.interaction_token or info.token_created is None:
            return False
        if info.interaction_token in self._dead_tokens:
            return False
        deadline = info.token_created + self.token_lifetime_s - self.token_margin_s
        return self.clock() < deadline

    def _webhook(self, info: DeliveryInfo) -> discord.Webhook:
        assert info.application_id is not None and info.interaction_token is not None
        return discord.Webhook.partial(info.application_id, info.interaction_token, client=self.bot)

    def _channel_message(self, info: DeliveryInfo) -> discord.PartialMessage:
        assert info.message_id is not None
        channel = self.bot.get_partial_messageable(info.channel_id, guild_id=info.guild_id)
        return channel.get_partial_message(info.message_id)

    def _mark_dead(self, info: DeliveryInfo) -> None:
        if info.interaction_token:
            if len(self._dead_tokens) > DEAD_TOKENS_KEPT:
                # Every token dies within 15 minutes anyway; forgetting costs one failed request.
                self._dead_tokens.clear()
            self._dead_tokens.add(info.interaction_token)

    async def edit_progress(
        self,
        job_id: str,
        info: DeliveryInfo,
        content: str,
        preview: bytes | None,
        view: discord.ui.View | None,
    ) -> bool:
        """Edit the progress message; False once it cannot be edited any more."""
        if info.message_id is None:
            return False
        if not info.previews:
            preview = None
        if self.token_valid(info):
            try:
                await self._webhook(info).edit_message(
                    info.message_id, **_progress_edit(content, preview, view)
                )
                return True
            except discord.HTTPException as exc:
                if preview is not None and exc.status == 403:
                    return await self._without_previews(job_id, info, content, view, exc)
                if not token_dead(exc):
                    log.warning("job %s: progress edit failed: %s", job_id, http_error_summary(exc))
                    return exc.status != 404
                self._mark_dead(info)
                log.info("job %s: interaction token expired; editing via the channel", job_id)
        try:
            # Built anew: the failed attempt above has already read and closed its files.
            await self._channel_message(info).edit(**_progress_edit(content, preview, view))
            return True
        except discord.HTTPException as exc:
            if preview is not None and exc.status == 403:
                return await self._without_previews(job_id, info, content, view, exc)
            log.info(
                "job %s: progress message no longer editable: %s", job_id, http_error_summary(exc)
            )
            return False

    async def _without_previews(
        self,
        job_id: str,
        info: DeliveryInfo,
        content: str,
        view: discord.ui.View | None,
        exc: discord.HTTPException,
    ) -> bool:
        # The bot may post here but not attach files: keep the progress, drop the pictures.
        info.previews = False
        log.info(
            "job %s: preview refused (%s); progress goes on as text",
            job_id,
            http_error_summary(exc),
        )
        return await self.edit_progress(job_id, info, content, None, view)

    async def deliver(
        self,
        job_id: str,
        info: DeliveryInfo,
        content: str,
        *,
        encoder: Encoder | None = None,
        view: discord.ui.View | None = None,
    ) -> Outcome:
        """Deliver the final message (with the files `encoder` makes, when given)."""
        ping = f"<@{info.user_id}> {content}"
        errors: list[str] = []

        async def attempt(route: str, send: Sender, text: str) -> Outcome | None:
            try:
                await self._send_shrinking(job_id, send, text, encoder, info.upload_limit, view)
                return Outcome(True, route)
            except discord.HTTPException as exc:
                errors.append(f"{route}: {http_error_summary(exc)}")
                if route == "interaction" and token_dead(exc):
                    self._mark_dead(info)
                log.info(
                    "job %s: delivery by %s failed: %s", job_id, route, http_error_summary(exc)
                )
            return None

        if info.kind == "interaction" and self.token_valid(info) and info.message_id is not None:
            webhook, msg_id = self._webhook(info), info.message_id

            async def via_webhook(content: str, files: list[discord.File], view: View) -> None:
                extra = {"attachments": files} if files else {}
                await webhook.edit_message(
                    msg_id, content=content, view=view, allowed_mentions=NO_MENTIONS, **extra
                )

            if outcome := await attempt("interaction", via_webhook, content):
                return outcome
        elif info.kind == "interaction":
            errors.append("interaction: token expired")
        elif info.kind == "message" and info.message_id is not None:
            message = self._channel_message(info)

            async def via_edit(content: str, files: list[discord.File], view: View) -> None:
                extra = {"attachments": files} if files else {}
                await message.edit(
                    content=content, view=view, allowed_mentions=NO_MENTIONS, **extra
                )

            if outcome := await attempt("message-edit", via_edit, content):
                return outcome

        channel = self.bot.get_partial_messageable(info.channel_id, guild_id=info.guild_id)
        mention = discord.AllowedMentions(users=[discord.Object(info.user_id)])

        async def via_channel(content: str, files: list[discord.File], view: View) -> None:
            await channel.send(content, allowed_mentions=mention, **_extras(files, view))

        if outcome := await attempt("channel", via_channel, ping):
            await self._retire_progress(job_id, info, "its message is posted below")
            return outcome

        async def via_dm(content: str, files: list[discord.File], view: View) -> None:
            user = self.bot.get_user(info.user_id) or await self.bot.fetch_user(info.user_id)
            await user.send(content, **_extras(files, view))

        dm_text = f"I could not post in <#{info.channel_id}>, so here it is. {content}"
        if outcome := await attempt("dm", via_dm, dm_text):
            await self._retire_progress(
                job_id, info, f"I sent its message to <@{info.user_id}> by DM"
            )
            return outcome
        detail = "; ".join(errors) or "no route to the user"
        log.error("job %s: delivery failed on every route: %s", job_id, detail)
        return Outcome(False, "none", detail)

    async def _send_shrinking(
        self,
        job_id: str,
        send: Sender,
        content: str,
        encoder: Encoder | None,
        limit: int,
        view: View,
    ) -> None:
        budget = int(limit * UPLOAD_HEADROOM)
        for attempt in range(MAX_SHRINKS + 1):
            files: list[discord.File] = []
            size = 0
            text = content
            if encoder is not None:
                encoded = await asyncio.to_thread(encoder, budget)
                size = sum(len(data) for data, _ in encoded.files)
                files = [discord.File(io.BytesIO(d), filename=n) for d, n in encoded.files]
                text = f"{content}\n{encoded.note}" if encoded.note else content
            try:
                await send(text, files, view)
                return
            except discord.HTTPException as exc:
                budget = int(min(budget, size) * SHRINK_FACTOR)
                if not too_large(exc) or attempt == MAX_SHRINKS or budget < MIN_UPLOAD_BYTES:
                    raise
                log.info(
                    "job %s: upload of %d bytes too large; re-encoding under %d",
                    job_id,
                    size,
                    budget,
                )

    async def _retire_progress(self, job_id: str, info: DeliveryInfo, where: str) -> None:
        # A stale progress bar (and a live Cancel button) would suggest the job still runs.
        if info.message_id is None:
            return
        content = f"This job has ended: {where}."
        kwargs: dict[str, Any] = {"content": content, "view": None, "attachments": []}
        try:
            if self.token_valid(info):
                await self._webhook(info).edit_message(info.message_id, **kwargs)
            else:
                await self._channel_message(info).edit(**kwargs)
        except discord.HTTPException as exc:
            log.info(
                "job %s: could not retire the progress message: %s",
                job_id,
                http_error_summary(exc),
            )


def _progress_edit(
    content: str, preview: bytes | None, view: discord.ui.View | None
) -> dict[str, Any]:
    # A discord.File is read (and closed) by the request that sends it: one per attempt.
    kwargs: dict[str, Any] = {"content": content, "allowed_mentions": NO_MENTIONS}
    if view is not None:
        kwargs["view"] = view
    if preview is not None:
        kwargs["attachments"] = [discord.File(io.BytesIO(preview), filename="preview.jpg")]
    return kwargs


def _extras(files: list[discord.File], view: View) -> dict[str, Any]:
    # channel.send and user.send reject view=None and files=None.
    extra: dict[str, Any] = {}
    if files:
        extra["files"] = files
    if view is not None:
        extra["view"] = view
    return extra


def http_error_summary(exc: discord.HTTPException) -> str:
    """Status and Discord code of an HTTP error, for log lines and delivery details."""
    return f"HTTP {exc.status} (code {http_code(exc)})"
