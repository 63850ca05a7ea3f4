"""The style library on Discord: /nst style add|remove (Manage Server) and /nst styles (everyone).

The commands live under the admin cog's /nst group: this cog adds its `style` subgroup and its
`styles` subcommand to that group when it loads (and takes them out when it unloads), so the tree
users see stays `/nst style add`, `/nst style remove`, `/nst styles`.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.app_commands import Choice
from discord.ext import commands

from nstbot import images
from nstbot.bot.admission import RequestRefused
from nstbot.bot.artworks import CHOICE_NAME_MAX, choice_name
from nstbot.bot.intake import Attachment, Refusal
from nstbot.bot.settings import MB
from nstbot.styles import (
    BUILTIN_STYLES,
    STYLE_DESCRIPTION_MAX,
    Style,
    StyleCaps,
    StyleRefused,
    contact_sheet,
)
from nstbot.styles.names import shorten

if TYPE_CHECKING:
    from nstbot.bot.client import NSTBot

log = logging.getLogger(__name__)

SHEET_PER_PAGE = 12
LINE_MAX = 100


class StyleRequestRefused(RequestRefused):
    """A style command that cannot be done (bad name, duplicate, cap, bad image, unknown name).

    A RequestRefused, so the tree's one error handler logs it and tells only the member.
    """


def sheet_caption(
    styles: Sequence[Style], page: int, pages: int, *, prefix: str | None = None
) -> str:
    """The text under a contact sheet: the page's names, how to use one, where the next page is."""
    shown = styles[(page - 1) * SHEET_PER_PAGE : page * SHEET_PER_PAGE]
    head = f"**Styles** (page {page} of {pages})" if pages > 1 else "**Styles**"
    lines = [head]
    for style in shown:
        title = style.full_title()
        line = f"`{style.name}`" + ("" if title == style.name else f": {title}")
        line += "" if style.builtin else " · this server's"
        lines.append(shorten(line, LINE_MAX))
    how = "Use one: `/stylize content:<photo> preset:<name>`"
    if prefix:
        how += f" (or `{prefix}stylize preset=<name>` with the photo attached)"
    lines.append(how + ".")
    if page < pages:
        lines.append(f"More: `/nst styles page:{page + 1}`")
    return "\n".join(lines)


def describe_usage(count: int, nbytes: int, caps: StyleCaps) -> str:
    """ "3 of 25 styles, 0.4 of 25 MB"."""
    return f"{count} of {caps.max_count} styles, {nbytes / MB:.1f} of {caps.max_bytes // MB} MB"


def sheet_filename(data: bytes) -> str:
    """styles.png or styles.jpg, by the bytes' signature."""
    return "styles.png" if data.startswith(b"\x89PNG") else "styles.jpg"


async def own_style_choices(
    interaction: discord.Interaction[Any], current: str
) -> list[Choice[str]]:
    """Autocomplete of `/nst style remove name`: this server's styles only."""
    if interaction.guild_id is None:
        return []
    library = interaction.client.styles  # type: ignore[attr-defined]
    found: list[Style] = await asyncio.to_thread(library.server_styles, interaction.guild_id)
    typed = current.strip().lower()
    return [
        Choice(name=choice_name(s), value=s.name)
        for s in found
        if typed in s.name or typed in s.title.lower()
    ][:25]


