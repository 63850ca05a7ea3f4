"""Configuration: a TOML file plus environment overrides, read into frozen dataclasses.

Every key is optional; `config.example.toml` lists them all with their defaults. An environment
variable `NSTBOT_<SECTION>_<KEY>` (upper case) overrides a key, for example
`NSTBOT_ENGINE_DEVICE=cuda:1`. Errors name the bad key.

A key with a fixed set of values is typed with a `Literal` declared once below; the loader refuses
anything else at load time, listing the allowed values, and the CLI and the slash commands take
their choices from the same Literal (`typing.get_args`). The loader is taught `Literal` rather
than replaced by pydantic-settings: the dataclasses, the environment overrides and the generated
config.example.toml already work, a typed value is all that was missing, and pydantic would add a
compiled dependency to every host, the bot's included, for that one feature.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nstbot.params import Model

Precision = Literal["fp32", "bf16", "fp16"]
Backend = Literal["local", "celery"]
Hardware = Literal["auto", "cpu", "gpu"]
Quality = Literal["fast", "balanced", "best"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["text", "json"]
CertReqs = Literal["required", "optional", "none"]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


@dataclass(frozen=True)
class EngineConfig:
    """The style-transfer engine in each worker process."""

    device: str = "auto"
    """auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."""
    precision: Precision = "fp32"
    """bf16 and fp16 are autocast and need CUDA."""
    model: Model = "vgg19"
    """Which network: torchvision's ImageNet weights of VGG19 or VGG16."""
    weights: str = "auto"
    """auto (configured path, then torch hub cache), random (tests only), or a path to a file."""
    allow_download: bool = True
    """Download the VGG19 weights on first use when they are missing."""
    style_cache_mb: int = 256
    """Memory bound of the style-target (Gram) cache."""


@dataclass(frozen=True)
class ImagesConfig:
    """Limits on uploaded images, checked before their pixels are decoded."""

    # nstbot.images knows this class as ImageLimits: one definition for the config and the checks.

    max_bytes: int = 25_000_000
    """Largest accepted file, in bytes."""
    max_pixels: int = 40_000_000
    """Largest accepted width x height, read from the header."""
    max_side: int = 12_000
    """Longest accepted side, in pixels."""
    min_side: int = 32
    """Smaller images are upscaled to this short side (VGG19 needs about 32 px)."""
    reject_below: int = 8
    """Images with a side under this are refused rather than upscaled."""

    @classmethod
    def from_config(cls, config: Config | ImagesConfig) -> ImagesConfig:
        """The [images] section of a whole Config, or the section itself."""
        return config.images if isinstance(config, Config) else config


@dataclass(frozen=True)
class ExecutorConfig:
    """The job queue: workers, limits, timeouts and the journal."""

    backend: Backend = "local"
    """local (worker processes on this machine) or celery (workers on other hosts)."""
    devices: tuple[str, ...] = ("auto",)
    """One worker process per entry: auto, cpu, cuda:0, cuda:1, ..."""
    max_queue: int = 50
    """Jobs waiting in all (0 = no limit)."""
    per_user_queued: int = 3
    """Jobs one user may have waiting or running (0 = no limit)."""
    per_user_running: int = 1
    """Jobs of one user running at once; the next waits while others' jobs go ahead."""
    per_guild_queued: int = 0
    """Jobs one server may have waiting or running (0 = no limit)."""
    job_timeout_s: float = 900.0
    """A job running longer is stopped and reported."""
    preview_interval_s: float = 5.0
    """Least time between two preview images from a worker."""
    progress_interval_s: float = 0.5
    """Least time between two progress events from a worker."""
    retry_crashed: bool = True
    """Run a job again once when its worker process dies under it."""
    heartbeat_timeout_s: float = 30.0
    """A worker silent this long is killed and restarted."""
    retention_hours: float = 72.0
    """Finished jobs and their files are pruned after this long."""
    worker_start_timeout_s: float = 300.0
    """A worker not ready this long after spawning (importing torch, loading VGG19) is killed."""
    restart_backoff_max_s: float = 60.0
    """Cap of the exponential delay (0.5 s, 1 s, 2 s, ...) before restarting a failed worker."""


