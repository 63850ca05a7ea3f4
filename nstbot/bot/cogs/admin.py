"""Server settings and operations: /nst settings, /nst queue, /nst stats, and owner-only sync."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.app_commands import Choice
from discord.ext import commands

from nstbot.bot.presets import QUALITIES
from nstbot.bot.progress import format_duration
from nstbot.bot.settings import MAX_STYLES_LIMIT, MAX_STYLES_MB_LIMIT, MB, GuildSettings
from nstbot.config import StylesConfig
from nstbot.params import SIZE_MAX

if TYPE_CHECKING:
    from nstbot.bot.client import NSTBot

log = logging.getLogger(__name__)


def describe_settings(s: GuildSettings, styles: StylesConfig) -> str:
    """The settings as a short message (style caps as they apply, with the bot's own cap)."""
    channels = ", ".join(f"<#{c}>" for c in s.allowed_channels) or "every channel"
    caps = s.style_caps(styles)
    count_from = "this server's" if s.max_styles else "the bot's"
    mb_from = "this server's" if s.max_styles_mb else "the bot's"
    return "\n".join(
        [
            f"Channels: {channels}",
            f"Max size: {s.max_size or 'the preset cap'}{' px' if s.max_size else ''}",
            f"Max quality: {s.max_quality}",
            f"Per-member queue limit: {s.per_user_queue or 'the bot default'}",
            f"Cooldown: {format_duration(s.cooldown_s) if s.cooldown_s else 'none'}",
            f"Server styles: up to {caps.max_count} ({count_from} cap), "
            f"{caps.max_bytes // MB} MB ({mb_from} cap)",
        ]
    )


def check_style_caps(max_styles: int | None, max_styles_mb: int | None, cfg: StylesConfig) -> None:
    """ValueError (fit for an admin) when a server cap would exceed the bot's own."""
    if max_styles and max_styles > cfg.max_per_server:
        raise ValueError(f"max styles can be at most {cfg.max_per_server} (the bot's cap)")
    if max_styles_mb and max_styles_mb > cfg.max_server_mb:
        raise ValueError(f"max styles MB can be at most {cfg.max_server_mb} (the bot's cap)")


def describe_stats(stats: Any) -> str:
    """Scheduler stats (a dict or an object with attributes) as a short message."""
    data = stats if isinstance(stats, dict) else getattr(stats, "__dict__", {})
    lines = []
    for key, value in data.items():
        label = key.replace("_", " ")
        if value is None:
            value = "-"
        elif isinstance(value, float):
            value = format_duration(value) if key.endswith(("_s", "seconds")) else f"{value:.2f}"
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
        lines.append(f"{label}: {value}")
    return "\n".join(lines) or "No jobs yet."


class Admin(commands.Cog):
    """Settings, queue, stats and command sync."""

    nst = app_commands.Group(name="nst", description="Style transfer bot settings and status")

    def __init__(self, bot: NSTBot) -> None:
        self.bot = bot

    @nst.command(name="settings", description="Show or change this server's settings")
    @app_commands.guild_only()
    # Discord honours default_permissions on top-level commands only (not on /nst's
    # subcommands, which everyone may use), so the check is what holds here.
    @app_commands.checks.has_permissions(manage_guild=True)
    @app_commands.describe(
        allow_channel="Add a channel where requests are accepted",
        remove_channel="Remove a channel from the allowed list",
        all_channels="Accept requests in every channel again",
        max_size="Largest result side in pixels (0: no cap beyond the quality's)",
        max_quality="Highest quality members may ask for",
        queue_limit="Jobs one member may have in progress here (0: the bot default)",
        cooldown="Seconds between two requests of one member (0: none)",
        max_styles="Styles this server may keep (0: the bot's cap; can only lower it)",
        max_styles_mb="Megabytes this server's styles may take (0: the bot's cap; only lower)",
    )
    @app_commands.choices(max_quality=[Choice(name=q, value=q) for q in QUALITIES])
    async def settings(
        self,
        interaction: discord.Interaction[Any],
        allow_channel: discord.TextChannel | None = None,
        remove_channel: discord.TextChannel | None = None,
        all_channels: bool = False,
        max_size: app_commands.Range[int, 0, SIZE_MAX] | None = None,
        max_quality: str | None = None,
        queue_limit: app_commands.Range[int, 0, 100] | None = None,
        cooldown: app_commands.Range[int, 0, 86400] | None = None,
        max_styles: app_commands.Range[int, 0, MAX_STYLES_LIMIT] | None = None,
        max_styles_mb: app_commands.Range[int, 0, MAX_STYLES_MB_LIMIT] | None = None,
    ) -> None:
        """Manage Server only; without options it shows the current settings."""
        assert interaction.guild_id is not None  # guild_only
        store = self.bot.settings
        current = store.get(interaction.guild_id)
        channels = list(current.allowed_channels)
        if all_channels:
            channels = []
        if allow_channel is not None and allow_channel.id not in channels:
            channels.append(allow_channel.id)
        if remove_channel is not None and remove_channel.id in channels:
            channels.remove(remove_channel.id)
        changes: dict[str, Any] = {"allowed_channels": tuple(channels)}
        if max_size is not None:
            changes["max_size"] = max_size
        if max_quality is not None:
            changes["max_quality"] = max_quality
        if queue_limit is not None:
            changes["per_user_queue"] = queue_limit
        if cooldown is not None:
            changes["cooldown_s"] = float(cooldown)
        if max_styles is not None:
            changes["max_styles"] = max_styles
        if max_styles_mb is not None:
            changes["max_styles_mb"] = max_styles_mb
        styles_cfg = self.bot.config.styles
        try:
            check_style_caps(max_styles, max_styles_mb, styles_cfg)
            new = await store.update(interaction.guild_id, **changes)
        except ValueError as exc:
            log.info("guild %s: settings not saved: %s", interaction.guild_id, exc)
            await interaction.response.send_message(f"Not saved: {exc}.", ephemeral=True)
            return
        if new != current:
            log.info(
                "guild %s: settings changed by user %s", interaction.guild_id, interaction.user.id
            )
        await interaction.response.send_message(describe_settings(new, styles_cfg), ephemeral=True)

    @nst.command(name="queue", description="Show the jobs waiting and running")
    async def queue(self, interaction: discord.Interaction[Any]) -> None:
        """Every job in the queue; members of other servers are not named."""
        rows = self.bot.runner.scheduler.queue_snapshot() if self.bot.runner else []
        lines = []
        for row in rows[:20]:
            job_id, user_id, guild_id, state, position = tuple(row)[:5]
            who = f"<@{user_id}>" if guild_id == interaction.guild_id else "someone elsewhere"
            where = "running" if not position else f"#{position}"
            lines.append(f"`{job_id}` {who}: {state} ({where})")
        if len(rows) > 20:
            lines.append(f"…and {len(rows) - 20} more")
        text = "\n".join(lines) or "The queue is empty."
        await interaction.response.send_message(
            text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )

    @nst.command(name="stats", description="Job counts and average times")
    async def stats(self, interaction: discord.Interaction[Any]) -> None:
        """The scheduler's counts by outcome and mean run and wait times."""
        stats = self.bot.runner.scheduler.stats() if self.bot.runner else {}
        await interaction.response.send_message(describe_stats(stats), ephemeral=True)

    @nst.command(name="sync", description="Owner only: register the commands with Discord")
    async def sync(self, interaction: discord.Interaction[Any]) -> None:
        """Sync the command tree globally (owner only)."""
        if not await self.bot.is_owner(interaction.user):
            await interaction.response.send_message(
                "Only the bot's owner can do that.", ephemeral=True
            )
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        synced = await self.bot.tree.sync()
        await interaction.followup.send(f"Synced {len(synced)} commands.", ephemeral=True)

    @commands.command(name="sync")
    @commands.is_owner()
    async def sync_prefix(self, ctx: commands.Context[Any], guild_id: int | None = None) -> None:
        """Owner only: `!sync [guild id]` registers the commands (globally or in one server)."""
        guild = discord.Object(guild_id) if guild_id else None
        if guild is not None:
            self.bot.tree.copy_global_to(guild=guild)
        synced = await self.bot.tree.sync(guild=guild)
        await ctx.reply(f"Synced {len(synced)} commands.", mention_author=False)


async def setup(bot: NSTBot) -> None:
    """Extension entry point."""
    await bot.add_cog(Admin(bot))
