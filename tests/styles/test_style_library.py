"""The server style library on real SQLite and real files: add, list, find, remove, caps."""

from __future__ import annotations

import io
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from nstbot import images
from nstbot.bot.settings import SettingsStore
from nstbot.config import StylesConfig
from nstbot.styles import StyleCaps, StyleLibrary, StyleRefused

A, B = 1001, 2002
CAPS = StyleCaps(max_count=5, max_bytes=5_000_000)


@pytest.fixture
def library(tmp_path: Path) -> Iterator[StyleLibrary]:
    lib = StyleLibrary(
        tmp_path / "settings.sqlite3",
        tmp_path / "styles",
        limits=images.DEFAULT_LIMITS,
        max_side=256,
    )
    lib.open()
    yield lib
    lib.close()


def picture(size: tuple[int, int] = (400, 300), colour: str = "steelblue", **save: object) -> bytes:
    image = Image.new("RGB", size, colour)
    image.paste(Image.new("RGB", (size[0] // 2, size[1] // 3), "orange"), (10, 10))
    buffer = io.BytesIO()
    image.save(buffer, save.pop("format", "JPEG"), **save)
    return buffer.getvalue()


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def add(lib: StyleLibrary, guild: int, name: str, data: bytes | None = None, **kw: object) -> Any:
    kw.setdefault("description", None)
    kw.setdefault("caps", CAPS)
    return lib.add(guild, name, data or picture(), added_by=7, **kw)  # type: ignore[arg-type]


def test_add_stores_a_normalized_copy_and_lists_finds_and_removes_it(
    library: StyleLibrary, data_dir: Path
) -> None:
    exif = Image.Exif()
    exif[0x010E] = "secret description"
    exif[0x0112] = 6  # rotated: the stored copy must be turned upright
    upload = picture((600, 300), exif=exif.tobytes())
    style = library.add(A, "Blue-Period", upload, description=" my  blues ", added_by=7, caps=CAPS)
    assert (style.name, style.guild_id, style.description) == ("blue-period", A, "my blues")
    assert not style.builtin and style.label() == "blue-period: my blues"
    with Image.open(style.path) as stored:
        assert stored.format == "JPEG" and stored.mode == "RGB"
        assert stored.size == (128, 256)  # turned by EXIF, then at most max_side
        assert not stored.getexif()
    assert style.nbytes == style.path.stat().st_size == len(style.read_bytes())

    assert library.server_styles(A) == [style]
    assert library.usage(A) == (1, style.nbytes)
    assert library.find(A, "BLUE-PERIOD") == style
    assert library.find(A, "starry-night") is not None  # built-ins too
    assert library.find(None, "blue-period") is None

    removed = library.remove(A, "Blue-Period")
    assert removed.name == "blue-period" and not removed.path.exists()
    assert library.server_styles(A) == [] and library.usage(A) == (0, 0)
    assert files_under(library.folder) == []
    with pytest.raises(StyleRefused, match="no style named `blue-period`"):
        library.remove(A, "blue-period")


def test_one_server_never_sees_uses_or_removes_another_servers_styles(
    library: StyleLibrary,
) -> None:
    mine = add(library, A, "secret")
    assert library.server_styles(B) == []
    assert library.find(B, "secret") is None
    assert [s.name for s in library.search(B, "secret")] == []
    assert library.usage(B) == (0, 0)
    with pytest.raises(StyleRefused, match="no style named"):
        library.remove(B, "secret")
    theirs = add(library, B, "secret", picture(colour="darkred"))  # the same name is free on B
    assert theirs.path != mine.path
    library.remove(B, "secret")
    assert library.find(A, "secret") == mine
    assert mine.path.exists()


def test_duplicates_are_refused_whatever_their_case_and_builtin_names_are_reserved(
    library: StyleLibrary,
) -> None:
    add(library, A, "blue")
    with pytest.raises(StyleRefused, match="already has a style named `blue`"):
        add(library, A, "BLUE")
    for name in ("starry-night", "Woman-With-A-Hat"):
        with pytest.raises(StyleRefused, match="built-in style"):
            add(library, A, name)
    with pytest.raises(StyleRefused, match="built-in"):
        library.remove(A, "starry-night")
    assert library.usage(A)[0] == 1 and len(files_under(library.folder)) == 1


def test_count_cap(library: StyleLibrary) -> None:
    caps = StyleCaps(max_count=2, max_bytes=10_000_000)
    add(library, A, "one", caps=caps)
    add(library, A, "two", caps=caps)
    with pytest.raises(StyleRefused, match="already has 2 styles"):
        add(library, A, "three", caps=caps)
    add(library, B, "three", caps=caps)  # the cap is per server
    with pytest.raises(StyleRefused, match="can't keep styles"):
        add(library, A, "four", caps=StyleCaps(max_count=0, max_bytes=10_000_000))
    assert library.usage(A)[0] == 2 and len(files_under(library.folder)) == 3


def test_byte_cap_counts_the_stored_copy_not_the_upload(library: StyleLibrary) -> None:
    big_png = picture((900, 900), format="PNG", compress_level=0)
    assert len(big_png) > 2_000_000
    first = add(library, A, "big", big_png, caps=StyleCaps(max_count=5, max_bytes=1_000_000))
    assert first.nbytes < 100_000
    tight = StyleCaps(max_count=5, max_bytes=first.nbytes + 10)
    with pytest.raises(StyleRefused, match="MB"):
        add(library, A, "again", big_png, caps=tight)
    assert library.usage(A) == (1, first.nbytes)
    assert len(files_under(library.folder)) == 1


def test_bad_images_get_the_intake_refusal_and_leave_nothing(library: StyleLibrary) -> None:
    for data in (b"hello, this is text", b"%PDF-1.4 nope", picture()[:200]):
        with pytest.raises(images.ImageRejected):
            add(library, A, "bad", data)
    strict = StyleLibrary(
        library.db_path,
        library.folder,
        limits=images.ImageLimits(max_side=300),
        max_side=256,
    )
    with strict, pytest.raises(images.ImageRejected, match="at most 300 pixels"):
        add(strict, A, "wide", picture((400, 100)))
    assert library.usage(A) == (0, 0) and files_under(library.folder) == []


def test_a_failed_write_leaves_no_file(library: StyleLibrary, tmp_path: Path) -> None:
    impatient = StyleLibrary(
        library.db_path, library.folder, limits=images.DEFAULT_LIMITS, max_side=256,
        busy_timeout_s=0.1,
    )  # fmt: skip
    impatient.open()
    other = sqlite3.connect(library.db_path)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock
    try:
        with pytest.raises(StyleRefused, match="try again"):
            add(impatient, A, "blocked")
    finally:
        other.rollback()
        other.close()
    assert files_under(library.folder) == []
    assert add(impatient, A, "blocked").name == "blocked"
    impatient.close()


def test_open_cleans_up_what_a_crash_left(library: StyleLibrary) -> None:
    kept = add(library, A, "kept")
    lost = add(library, A, "lost")
    library.close()
    lost.path.unlink()
    stray = library.folder / str(A) / "orphan-0123456789ab.jpg"
    partial = library.folder / str(B) / ".partial-x-0123456789ab.jpg"
    partial.parent.mkdir()
    stray.write_bytes(picture())
    partial.write_bytes(b"half")
    foreign = library.folder / "notes" / "readme.txt"
    foreign.parent.mkdir()
    foreign.write_text("not a server's folder")
    library.open()
    assert library.server_styles(A) == [kept]
    assert files_under(library.folder) == [kept.path, foreign]


def test_search_ranks_names_before_titles_and_respects_the_limit(library: StyleLibrary) -> None:
    add(library, A, "night-owl", description="dark blue feathers")
    add(library, A, "midnight", description="ink")
    assert [s.name for s in library.search(A, "night")][:3] == [
        "night-owl",
        "midnight",
        "starry-night",
    ]
    assert [s.name for s in library.search(A, "Starry Night")] == ["starry-night"]
    assert [s.name for s in library.search(A, "matisse")] == []
    assert [s.name for s in library.search(A, "woman with")] == ["woman-with-a-hat"]
    assert [s.name for s in library.search(A, "feathers")] == ["night-owl"]
    everything = library.search(A, "")
    assert {s.name for s in everything} >= {"starry-night", "night-owl", "midnight"}
    assert len(library.search(A, "", limit=2)) == 2
    assert [s.name for s in library.search(None, "night")] == ["starry-night"]


def test_caps_for_a_server_may_only_lower_the_config() -> None:
    config = StylesConfig(max_per_server=25, max_server_mb=25)
    assert StyleCaps.for_server(config) == StyleCaps(25, 25_000_000)
    assert StyleCaps.for_server(config, max_styles=5, max_styles_mb=2) == StyleCaps(5, 2_000_000)
    assert StyleCaps.for_server(config, max_styles=50, max_styles_mb=99) == StyleCaps(
        25, 25_000_000
    )


async def test_shares_the_database_file_with_the_settings_store(library: StyleLibrary) -> None:
    store = SettingsStore(library.db_path)
    store.open()
    errors: list[BaseException] = []

    def adder() -> None:
        try:
            for i in range(5):
                add(library, A, f"style-{i}")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=adder)
    thread.start()
    for i in range(20):
        await store.update(A, cooldown_s=float(i))
    thread.join()
    store.close()
    assert errors == []
    assert library.usage(A)[0] == 5
    again = SettingsStore(library.db_path)
    again.open()
    assert again.get(A).cooldown_s == 19.0
    again.close()
