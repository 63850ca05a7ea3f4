"""Guild settings: validation and the SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from nstbot.bot.settings import GuildSettings, SettingsStore
from nstbot.config import StylesConfig
from nstbot.styles import StyleCaps


async def test_update_persists_across_reopen(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "settings.sqlite3")
    store.open()
    new = await store.update(42, allowed_channels=(7, 8), cooldown_s=30.0, max_quality="fast")
    assert store.get(42) == new
    store.close()

    again = SettingsStore(tmp_path / "settings.sqlite3")
    again.open()
    assert again.get(42) == GuildSettings(
        allowed_channels=(7, 8), cooldown_s=30.0, max_quality="fast"
    )
    assert again.get(43) == GuildSettings()
    assert again.get(None) == GuildSettings()
    again.close()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_quality": "ultra"}, "max quality"),
        ({"max_size": 10}, "max size"),
        ({"per_user_queue": 101}, "queue limit"),
        ({"cooldown_s": -1.0}, "cooldown"),
        ({"max_styles": -1}, "max styles"),
        ({"max_styles_mb": 10_001}, "max styles MB"),
    ],
)
async def test_invalid_values_are_refused_and_not_stored(
    tmp_path: Path, changes: dict, message: str
) -> None:
    store = SettingsStore(tmp_path / "s.sqlite3")
    store.open()
    with pytest.raises(ValueError, match=message):
        await store.update(1, **changes)
    assert store.get(1) == GuildSettings()
    store.close()


def test_allowed_channels_and_threads() -> None:
    assert GuildSettings().allows_channel(5)
    s = GuildSettings(allowed_channels=(5,))
    assert s.allows_channel(5)
    assert not s.allows_channel(6)
    assert s.allows_channel(99, parent_id=5)  # a thread inside an allowed channel


def test_json_ignores_unknown_keys() -> None:
    text = '{"max_size": 256, "allowed_channels": ["3"], "from_the_future": 1}'
    assert GuildSettings.from_json(text) == GuildSettings(max_size=256, allowed_channels=(3,))
    s = GuildSettings(allowed_channels=(1, 2), cooldown_s=5.0)
    assert GuildSettings.from_json(s.to_json()) == s


def test_style_caps_lower_the_configs_never_raise_it() -> None:
    config = StylesConfig(max_per_server=25, max_server_mb=25)
    assert GuildSettings().style_caps(config) == StyleCaps(25, 25_000_000)
    assert GuildSettings(max_styles=5, max_styles_mb=2).style_caps(config) == StyleCaps(
        5, 2_000_000
    )
    assert GuildSettings(max_styles=99, max_styles_mb=99).style_caps(config) == StyleCaps(
        25, 25_000_000
    )
