"""Config loading: TOML, environment overrides, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from nstbot.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_without_file() -> None:
    assert load_config(None, env={}) == Config()


def test_example_config_matches_defaults() -> None:
    # config.example.toml documents every key with its default value.
    assert load_config(ROOT / "config.example.toml", env={}) == Config()


def test_toml_and_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[engine]\ndevice = "cuda:1"\n[executor]\ndevices = ["cuda:0", "cuda:1"]\n'
    )
    config = load_config(
        path, env={"NSTBOT_EXECUTOR_MAX_QUEUE": "7", "NSTBOT_ENGINE_DEVICE": "cpu"}
    )
    assert config.engine.device == "cpu"  # the environment wins
    assert config.executor.devices == ("cuda:0", "cuda:1")
    assert config.executor.max_queue == 7
    env = {"NSTBOT_EXECUTOR_DEVICES": "cpu, cuda:0", "NSTBOT_ENGINE_ALLOW_DOWNLOAD": "no"}
    config = load_config(None, env=env)
    assert config.executor.devices == ("cpu", "cuda:0")
    assert config.engine.allow_download is False


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[engine]\nprecison = 'fp16'\n", {}, "engine.precison"),
        ("[executor]\nmax_queue = 'many'\n", {}, "executor.max_queue"),
        ("[executor]\nmax_queue = -3\n", {}, "executor.max_queue"),
        ("[executor]\nretry_crashed = 1\n", {}, "executor.retry_crashed"),
        ("[nope]\n", {}, "nope"),
        ("engine = 3\n", {}, "engine"),
        ("", {"NSTBOT_EXECUTOR_JOB_TIMEOUT_S": "soon"}, "executor.job_timeout_s"),
        ("[engine\n", {}, "not valid TOML"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, env: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), env=env)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml", env={})


def test_example_config_is_generated_from_the_code() -> None:
    from nstbot.config_example import example_toml

    text = (ROOT / "config.example.toml").read_text()
    assert text == example_toml(), "run: python -m nstbot.config_example > config.example.toml"
    assert "[engine]" in text and "# auto (CUDA, then MPS, then CPU)" in text
