"""The discord.py client: a `commands.Bot` whose `setup_hook` starts the scheduler and loads cogs.

Also the entry points the CLI calls: `run_bot` (nstbot run), `sync_commands` (nstbot sync) and
`check_token` (nstbot check).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.ext import commands
from discord.gateway import DiscordWebSocket

from nstbot.bot.admission import (
    Admission,
    Requester,
    RequestRefused,
    answer_refusal,
    log_refusal,
    release_ticket,
)
from nstbot.bot.intake import Intake
from nstbot.bot.origin import (
    MessageOrigin,
    permission_label,
    tell_privately,
    tell_without_channel,
)
from nstbot.bot.runner import JobRunner
from nstbot.bot.settings import SettingsStore
from nstbot.bot.views import JobButton
from nstbot.config import Config
from nstbot.images import ImageLimits
from nstbot.jobs.errors import JournalUnavailable
from nstbot.logs import add_secret
from nstbot.metrics import Metrics
from nstbot.styles import StyleLibrary
from nstbot.web import WebError, WebServer, discord_health, start_web

if TYPE_CHECKING:
    from nstbot.jobs.scheduler import Scheduler

log = logging.getLogger(__name__)

# The styles cog adds its commands to the admin cog's /nst group, so it loads after it.
EXTENSIONS = ("nstbot.bot.cogs.stylize", "nstbot.bot.cogs.admin", "nstbot.bot.cogs.styles")
TOKEN_ENV = "DISCORD_TOKEN"


class TokenError(RuntimeError):
    """No usable bot token; the message says where one is expected (never the token itself)."""


def load_token(config: Config, env: dict[str, str] | None = None) -> str:
    """The token from DISCORD_TOKEN, else from the configured token file; redacted from logs."""
    token = _read_token(config, env)
    add_secret(token)
    return token


def _read_token(config: Config, env: dict[str, str] | None) -> str:
    env = dict(os.environ if env is None else env)
    token = env.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = config.bot.token_file
    if path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise TokenError(f"cannot read bot.token_file {path}: {exc.strerror}") from None
        if token:
            return token
        raise TokenError(f"bot.token_file {path} is empty")
    raise TokenError(f"no bot token: set {TOKEN_ENV} or bot.token_file in the config")


def point_at(config: Config) -> None:
    """Aim discord.py's REST routes at the configured API base (process-wide in discord.py)."""
    discord.http.Route.BASE = config.bot.api_base.rstrip("/")


def intents_for(config: Config) -> discord.Intents:
    """Guilds for channels and permissions; messages only when prefix commands are on."""
    intents = discord.Intents.none()
    intents.guilds = True
    if config.bot.message_commands:
        intents.guild_messages = True
        intents.dm_messages = True
        intents.message_content = True
    return intents


def prefix_for(config: Config) -> Any:
    """The prefix (and mention) when prefix commands are on; else the mention alone.

    Prefix commands never run when they are off (see `process_commands`); the mention-only
    prefix also tells discord.py not to warn that the message content intent is missing.
    """
    if config.bot.message_commands:
        return commands.when_mentioned_or(config.bot.prefix)
    return commands.when_mentioned


def quiet_voice_warnings() -> None:
    """This bot has no voice: discord.py need not warn that PyNaCl and davey are missing."""
    # discord.py's own warn-once flags, cleared before its Client would log the warnings.
    discord.VoiceClient.warn_nacl = False
    discord.VoiceClient.warn_dave = False


