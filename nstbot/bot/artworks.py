"""A request's artworks, slot by slot: an uploaded image or a style from the style library.

/stylize has two slots: slot 1 is `style` or `preset`, slot 2 is `style2` or `preset2` (Discord's
attachment options cannot take text, so a preset needs options of its own). A preset's bytes become
an ordinary style input of the job, so the job never depends on the library once submitted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import discord
from discord.app_commands import Choice

from nstbot.bot.intake import Attachment, Refusal
from nstbot.styles import Style
from nstbot.styles.names import quote_name, shorten

if TYPE_CHECKING:
    from nstbot.styles import StyleLibrary

log = logging.getLogger(__name__)

SLOT_OPTIONS = (("style", "preset"), ("style2", "preset2"))
"""The upload option and the preset option of each slot, as /stylize names them."""
CHOICE_NAME_MAX = 100
"""Discord's limit on an autocomplete choice's name."""
UPLOADED = "your artwork"
"""How the summary names an uploaded artwork next to a preset."""

Choose = discord.Attachment | str
"""What one slot was given: an attachment, or the name of a preset."""
Artwork = discord.Attachment | Style
"""One slot once its preset is looked up."""


def pick_slot(slot: int, upload: discord.Attachment | None, preset: str | None) -> Choose | None:
    """The one thing given for a slot (0 or 1); Refusal when both are, or neither for slot 0."""
    upload_name, preset_name = SLOT_OPTIONS[slot]
    preset = (preset or "").strip() or None
    if upload is not None and preset is not None:
        raise Refusal(f"Give either `{upload_name}` or `{preset_name}`, not both.")
    if slot == 0 and upload is None and preset is None:
        raise Refusal(
            "Which artwork? Attach one as `style`, or pick a `preset` (`/nst styles` shows them)."
        )
    return upload if upload is not None else preset


def slash_slots(
    style: discord.Attachment | None,
    preset: str | None,
    style2: discord.Attachment | None,
    preset2: str | None,
) -> list[Choose]:
    """The artworks of /stylize's options, slot 1 first; Refusal for a slot given twice or empty."""
    first = pick_slot(0, style, preset)
    second = pick_slot(1, style2, preset2)
    assert first is not None  # pick_slot refuses an empty slot 1
    return [first] if second is None else [first, second]


def prefix_slots(
    uploads: Sequence[discord.Attachment], presets: Sequence[str | None]
) -> list[Choose]:
    """Fill the two slots from `preset=`/`preset2=` words, the attached artworks in order after.

    `uploads` are the images after the photo. Refusal when slot 1 stays empty or too many came.
    """
    pending = list(uploads)
    slots: list[Choose] = []
    for slot, preset in enumerate(presets):
        if preset:
            slots.append(preset)
        elif pending:
            slots.append(pending.pop(0))
        elif slot == 0:
            raise Refusal("I need an artwork: attach one after the photo, or add `preset=NAME`.")
    if pending:
        raise Refusal(
            f"That is {len(uploads)} artwork(s) besides the preset(s); there are only two slots."
        )
    return slots


async def look_up(
    library: StyleLibrary, guild_id: int | None, slots: list[Choose]
) -> list[Artwork]:
    """Each preset name replaced by its style (this server's or a built-in); Refusal if unknown."""
    out: list[Artwork] = []
    for item in slots:
        if isinstance(item, str):
            style = await asyncio.to_thread(library.find, guild_id, item)
            if style is None:
                raise Refusal(
                    f"I know no style called `{quote_name(item)}` here; `/nst styles` lists them."
                )
            out.append(style)
        else:
            out.append(item)
    return out


async def style_inputs(artworks: list[Artwork]) -> list[Attachment | bytes]:
    """What the intake takes: attachments to download, and the bytes of each preset."""
    out: list[Attachment | bytes] = []
    for item in artworks:
        if isinstance(item, Style):
            try:
                out.append(await asyncio.to_thread(item.read_bytes))
            except OSError as exc:
                # Removed (or its file lost) between the look-up and now.
                log.warning("style %s of guild %s unreadable: %s", item.name, item.guild_id, exc)
                gone = f"The style `{item.name}` is no longer there; pick another."
                raise Refusal(gone) from None
        else:
            out.append(Attachment.from_discord(item))
    return out


def style_credits(artworks: Sequence[Artwork]) -> list[str] | None:
    """Each artwork's name for the summary when a preset is among them; None when all uploaded."""
    if not any(isinstance(a, Style) for a in artworks):
        return None
    return [a.full_title() if isinstance(a, Style) else UPLOADED for a in artworks]


def in_the_style_of(credits: Sequence[str] | None) -> str | None:
    """ "in the style of X" (or "of X and Y"), or None without credits."""
    if not credits:
        return None
    return "in the style of " + " and ".join(credits)


def choice_name(style: Style) -> str:
    """An autocomplete entry: the name and what it is, within Discord's limit."""
    return shorten(style.label(), CHOICE_NAME_MAX)


async def preset_choices(interaction: discord.Interaction[Any], current: str) -> list[Choice[str]]:
    """Autocomplete of `preset`/`preset2`: built-in styles and this server's, never another's."""
    library: StyleLibrary = interaction.client.styles  # type: ignore[attr-defined]
    found = await asyncio.to_thread(library.search, interaction.guild_id, current)
    return [Choice(name=choice_name(s), value=s.name) for s in found[:25]]
