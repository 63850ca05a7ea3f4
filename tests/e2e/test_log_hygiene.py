"""An e2e run's logs, at DEBUG, hold no token and no signed attachment URL."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from fakediscord import FakeDiscord
from harness import TOKEN, Running, final_webhook_edit, make_config, send_slash, start_bot

from nstbot.bot.client import load_token
from nstbot.config import LoggingConfig
from nstbot.logs import setup_logging

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def logged(fake: FakeDiscord, tmp_path_factory) -> AsyncIterator[tuple[Running, io.StringIO]]:
    """The bot started as `nstbot run` does: token through load_token, logging set up once."""
    stream = io.StringIO()
    handler = setup_logging(LoggingConfig(level="DEBUG"), stream=stream, force=False)
    config = make_config(fake, tmp_path_factory.mktemp("bot-data"))
    assert load_token(config, env={"DISCORD_TOKEN": TOKEN}) == TOKEN
    bot = await start_bot(fake, config)
    yield bot, stream
    await bot.stop()
    logging.getLogger().removeHandler(handler)


async def test_no_secret_in_any_log_line(logged, fake: FakeDiscord) -> None:
    _, stream = logged
    payload = await send_slash(fake, fake.snowflake(), seed=1)
    final = await final_webhook_edit(fake, payload["token"])
    assert "✅ Done" in final.json["content"]
    text = stream.getvalue()
    assert "stylize" in text.lower() or "job" in text.lower()  # the run did log
    assert len(text.splitlines()) > 10
    assert TOKEN not in text
    assert "secret-signature" not in text  # the hm= part of signed CDN URLs
    assert payload["token"] not in text  # interaction tokens are credentials too