class Styles(commands.Cog):
    """Adding, removing and browsing styles."""

    def __init__(self, bot: NSTBot) -> None:
        self.bot = bot
        self.style_group = app_commands.Group(
            name="style", description="Add or remove this server's styles (Manage Server)"
        )
        self.style_group.command(name="add", description="Add a style to this server's library")(
            self.add
        )
        self.style_group.command(
            name="remove", description="Remove a style from this server's library"
        )(self.remove)
        self.styles_command = app_commands.Command(
            name="styles",
            description="Show the styles /stylize preset: can use, as a contact sheet",
            callback=self.show,
        )

    def _nst(self) -> app_commands.Group:
        nst = self.bot.tree.get_command("nst")
        if not isinstance(nst, app_commands.Group):
            raise RuntimeError("the admin cog (with the /nst group) must be loaded first")
        return nst

    async def cog_load(self) -> None:
        """Put `style` and `styles` under /nst."""
        nst = self._nst()
        nst.add_command(self.style_group)
        nst.add_command(self.styles_command)

    async def cog_unload(self) -> None:
        """Take them out again."""
        nst = self.bot.tree.get_command("nst")
        if isinstance(nst, app_commands.Group):
            nst.remove_command(self.style_group.name)
            nst.remove_command(self.styles_command.name)

    def caps(self, guild_id: int) -> StyleCaps:
        """This server's caps: the config's, lowered by its settings."""
        return self.bot.settings.get(guild_id).style_caps(self.bot.config.styles)

    # Discord honours default_permissions on top-level commands only, so the check holds here.
    @app_commands.guild_only()
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(
        name="Short name members type after preset: (a-z, 0-9 and -)",
        image="The artwork",
        description="What it is, e.g. the title and artist (optional)",
    )
    async def add(
        self,
        interaction: discord.Interaction[Any],
        name: app_commands.Range[str, 1, CHOICE_NAME_MAX],
        image: discord.Attachment,
        description: app_commands.Range[str, 1, STYLE_DESCRIPTION_MAX] | None = None,
    ) -> None:
        """Check and download the image, then store it in the library under its name."""
        guild_id = interaction.guild_id
        assert guild_id is not None  # guild_only, and Manage Server exists only in a server
        await interaction.response.defer(ephemeral=True, thinking=True)
        caps = self.caps(guild_id)
        library = self.bot.styles
        try:
            data = await self.bot.intake.download(Attachment.from_discord(image), "style")
            style = await asyncio.to_thread(
                library.add,
                guild_id,
                name,
                data,
                description=description,
                added_by=interaction.user.id,
                caps=caps,
            )
        except (Refusal, StyleRefused) as exc:
            raise StyleRequestRefused(f"Style not added: {exc}") from None
        except images.ImageRejected as exc:
            raise StyleRequestRefused(f"Style not added: the image was refused: {exc}") from None
        count, nbytes = await asyncio.to_thread(library.usage, guild_id)
        log.info(
            "guild %s: style %s added by user %s (%d bytes stored)",
            guild_id,
            style.name,
            interaction.user.id,
            style.nbytes,
        )
        await interaction.followup.send(
            f"Added the style `{style.name}`. Use it with "
            f"`/stylize content:<photo> preset:{style.name}`.\n"
            f"This server has {describe_usage(count, nbytes, caps)}.",
            ephemeral=True,
        )

    @app_commands.guild_only()
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(name="The style to remove")
    @app_commands.autocomplete(name=own_style_choices)
    async def remove(
        self, interaction: discord.Interaction[Any], name: app_commands.Range[str, 1, 100]
    ) -> None:
        """Remove one of this server's styles; jobs already queued with it keep their copy."""
        guild_id = interaction.guild_id
        assert guild_id is not None
        try:
            style = await asyncio.to_thread(self.bot.styles.remove, guild_id, name)
        except StyleRefused as exc:
            raise StyleRequestRefused(f"Nothing removed: {exc}") from None
        log.info("guild %s: style %s removed by user %s", guild_id, style.name, interaction.user.id)
        await interaction.response.send_message(
            f"Removed the style `{style.name}`. Images already asked for with it still finish.",
            ephemeral=True,
        )

    @app_commands.describe(page="Which page of the contact sheet (default 1)")
    async def show(
        self, interaction: discord.Interaction[Any], page: app_commands.Range[int, 1, 1000] = 1
    ) -> None:
        """The built-in styles and this server's as one contact sheet, paged."""
        guild_id = interaction.guild_id
        styles: list[Style] = list(BUILTIN_STYLES)
        # Drawing thumbnails takes a moment: acknowledge within Discord's 3 seconds first.
        await interaction.response.defer(ephemeral=True, thinking=True)
        if guild_id is not None:
            styles += await asyncio.to_thread(self.bot.styles.server_styles, guild_id)
        try:
            sheet, pages = await asyncio.to_thread(
                contact_sheet, styles, page=page, per_page=SHEET_PER_PAGE
            )
        except StyleRefused as exc:
            raise StyleRequestRefused(str(exc)) from None
        prefix = self.bot.config.bot.prefix if self.bot.config.bot.message_commands else None
        await interaction.followup.send(
            sheet_caption(styles, page, pages, prefix=prefix),
            file=discord.File(io.BytesIO(sheet), filename=sheet_filename(sheet)),
            ephemeral=True,
        )


async def setup(bot: NSTBot) -> None:
    """Extension entry point."""
    await bot.add_cog(Styles(bot))
