"""Named style images: the built-ins shipped with nstbot and each server's own library.

No torch and no discord here: the bot, the CLI and the worker's warm-up all import this package.
"""

from nstbot.styles.catalog import BUILTIN_STYLES, Style, builtin_names, builtin_style
from nstbot.styles.errors import StyleRefused
from nstbot.styles.library import StyleCaps, StyleLibrary
from nstbot.styles.names import (
    STYLE_DESCRIPTION_MAX,
    STYLE_NAME_MAX,
    check_style_description,
    check_style_name,
)
from nstbot.styles.sheet import contact_sheet, page_count

__all__ = [
    "BUILTIN_STYLES",
    "STYLE_DESCRIPTION_MAX",
    "STYLE_NAME_MAX",
    "Style",
    "StyleCaps",
    "StyleLibrary",
    "StyleRefused",
    "builtin_names",
    "builtin_style",
    "check_style_description",
    "check_style_name",
    "contact_sheet",
    "page_count",
]
