"""The one refusal of the style library."""

from __future__ import annotations


class StyleRefused(ValueError):
    """A style cannot be added, removed, found or shown; `str()` is fit for the user."""
