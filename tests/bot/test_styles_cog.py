"""The style cog's texts: the contact sheet's caption and the usage line."""

from __future__ import annotations

from dataclasses import replace

from nstbot.bot.cogs.styles import SHEET_PER_PAGE, describe_usage, sheet_caption, sheet_filename
from nstbot.styles import BUILTIN_STYLES, StyleCaps


def test_caption_lists_the_page_and_says_how_to_use_a_style() -> None:
    own = replace(BUILTIN_STYLES[0], name="my-art", title="my-art", artist=None, year=None)
    styles = [*BUILTIN_STYLES, replace(own, guild_id=5)]
    text = sheet_caption(styles, 1, 1, prefix="!")
    assert "`starry-night`: The Starry Night (Vincent van Gogh, 1889)" in text
    assert "`my-art` · this server's" in text
    assert "/stylize content:<photo> preset:<name>" in text and "!stylize preset=<name>" in text
    assert "More:" not in text and "page 1" not in text


def test_caption_pages() -> None:
    many = [replace(BUILTIN_STYLES[0], name=f"s{i:02}", guild_id=5) for i in range(20)]
    first = sheet_caption(many, 1, 2)
    assert "page 1 of 2" in first and "`s11`" in first and "`s12`" not in first
    assert "More: `/nst styles page:2`" in first and "stylize preset=" not in first
    second = sheet_caption(many, 2, 2)
    assert "`s12`" in second and "More:" not in second
    assert len(second.splitlines()) == 2 + len(many) - SHEET_PER_PAGE


def test_usage_and_filename() -> None:
    caps = StyleCaps(max_count=25, max_bytes=25_000_000)
    assert describe_usage(3, 400_000, caps) == "3 of 25 styles, 0.4 of 25 MB"
    assert sheet_filename(b"\x89PNG\r\n") == "styles.png"
    assert sheet_filename(b"\xff\xd8\xff") == "styles.jpg"
