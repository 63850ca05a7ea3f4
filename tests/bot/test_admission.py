"""Admission: limits taken at once, given back on release, kept on settle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from nstbot.bot.admission import (
    Admission,
    ChannelNotAllowed,
    CoolingDown,
    MemberQueueFull,
    NotStarted,
    Requester,
    RequestRefused,
)
from nstbot.bot.settings import SettingsStore

GUILD = 10
ALICE = Requester(user_id=1, guild_id=GUILD, channel_id=100)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SettingsStore]:
    settings = SettingsStore(tmp_path / "settings.sqlite3")
    settings.open()
    yield settings
    settings.close()


def admission(store: SettingsStore, clock: Clock, running: dict[int, int]) -> Admission:
    return Admission(store, lambda guild, user: running.get(user, 0), clock)


@pytest.mark.asyncio
async def test_a_burst_gets_one_slot(store: SettingsStore) -> None:
    await store.update(GUILD, per_user_queue=1)
    gate = admission(store, Clock(), {})
    first = gate.admit(ALICE)
    for _ in range(2):
        with pytest.raises(MemberQueueFull):
            gate.admit(ALICE)
    first.release()
    gate.admit(ALICE)  # the released slot is free again


@pytest.mark.asyncio
async def test_settle_hands_the_slot_to_the_scheduler_count(store: SettingsStore) -> None:
    await store.update(GUILD, per_user_queue=1)
    running: dict[int, int] = {}
    gate = admission(store, Clock(), running)
    ticket = gate.admit(ALICE)
    running[ALICE.user_id] = 1  # the scheduler now counts the submitted job
    ticket.settle()
    ticket.release()  # a no-op once settled
    with pytest.raises(MemberQueueFull):
        gate.admit(ALICE)
    running.clear()
    gate.admit(ALICE)


@pytest.mark.asyncio
async def test_cooldown_is_taken_at_admission_and_given_back_on_release(
    store: SettingsStore,
) -> None:
    await store.update(GUILD, cooldown_s=600.0)
    clock = Clock()
    gate = admission(store, clock, {})
    ticket = gate.admit(ALICE)
    with pytest.raises(CoolingDown) as refused:
        gate.admit(ALICE)
    assert refused.value.retry_after == pytest.approx(600.0)
    assert "10m 00s" in refused.value.message
    ticket.release()
    gate.admit(ALICE).settle()
    clock.now += 300
    with pytest.raises(CoolingDown, match="5m 00s"):
        gate.admit(ALICE)
    clock.now += 301
    gate.admit(ALICE)
    # Other members and other servers have their own cooldowns.
    gate.admit(Requester(user_id=2, guild_id=GUILD, channel_id=100))
    gate.admit(Requester(user_id=1, guild_id=GUILD + 1, channel_id=200))


@pytest.mark.asyncio
async def test_a_changed_cooldown_applies_to_the_next_request(store: SettingsStore) -> None:
    await store.update(GUILD, cooldown_s=600.0)
    gate = admission(store, Clock(), {})
    gate.admit(ALICE).settle()
    await store.update(GUILD, cooldown_s=0.0)
    gate.admit(ALICE)


@pytest.mark.asyncio
async def test_channel_allow_list_and_thread_parent(store: SettingsStore) -> None:
    await store.update(GUILD, allowed_channels=(100,))
    gate = admission(store, Clock(), {})
    gate.check_channel(ALICE)
    gate.check_channel(Requester(user_id=1, guild_id=GUILD, channel_id=555, parent_channel_id=100))
    with pytest.raises(ChannelNotAllowed, match="<#100>"):
        gate.check_channel(Requester(user_id=1, guild_id=GUILD, channel_id=200))


def test_refusals_are_checks_of_both_command_kinds(tmp_path: Path) -> None:
    from discord import app_commands
    from discord.ext import commands

    error = NotStarted()
    assert isinstance(error, RequestRefused)
    assert isinstance(error, app_commands.CheckFailure)
    assert isinstance(error, commands.CheckFailure)
    gate = Admission(SettingsStore(tmp_path / "s.sqlite3"), None, Clock())
    with pytest.raises(NotStarted):
        gate.admit(ALICE)
