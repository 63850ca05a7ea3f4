"""Which images of a prefix request (or a message command's target) are the photo and artworks."""

from __future__ import annotations

import discord

from nstbot.bot.intake import Refusal, image_attachments

Images = tuple[discord.Attachment, list[discord.Attachment]]
"""The photo, then the artworks."""


def split_images(pictures: list[discord.Attachment]) -> Images:
    """The photo and one or two artworks of one message's images (as /stylize's style2)."""
    if len(pictures) < 2:
        raise Refusal("I need two images: the photo first, then the artwork.")
    if len(pictures) > 3:
        raise Refusal(
            f"I take at most three images (the photo, then one or two artworks); "
            f"this has {len(pictures)}."
        )
    return pictures[0], pictures[1:]


async def message_images(message: discord.Message) -> Images:
    """Two or three images attached, or one artwork attached in a reply to the photo."""
    pictures = image_attachments(message.attachments)
    if len(pictures) >= 2:
        return split_images(pictures)
    replied = await replied_to(message) if len(pictures) == 1 else None
    if replied is not None:
        theirs = image_attachments(replied.attachments)
        if theirs:
            return theirs[0], [pictures[0]]
        raise Refusal("The message you replied to has no image.")
    raise Refusal("I need two images.")


async def preset_message_images(message: discord.Message) -> Images:
    """With a preset: the photo attached (any further images are artworks), or replied to."""
    pictures = image_attachments(message.attachments)
    if pictures:
        return pictures[0], pictures[1:]
    replied = await replied_to(message)
    theirs = image_attachments(replied.attachments) if replied is not None else []
    if theirs:
        return theirs[0], []
    raise Refusal("I need the photo: attach it, or reply to a message with it.")


async def replied_to(message: discord.Message) -> discord.Message | None:
    """The message this one replies to, or None when it is no reply."""
    ref = message.reference
    if ref is None or ref.message_id is None:
        return None
    if isinstance(ref.resolved, discord.Message):
        return ref.resolved
    try:
        return await message.channel.fetch_message(ref.message_id)
    except discord.HTTPException:
        raise Refusal("I can't read the message you replied to.") from None
