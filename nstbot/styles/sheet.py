"""A contact sheet of styles: thumbnails in a grid, each named underneath, built-ins marked."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from typing import Literal

from PIL import Image, ImageDraw, ImageFont, ImageOps

from nstbot.styles.catalog import Style
from nstbot.styles.errors import StyleRefused

log = logging.getLogger(__name__)

COLUMNS = 4
THUMB = 256
"""Side of each square thumbnail; Discord previews a sheet of four at about half this size."""
_PAD = 16
_NAME_PX = 30
_TITLE_PX = 21
_HEADER_PX = 30
_TEXT_H = _NAME_PX + _TITLE_PX + 18
_BACKGROUND = (24, 24, 28)
_NAME_COLOUR = (245, 245, 245)
_TITLE_COLOUR = (175, 175, 185)
_BUILTIN_COLOUR = (232, 184, 62)
_JPEG_QUALITY = 88


def page_count(n_styles: int, per_page: int = 12) -> int:
    """How many pages `n_styles` fill (at least one: an empty sheet says so)."""
    return max(1, math.ceil(n_styles / max(1, per_page)))


def contact_sheet(
    styles: Sequence[Style],
    *,
    page: int = 1,
    per_page: int = 12,
    format: Literal["JPEG", "PNG"] = "JPEG",
) -> tuple[bytes, int]:
    """An image of one page of `styles` (name and title under each), and the number of pages."""
    per_page = max(1, per_page)
    pages = page_count(len(styles), per_page)
    if not 1 <= page <= pages:
        raise StyleRefused(
            f"There {'is' if pages == 1 else 'are'} only {pages} "
            f"page{'' if pages == 1 else 's'} of styles; pick a page from 1 to {pages}."
        )
    shown = list(styles[(page - 1) * per_page : page * per_page])
    columns = max(1, min(COLUMNS, len(shown)))
    rows = max(1, math.ceil(len(shown) / columns))
    cell_w, cell_h = THUMB + 2 * _PAD, THUMB + _TEXT_H + _PAD
    header_h = _HEADER_PX + 2 * _PAD
    sheet = Image.new("RGB", (columns * cell_w, header_h + rows * cell_h), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    fonts = _fonts()
    heading = "Styles" if pages == 1 else f"Styles: page {page} of {pages}"
    if not shown:
        heading = "No styles yet"
    draw.text((_PAD, _PAD), heading, font=fonts["header"], fill=_NAME_COLOUR)
    for index, style in enumerate(shown):
        x = (index % columns) * cell_w + _PAD
        y = header_h + (index // columns) * cell_h
        _draw_cell(sheet, draw, fonts, style, x, y)
    buffer = io.BytesIO()
    if format == "PNG":
        sheet.save(buffer, "PNG", optimize=True)
    else:
        sheet.save(buffer, "JPEG", quality=_JPEG_QUALITY, optimize=True)
    return buffer.getvalue(), pages


def _fonts() -> dict[str, ImageFont.FreeTypeFont | ImageFont.ImageFont]:
    # Pillow's bundled font: nothing to install or ship, and the same on every host.
    return {
        "header": ImageFont.load_default(_HEADER_PX),
        "name": ImageFont.load_default(_NAME_PX),
        "title": ImageFont.load_default(_TITLE_PX),
        "badge": ImageFont.load_default(16),
    }


def _draw_cell(
    sheet: Image.Image,
    draw: ImageDraw.ImageDraw,
    fonts: dict[str, ImageFont.FreeTypeFont | ImageFont.ImageFont],
    style: Style,
    x: int,
    y: int,
) -> None:
    sheet.paste(_thumbnail(style), (x, y))
    if style.builtin:
        frame = (x - 3, y - 3, x + THUMB + 2, y + THUMB + 2)
        draw.rectangle(frame, outline=_BUILTIN_COLOUR, width=3)
        badge = "BUILT-IN"
        left, top, right, bottom = draw.textbbox((0, 0), badge, font=fonts["badge"])
        draw.rectangle((x, y, x + right - left + 12, y + bottom - top + 10), fill=_BUILTIN_COLOUR)
        draw.text((x + 6 - left, y + 5 - top), badge, font=fonts["badge"], fill=_BACKGROUND)
    text_y = y + THUMB + 8
    draw.text((x, text_y), _fit(style.name, fonts["name"]), font=fonts["name"], fill=_NAME_COLOUR)
    subtitle = style.title if style.title != style.name else ""
    if style.year:
        subtitle = f"{subtitle} ({style.year})" if subtitle else str(style.year)
    if subtitle:
        draw.text(
            (x, text_y + _NAME_PX + 6),
            _fit(subtitle, fonts["title"]),
            font=fonts["title"],
            fill=_TITLE_COLOUR,
        )


def _thumbnail(style: Style) -> Image.Image:
    """The style's image cropped to a square; a grey tile when its file cannot be read."""
    try:
        with Image.open(style.path) as im:
            im.draft("RGB", (THUMB, THUMB))
            return ImageOps.fit(im.convert("RGB"), (THUMB, THUMB), Image.Resampling.LANCZOS)
    except (OSError, ValueError) as exc:
        log.warning("style %s: thumbnail of %s failed (%s)", style.name, style.path, exc)
        return Image.new("RGB", (THUMB, THUMB), (70, 70, 76))


def _fit(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> str:
    """`text` cut with an ellipsis to the thumbnail's width."""
    if font.getlength(text) <= THUMB:
        return text
    while text and font.getlength(text + "…") > THUMB:
        text = text[:-1]
    return text.rstrip() + "…"
