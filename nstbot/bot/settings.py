"""Per-server settings (allowed channels, caps, queue limit, cooldown), stored in SQLite."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nstbot.bot.presets import QUALITIES
from nstbot.config import StylesConfig
from nstbot.params import REQUEST_SIZE_MIN, SIZE_MAX
from nstbot.styles import StyleCaps

log = logging.getLogger(__name__)

# Bounds of the per-server style caps; the config's `[styles]` values cap them further.
MAX_STYLES_LIMIT = 1000
MAX_STYLES_MB_LIMIT = 10_000
MB = 1_000_000


@dataclass(frozen=True)
class GuildSettings:
    """One server's settings; defaults mean 'no restriction beyond the bot's config'."""

    allowed_channels: tuple[int, ...] = ()
    """Empty: every channel."""
    max_size: int = 0
    """0: the preset's cap."""
    max_quality: str = "best"
    per_user_queue: int = 0
    """Jobs one member may have waiting or running here; 0: the executor's own limit."""
    cooldown_s: float = 0.0
    """Least time between two requests of one member."""
    max_styles: int = 0
    """Styles this server may keep in its library; 0: the config's `[styles]` cap."""
    max_styles_mb: int = 0
    """Megabytes those styles may take; 0: the config's `[styles]` cap."""

    def validate(self) -> None:
        """Raise ValueError with a message fit for a server admin."""
        if self.max_quality not in QUALITIES:
            raise ValueError(f"max quality must be one of {', '.join(QUALITIES)}")
        if self.max_size and not REQUEST_SIZE_MIN <= self.max_size <= SIZE_MAX:
            raise ValueError(
                f"max size must be between {REQUEST_SIZE_MIN} and {SIZE_MAX} pixels "
                "(or 0 for no cap)"
            )
        if not 0 <= self.per_user_queue <= 100:
            raise ValueError("queue limit must be between 0 and 100")
        if not 0 <= self.cooldown_s <= 86_400:
            raise ValueError("cooldown must be between 0 and 86400 seconds")
        if not 0 <= self.max_styles <= MAX_STYLES_LIMIT:
            raise ValueError(f"max styles must be between 0 and {MAX_STYLES_LIMIT}")
        if not 0 <= self.max_styles_mb <= MAX_STYLES_MB_LIMIT:
            raise ValueError(f"max styles MB must be between 0 and {MAX_STYLES_MB_LIMIT}")

    def style_caps(self, config: StylesConfig) -> StyleCaps:
        """The server's style caps: the config's, lowered (never raised) by this server's."""
        return StyleCaps.for_server(
            config, max_styles=self.max_styles, max_styles_mb=self.max_styles_mb
        )

    def allows_channel(self, channel_id: int, parent_id: int | None = None) -> bool:
        """Whether requests are accepted in this channel (a thread counts as its parent)."""
        if not self.allowed_channels:
            return True
        return channel_id in self.allowed_channels or (
            parent_id is not None and parent_id in self.allowed_channels
        )

    def to_json(self) -> str:
        """JSON text of every field."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> GuildSettings:
        """Parse `to_json` output, ignoring keys an older or newer version wrote."""
        data: dict[str, Any] = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "allowed_channels" in values:
            values["allowed_channels"] = tuple(int(c) for c in values["allowed_channels"])
        return cls(**values)


class SettingsStore:
    """Guild settings in `<data_dir>/settings.sqlite3`, cached in memory for cheap reads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._cache: dict[int, GuildSettings] = {}
        self._lock = asyncio.Lock()
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        """Create the database if needed and load every row into the cache."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS guild_settings ("
            "guild_id INTEGER PRIMARY KEY, data TEXT NOT NULL)"
        )
        self._db.commit()
        for guild_id, data in self._db.execute("SELECT guild_id, data FROM guild_settings"):
            try:
                self._cache[guild_id] = GuildSettings.from_json(data)
            except (ValueError, TypeError):
                log.warning("guild %s: unreadable settings row ignored", guild_id)

    def close(self) -> None:
        """Close the database."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def get(self, guild_id: int | None) -> GuildSettings:
        """Settings of a server (defaults for DMs and unknown servers)."""
        if guild_id is None:
            return GuildSettings()
        return self._cache.get(guild_id, GuildSettings())

    async def update(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Apply changes, validate, persist and return the new settings."""
        async with self._lock:
            new = dataclasses.replace(self.get(guild_id), **changes)
            new.validate()
            await asyncio.to_thread(self._write, guild_id, new)
            self._cache[guild_id] = new
            return new

    def _write(self, guild_id: int, settings: GuildSettings) -> None:
        if self._db is None:
            raise RuntimeError("settings store is not open")
        with self._db:
            self._db.execute(
                "INSERT INTO guild_settings (guild_id, data) VALUES (?, ?) "
                "ON CONFLICT(guild_id) DO UPDATE SET data = excluded.data",
                (guild_id, settings.to_json()),
            )