@dataclass(frozen=True)
class BotConfig:
    """The Discord side. The token comes from DISCORD_TOKEN or token_file, never from here."""

    token_file: str = ""
    """File holding the bot token; the DISCORD_TOKEN environment variable wins when set."""
    api_base: str = "https://discord.com/api/v10"
    """Discord REST base URL (tests point it at a local fake server)."""
    gateway_url: str = ""
    """Gateway websocket URL; empty means the one GET /gateway/bot answers."""
    attachment_hosts: tuple[str, ...] = ("cdn.discordapp.com", "media.discordapp.net")
    """Hosts attachments may be downloaded from; any other URL is refused."""
    message_commands: bool = False
    """Prefix and mention commands; need the privileged message-content intent."""
    prefix: str = "!"
    owner_ids: tuple[int, ...] = ()
    """User ids allowed to run owner commands (sync); empty means the application's owner."""
    edit_interval_s: float = 3.0
    """Least time between two edits of one progress message."""
    preview_interval_s: float = 15.0
    """Least time between two preview images on a progress message."""
    download_timeout_s: float = 20.0
    token_lifetime_s: float = 900.0
    """Discord's interaction token lifetime; past it, results go by channel message."""
    token_margin_s: float = 60.0
    """Treat a token as expired this long before it really is."""
    hardware: Hardware = "auto"
    """Which quality-preset table applies (auto asks the scheduler)."""
    default_quality: Quality = "balanced"
    """The quality of a request that names none."""
    max_size: int = 0
    """Hard cap on the output's longest side for every server; 0 means the preset's cap."""
    max_steps: int = 0
    """Hard cap on optimizer steps; 0 means the preset's count."""
    connect_attempts: int = 5
    """Tries to reach Discord at start-up (`nstbot run`) before giving up with exit status 6."""
    connect_backoff_s: float = 2.0
    """Wait before the second try; it doubles for each further try, up to 60 s."""


@dataclass(frozen=True)
class LoggingConfig:
    """Logging of the bot and its workers."""

    level: LogLevel = "INFO"
    format: LogFormat = "text"


@dataclass(frozen=True)
class WebConfig:
    """The /healthz and /metrics endpoint."""

    enabled: bool = True
    """Serve /healthz and /metrics (see nstbot/web.py)."""
    host: str = "127.0.0.1"
    """Listen address; the Docker image sets 0.0.0.0 (compose publishes it on loopback)."""
    port: int = 8787
    """0 picks a free port (tests)."""


@dataclass(frozen=True)
class CeleryConfig:
    """Celery workers on other hosts, with Redis as broker and job store (backend = "celery")."""

    broker_url: str = "redis://127.0.0.1:6379/0"
    """Redis URL of the Celery broker; rediss://:PASSWORD@host:6380/0 for TLS. Keep the password
    out of files: set NSTBOT_CELERY_BROKER_URL in the environment."""
    result_backend: str = ""
    """Redis URL for job data (inputs, progress, results, worker status); empty means broker_url."""
    queue: str = "nstbot"
    """Celery queue name; also the prefix of nstbot's Redis keys (one bot per queue)."""
    hard_time_limit_s: float = 1800.0
    """Celery kills a job running this long; keep it above executor.job_timeout_s."""
    visibility_timeout_s: float = 3600.0
    """Redis redelivers a job not acknowledged this long; must exceed hard_time_limit_s and be
    the same on every host."""
    max_attempts: int = 3
    """Runs of one job (after worker crashes) before it ends as failed."""
    result_ttl_s: float = 86400.0
    """How long a result waits in Redis for a bot that is down; removed at delivery."""
    ssl_cert_reqs: CertReqs = "required"
    """For rediss:// URLs: none means no certificate check."""
    ssl_ca_certs: str = ""
    """For rediss:// URLs: CA bundle file; empty means the system's CAs."""
    heartbeat_interval_s: float = 2.0
    """How often a worker writes its status to Redis."""
    worker_timeout_s: float = 15.0
    """A worker silent this long is gone; its job is sent again."""
    poll_interval_s: float = 1.0
    """How often the bot reads worker status and job state (pub/sub brings events sooner)."""
    no_worker_grace_s: float = 60.0
    """With no worker connected this long, jobs are refused; 0 means they wait."""

    def __post_init__(self) -> None:
        if self.visibility_timeout_s <= self.hard_time_limit_s:
            raise ConfigError(
                "celery.visibility_timeout_s must be greater than celery.hard_time_limit_s"
            )
        if self.max_attempts < 1:
            raise ConfigError("celery.max_attempts must be at least 1")


