"""Admin helpers: who may change settings, and how settings and stats read."""

from __future__ import annotations

import discord

from nstbot.bot.cogs.admin import can_manage, describe_settings, describe_stats
from nstbot.bot.settings import GuildSettings


def test_manage_server_is_required() -> None:
    assert can_manage(discord.Permissions(manage_guild=True))
    assert can_manage(discord.Permissions(administrator=True))
    assert not can_manage(discord.Permissions(manage_messages=True))
    assert not can_manage(None)


def test_describe_settings() -> None:
    text = describe_settings(GuildSettings())
    assert "every channel" in text and "Cooldown: none" in text
    text = describe_settings(GuildSettings(allowed_channels=(5,), max_size=256, cooldown_s=90))
    assert "<#5>" in text and "256 px" in text and "1m 30s" in text


def test_describe_stats() -> None:
    text = describe_stats({"finished": 3, "mean_run_s": 65.0, "mean_wait_s": None})
    assert text.splitlines() == ["finished: 3", "mean run s: 1m 05s", "mean wait s: -"]
    assert describe_stats({}) == "No jobs yet."
