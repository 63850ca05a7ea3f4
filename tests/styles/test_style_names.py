"""Style names: what is accepted, the stored form, and the refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nstbot.styles import STYLE_NAME_MAX, StyleRefused, check_style_description, check_style_name


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("Starry-Night", "starry-night"), ("  blue42 ", "blue42"), ("ab", "ab"), ("a-b-c", "a-b-c")],
)
def test_names_are_stored_trimmed_and_lower_case(typed: str, stored: str) -> None:
    assert check_style_name(typed) == stored


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("a", "2 to 32 characters"),
        ("", "2 to 32 characters"),
        ("x" * (STYLE_NAME_MAX + 1), "2 to 32 characters"),
        ("-blue", "not a usable style name"),
        ("blue-", "not a usable style name"),
        ("blue period", "not a usable style name"),
        ("blue_period", "not a usable style name"),
        ("bleu-été", "not a usable style name"),
        ("`code`", "not a usable style name"),
    ],
)
def test_bad_names_are_refused_with_the_rule(typed: str, problem: str) -> None:
    with pytest.raises(StyleRefused, match=problem) as info:
        check_style_name(typed)
    # The refusal quotes the name inside a code span, so it must not end it early.
    assert str(info.value).count("`") % 2 == 0


@given(st.text(max_size=40))
def test_any_text_is_either_refused_or_stored_in_the_allowed_form(text: str) -> None:
    try:
        stored = check_style_name(text)
    except StyleRefused:
        return
    assert 2 <= len(stored) <= STYLE_NAME_MAX
    assert set(stored) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert not stored.startswith("-") and not stored.endswith("-")
    assert check_style_name(stored) == stored


def test_descriptions_are_trimmed_and_capped() -> None:
    assert check_style_description("  thick   paint\n") == "thick paint"
    assert check_style_description("   ") is None
    assert check_style_description(None) is None
    with pytest.raises(StyleRefused, match="at most 100 characters"):
        check_style_description("x" * 101)
