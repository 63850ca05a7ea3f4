"""Quality presets and the caps that narrow them."""

from __future__ import annotations

import pytest

from nstbot.bot.presets import PRESETS, QUALITIES, Limits, build_params, cap_quality, help_table


def test_every_quality_exists_for_both_kinds_of_hardware() -> None:
    for table in PRESETS.values():
        assert tuple(table) == QUALITIES
        steps = [table[q].steps for q in QUALITIES]
        assert steps == sorted(steps) and len(set(steps)) == 3


def test_cpu_defaults_are_smaller_than_gpu_defaults() -> None:
    for q in QUALITIES:
        assert PRESETS["cpu"][q].size < PRESETS["gpu"][q].size
        assert PRESETS["cpu"][q].steps < PRESETS["gpu"][q].steps


def test_preset_defaults_become_params() -> None:
    params, notes = build_params(quality="balanced", hardware="gpu", limits=Limits(), seed=5)
    assert (params.size, params.steps, params.scales) == (768, 300, 3)
    assert params.seed == 5 and params.extra == {"quality": "balanced"}
    assert notes == []


def test_requested_size_above_cap_is_lowered_with_a_note() -> None:
    params, notes = build_params(quality="fast", hardware="cpu", limits=Limits(), size=4000)
    assert params.size == PRESETS["cpu"]["fast"].max_size
    assert notes and "size lowered" in notes[0]


def test_server_caps_size_and_quality() -> None:
    limits = Limits(max_size=300, max_quality="fast")
    params, notes = build_params(quality="best", hardware="gpu", limits=limits)
    assert params.size == 300 and params.steps == PRESETS["gpu"]["fast"].steps
    assert any("quality lowered to fast" in n for n in notes)


def test_tiny_sizes_drop_scales_and_respect_max_steps() -> None:
    params, _ = build_params(
        quality="best", hardware="gpu", limits=Limits(max_size=48, max_steps=3)
    )
    assert (params.size, params.steps, params.scales) == (48, 3, 1)
    assert params.min_size <= params.size


def test_two_styles_blend_equally_and_options_pass_through() -> None:
    params, _ = build_params(
        quality="fast",
        hardware="cpu",
        limits=Limits(),
        n_styles=2,
        strength="high",
        preserve_colors=True,
    )
    assert params.style_blend == (1.0, 1.0)
    assert params.strength == "high" and params.preserve_colors


def test_unknown_quality_is_an_error() -> None:
    with pytest.raises(ValueError, match="quality"):
        build_params(quality="ultra", hardware="cpu", limits=Limits())


def test_cap_quality() -> None:
    assert cap_quality("best", "balanced") == "balanced"
    assert cap_quality("fast", "best") == "fast"


def test_help_table_lists_allowed_qualities_with_times() -> None:
    text = help_table("cpu", Limits(max_quality="balanced"))
    assert "**fast**" in text and "**balanced**" in text and "**best**" not in text
    assert PRESETS["cpu"]["fast"].expect in text
