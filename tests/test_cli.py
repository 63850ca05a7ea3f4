"""The command line end to end, in subprocesses as a user would run it."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from nstbot.cli import (
    EXIT_NETWORK,
    CliError,
    build_parser,
    check_stylize_options,
    params_from_args,
    run_with_retries,
)
from nstbot.params import TransferParams

ROOT = Path(__file__).resolve().parent.parent


def nstbot(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "nstbot.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=240,
        check=False,
    )


@pytest.fixture
def torch_home(tmp_path: Path) -> dict[str, str]:
    return {"TORCH_HOME": str(tmp_path / "torch-home")}


def test_stylize_end_to_end(data_dir: Path, tmp_path: Path, torch_home: dict[str, str]) -> None:
    out = tmp_path / "result.png"
    proc = nstbot(
        "stylize", str(data_dir / "content-coffee.jpg"), str(data_dir / "style-brick.jpg"),
        str(data_dir / "style-gravel.jpg"), "--blend", "2", "1",
        "-o", str(out), "--size", "48", "--steps", "4", "--scales", "2", "--min-size", "32",
        "--weights", "random", "--device", "cpu", "--seed", "3",
        env=torch_home,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "RANDOM" in proc.stderr and "RANDOM WEIGHTS" in proc.stdout
    with Image.open(out) as img:
        assert max(img.size) == 48 and img.mode == "RGB"
        params = json.loads(img.text["nstbot:params"])
    assert params["size"] == 48 and params["style_blend"] == [2.0, 1.0] and params["seed"] == 3
    assert "4/4" in proc.stderr  # the tqdm bar reached the end


@pytest.mark.parametrize("name", ["paint.webp", "paint.GIF"])
def test_stylize_writes_a_timelapse(
    data_dir: Path, tmp_path: Path, torch_home: dict[str, str], name: str
) -> None:
    out, animation = tmp_path / "result.png", tmp_path / "sub" / name
    proc = nstbot(
        "stylize", str(data_dir / "content-coffee.jpg"), str(data_dir / "style-brick.jpg"),
        "-o", str(out), "--size", "48", "--steps", "30", "--scales", "2", "--min-size", "32",
        "--weights", "random", "--device", "cpu", "-q", "--timelapse", str(animation),
        env=torch_home,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {animation} (timelapse, 31 frames, 48x32" in proc.stdout
    with Image.open(animation) as img:
        assert img.format == name.split(".")[1].upper()
        assert img.n_frames > 1 and img.size == (48, 32)
        img.seek(img.n_frames - 1)
        img.load()
        assert img.info["duration"] >= 1000  # the result is held about a second
    assert out.exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--size", "0"], 2, "--size must be between"),
        (["--blend", "1", "2"], 2, "--blend has 2 weights for 1 style image"),
        (["--blend", "-1"], 2, "--blend must be non-negative"),
        (["--style-layers", "relu9_9"], 2, "--style-layers has an unknown VGG19 layer"),
        (["--tv-weight", "-1"], 2, "--tv-weight must be a non-negative"),
        (["--lr", "5"], 2, "--lr must be in (0, 1]"),
        (["--average", "1"], 2, "--average must be at least 0 and below 1"),
        (["--style-scale", "10"], 2, "--style-scale must be between"),
        (["--min-size", "8"], 2, "--min-size must be at least 16"),
        (["--init", "image"], 2, "--init image needs --init-image"),
        (["--init", "random", "--init-image", "x.png"], 2, "give one of them"),
        (["--device", "tpu"], 2, "--device tpu: use auto, cpu"),
        (["--timelapse", "t.mp4"], 2, "--timelapse t.mp4: the timelapse must end in .webp or .gif"),
        (["--timelapse", "t"], 2, "the timelapse must end in .webp or .gif"),
        (["--size", "512", "--steps", "2"], 2, "--steps must be at least the number of scales (3)"),
        (["--precision", "bf16", "--device", "cpu"], 5, "needs a CUDA device"),
        (["--device", "cuda:7"], 5, "cuda"),
    ],
)
def test_bad_options_give_one_line_errors(
    data_dir: Path, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    proc = nstbot(
        "stylize", str(data_dir / "content-coffee.jpg"), str(data_dir / "style-brick.jpg"),
        "-o", str(tmp_path / "o.png"), "--weights", "random", "--steps", "3", "--size", "64", *args,
    )  # fmt: skip
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o.png").exists()
    if code == 2:  # refused before anything was loaded: the one line is all there is
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("nstbot: bad option: ")
        for field in ("style_blend", "tv_weight", "learning_rate", "style_scale", "min_size"):
            assert field not in proc.stderr


def test_average_flag_sets_the_iterate_average() -> None:
    assert params_from_args(stylize_args("--average", "0")).average == 0
    assert params_from_args(stylize_args()).average == TransferParams().average


def stylize_args(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["stylize", "c.jpg", "s.jpg", "-o", "o.png", *extra])


def test_steps_may_be_fewer_than_scales_when_they_merge() -> None:
    # At 64 px, under the default min_size of 128, the three scales are one.
    params = check_stylize_options(stylize_args("--size", "64", "--steps", "2"))
    assert (params.size, params.steps) == (64, 2)
    with pytest.raises(CliError, match="number of scales"):
        check_stylize_options(stylize_args("--size", "256", "--steps", "2"))


def test_weights_that_are_not_a_pytorch_file(data_dir: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.pth"
    notes.write_text("these are my notes, not weights\n")
    proc = nstbot(
        "stylize", str(data_dir / "content-coffee.jpg"), str(data_dir / "style-brick.jpg"),
        "-o", str(tmp_path / "o.png"), "--weights", str(notes), "--device", "cpu",
    )  # fmt: skip
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"nstbot: --weights {notes} is text, not a PyTorch weights file: give the VGG19 .pth file "
        "(`nstbot weights download` fetches it) or leave it out"
    ]
    proc = nstbot(
        "stylize", str(data_dir / "content-coffee.jpg"), str(data_dir / "style-brick.jpg"),
        "-o", str(tmp_path / "o.png"), "--weights", str(tmp_path / "absent.pth"),
    )  # fmt: skip
    assert proc.returncode == 4 and "absent.pth: no such file" in proc.stderr


def test_missing_and_unreadable_inputs(data_dir: Path, tmp_path: Path) -> None:
    style = str(data_dir / "style-brick.jpg")
    proc = nstbot("stylize", str(tmp_path / "nope.jpg"), style, "-o", str(tmp_path / "o.png"))
    assert proc.returncode == 3 and "no such file" in proc.stderr
    fake = tmp_path / "fake.png"
    fake.write_text("<html><body>not an image</body></html>")
    proc = nstbot("stylize", str(fake), style, "-o", str(tmp_path / "o.png"))
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        f"nstbot: {fake} is an HTML page, not a PNG, JPEG, WebP, GIF or BMP image"
    )  # the CLI's own words, not the bot's "I received ... Please send ..."
    proc = nstbot("stylize", style, style, "-o", str(tmp_path / "o.gif"))
    assert proc.returncode == 2 and ".png" in proc.stderr


def test_missing_weights_name_the_command(
    data_dir: Path, tmp_path: Path, torch_home: dict[str, str]
) -> None:
    proc = nstbot(
        "stylize", str(data_dir / "content-coffee.jpg"), str(data_dir / "style-brick.jpg"),
        "-o", str(tmp_path / "o.png"), "--no-download", "--device", "cpu",
        env=torch_home,
    )  # fmt: skip
    assert proc.returncode == 4
    assert "nstbot weights download" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_weights_path_and_verify(tmp_path: Path, torch_home: dict[str, str]) -> None:
    proc = nstbot("weights", "path", env=torch_home)
    assert proc.returncode == 4 and "none" in proc.stdout
    proc = nstbot("weights", "verify", str(tmp_path / "missing.pth"), env=torch_home)
    assert proc.returncode == 4 and "BAD" in proc.stdout
    proc = nstbot("weights", "download", "--skip", env=torch_home)
    assert proc.returncode == 0 and "skipping" in proc.stdout


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[engine]\ndevise = "cpu"\n')
    proc = nstbot("--config", str(cfg), "weights", "path")
    assert proc.returncode == 2 and "engine.devise" in proc.stderr


def test_python_m_nstbot_is_the_console_script() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nstbot", "--version"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.startswith("nstbot ")
    proc = subprocess.run(
        [sys.executable, "-m", "nstbot", "stylize", "c.jpg", "s.jpg", "-o", "o.png",
         "--init", "image"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == "nstbot: bad option: --init image needs --init-image FILE"


def test_help_works() -> None:
    proc = nstbot("--help")
    assert proc.returncode == 0
    for command in ("run", "stylize", "weights", "worker", "sync", "check"):
        assert command in proc.stdout


def test_only_given_options_reach_params() -> None:
    args = build_parser().parse_args(["stylize", "c.jpg", "s.jpg", "-o", "o.png", "--size", "99"])
    params = params_from_args(args)
    assert params.size == 99
    assert params.steps == type(params)().steps  # default comes from TransferParams alone
    args = build_parser().parse_args(
        ["stylize", "c.jpg", "s.jpg", "-o", "o.png", "--init-image", "i.png"]
    )
    assert params_from_args(args).init == "image"


def refused_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unreachable_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "DISCORD_TOKEN": "fake.token.value",
        "NSTBOT_BOT_API_BASE": f"http://127.0.0.1:{refused_port()}/api/v10",
        "NSTBOT_DATA_DIR": str(tmp_path / "data"),
        "NSTBOT_WEB_ENABLED": "false",
        **extra,
    }


@pytest.mark.parametrize("command", [["run"], ["sync"]])
def test_unreachable_discord_is_one_line_and_exit_6(tmp_path: Path, command: list[str]) -> None:
    env = unreachable_env(
        tmp_path, NSTBOT_BOT_CONNECT_ATTEMPTS="2", NSTBOT_BOT_CONNECT_BACKOFF_S="0"
    )
    proc = nstbot(*command, env=env)
    assert proc.returncode == EXIT_NETWORK, proc.stderr
    assert "Traceback" not in proc.stderr
    final = [line for line in proc.stderr.splitlines() if line.startswith("nstbot:")]
    assert len(final) == 1
    assert "cannot reach Discord at http://127.0.0.1:" in final[0]
    assert "connection refused" in final[0] and "check the network" in final[0]
    retries = [line for line in proc.stderr.splitlines() if "try 2 of 2" in line]
    assert len(retries) == (1 if command == ["run"] else 0)


def test_bot_py_is_nstbot_run(tmp_path: Path) -> None:
    env = {
        **os.environ,
        **unreachable_env(tmp_path, NSTBOT_BOT_CONNECT_ATTEMPTS="1"),
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bot.py")],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == EXIT_NETWORK and "Traceback" not in proc.stderr
    assert "cannot reach Discord" in proc.stderr


def test_run_retries_with_backoff_then_gives_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import discord

    from nstbot.bot.client import run_bot
    from nstbot.config import load_config

    env = unreachable_env(tmp_path, NSTBOT_BOT_CONNECT_BACKOFF_S="1.5")
    monkeypatch.setenv("DISCORD_TOKEN", env.pop("DISCORD_TOKEN"))
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    config = load_config(None, env=env)
    waits: list[float] = []
    with pytest.raises(CliError) as caught:
        run_with_retries(
            lambda: run_bot(config), api_base=config.bot.api_base, attempts=4,
            backoff_s=config.bot.connect_backoff_s, sleep=waits.append,
        )  # fmt: skip
    assert caught.value.code == EXIT_NETWORK
    assert "tried 4 times" in str(caught.value)
    assert waits == [1.5, 3.0, 6.0]


def test_run_retry_stops_at_the_first_success_and_passes_other_errors() -> None:
    async def connect() -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            await session.get(f"http://127.0.0.1:{refused_port()}/")

    try:
        asyncio.run(connect())
    except Exception as exc:
        refused = exc
    outcomes: list[BaseException | int] = [refused, refused, 0]

    def start() -> int:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    waits: list[float] = []
    kwargs = {"api_base": "http://x", "attempts": 5, "backoff_s": 40.0, "sleep": waits.append}
    assert run_with_retries(start, **kwargs) == 0
    assert waits == [40.0, 60.0]  # doubled, then capped

    def broken() -> int:
        raise ValueError("not a network problem")

    with pytest.raises(ValueError):
        run_with_retries(broken, **kwargs)
    assert len(waits) == 2


def test_check_names_why_discord_is_out_of_reach(tmp_path: Path) -> None:
    env = unreachable_env(tmp_path, NSTBOT_ENGINE_WEIGHTS="random")
    proc = nstbot("check", env=env)
    token = [line for line in proc.stdout.splitlines() if "token:" in line]
    assert token and token[0].startswith("[FAIL]"), proc.stdout
    assert "could not reach Discord: cannot connect to 127.0.0.1:" in token[0]
    assert "(connection refused)" in token[0]
