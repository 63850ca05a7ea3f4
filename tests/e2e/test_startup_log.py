"""Starting up logs nothing that does not apply to this bot's configuration."""

from __future__ import annotations

import logging

import discord
import pytest
from fakediscord import FakeDiscord
from harness import make_config, start_bot

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.mark.parametrize("message_commands", [False, True])
async def test_startup_warns_of_nothing_that_does_not_apply(
    fake: FakeDiscord,
    tmp_path,
    caplog: pytest.LogCaptureFixture,
    message_commands: bool,
) -> None:
    # As in a fresh process without PyNaCl or davey (an earlier bot in this one cleared them).
    discord.VoiceClient.warn_nacl = True
    discord.VoiceClient.warn_dave = True
    caplog.set_level(logging.INFO)
    config = make_config(fake, tmp_path, message_commands=message_commands)
    running = await start_bot(fake, config)
    try:
        assert any("connected as" in r.getMessage() for r in caplog.records)
        warnings = [
            r.getMessage()
            for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith(("discord", "nstbot.bot"))
        ]
        assert warnings == []
        (identify,) = fake.identifies[-1:]
        content_intent = bool(identify["intents"] & (1 << 15))
        assert content_intent is message_commands
    finally:
        await running.stop()
