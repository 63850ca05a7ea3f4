"""Choosing artworks: slots of uploads and presets, look-ups in the real library, the summary."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import discord
import pytest
from PIL import Image

from nstbot.bot.artworks import (
    UPLOADED,
    choice_name,
    in_the_style_of,
    look_up,
    prefix_slots,
    slash_slots,
    style_credits,
    style_inputs,
)
from nstbot.bot.intake import Attachment, Refusal
from nstbot.images import ImageLimits
from nstbot.styles import StyleCaps, StyleLibrary, builtin_style

CAPS = StyleCaps(max_count=5, max_bytes=5_000_000)


def attachment(name: str = "art.png") -> discord.Attachment:
    data: dict[str, Any] = {
        "id": "1",
        "filename": name,
        "size": 100,
        "url": f"http://127.0.0.1/cdn/{name}",
        "proxy_url": f"http://127.0.0.1/cdn/{name}",
        "content_type": "image/png",
    }
    state = SimpleNamespace(http=None)  # an attachment only keeps its state's HTTP client
    return discord.Attachment(data=data, state=state)  # type: ignore[arg-type]


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 40, 10)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def library(tmp_path: Path) -> Iterator[StyleLibrary]:
    lib = StyleLibrary(
        tmp_path / "settings.sqlite3", tmp_path / "styles", limits=ImageLimits(), max_side=64
    )
    lib.open()
    yield lib
    lib.close()


def test_slash_slots_take_an_upload_or_a_preset() -> None:
    art = attachment()
    assert slash_slots(art, None, None, None) == [art]
    assert slash_slots(None, "starry-night", None, " ") == ["starry-night"]
    assert slash_slots(None, "starry-night", art, None) == ["starry-night", art]
    assert slash_slots(art, None, None, "woman-with-a-hat") == [art, "woman-with-a-hat"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((None, None, None, None), "Which artwork"),
        ((None, "", None, "starry-night"), "Which artwork"),
        (("upload", "starry-night", None, None), "either `style` or `preset`"),
        ((None, "starry-night", "upload", "woman-with-a-hat"), "either `style2` or `preset2`"),
    ],
)
def test_slash_slots_refuse_neither_or_both(args: tuple, message: str) -> None:
    args = tuple(attachment() if a == "upload" else a for a in args)
    with pytest.raises(Refusal, match=message):
        slash_slots(*args)


def test_prefix_slots_fill_from_presets_then_uploads() -> None:
    art = attachment()
    assert prefix_slots([], ("starry-night", None)) == ["starry-night"]
    assert prefix_slots([art], ("starry-night", None)) == ["starry-night", art]
    assert prefix_slots([art], (None, "starry-night")) == [art, "starry-night"]
    assert prefix_slots([], ("starry-night", "woman-with-a-hat")) == [
        "starry-night",
        "woman-with-a-hat",
    ]
    with pytest.raises(Refusal, match="I need an artwork"):
        prefix_slots([], (None, "starry-night"))
    with pytest.raises(Refusal, match="only two slots"):
        prefix_slots([art, attachment("b.png")], ("starry-night", None))


async def test_look_up_finds_builtins_and_this_servers_styles_only(library: StyleLibrary) -> None:
    library.add(1, "my-art", png(), description=None, added_by=9, caps=CAPS)
    art = attachment()
    found = await look_up(library, 1, ["Starry-Night", art, "my-art"])
    assert found[0] == builtin_style("starry-night") and found[1] is art
    assert found[2].name == "my-art" and found[2].guild_id == 1
    with pytest.raises(Refusal, match="no style called `my-art`"):
        await look_up(library, 2, ["my-art"])
    with pytest.raises(Refusal, match="no style called `my-art`"):
        await look_up(library, None, ["my-art"])


async def test_style_inputs_are_the_presets_bytes_and_attachments(library: StyleLibrary) -> None:
    style = library.add(1, "my-art", png(), description=None, added_by=9, caps=CAPS)
    art = attachment()
    inputs = await style_inputs([style, art])
    assert inputs[0] == style.path.read_bytes()
    assert isinstance(inputs[1], Attachment) and inputs[1].filename == "art.png"
    library.remove(1, "my-art")
    with pytest.raises(Refusal, match="no longer there"):
        await style_inputs([style])


def test_credits_name_presets_and_uploads() -> None:
    starry = builtin_style("starry-night")
    assert starry is not None
    assert starry.full_title() == "The Starry Night (Vincent van Gogh, 1889)"
    assert style_credits([attachment()]) is None
    credits = style_credits([starry, attachment()])
    assert credits == ["The Starry Night (Vincent van Gogh, 1889)", UPLOADED]
    assert in_the_style_of(credits) == (
        "in the style of The Starry Night (Vincent van Gogh, 1889) and your artwork"
    )
    assert in_the_style_of(None) is None
    assert choice_name(starry).startswith("starry-night: The Starry Night")
    assert len(choice_name(starry)) <= 100
