"""The built-in styles: package data with their credits, readable through importlib.resources."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from PIL import Image

from nstbot import images
from nstbot.styles import BUILTIN_STYLES, builtin_names, builtin_style, check_style_name


def test_every_builtin_is_a_valid_image_with_name_title_artist_and_year() -> None:
    assert {"starry-night", "woman-with-a-hat", "hubble-deep-field"} <= set(builtin_names())
    for style in BUILTIN_STYLES:
        assert check_style_name(style.name) == style.name
        assert style.builtin and style.guild_id is None
        assert style.title and style.artist and style.year
        data = style.read_bytes()
        assert len(data) == style.nbytes
        decoded = images.decode(data)
        assert decoded.image.mode == "RGB" and max(decoded.image.size) == 512


def test_builtin_files_are_package_resources() -> None:
    folder = resources.files("nstbot.styles").joinpath("builtin")
    for style in BUILTIN_STYLES:
        assert folder.joinpath(style.path.name).read_bytes() == style.read_bytes()
    assert "public domain" in folder.joinpath("SOURCES.md").read_text(encoding="utf-8")


def test_lookup_ignores_case_and_labels_read_well() -> None:
    style = builtin_style("Starry-NIGHT")
    assert style is not None
    assert style.label() == "starry-night: The Starry Night (Vincent van Gogh, 1889)"
    assert builtin_style("no-such-style") is None
    hubble = builtin_style("hubble-deep-field")
    assert hubble is not None and "photograph" in (hubble.description or "")


def test_builtin_images_carry_no_metadata() -> None:
    for style in BUILTIN_STYLES:
        with Image.open(style.path) as im:
            assert not im.getexif()


def test_the_wheel_ships_every_builtin_file() -> None:
    # pyproject's package-data decides what the wheel carries besides the modules.
    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["nstbot.styles"]
    package = root / "nstbot" / "styles"
    shipped = {path for pattern in patterns for path in package.glob(pattern)}
    on_disk = {path for path in (package / "builtin").iterdir() if path.is_file()}
    assert on_disk == shipped
    assert {style.path.resolve() for style in BUILTIN_STYLES} <= {p.resolve() for p in shipped}