class NSTBot(commands.Bot):
    """The style-transfer bot."""

    def __init__(
        self,
        config: Config,
        *,
        scheduler: Scheduler | None = None,
        clock: Callable[[], float] = time.time,
        start_jobs: bool = True,
    ) -> None:
        point_at(config)
        cfg = config.bot
        self.metrics = Metrics()
        quiet_voice_warnings()
        super().__init__(
            http_trace=self.metrics.discord_http_trace(),
            command_prefix=prefix_for(config),
            intents=intents_for(config),
            help_command=None,
            owner_ids=set(cfg.owner_ids) or None,
            allowed_mentions=discord.AllowedMentions.none(),
            max_messages=None,
            chunk_guilds_at_startup=False,
        )
        self.config = config
        self.clock = clock
        self.scheduler: Scheduler | None = scheduler
        self._start_jobs = start_jobs
        self.settings = SettingsStore(config.data_path / "settings.sqlite3")
        self.styles = StyleLibrary(
            config.data_path / "settings.sqlite3",
            config.data_path / "styles",
            limits=ImageLimits.from_config(config),
            max_side=config.styles.max_side,
        )
        self.admission = Admission(self.settings, None, clock)
        self.runner: JobRunner | None = None
        self.http_session: aiohttp.ClientSession | None = None
        self.web: WebServer | None = None
        self._intake: Intake | None = None
        self.tree.error(self._on_app_command_error)

    @property
    def intake(self) -> Intake:
        """Attachment checks and downloads."""
        assert self._intake is not None, "setup_hook has not run"
        return self._intake

    async def setup_hook(self) -> None:
        """Gateway, settings, style library, scheduler, buttons and cogs, then recovered jobs."""
        await self._aim_gateway()
        self.settings.open()
        self.styles.open()
        self.http_session = aiohttp.ClientSession()
        self._intake = Intake(self.config, self.http_session)
        if self._start_jobs:
            if self.scheduler is None:
                from nstbot.jobs.scheduler import Scheduler

                self.scheduler = Scheduler(self.config)
            await self.scheduler.start()
            self.runner = JobRunner(
                self, self.scheduler, self.config, clock=self.clock, metrics=self.metrics
            )
            self.admission.active_jobs = self.runner.active_jobs
            health = discord_health(self, self.scheduler)
            self.web = await start_web(self.config.web, health, self.metrics)
        self.add_dynamic_items(JobButton)
        for name in EXTENSIONS:
            await self.load_extension(name)
        if self.runner is not None:
            count = self.runner.recover()
            if count:
                log.info("following %d job(s) recovered from the journal", count)

    async def _aim_gateway(self) -> None:
        url = self.config.bot.gateway_url
        if not url:
            _, url, _ = await self.http.get_bot_gateway()
        # discord.py's single-shard client reads the class default; set it once per process.
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)

    def hardware(self) -> str:
        """'gpu' or 'cpu': which quality presets fit the workers."""
        choice = self.config.bot.hardware
        if choice in ("cpu", "gpu"):
            return choice
        devices = list(self.config.executor.devices)
        if self.scheduler is not None:
            # Workers report the device they resolved "auto" to once they have started.
            devices += [w.resolved_device or "" for w in self.scheduler.health().workers]
        return "gpu" if any(d.startswith("cuda") for d in devices) else "cpu"

    async def on_ready(self) -> None:
        """Log the connection (once per READY)."""
        log.info(
            "connected as %s (id %s) to %d guild(s)",
            self.user,
            self.user and self.user.id,
            len(self.guilds),
        )

    async def _on_app_command_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        # The one place app-command refusals become messages; a check that admitted the
        # request gives its hold back when the command then failed before submitting.
        release_ticket(interaction)
        if isinstance(error, RequestRefused):
            await answer_refusal(interaction, error)
            return
        if isinstance(error, app_commands.MissingPermissions):
            needed = ", ".join(permission_label(p) for p in error.missing_permissions)
            log.info("user %s lacks %s for /%s", interaction.user.id, needed, _name(interaction))
            await tell_privately(interaction, f"Only members with {needed} can do that.")
            return
        if isinstance(error, app_commands.NoPrivateMessage):
            await tell_privately(interaction, "That only works in a server.")
            return
        name = _name(interaction)
        log.error("command /%s failed (interaction %s)", name, interaction.id, exc_info=error)
        await tell_privately(
            interaction, f"Something went wrong on my side. (ref `{interaction.id}`)"
        )

    async def on_command_error(self, ctx: commands.Context[Any], error: Exception) -> None:
        """Refusals answered, missing channel permissions told privately; others logged."""
        original = error.original if isinstance(error, commands.CommandInvokeError) else error
        if isinstance(original, RequestRefused):
            log_refusal(original, Requester.of_message(ctx.message))
            await MessageOrigin(ctx.message).refuse(original.message)
            return
        if isinstance(error, commands.BotMissingPermissions):
            await tell_without_channel(ctx.message, error.missing_permissions)
            return
        if isinstance(error, commands.CommandNotFound | commands.NotOwner | commands.CheckFailure):
            return
        log.error("command %s failed", ctx.command, exc_info=error)

    async def process_commands(self, message: discord.Message) -> None:
        """Prefix commands run only when the config turns them on."""
        if self.config.bot.message_commands:
            await super().process_commands(message)

    async def close(self) -> None:
        """Stop following jobs (the journal keeps them), stop workers, then disconnect."""
        if self.runner is not None:
            await self.runner.shutdown()
        if self.scheduler is not None and self._start_jobs:
            try:
                await self.scheduler.stop()
            except Exception:
                log.exception("scheduler did not stop cleanly")
        await super().close()
        if self.web is not None:
            await self.web.stop()
        if self.http_session is not None:
            await self.http_session.close()
        self.styles.close()
        self.settings.close()


