"""Each server's own styles: rows in the bot's SQLite database, normalized copies in its folder.

Storage: table `server_styles` in `<data_dir>/settings.sqlite3` (this library's own connection,
short transactions, so the settings store may share the file) and one file per style under
`<data_dir>/styles/<guild_id>/`. A file is written (to a temporary name, then renamed) before its
row is committed and deleted after its row is, so a crash can leave only a file without a row;
`open()` deletes those. Every call blocks: the bot calls them through `asyncio.to_thread`.
"""

from __future__ import annotations

import io
import logging
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nstbot import images
from nstbot.styles.catalog import BUILTIN_STYLES, Style, builtin_style
from nstbot.styles.errors import StyleRefused
from nstbot.styles.names import (
    check_style_description,
    check_style_name,
    normalize_style_name,
    quote_name,
)

if TYPE_CHECKING:
    from nstbot.config import StylesConfig

__all__ = ["JPEG_QUALITY", "StyleCaps", "StyleLibrary", "StyleRefused"]

log = logging.getLogger(__name__)

JPEG_QUALITY = 92
_TEMP_PREFIX = ".partial-"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS server_styles ("
    "guild_id INTEGER NOT NULL, name TEXT NOT NULL, description TEXT, file TEXT NOT NULL, "
    "nbytes INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL, "
    "added_by INTEGER NOT NULL, added_at REAL NOT NULL, PRIMARY KEY (guild_id, name))"
)
_COLUMNS = "guild_id, name, description, file, nbytes"


@dataclass(frozen=True)
class StyleCaps:
    """How many styles, and how many bytes of stored copies, one server may keep (0: none)."""

    max_count: int
    max_bytes: int

    @classmethod
    def for_server(
        cls, config: StylesConfig, *, max_styles: int = 0, max_styles_mb: int = 0
    ) -> StyleCaps:
        """The config's caps, lowered by a server's own (0 there: the config's value)."""
        count, megabytes = config.max_per_server, config.max_server_mb
        if max_styles:
            count = min(count, max_styles)
        if max_styles_mb:
            megabytes = min(megabytes, max_styles_mb)
        return cls(max_count=count, max_bytes=megabytes * 1_000_000)


