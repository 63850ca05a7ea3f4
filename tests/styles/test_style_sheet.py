"""The contact sheet: one image per page, every style named under its thumbnail."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from nstbot.styles import BUILTIN_STYLES, Style, StyleRefused, contact_sheet, page_count
from nstbot.styles.sheet import COLUMNS, THUMB


def server_style(tmp_path: Path, name: str, colour: str = "teal") -> Style:
    path = tmp_path / f"{name}.jpg"
    Image.new("RGB", (300, 200), colour).save(path)
    return Style(name, name, None, None, None, path, path.stat().st_size, guild_id=5)


def test_builtins_fit_one_page(tmp_path: Path) -> None:
    data, pages = contact_sheet(BUILTIN_STYLES)
    assert pages == 1
    with Image.open(io.BytesIO(data)) as sheet:
        assert sheet.format == "JPEG"
        assert sheet.width >= len(BUILTIN_STYLES) * THUMB
        # The Starry Night's thumbnail is there: mostly blue where the first cell is.
        cell = sheet.convert("RGB").crop((40, 120, 200, 260)).resize((1, 1), Image.Resampling.BOX)
        r, _, b = cell.getpixel((0, 0))
        assert b > r


def test_pages_split_many_styles_and_refuse_a_page_out_of_range(tmp_path: Path) -> None:
    styles = [*BUILTIN_STYLES, *(server_style(tmp_path, f"s-{i:02d}") for i in range(12))]
    assert page_count(len(styles)) == 2
    first, pages = contact_sheet(styles, page=1)
    second, _ = contact_sheet(styles, page=2)
    assert pages == 2
    with Image.open(io.BytesIO(first)) as a, Image.open(io.BytesIO(second)) as b:
        assert a.width == COLUMNS * (THUMB + 32)
        assert b.height < a.height  # 3 of 15 on the second page: one row
    for page in (0, 3):
        with pytest.raises(StyleRefused, match="only 2 pages"):
            contact_sheet(styles, page=page)


def test_an_unreadable_file_becomes_a_grey_tile_and_empty_says_so(tmp_path: Path) -> None:
    gone = server_style(tmp_path, "gone")
    gone.path.unlink()
    data, pages = contact_sheet([gone])
    assert pages == 1 and Image.open(io.BytesIO(data)).size[0] == THUMB + 32
    empty, pages = contact_sheet([])
    assert pages == 1 and Image.open(io.BytesIO(empty)).size[0] > 0