def _name(interaction: discord.Interaction[Any]) -> str:
    return interaction.command.qualified_name if interaction.command else "?"


# discord.py's DEBUG lines carry raw gateway events and webhook URLs: interaction tokens and
# signed attachment URLs. Those must never reach a log, whatever level the operator picks.
SECRET_BEARING_LOGGERS = ("discord.gateway", "discord.http", "discord.webhook.async_")


def guard_logs() -> None:
    """Keep discord.py's secret-bearing loggers at INFO or above."""
    for name in SECRET_BEARING_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)


def _token(config: Config) -> str | None:
    guard_logs()
    try:
        return load_token(config)
    except TokenError as exc:
        log.error("%s", exc)
        return None


def run_bot(config: Config) -> int:
    """Run the bot until SIGINT/SIGTERM; the exit status for `nstbot run`."""
    token = _token(config)
    return 2 if token is None else asyncio.run(_run(config, token))


async def _run(config: Config, token: str) -> int:
    bot = NSTBot(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with bot:
        runner = asyncio.create_task(bot.start(token, reconnect=True))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            log.info("stopping")
            await bot.close()
        stopper.cancel()
        try:
            await runner
        except discord.LoginFailure:
            log.error("Discord refused the token (check DISCORD_TOKEN or bot.token_file)")
            return 1
        except discord.PrivilegedIntentsRequired:
            log.error("message_commands needs the Message Content intent in the developer portal")
            return 1
        except (WebError, JournalUnavailable) as exc:
            log.error("%s", exc)
            return 1
    return 0


def sync_commands(config: Config, guild_id: int | None = None) -> int:
    """Register the command tree with Discord, globally or in one server; the exit status."""
    token = _token(config)
    return 2 if token is None else asyncio.run(_sync(config, token, guild_id))


async def _sync(config: Config, token: str, guild_id: int | None) -> int:
    bot = NSTBot(config, start_jobs=False)
    # Only the tree is needed: no gateway, no workers.
    bot.setup_hook = _load_cogs_only(bot)  # type: ignore[method-assign]
    async with bot:
        try:
            await bot.login(token)
        except discord.LoginFailure:
            log.error("Discord refused the token (check DISCORD_TOKEN or bot.token_file)")
            return 1
        guild = discord.Object(guild_id) if guild_id else None
        if guild is not None:
            bot.tree.copy_global_to(guild=guild)
        synced = await bot.tree.sync(guild=guild)
        where = f"guild {guild_id}" if guild_id else "globally"
        log.info("synced %d command(s) %s", len(synced), where)
        print(f"synced {len(synced)} command(s) {where}: {', '.join(c.name for c in synced)}")
    return 0


def _load_cogs_only(bot: NSTBot) -> Callable[[], Any]:
    async def hook() -> None:
        for name in EXTENSIONS:
            await bot.load_extension(name)

    return hook


def check_token(config: Config) -> str:
    """Log in over REST and say who the token belongs to; TokenError when it is refused."""
    token = load_token(config)
    return asyncio.run(_check(config, token))


async def _check(config: Config, token: str) -> str:
    point_at(config)
    client = discord.Client(intents=discord.Intents.none())
    async with client:
        try:
            await client.login(token)
        except discord.LoginFailure:
            raise TokenError("Discord refused the token") from None
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            reason = unreachable_reason(exc) or type(exc).__name__
            raise TokenError(f"could not reach Discord: {reason}") from None
        user = client.user
        app_id = client.application_id
    return f"token OK: {user} (user id {user.id if user else '?'}, application id {app_id})"


def unreachable_reason(exc: BaseException) -> str | None:
    """What kept Discord out of reach, in a few words, or None when `exc` is something else."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve {exc.host} (DNS)"
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error
        why = os.strerror(error.errno).lower() if error.errno else str(error)
        return f"cannot connect to {exc.host}:{exc.port} ({why})"
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectionError | ConnectionError):
        return f"connection failed ({type(exc).__name__})"
    if isinstance(exc, discord.DiscordServerError):
        return f"Discord answered HTTP {exc.status}"
    return None
