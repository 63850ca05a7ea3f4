"""Prefix-command options and the parameter summary line."""

from __future__ import annotations

import pytest

from nstbot.bot.cogs.stylize import Options, describe, parse_options
from nstbot.bot.intake import Refusal
from nstbot.params import TransferParams


def test_empty_options_are_defaults() -> None:
    assert parse_options("") == Options()


def test_words_in_any_order() -> None:
    opts = parse_options("seed=42 BEST colors high 256px")
    assert opts == Options(quality="best", strength="high", size=256, preserve_colors=True, seed=42)
    assert parse_options("size=300").size == 300
    assert parse_options("fast timelapse").timelapse and not parse_options("fast").timelapse


@pytest.mark.parametrize("text", ["ultra", "size=big", "seed=-1", "https://example.com/x.png"])
def test_unknown_words_are_refused(text: str) -> None:
    with pytest.raises(Refusal, match="understand"):
        parse_options(text)


def test_describe_lists_parameters_and_notes() -> None:
    params = TransferParams(size=384, steps=100, scales=2, seed=9, preserve_colors=True)
    text = describe(params, "balanced", 2, ["size lowered to 384 px"])
    assert text.startswith("balanced · 384 px · 100 steps · strength medium · seed 9")
    assert "colours kept" in text and "2 styles blended" in text and "(size lowered" in text


def test_describe_says_when_a_timelapse_comes_along() -> None:
    params = TransferParams(size=64, steps=3, scales=1, seed=1)
    assert "timelapse" not in describe(params, "fast", 1, [])
    asked = params.replace(extra={"quality": "fast", "timelapse": True})
    assert describe(asked, "fast", 1, []).endswith(" · timelapse")


def test_preset_words() -> None:
    opts = parse_options("preset=Starry-Night fast preset2=woman-with-a-hat")
    assert opts.presets == ("starry-night", "woman-with-a-hat") and opts.quality == "fast"
    assert parse_options("").presets == (None, None)
    with pytest.raises(Refusal, match="understand"):
        parse_options("preset=")


def test_describe_names_the_preset_style() -> None:
    params = TransferParams(
        size=256, steps=60, scales=1, seed=1, extra={"styles": ["The Starry Night (V, 1889)"]}
    )
    text = describe(params, "fast", 1, [])
    assert text.startswith("in the style of The Starry Night (V, 1889) · fast · 256 px")
