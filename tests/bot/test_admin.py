"""Admin helpers: how permissions, settings and stats read."""

from __future__ import annotations

from nstbot.bot.cogs.admin import describe_settings, describe_stats
from nstbot.bot.origin import permission_label
from nstbot.bot.settings import GuildSettings


def test_permission_labels_read_as_discord_shows_them() -> None:
    assert permission_label("manage_guild") == "Manage Server"
    assert permission_label("send_messages") == "Send Messages"


def test_describe_settings() -> None:
    text = describe_settings(GuildSettings())
    assert "every channel" in text and "Cooldown: none" in text
    text = describe_settings(GuildSettings(allowed_channels=(5,), max_size=256, cooldown_s=90))
    assert "<#5>" in text and "256 px" in text and "1m 30s" in text


def test_describe_stats() -> None:
    text = describe_stats({"finished": 3, "mean_run_s": 65.0, "mean_wait_s": None})
    assert text.splitlines() == ["finished: 3", "mean run s: 1m 05s", "mean wait s: -"]
    assert describe_stats({}) == "No jobs yet."
