"""Timelapses on Discord: the animation beside the result, and what the Timelapse button answers.

The frames come packed (`images.animation.pack_frames`) with the result, or from the job's folder
for the button; both are encoded here within the channel's upload limit. Pillow only.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord

from nstbot import images
from nstbot.bot.delivery import (
    DEFAULT_UPLOAD_LIMIT,
    MAX_SHRINKS,
    NO_MENTIONS,
    SHRINK_FACTOR,
    UPLOAD_HEADROOM,
    Encoded,
    http_error_summary,
    too_large,
)
from nstbot.bot.origin import tell_privately
from nstbot.images.animation import Animation, AnimationTooLarge, encode_timelapse, unpack_frames

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

ANIMATION_SHARE = 1 / 3
"""Of an upload budget, what the animation may take beside the result (which keeps the rest)."""

NOT_RECORDED = "🎞️ No timelapse this time: its frames could not be recorded."
TURNED_OFF = "🎞️ No timelapse: this bot does not record them."
UNREADABLE = "🎞️ The timelapse of this picture cannot be read any more, sorry."


def did_not_fit(button: bool) -> str:
    """The note of a result whose animation did not fit beside it."""
    if button:
        return (
            "🎞️ The timelapse did not fit beside the picture in this channel's upload limit: "
            "press **Timelapse** to get it on its own."
        )
    return "🎞️ The timelapse did not fit beside the picture in this channel's upload limit."


def not_kept(hours: float) -> str:
    """The answer to a Timelapse press once the frames are gone."""
    return (
        f"The timelapse of this picture is no longer kept: timelapses are kept for {hours:g} "
        f"hour{'s' if hours != 1 else ''} after the picture is made."
    )


def open_frames(data: bytes, job_id: str) -> list[Image.Image] | None:
    """The frames of packed bytes, or None (logged) when they cannot be read."""
    try:
        return unpack_frames(data)
    except images.ImageRejected as exc:
        log.error("job %s: timelapse frames unreadable: %s", job_id, exc)
        return None


class ResultFiles:
    """An `Encoder`: the result, and its animation when there are frames, within one budget."""

    def __init__(
        self,
        picture: Image.Image,
        job_id: str,
        frames: list[Image.Image] | None = None,
        *,
        note: str = "",
        no_fit_note: str = "",
    ) -> None:
        self.picture = picture
        self.job_id = job_id
        self.frames = frames
        self.note = note
        """Added to the message whatever fits (e.g. why there are no frames)."""
        self.no_fit_note = no_fit_note
        """Added when the animation does not fit beside the result."""
        self._animations: dict[int, Animation | None] = {}

    def animation(self, budget: int) -> Animation | None:
        """The animation that goes beside the result under `budget`, or None when none fits."""
        if not self.frames:
            return None
        share = int(budget * ANIMATION_SHARE)
        if share not in self._animations:
            try:
                self._animations[share] = encode_timelapse(self.frames, max_bytes=share)
            except AnimationTooLarge:
                log.info("job %s: timelapse does not fit in %d bytes", self.job_id, share)
                self._animations[share] = None
        return self._animations[share]

    def __call__(self, budget: int) -> Encoded:
        animation = self.animation(budget)
        rest = budget - (len(animation.data) if animation is not None else 0)
        stem = f"nstbot-{self.job_id}"
        files = [images.encode(self.picture, max_bytes=rest, basename=stem)]
        notes = [self.note] if self.note else []
        if animation is not None:
            files.append((animation.data, animation.filename(f"{stem}-timelapse")))
        elif self.frames and self.no_fit_note:
            notes.append(self.no_fit_note)
        return Encoded(files, "\n".join(notes))


Loader = Callable[[str], Awaitable[bytes | None]]
"""Reads a job's kept frames (None once gone; OSError when unreadable)."""


async def answer_press(
    interaction: discord.Interaction[Any], job_id: str, load: Loader, keep_hours: float
) -> str:
    """Answer a Timelapse press with the animation, for the presser only; returns what happened
    (for the log)."""
    try:
        data = await load(job_id)
    except OSError as exc:
        log.error("job %s: timelapse frames unreadable: %s", job_id, exc)
        data, unreadable = None, True
    else:
        unreadable = False
    if data is None:
        await _private(interaction, UNREADABLE if unreadable else not_kept(keep_hours))
        return "unreadable" if unreadable else "not kept"
    try:
        # Unpacking and encoding take seconds on a busy CPU; Discord allows three.
        await interaction.response.defer(ephemeral=True, thinking=True)
    except discord.HTTPException as exc:
        log.info("job %s: timelapse press not acknowledged: %s", job_id, http_error_summary(exc))
        return "not acknowledged"
    frames = await asyncio.to_thread(open_frames, data, job_id)
    if frames is None:
        await _private(interaction, UNREADABLE)
        return "unreadable"
    limit = interaction.filesize_limit or DEFAULT_UPLOAD_LIMIT
    budget = int(limit * UPLOAD_HEADROOM)
    for _ in range(MAX_SHRINKS + 1):
        try:
            animation = await asyncio.to_thread(encode_timelapse, frames, max_bytes=budget)
        except AnimationTooLarge as exc:
            await _private(interaction, f"🎞️ {exc}")
            return "too large"
        file = discord.File(io.BytesIO(animation.data), animation.filename(f"nstbot-{job_id}"))
        try:
            await interaction.followup.send(
                f"🎞️ Timelapse of job `{job_id}` ({animation.frames} frames, "
                f"{animation.duration_s:g} s)",
                file=file,
                ephemeral=True,
                allowed_mentions=NO_MENTIONS,
            )
            return f"sent {len(animation.data)} bytes"
        except discord.HTTPException as exc:
            if not too_large(exc):
                log.info("job %s: timelapse answer failed: %s", job_id, http_error_summary(exc))
                return "failed"
            budget = int(min(budget, len(animation.data)) * SHRINK_FACTOR)
    await _private(interaction, "🎞️ The timelapse does not fit in this channel's upload limit.")
    return "too large"


async def _private(interaction: discord.Interaction[Any], text: str) -> None:
    await tell_privately(interaction, text)
