"""The operator's HTTP endpoints: `/healthz` and `/metrics` (aiohttp, in the bot's event loop).

`/healthz` answers 200 only while the Discord gateway is connected and at least one worker is
alive, else 503; both with a JSON body saying why. `/metrics` is the Prometheus text format of a
`nstbot.metrics.Metrics` registry. The bot plugs in what it knows through a `HealthProvider`, a
callable returning `HealthStatus`; `discord_health(client, scheduler)` builds one from a
discord.py client and the job scheduler without importing either.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from nstbot.config import WebConfig
from nstbot.metrics import Metrics

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"


@dataclass(frozen=True)
class HealthStatus:
    """What the bot knows about its own health at one moment."""

    gateway_connected: bool
    workers_alive: int
    workers_total: int
    queue_depth: int = 0
    running: int = 0
    worker_restarts: int | None = None
    """Cumulative restarts of all workers, when known (feeds nstbot_worker_restarts_total)."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Anything else an operator may want to read (JSON-safe)."""

    @property
    def ok(self) -> bool:
        """Serving: connected to Discord with a worker to run jobs."""
        return self.gateway_connected and self.workers_alive > 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of /healthz."""
        return {
            "ok": self.ok,
            "gateway_connected": self.gateway_connected,
            "workers_alive": self.workers_alive,
            "workers_total": self.workers_total,
            "queue_depth": self.queue_depth,
            "running": self.running,
            "worker_restarts": self.worker_restarts,
            "details": dict(self.details),
        }


HealthProvider = Callable[[], HealthStatus | Awaitable[HealthStatus]]
"""Returns the current HealthStatus; may be a coroutine function."""


class WebError(RuntimeError):
    """The endpoints could not be served (address in use, bad host); the message says which."""


class WebServer:
    """A running (or, when disabled, absent) endpoint server; `await stop()` when done."""

    def __init__(
        self,
        runner: web.AppRunner | None = None,
        host: str | None = None,
        port: int | None = None,
        monitor: asyncio.Task[None] | None = None,
    ) -> None:
        self._runner = runner
        self.host = host
        self.port = port
        """The bound port (the real one when the config asked for 0); None when disabled."""
        self._monitor = monitor

    @property
    def enabled(self) -> bool:
        """Whether anything is being served."""
        return self._runner is not None

    @property
    def url(self) -> str | None:
        """Base URL, e.g. http://127.0.0.1:8787; None when disabled."""
        if self.host is None or self.port is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Stop serving and stop the event-loop lag monitor (safe to call twice)."""
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("stopped serving /healthz and /metrics")


async def start_web(config: WebConfig, health: HealthProvider, metrics: Metrics) -> WebServer:
    """Serve /healthz and /metrics per `config` and start the loop-lag monitor; WebError if not."""
    if not config.enabled:
        log.info("web endpoints disabled (web.enabled = false)")
        return WebServer()
    if not 0 <= config.port <= 65535:
        raise WebError(f"web.port must be between 0 and 65535, not {config.port}")
    app = make_app(health, metrics)
    # No access log: Docker's health check alone would write a line every 30 seconds.
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        reason = exc.strerror or str(exc)
        raise WebError(
            f"cannot serve /healthz and /metrics on {config.host}:{config.port}: {reason} "
            "(change web.port or web.host, or set web.enabled = false)"
        ) from exc
    port = int(runner.addresses[0][1])
    server = WebServer(runner, config.host, port, metrics.start_loop_monitor())
    log.info("serving %s%s and %s", server.url, HEALTH_PATH, METRICS_PATH)
    return server


def make_app(health: HealthProvider, metrics: Metrics) -> web.Application:
    """The aiohttp application (exposed for tests and for embedding in another app)."""

    async def healthz(request: web.Request) -> web.Response:
        status = await _current(health)
        if status is None:
            body = {"ok": False, "error": "the health check itself failed; see the bot's log"}
            return _json(body, 503)
        _refresh(metrics, status)
        return _json(status.to_dict(), 200 if status.ok else 503)

    async def metrics_page(request: web.Request) -> web.Response:
        # Gauges that mirror the bot's state are read at scrape time so they are never stale.
        status = await _current(health)
        if status is not None:
            _refresh(metrics, status)
        body, content_type = metrics.render(request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=f"nstbot: see {HEALTH_PATH} and {METRICS_PATH}\n")

    app = web.Application()
    app.router.add_get(HEALTH_PATH, healthz)
    app.router.add_get(METRICS_PATH, metrics_page)
    app.router.add_get("/", index)
    return app


async def _current(health: HealthProvider) -> HealthStatus | None:
    try:
        status = health()
        if inspect.isawaitable(status):
            status = await status
    except Exception:
        log.exception("the health provider failed")
        return None
    if not isinstance(status, HealthStatus):
        log.error("the health provider returned %r, not a HealthStatus", type(status).__name__)
        return None
    return status


def _refresh(metrics: Metrics, status: HealthStatus) -> None:
    metrics.set_gateway_connected(status.gateway_connected)
    metrics.set_workers(status.workers_alive, status.workers_total)
    metrics.set_queue(status.queue_depth, status.running)
    if status.worker_restarts is not None:
        metrics.observe_worker_restarts(status.worker_restarts)


def _json(body: dict[str, Any], status: int) -> web.Response:
    text = json.dumps(_json_safe(body), default=str, sort_keys=True)
    return web.Response(text=text, status=status, content_type="application/json")


def _json_safe(value: Any) -> Any:
    # json.dumps writes inf/nan as bare Infinity/NaN, which strict parsers (jq, Go) reject.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


# -- the bot's provider ----------------------------------------------------------------------


def gateway_connected(client: Any) -> bool:
    """Whether a discord.py client is ready and its gateway websocket is open."""
    try:
        if client.is_closed() or not client.is_ready():
            return False
        ws = getattr(client, "ws", None)
        # READY stays set across a dropped connection; the socket says whether it is up now.
        return ws is not None and bool(ws.open)
    except Exception:  # a half-constructed client during start or shutdown
        return False


def discord_health(client: Any, scheduler: Any | None) -> HealthProvider:
    """A provider reading a discord.py client and a `nstbot.jobs.scheduler.Scheduler`."""

    def provide() -> HealthStatus:
        connected = gateway_connected(client)
        latency = getattr(client, "latency", None)
        details: dict[str, Any] = {
            "latency_s": round(latency, 4) if isinstance(latency, float) else None,
            "guilds": len(getattr(client, "guilds", ()) or ()),
        }
        if scheduler is None:
            details["scheduler"] = "not started"
            return HealthStatus(connected, 0, 0, details=details)
        health = scheduler.health()
        workers = tuple(getattr(health, "workers", ()) or ())
        details["accepting"] = getattr(health, "accepting", None)
        details["last_error"] = getattr(health, "last_error", None)
        details["unavailable_reason"] = getattr(health, "unavailable_reason", None)
        details["workers"] = [
            {
                "name": getattr(w, "name", None),
                "device": getattr(w, "resolved_device", None) or getattr(w, "device", None),
                "state": getattr(w, "state", None),
                "jobs_done": getattr(w, "jobs_done", None),
                "restarts": getattr(w, "restarts", None),
            }
            for w in workers
        ]
        return HealthStatus(
            gateway_connected=connected,
            workers_alive=int(health.workers_alive),
            workers_total=int(health.workers_total),
            queue_depth=int(getattr(health, "queued", 0)),
            running=int(getattr(health, "running", 0)),
            worker_restarts=sum(int(getattr(w, "restarts", 0) or 0) for w in workers),
            details=details,
        )

    return provide
