"""Admin helpers: how permissions, settings and stats read."""

from __future__ import annotations

import pytest

from nstbot.bot.cogs.admin import check_style_caps, describe_settings, describe_stats
from nstbot.bot.origin import permission_label
from nstbot.bot.settings import GuildSettings
from nstbot.config import StylesConfig


def test_permission_labels_read_as_discord_shows_them() -> None:
    assert permission_label("manage_guild") == "Manage Server"
    assert permission_label("send_messages") == "Send Messages"


def test_describe_settings() -> None:
    styles = StylesConfig(max_per_server=25, max_server_mb=30)
    text = describe_settings(GuildSettings(), styles)
    assert "every channel" in text and "Cooldown: none" in text
    assert "Server styles: up to 25 (the bot's cap), 30 MB (the bot's cap)" in text
    settings = GuildSettings(allowed_channels=(5,), max_size=256, cooldown_s=90, max_styles=3)
    text = describe_settings(settings, styles)
    assert "<#5>" in text and "256 px" in text and "1m 30s" in text
    assert "up to 3 (this server's cap), 30 MB (the bot's cap)" in text


def test_server_style_caps_may_only_lower_the_bots() -> None:
    styles = StylesConfig(max_per_server=10, max_server_mb=20)
    check_style_caps(10, 20, styles)
    check_style_caps(0, None, styles)
    with pytest.raises(ValueError, match="at most 10"):
        check_style_caps(11, None, styles)
    with pytest.raises(ValueError, match="at most 20"):
        check_style_caps(None, 21, styles)


def test_describe_stats() -> None:
    text = describe_stats({"finished": 3, "mean_run_s": 65.0, "mean_wait_s": None})
    assert text.splitlines() == ["finished: 3", "mean run s: 1m 05s", "mean wait s: -"]
    assert describe_stats({}) == "No jobs yet."
