"""`nstbot styles` and `nstbot stylize --style-preset`, in subprocesses as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from nstbot.cli import CliError, build_parser, check_stylize_options, style_inputs
from nstbot.styles import BUILTIN_STYLES, builtin_style


def nstbot(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TORCH_HOME": str(tmp_path / "torch-home")}
    return subprocess.run(
        [sys.executable, "-m", "nstbot.cli", *args],
        capture_output=True, text=True, env=env, timeout=240, check=False, cwd=tmp_path,
    )  # fmt: skip


def test_styles_lists_every_builtin_and_writes_the_sheet(tmp_path: Path) -> None:
    sheet = tmp_path / "sheets" / "builtin.png"
    proc = nstbot("styles", "--sheet", str(sheet), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for style in BUILTIN_STYLES:
        (line,) = [line for line in lines if line.startswith(style.name + " ")]
        for part in (style.title, style.artist or "", str(style.year)):
            assert part in line
    with Image.open(sheet) as image:
        assert image.format == "PNG" and image.width >= 3 * 256


def test_a_preset_alone_and_a_preset_blended_with_a_file(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "blend.png"
    proc = nstbot(
        "stylize", str(data_dir / "content-coffee.jpg"), str(data_dir / "style-brick.jpg"),
        "--style-preset", "Starry-Night", "--style-preset", "hubble-deep-field",
        "--blend", "1", "2", "3", "-o", str(out), "--size", "48", "--steps", "2", "--scales", "1",
        "--weights", "random", "--device", "cpu", "-q",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as image:
        assert max(image.size) == 48
        assert json.loads(image.text["nstbot:params"])["style_blend"] == [1.0, 2.0, 3.0]
    out = tmp_path / "preset.png"
    proc = nstbot(
        "stylize", str(data_dir / "content-coffee.jpg"), "--style-preset", "woman-with-a-hat",
        "-o", str(out), "--size", "48", "--steps", "2", "--scales", "1",
        "--weights", "random", "--device", "cpu", "-q",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give a STYLE image or --style-preset NAME"),
        (["--style-preset", "mona-lisa"], "known: starry-night, woman-with-a-hat"),
        (["--style-preset", "starry-night", "--blend", "1", "2"], "--blend has 2 weights for 1"),
    ],
)
def test_bad_style_choices_are_one_line_before_anything_loads(
    tmp_path: Path, args: list[str], message: str
) -> None:
    # The photo does not exist: the options are refused before it would be read (exit 3).
    proc = nstbot("stylize", "missing.jpg", *args, "-o", "o.png", tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("nstbot: bad option: ") and message in line
    assert not (tmp_path / "o.png").exists()


def test_sheet_suffix_and_unwritable_sheet(tmp_path: Path) -> None:
    proc = nstbot("styles", "--sheet", "sheet.gif", tmp_path=tmp_path)
    assert proc.returncode == 2 and "must end in .png or .jpg" in proc.stderr
    (tmp_path / "file").write_text("x")
    proc = nstbot("styles", "--sheet", str(tmp_path / "file" / "s.png"), tmp_path=tmp_path)
    assert proc.returncode == 1 and "cannot write" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_style_files_come_first_then_presets_in_order() -> None:
    args = build_parser().parse_args(
        ["stylize", "c.jpg", "a.jpg", "--style-preset", "hubble-deep-field", "-o", "o.png",
         "--style-preset", "starry-night"]
    )  # fmt: skip
    hubble, starry = builtin_style("hubble-deep-field"), builtin_style("starry-night")
    assert hubble is not None and starry is not None
    assert style_inputs(args) == [Path("a.jpg"), hubble.path, starry.path]
    assert check_stylize_options(args).normalized_blend(3) == pytest.approx([1 / 3] * 3)
    with pytest.raises(CliError, match="no such built-in style"):
        style_inputs(
            build_parser().parse_args(["stylize", "c.jpg", "--style-preset", "x", "-o", "o.png"])
        )
