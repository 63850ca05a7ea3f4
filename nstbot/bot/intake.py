"""Turning a request's attachments into checked image bytes: metadata first, then a capped download.

Only attachments of the interaction or message itself are fetched, never a URL a user typed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import discord

from nstbot import images
from nstbot.bot.downloads import DownloadError, fetch
from nstbot.config import Config

log = logging.getLogger(__name__)


class Refusal(Exception):
    """A request the bot will not run; `str(exc)` is short, fit for the user, says what to do."""


@dataclass(frozen=True)
class Attachment:
    """What the bot needs of one attachment (a discord.Attachment or its raw payload)."""

    url: str
    filename: str
    size: int
    content_type: str | None
    width: int | None
    height: int | None

    @classmethod
    def from_discord(cls, att: discord.Attachment) -> Attachment:
        """From discord.py's Attachment."""
        return cls(att.url, att.filename, att.size, att.content_type, att.width, att.height)


def image_attachments(atts: list[discord.Attachment]) -> list[discord.Attachment]:
    """Attachments that declare themselves images (or declare nothing and could be)."""
    out = []
    for att in atts:
        ctype = (att.content_type or "").split(";")[0].strip().lower()
        if not ctype or ctype.startswith("image/"):
            out.append(att)
    return out


class Intake:
    """Checks, downloads and decodes the images of one request."""

    def __init__(self, config: Config, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.session = session
        self.limits = images.ImageLimits.from_config(config)

    def check(self, att: Attachment, role: str) -> None:
        """Refuse from the declared metadata alone, before any download."""
        try:
            images.check_declared(
                size=att.size,
                content_type=att.content_type,
                width=att.width,
                height=att.height,
                limits=self.limits,
            )
        except images.ImageRejected as exc:
            raise Refusal(f"The {role} image was refused: {exc}") from None

    async def download(self, att: Attachment, role: str) -> bytes:
        """Check the metadata, then download with the byte cap and timeout; no decoding."""
        self.check(att, role)
        try:
            return await fetch(
                self.session,
                att.url,
                max_bytes=self.limits.max_bytes,
                timeout_s=self.config.bot.download_timeout_s,
                hosts=self.config.bot.attachment_hosts,
            )
        except DownloadError as exc:
            raise Refusal(f"The {role} image could not be fetched: {exc}") from None

    async def load(self, att: Attachment, role: str, working_size: int) -> bytes:
        """Download and decode one attachment; returns the bytes the scheduler stores."""
        data = await self.download(att, role)
        try:
            # Decoding is CPU work: off the event loop, so the gateway keeps its heartbeat.
            await asyncio.to_thread(
                images.decode, data, limits=self.limits, working_size=working_size
            )
        except images.ImageRejected as exc:
            raise Refusal(f"The {role} image was refused: {exc}") from None
        return data

    async def load_all(
        self, content: Attachment, styles: Sequence[Attachment | bytes], size: int
    ) -> list[bytes]:
        """Check every attachment first, then fetch them all; content first.

        A style given as bytes (a preset from the style library) is taken as it is.
        """
        roles = ["content"] + (["style"] if len(styles) == 1 else ["first style", "second style"])
        items = [content, *styles]
        for item, role in zip(items, roles, strict=True):
            if isinstance(item, Attachment):
                self.check(item, role)
        return list(
            await asyncio.gather(
                *(
                    self.load(item, role, size) if isinstance(item, Attachment) else _given(item)
                    for item, role in zip(items, roles, strict=True)
                )
            )
        )


async def _given(data: bytes) -> bytes:
    return data
