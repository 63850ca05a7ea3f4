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
        ("[timelapse]\nframe_side = 4000\n", {}, "timelapse.frame_side"),
        ("", {"NSTBOT_TIMELAPSE_KEEP_HOURS": "a day"}, "timelapse.keep_hours"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, env: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), env=env)


@pytest.mark.parametrize(
    ("key", "allowed"),
    [
        ("engine.precision", "fp32, bf16, fp16"),
        ("executor.backend", "local, celery"),
        ("bot.hardware", "auto, cpu, gpu"),
        ("bot.default_quality", "fast, balanced, best"),
        ("logging.level", "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("logging.format", "text, json"),
        ("celery.ssl_cert_reqs", "required, optional, none"),
    ],
)
def test_enumerated_keys_are_checked_at_load_time(tmp_path: Path, key: str, allowed: str) -> None:
    section, name = key.split(".")
    expected = f"{key} must be one of {allowed}, not 'balnced'"
    with pytest.raises(ConfigError) as from_file:
        load_config(write(tmp_path, f'[{section}]\n{name} = "balnced"\n'), env={})
    assert str(from_file.value) == expected
    env_name = f"NSTBOT_{section}_{name}".upper()
    with pytest.raises(ConfigError) as from_env:
        load_config(None, env={env_name: "balnced"})
    assert str(from_env.value) == expected


def test_every_enumerated_key_is_a_literal() -> None:
    # A str-typed key whose doc lists its values would slip past the check above.
    import dataclasses
    import typing

    from nstbot import config as config_module

    def sections(cls: type) -> list[type]:
        hints = typing.get_type_hints(cls, vars(config_module))
        return [cls] + [h for h in hints.values() if dataclasses.is_dataclass(h)]

    literal_keys = set()
    for cls in sections(Config):
        for name, hint in typing.get_type_hints(cls, vars(config_module)).items():
            if typing.get_origin(hint) is typing.Literal:
                literal_keys.add(f"{cls.__name__}.{name}")
    assert literal_keys >= {
        "EngineConfig.precision", "ExecutorConfig.backend", "BotConfig.hardware",
        "BotConfig.default_quality", "LoggingConfig.level", "LoggingConfig.format",
        "CeleryConfig.ssl_cert_reqs",
    }  # fmt: skip


def test_literal_values_match_whatever_their_case(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[logging]\nlevel = "debug"\n'), env={})
    assert config.logging.level == "DEBUG"
    assert load_config(None, env={"NSTBOT_BOT_HARDWARE": "GPU"}).bot.hardware == "gpu"
    with pytest.raises(ConfigError, match=r"bot\.default_quality must be one of"):
        load_config(write(tmp_path, "[bot]\ndefault_quality = 3\n"), env={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml", env={})


def test_example_config_is_generated_from_the_code() -> None:
    from nstbot.config_example import example_toml

    text = (ROOT / "config.example.toml").read_text()
    assert text == example_toml(), "run: python -m nstbot.config_example > config.example.toml"
    assert "[engine]" in text and "# auto (CUDA, then MPS, then CPU)" in text


def test_timelapses_are_kept_no_longer_than_their_job(tmp_path: Path) -> None:
    text = "[executor]\nretention_hours = 12\n[timelapse]\nkeep_hours = 48\nenabled = false\n"
    config = load_config(write(tmp_path, text), env={})
    assert config.timelapse.enabled is False and config.timelapse_hours == 12.0
    assert Config().timelapse_hours == 24.0
