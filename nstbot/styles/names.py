"""Style names and descriptions: what a user may type, and the form they are stored in."""

from __future__ import annotations

import re

from nstbot.styles.errors import StyleRefused

STYLE_NAME_MIN = 2
STYLE_NAME_MAX = 32
STYLE_DESCRIPTION_MAX = 100
"""Discord's limit on an autocomplete choice's text, which shows the description."""

_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


def normalize_style_name(name: str) -> str:
    """The form a typed name is looked up in (trimmed, lower-case); no checks."""
    return name.strip().lower()


def check_style_name(name: str) -> str:
    """The name as stored (lower-case `a-z0-9-`, 2..32 chars, no `-` at either end), or raise."""
    stored = normalize_style_name(name)
    if not STYLE_NAME_MIN <= len(stored) <= STYLE_NAME_MAX:
        raise StyleRefused(
            f"A style name must be {STYLE_NAME_MIN} to {STYLE_NAME_MAX} characters long; "
            f"`{quote_name(stored)}` has {len(stored)}."
        )
    if not _NAME.fullmatch(stored):
        raise StyleRefused(
            f"`{quote_name(stored)}` is not a usable style name: use letters a-z, digits and `-` "
            "(not at the start or end), for example `blue-period`."
        )
    return stored


def check_style_description(description: str | None) -> str | None:
    """The description as stored (trimmed; None when empty), or raise when it is too long."""
    if description is None:
        return None
    text = " ".join(description.split())
    if len(text) > STYLE_DESCRIPTION_MAX:
        raise StyleRefused(
            f"A style description can be at most {STYLE_DESCRIPTION_MAX} characters; "
            f"that one has {len(text)}."
        )
    return text or None


def shorten(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quote_name(text: str) -> str:
    """Text safe inside a chat code span, cut to 40 characters."""
    # Backticks would end the code span in a chat message, and long names flood it.
    return shorten(text.replace("`", "'"), 40)
