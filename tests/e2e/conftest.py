"""Fixtures for the end-to-end tests: one fake Discord and one real bot per test module."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

sys.path.insert(0, str(Path(__file__).parent))

from fakediscord import FakeDiscord
from harness import Running, make_config, start_bot


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def fake() -> AsyncIterator[FakeDiscord]:
    """The fake Discord, listening on a free port of 127.0.0.1."""
    server = FakeDiscord()
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def running(fake: FakeDiscord, tmp_path_factory) -> AsyncIterator[Running]:
    """The real bot with its real scheduler and worker process, shared by a module's tests."""
    config = make_config(fake, tmp_path_factory.mktemp("bot-data"))
    bot = await start_bot(fake, config)
    yield bot
    await bot.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def clean(fake: FakeDiscord) -> AsyncIterator[FakeDiscord]:
    """The fake with an empty request log, and no leftover error rules after the test."""
    fake.requests.clear()
    yield fake
    fake.rules.clear()
