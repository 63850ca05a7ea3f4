"""The built-in styles on the command line: `nstbot styles` and `nstbot stylize --style-preset`.

Nothing here imports `nstbot.cli` (run as `python -m nstbot.cli` it is `__main__`, and a second
copy would bring a second CliError): problems are raised as StyleRefused for cli.py to report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SHEET_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def add_styles_parser(sub: Any, handler: Callable[..., int]) -> None:
    """The `nstbot styles` subcommand."""
    p = sub.add_parser(
        "styles",
        help="list the built-in styles (for stylize --style-preset)",
        description="List the styles that ship with nstbot; each works on every server too.",
    )
    p.add_argument(
        "--sheet", type=Path, metavar="OUT.png", help="also write their contact sheet (.png/.jpg)"
    )
    p.set_defaults(handler=handler)


def add_style_preset_option(group: Any) -> None:
    """`--style-preset NAME` on `nstbot stylize` (repeatable; blends with STYLE files)."""
    group.add_argument(
        "--style-preset",
        action="append",
        default=[],
        dest="style_presets",
        metavar="NAME",
        help="a built-in style instead of (or besides) STYLE files; repeat to blend; "
        "`nstbot styles` lists them",
    )


def style_files(files: Sequence[Path], presets: Sequence[str]) -> list[Path]:
    """The style images of a run: the files as given, then each preset's; StyleRefused when
    there are none or a preset is unknown. The order is the order of --blend's weights."""
    from nstbot.styles import StyleRefused, builtin_names, builtin_style

    if not files and not presets:
        raise StyleRefused(
            "give a STYLE image or --style-preset NAME (`nstbot styles` lists the built-in ones)"
        )
    paths = list(files)
    for name in presets:
        style = builtin_style(name)
        if style is None:
            raise StyleRefused(
                f"--style-preset {name}: no such built-in style; known: "
                f"{', '.join(builtin_names())}"
            )
        paths.append(style.path)
    return paths


def check_sheet_path(sheet: Path | None) -> None:
    """StyleRefused unless --sheet names a file this command can write."""
    from nstbot.styles import StyleRefused

    if sheet is not None and sheet.suffix.lower() not in SHEET_SUFFIXES:
        raise StyleRefused(f"--sheet {sheet}: the sheet must end in .png or .jpg")


def show_builtins(sheet: Path | None) -> None:
    """Print the built-in styles; with a `sheet` path, write their contact sheet there too."""
    from nstbot.styles import BUILTIN_STYLES, StyleRefused, contact_sheet

    check_sheet_path(sheet)
    rows = [(s.name, s.title, s.artist or "", str(s.year or "")) for s in BUILTIN_STYLES]
    w_name, w_title, w_artist = (max(len(row[i]) for row in rows) for i in range(3))
    for name, title, artist, year in rows:
        print(f"{name:<{w_name}}  {title:<{w_title}}  {artist:<{w_artist}}  {year}")
    print("use one: nstbot stylize PHOTO --style-preset NAME -o out.png")
    if sheet is None:
        return
    data, _ = contact_sheet(BUILTIN_STYLES, format=SHEET_SUFFIXES[sheet.suffix.lower()])
    try:
        sheet.parent.mkdir(parents=True, exist_ok=True)
        sheet.write_bytes(data)
    except OSError as exc:
        raise StyleRefused(f"{sheet}: cannot write ({exc.strerror or exc})") from None
    print(f"wrote {sheet}")
