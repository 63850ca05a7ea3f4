"""What a style is, and the built-in ones shipped as package data (nstbot/styles/builtin/)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from nstbot.styles.names import normalize_style_name


@dataclass(frozen=True)
class Style:
    """A named style image: built-in (`guild_id` None) or one server's own."""

    name: str
    """Lower-case, as stored; unique per server and never a built-in's."""
    title: str
    artist: str | None
    year: int | None
    description: str | None
    path: Path
    nbytes: int
    guild_id: int | None = None

    @property
    def builtin(self) -> bool:
        """Whether the style ships with nstbot (else it belongs to server `guild_id`)."""
        return self.guild_id is None

    def credit(self) -> str:
        """Artist and year, e.g. "Vincent van Gogh, 1889" (empty when neither is known)."""
        return ", ".join(str(part) for part in (self.artist, self.year) if part)

    def full_title(self) -> str:
        """The title with its credit, e.g. "The Starry Night (Vincent van Gogh, 1889)"."""
        return f"{self.title} ({credit})" if (credit := self.credit()) else self.title

    def label(self) -> str:
        """One line naming the style, e.g. "starry-night: The Starry Night (Vincent van Gogh,
        1889)"."""
        return self.full_title() if self.title == self.name else f"{self.name}: {self.full_title()}"

    def read_bytes(self) -> bytes:
        """The image file's bytes."""
        return self.path.read_bytes()


def _builtin(
    name: str, title: str, artist: str, year: int, description: str | None = None
) -> Style:
    path = Path(str(resources.files("nstbot.styles").joinpath("builtin", f"{name}.jpg")))
    return Style(
        name=name,
        title=title,
        artist=artist,
        year=year,
        description=description,
        path=path,
        nbytes=path.stat().st_size,
    )


BUILTIN_STYLES: tuple[Style, ...] = (
    _builtin(
        "starry-night",
        "The Starry Night",
        "Vincent van Gogh",
        1889,
        "Swirling night sky in thick blue and yellow brush strokes.",
    ),
    _builtin(
        "woman-with-a-hat",
        "Woman with a Hat",
        "Henri Matisse",
        1905,
        "Fauvist portrait in loud, flat patches of colour.",
    ),
    _builtin(
        "hubble-deep-field",
        "Hubble Deep Field",
        "NASA/ESA",
        1995,
        "A photograph, not a painting: thousands of galaxies on black.",
    ),
)
"""Sources and rights: nstbot/styles/builtin/SOURCES.md."""

_BY_NAME = {style.name: style for style in BUILTIN_STYLES}


def builtin_style(name: str) -> Style | None:
    """The built-in style of that name (any case), else None."""
    return _BY_NAME.get(normalize_style_name(name))


def builtin_names() -> tuple[str, ...]:
    """The built-in styles' names, in catalogue order."""
    return tuple(_BY_NAME)