@dataclass(frozen=True)
class TimelapseConfig:
    """Timelapses: frames of the painting, recorded by the workers and kept with the result."""

    enabled: bool = True
    """Workers record frames of every job, so /stylize timelapse:True and the Timelapse button
    can show the painting from the photo to the result."""
    keep_hours: float = 24.0
    """How long a job's frames stay in its folder after it ends (at most executor.retention_hours);
    the Timelapse button works this long."""
    frame_side: int = 320
    """Longest side of each recorded frame, in pixels (32 to 1024)."""

    def __post_init__(self) -> None:
        if not 32 <= self.frame_side <= 1024:
            raise ConfigError("timelapse.frame_side must be between 32 and 1024")


@dataclass(frozen=True)
class StylesConfig:
    """Named styles: each server's own library (the built-in styles are always there)."""

    max_per_server: int = 25
    """Styles one server may keep (a server's settings may lower it; 0 = no server styles)."""
    max_server_mb: int = 25
    """Megabytes of stored copies one server may keep (a server's settings may lower it)."""
    max_side: int = 1024
    """Longest side of a server style's stored copy; larger uploads are scaled down."""
    warm_up: bool = True
    """At start, each worker caches the built-in styles' targets at the quality presets' sizes
    (never evicting: it stops when engine.style_cache_mb is full), so preset jobs skip that work."""


@dataclass(frozen=True)
class Config:
    data_dir: str = "data"
    """Folder of the journal, the settings database and jobs' files."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    bot: BotConfig = field(default_factory=BotConfig)
    web: WebConfig = field(default_factory=WebConfig)
    celery: CeleryConfig = field(default_factory=CeleryConfig)
    timelapse: TimelapseConfig = field(default_factory=TimelapseConfig)
    styles: StylesConfig = field(default_factory=StylesConfig)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def timelapse_hours(self) -> float:
        """How long timelapse frames are kept: timelapse.keep_hours, bounded by the retention."""
        return min(self.timelapse.keep_hours, self.executor.retention_hours)


ENV_PREFIX = "NSTBOT_"


def load_config(
    path: str | os.PathLike[str] | None = None, *, env: dict[str, str] | None = None
) -> Config:
    """Read `path` (if given) and environment overrides into a Config."""
    env = dict(os.environ if env is None else env)
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return _build(Config, raw, env, prefix="")


def _build(cls: type, raw: dict[str, Any], env: dict[str, str], prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{prefix.rstrip('.')}] must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"unknown config key: {prefix}{unknown[0]}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            values[f.name] = _build(hint, raw.get(f.name, {}), env, prefix=f"{key}.")
            continue
        env_name = ENV_PREFIX + key.replace(".", "_").upper()
        if env_name in env:
            values[f.name] = _coerce(_parse_env(env[env_name], hint), hint, key)
        elif f.name in raw:
            values[f.name] = _coerce(raw[f.name], hint, key)
    return cls(**values)


def _parse_env(text: str, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        text = text.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return text
        return [part.strip() for part in text.split(",") if part.strip()]
    if hint is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        return text
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            return text
    return text


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list")
        (item_hint, *_) = typing.get_args(hint) or (Any,)
        return tuple(_coerce(item, item_hint, key) for item in value)
    if hint is Any:
        return value
    if origin is Literal:
        return _choice(value, typing.get_args(hint), key)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be a whole number")
        if value < 0:
            raise ConfigError(f"{key} must not be negative")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number")
        if value < 0:
            raise ConfigError(f"{key} must not be negative")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string")
        return value
    raise ConfigError(f"{key}: unsupported type {hint}")


def _choice(value: Any, allowed: tuple[Any, ...], key: str) -> Any:
    """One of a Literal's values; strings match whatever their case (`info` is `INFO`)."""
    for option in allowed:
        if value == option or (
            isinstance(value, str) and isinstance(option, str) and value.lower() == option.lower()
        ):
            return option
    listed = ", ".join(str(option) for option in allowed)
    raise ConfigError(f"{key} must be one of {listed}, not {value!r}")