class StyleLibrary:
    """Server styles kept in SQLite plus files; see the module docstring for the layout."""

    def __init__(
        self,
        db_path: Path,
        folder: Path,
        *,
        limits: images.ImageLimits,
        max_side: int,
        busy_timeout_s: float = 10.0,
    ) -> None:
        self.db_path = Path(db_path)
        self.folder = Path(folder)
        self.limits = limits
        self.max_side = max_side
        self.busy_timeout_s = busy_timeout_s
        self._db: sqlite3.Connection | None = None
        # One connection shared by the threads asyncio.to_thread uses: one call at a time.
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Create the table and folder if needed, and clean up after a crash."""
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        # A busy timeout lets a write wait out the settings store's short transactions.
        self._db = sqlite3.connect(
            self.db_path, timeout=self.busy_timeout_s, check_same_thread=False
        )
        with self._lock, self._db:
            self._db.execute(_SCHEMA)
        self._clean_up()

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> StyleLibrary:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- changes -----------------------------------------------------------------------------

    def add(
        self,
        guild_id: int,
        name: str,
        data: bytes,
        *,
        description: str | None,
        added_by: int,
        caps: StyleCaps,
    ) -> Style:
        """Store a new style for a server; StyleRefused or images.ImageRejected when it can't."""
        stored = check_style_name(name)
        description = check_style_description(description)
        if builtin_style(stored) is not None:
            raise StyleRefused(f"`{stored}` is the name of a built-in style; choose another name.")
        if caps.max_count <= 0:
            raise StyleRefused("This server can't keep styles of its own.")
        self._refuse_taken(guild_id, stored)
        # Decoding is the slow part: outside the lock, so other servers' calls go on meanwhile.
        copy, width, height = self._normalized(data)
        folder = self.folder / str(guild_id)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{stored}-{uuid.uuid4().hex[:12]}.jpg"
        temp = folder / f"{_TEMP_PREFIX}{final.name}"
        with self._lock:
            db = self._conn()
            self._refuse_taken(guild_id, stored, db=db)
            count, used = self._usage(db, guild_id)
            if count >= caps.max_count:
                raise StyleRefused(
                    f"This server already has {count} styles, the most it may keep; "
                    "remove one first."
                )
            if used + len(copy) > caps.max_bytes:
                raise StyleRefused(
                    f"That style takes {_mb(len(copy))} MB; this server's styles already take "
                    f"{_mb(used)} MB of the {_mb(caps.max_bytes)} MB they may use. "
                    "Remove one or add a smaller image."
                )
            try:
                temp.write_bytes(copy)
                temp.replace(final)
                with db:
                    db.execute(
                        "INSERT INTO server_styles (guild_id, name, description, file, nbytes, "
                        "width, height, added_by, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (guild_id, stored, description, final.name, len(copy), width, height,
                         added_by, time.time()),
                    )  # fmt: skip
            except BaseException as exc:
                temp.unlink(missing_ok=True)
                final.unlink(missing_ok=True)
                if isinstance(exc, sqlite3.OperationalError | OSError):
                    log.error("guild %s: style %s not stored: %s", guild_id, stored, exc)
                    raise StyleRefused(
                        "I couldn't store that style just now; please try again later."
                    ) from exc
                raise
        log.info(
            "guild %s: style %s added by %s (%dx%d, %d bytes)",
            guild_id, stored, added_by, width, height, len(copy),
        )  # fmt: skip
        return self._style(guild_id, stored, description, final.name, len(copy))

    def remove(self, guild_id: int, name: str) -> Style:
        """Delete a server's style (row, then file); StyleRefused when it has none of that name."""
        wanted = normalize_style_name(name)
        if builtin_style(wanted) is not None:
            raise StyleRefused(f"`{wanted}` is a built-in style; those can't be removed.")
        with self._lock:
            db = self._conn()
            row = db.execute(
                f"SELECT {_COLUMNS} FROM server_styles WHERE guild_id = ? AND name = ?",
                (guild_id, wanted),
            ).fetchone()
            if row is None:
                raise StyleRefused(f"This server has no style named `{quote_name(wanted)}`.")
            with db:
                db.execute(
                    "DELETE FROM server_styles WHERE guild_id = ? AND name = ?", (guild_id, wanted)
                )
        style = self._style(*row)
        style.path.unlink(missing_ok=True)
        log.info("guild %s: style %s removed", guild_id, wanted)
        return style

    # -- reads -------------------------------------------------------------------------------

    def server_styles(self, guild_id: int) -> list[Style]:
        """A server's own styles, by name."""
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    f"SELECT {_COLUMNS} FROM server_styles WHERE guild_id = ? ORDER BY name",
                    (guild_id,),
                )
                .fetchall()
            )
        return [self._style(*row) for row in rows]

    def usage(self, guild_id: int) -> tuple[int, int]:
        """How many styles a server keeps, and their stored bytes."""
        with self._lock:
            return self._usage(self._conn(), guild_id)

    def find(self, guild_id: int | None, name: str) -> Style | None:
        """This server's style of that name (any case), else the built-in one, else None."""
        wanted = normalize_style_name(name)
        if (style := builtin_style(wanted)) is not None:
            return style
        if guild_id is None:
            return None
        with self._lock:
            row = (
                self._conn()
                .execute(
                    f"SELECT {_COLUMNS} FROM server_styles WHERE guild_id = ? AND name = ?",
                    (guild_id, wanted),
                )
                .fetchone()
            )
        return self._style(*row) if row is not None else None

    def search(self, guild_id: int | None, typed: str, *, limit: int = 25) -> list[Style]:
        """Built-in and this server's styles whose name or title contains `typed`, best first."""
        candidates = list(BUILTIN_STYLES)
        if guild_id is not None:
            candidates += self.server_styles(guild_id)
        query = " ".join(typed.lower().split())
        as_name = query.replace(" ", "-")
        ranked: list[tuple[int, str, Style]] = []
        for style in candidates:
            title = style.title.lower()
            if not query or style.name.startswith(as_name):
                rank = 0
            elif as_name in style.name:
                rank = 1
            elif title.startswith(query):
                rank = 2
            elif query in title or (style.description and query in style.description.lower()):
                rank = 3
            else:
                continue
            ranked.append((rank, style.name, style))
        ranked.sort(key=lambda item: item[:2])
        return [style for _, _, style in ranked[: max(0, limit)]]

    # -- inside ------------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("style library is not open")
        return self._db

    def _refuse_taken(
        self, guild_id: int, name: str, *, db: sqlite3.Connection | None = None
    ) -> None:
        query = "SELECT name FROM server_styles WHERE guild_id = ? AND name = ?"
        if db is None:
            with self._lock:
                row = self._conn().execute(query, (guild_id, name)).fetchone()
        else:
            row = db.execute(query, (guild_id, name)).fetchone()
        if row is not None:
            raise StyleRefused(f"This server already has a style named `{name}`.")

    @staticmethod
    def _usage(db: sqlite3.Connection, guild_id: int) -> tuple[int, int]:
        count, used = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(nbytes), 0) FROM server_styles WHERE guild_id = ?",
            (guild_id,),
        ).fetchone()
        return int(count), int(used)

    def _normalized(self, data: bytes) -> tuple[bytes, int, int]:
        """The same intake as uploads, then a fresh JPEG (no EXIF) at most max_side px."""
        decoded = images.decode(data, limits=self.limits, working_size=self.max_side)
        picture = decoded.image
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
        return buffer.getvalue(), picture.width, picture.height

    def _style(
        self, guild_id: int, name: str, description: str | None, file: str, nbytes: int
    ) -> Style:
        return Style(
            name=name,
            title=description or name,
            artist=None,
            year=None,
            description=description,
            path=self.folder / str(guild_id) / file,
            nbytes=nbytes,
            guild_id=guild_id,
        )

    def _clean_up(self) -> None:
        """Delete files without a row (left by a crash) and rows whose file is gone."""
        with self._lock:
            db = self._conn()
            rows = db.execute("SELECT guild_id, name, file FROM server_styles").fetchall()
            known = {(str(guild_id), file) for guild_id, _, file in rows}
            for guild_id, name, file in rows:
                if not (self.folder / str(guild_id) / file).is_file():
                    log.warning("guild %s: style %s lost its file %s", guild_id, name, file)
                    with db:
                        db.execute(
                            "DELETE FROM server_styles WHERE guild_id = ? AND name = ?",
                            (guild_id, name),
                        )
        for folder in self.folder.iterdir():
            # Only servers' folders: anything else someone put here is not ours to delete.
            if not folder.is_dir() or not folder.name.isdigit():
                continue
            for path in folder.iterdir():
                if path.is_file() and (folder.name, path.name) not in known:
                    log.warning("style file %s has no row (left by a crash?); deleted", path)
                    path.unlink(missing_ok=True)


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1_000_000:.1f}".rstrip("0").rstrip(".")
