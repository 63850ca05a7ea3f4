"""Token loading, intents, URL configuration, and the bot process staying free of torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import discord
import pytest

from nstbot.bot.client import TokenError, intents_for, load_token, point_at
from nstbot.config import BotConfig, Config


def config(**bot: object) -> Config:
    return Config(bot=BotConfig(**bot))  # type: ignore[arg-type]


def test_token_from_environment_wins(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text("from-file\n")
    assert load_token(config(token_file=str(f)), env={"DISCORD_TOKEN": " from-env "}) == "from-env"
    assert load_token(config(token_file=str(f)), env={}) == "from-file"


def test_missing_or_empty_token_is_explained_without_the_token(tmp_path: Path) -> None:
    with pytest.raises(TokenError, match="DISCORD_TOKEN"):
        load_token(config(), env={})
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    with pytest.raises(TokenError, match="empty"):
        load_token(config(token_file=str(empty)), env={})
    with pytest.raises(TokenError, match="cannot read"):
        load_token(config(token_file=str(tmp_path / "nope")), env={})


def test_message_content_intent_only_when_prefix_commands_are_on() -> None:
    off = intents_for(config())
    assert off.guilds and not off.message_content and not off.guild_messages
    on = intents_for(config(message_commands=True))
    assert on.message_content and on.guild_messages


def test_api_base_is_configurable() -> None:
    before = discord.http.Route.BASE
    try:
        point_at(config(api_base="http://127.0.0.1:9/api/v10/"))
        assert discord.http.Route("GET", "/users/@me").url == "http://127.0.0.1:9/api/v10/users/@me"
    finally:
        discord.http.Route.BASE = before


def test_bot_process_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "import nstbot.bot.client, nstbot.bot.cogs.stylize, nstbot.bot.cogs.admin\n"
        "import nstbot.jobs.scheduler\n"
        "from nstbot.bot.client import NSTBot\n"
        "from nstbot.config import Config\n"
        "NSTBot(Config())\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'torch'\n"
        "       or m.startswith('nstbot.engine')]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
