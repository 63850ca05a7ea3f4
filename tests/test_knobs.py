"""One definition of each knob: every surface takes bounds and choices from params and config."""

from __future__ import annotations

import io
import typing

import pytest
from PIL import Image

from nstbot.bot.cogs.admin import Admin
from nstbot.bot.cogs.stylize import PREFIX_USAGE, Stylize, parse_options
from nstbot.bot.intake import Refusal
from nstbot.bot.presets import PRESETS, QUALITIES
from nstbot.bot.settings import GuildSettings
from nstbot.cli import build_parser
from nstbot.config import Quality
from nstbot.engine.transfer import scale_sizes
from nstbot.images import ImageRejected, decode
from nstbot.params import (
    REQUEST_SIZE_MIN,
    SIZE_MAX,
    SIZE_MIN,
    STRENGTHS,
    ParamsError,
    Strength,
    TransferParams,
    style_side,
)


def app_parameter(command: typing.Any, name: str) -> typing.Any:
    return next(p for p in command.parameters if p.name == name)


def test_slash_and_settings_sizes_use_the_shared_bounds() -> None:
    size = app_parameter(Stylize.stylize, "size")
    assert (size.min_value, size.max_value) == (REQUEST_SIZE_MIN, SIZE_MAX)
    cap = app_parameter(Admin.settings, "max_size")
    assert (cap.min_value, cap.max_value) == (0, SIZE_MAX)
    strength = app_parameter(Stylize.stylize, "strength")
    assert [c.value for c in strength.choices] == list(STRENGTHS) == list(typing.get_args(Strength))
    assert strength.default == TransferParams.strength
    quality = app_parameter(Stylize.stylize, "quality")
    assert [c.value for c in quality.choices] == list(QUALITIES) == list(typing.get_args(Quality))


@pytest.mark.parametrize("size", [REQUEST_SIZE_MIN - 1, SIZE_MAX + 1])
def test_prefix_sizes_and_server_caps_refuse_the_same_values(size: int) -> None:
    with pytest.raises(Refusal, match=f"between {REQUEST_SIZE_MIN} and {SIZE_MAX}"):
        parse_options(f"size={size}")
    with pytest.raises(ValueError, match=f"between {REQUEST_SIZE_MIN} and {SIZE_MAX}"):
        GuildSettings(max_size=size).validate()
    assert parse_options(f"size={REQUEST_SIZE_MIN}").size == REQUEST_SIZE_MIN
    GuildSettings(max_size=SIZE_MAX).validate()


def test_presets_and_params_stay_inside_the_bounds() -> None:
    for table in PRESETS.values():
        assert set(table) == set(QUALITIES)
        for preset in table.values():
            assert REQUEST_SIZE_MIN <= preset.size <= preset.max_size <= SIZE_MAX
    TransferParams(size=SIZE_MIN)
    TransferParams(size=SIZE_MAX)
    for size in (SIZE_MIN - 1, SIZE_MAX + 1):
        with pytest.raises(ParamsError, match=f"between {SIZE_MIN} and {SIZE_MAX}"):
            TransferParams(size=size)
    assert "|".join(STRENGTHS) in PREFIX_USAGE and "|".join(QUALITIES) in PREFIX_USAGE


def test_cli_choices_come_from_the_literals(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["stylize", "c.jpg", "s.jpg", "-o", "o.png"]
    for strength in STRENGTHS:
        assert build_parser().parse_args([*base, "--strength", strength]).strength == strength
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args([*base, "--strength", "extreme"])
    assert caught.value.code == 2
    assert "choose from " + ", ".join(f"'{s}'" for s in STRENGTHS) in capsys.readouterr().err


@pytest.mark.parametrize(("width", "height"), [(600, 16), (2000, 100), (1000, 62), (1000, 63)])
def test_images_and_engine_agree_on_too_long_and_thin(width: int, height: int) -> None:
    # At 512 px and a 32 px short side the limit is 16:1; the engine's own floor (16 px) is looser,
    # so whatever images accept the engine accepts, through the same definition.
    params = TransferParams(size=512)
    picture = Image.new("RGB", (width, height), "white")
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    try:
        decoded = decode(buffer.getvalue(), working_size=params.size)
    except ImageRejected as exc:
        assert "too long and thin" in str(exc)
        thin_for_engine = round(min(width, height) * 512 / max(width, height)) < 16
        if thin_for_engine:
            with pytest.raises(ParamsError, match="at least 16 px"):
                scale_sizes(width, height, params)
    else:
        assert min(decoded.image.size) >= 32
        assert scale_sizes(*decoded.image.size, params)[-1] == decoded.image.size


def test_style_side_is_one_formula() -> None:
    assert style_side(512, 1.0) == 512
    assert style_side(100, 0.05) == SIZE_MIN
    assert style_side(333, 1.5) == round(333 * 1.5)
