"""ImageRejected, the one exception of nstbot.images, and the helpers that raise it."""

from __future__ import annotations

import logging

log = logging.getLogger("nstbot.images")

ACCEPTED = "Please send a PNG, JPEG, WebP, GIF or BMP image."


class ImageRejected(ValueError):
    """An image the bot will not use; str() is a short message fit to show a chat user as is.

    `plain` says the same without the bot's voice, as a predicate whose subject is the file
    ("is an HTML page, not a PNG, ... image"), for surfaces that name the file themselves (the CLI).
    """

    def __init__(self, message: str, plain: str | None = None) -> None:
        super().__init__(message)
        self.plain = plain if plain is not None else _predicate(message)


def _predicate(message: str) -> str:
    for subject in ("That image ", "That file "):
        if message.startswith(subject):
            return message.removeprefix(subject)
    return f"was refused: {message}"


def reject(message: str, reason: str, plain: str | None = None) -> ImageRejected:
    """An ImageRejected with `message` for chat users, after logging `reason` for the operator."""
    log.info("image rejected: %s", reason)
    return ImageRejected(message, plain)


def unsupported(what: str) -> ImageRejected:
    """A refusal of data that is `what` ("text", "a PDF", ...) rather than an accepted image."""
    return reject(
        f"I received {what}, which I can't use. {ACCEPTED}",
        f"not an image ({what})",
        plain=f"is {what}, not a PNG, JPEG, WebP, GIF or BMP image",
    )


def megabytes(n: float) -> str:
    """n bytes in MB (or n pixels in megapixels), with no trailing ".0"."""
    return f"{n / 1e6:.1f}".removesuffix(".0")
