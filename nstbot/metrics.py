"""Prometheus metrics of the bot process: jobs, queue, workers, Discord API errors, loop lag.

Everything lives on a `CollectorRegistry` owned by one `Metrics` object rather than on
prometheus-client's global registry, so that tests (and a second bot in one process) start from
zero. `nstbot.web` serves the registry at `/metrics`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import choose_encoder

from nstbot import __version__

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

NAMESPACE = "nstbot"
OUTCOMES: tuple[str, ...] = ("finished", "failed", "cancelled", "refused")
"""The `outcome` label values of `nstbot_jobs_total`; any other value is a programming error."""

# Style transfer takes seconds on a GPU and minutes on a CPU; the job timeout defaults to 15 min.
RUN_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0)
# Waiting ranges from nothing (idle worker) to an hour behind a long queue.
WAIT_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# The gateway heartbeat tolerates a few seconds; anything past 0.1 s is already worth seeing.
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_INTERVAL_S = 0.25


class Metrics:
    """The bot's metric objects on their own registry, with small methods to update them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self.build_info = Info("build", "nstbot version", namespace=NAMESPACE, registry=reg)
        self.build_info.info({"version": __version__})
        self.jobs = Counter(
            "jobs",
            "Jobs ended, by outcome (refused: turned away at submit)",
            ["outcome"],
            namespace=NAMESPACE,
            registry=reg,
        )
        for outcome in OUTCOMES:
            # Present from the start at 0, so rate() and absent() behave before the first job.
            self.jobs.labels(outcome=outcome)
        self.job_duration = Histogram(
            "job_run_seconds",
            "Run time of finished jobs on a worker",
            namespace=NAMESPACE,
            buckets=RUN_BUCKETS,
            registry=reg,
        )
        self.queue_wait = Histogram(
            "job_queue_wait_seconds",
            "Time from submit to the first start of a job",
            namespace=NAMESPACE,
            buckets=WAIT_BUCKETS,
            registry=reg,
        )
        self.queue_depth = Gauge(
            "queue_depth", "Jobs waiting for a worker", namespace=NAMESPACE, registry=reg
        )
        self.jobs_running = Gauge(
            "jobs_running", "Jobs running on a worker", namespace=NAMESPACE, registry=reg
        )
        self.workers_alive = Gauge(
            "workers_alive", "Worker processes ready or busy", namespace=NAMESPACE, registry=reg
        )
        self.workers_total = Gauge(
            "workers_total", "Worker processes configured", namespace=NAMESPACE, registry=reg
        )
        self.worker_restarts = Counter(
            "worker_restarts", "Worker processes restarted", namespace=NAMESPACE, registry=reg
        )
        self.gateway_connected = Gauge(
            "gateway_connected",
            "1 while the Discord gateway is connected and ready",
            namespace=NAMESPACE,
            registry=reg,
        )
        self.discord_api_errors = Counter(
            "discord_api_errors",
            "Discord REST responses with status >= 400 (status=error: no response at all)",
            ["status"],
            namespace=NAMESPACE,
            registry=reg,
        )
        self.loop_lag = Histogram(
            "event_loop_lag_seconds",
            "How late the bot's asyncio loop woke up from a short sleep",
            namespace=NAMESPACE,
            buckets=LAG_BUCKETS,
            registry=reg,
        )
        self.loop_lag_last = Gauge(
            "event_loop_lag_last_seconds",
            "The latest event-loop lag measurement",
            namespace=NAMESPACE,
            registry=reg,
        )
        self._restarts_seen = 0

    # -- jobs --------------------------------------------------------------------------------

    def job_finished(
        self, outcome: str, run_s: float | None = None, wait_s: float | None = None
    ) -> None:
        """Count a job that ended (finished, failed, cancelled or refused), with its times."""
        if outcome not in OUTCOMES:
            # A free-form label would let a typo create a new time series forever.
            raise ValueError(f"unknown job outcome {outcome!r}; use one of {', '.join(OUTCOMES)}")
        self.jobs.labels(outcome=outcome).inc()
        if run_s is not None and _usable(run_s):
            self.job_duration.observe(run_s)
        if wait_s is not None and _usable(wait_s):
            self.queue_wait.observe(wait_s)

    def job_refused(self) -> None:
        """Count a job turned away at submit (queue full, limits, no workers)."""
        self.job_finished("refused")

    def set_queue(self, depth: int, running: int | None = None) -> None:
        """Jobs waiting (and running, when known) right now."""
        self.queue_depth.set(depth)
        if running is not None:
            self.jobs_running.set(running)

    # -- workers -----------------------------------------------------------------------------

    def set_workers(self, alive: int, total: int) -> None:
        """Worker processes alive and configured right now."""
        self.workers_alive.set(alive)
        self.workers_total.set(total)

    def observe_worker_restarts(self, total: int) -> None:
        """Bring the restart counter up to a cumulative total (e.g. summed from `health()`)."""
        # The scheduler reports restarts per worker since start; a counter only goes up, so add
        # the difference. A smaller total means the scheduler itself restarted: start over.
        if total > self._restarts_seen:
            self.worker_restarts.inc(total - self._restarts_seen)
        self._restarts_seen = total

    # -- Discord -----------------------------------------------------------------------------

    def set_gateway_connected(self, connected: bool) -> None:
        """Whether the gateway is connected and ready."""
        self.gateway_connected.set(1 if connected else 0)

    def discord_api_error(self, status: int | str) -> None:
        """Count a failed Discord REST call by HTTP status (or "error" without a response)."""
        self.discord_api_errors.labels(status=str(status)).inc()

    def discord_http_trace(self) -> aiohttp.TraceConfig:
        """An aiohttp trace config counting error responses; pass as discord.py's `http_trace`."""
        import aiohttp

        trace = aiohttp.TraceConfig()

        async def on_end(session: Any, ctx: Any, params: aiohttp.TraceRequestEndParams) -> None:
            if params.response.status >= 400:
                self.discord_api_error(params.response.status)

        async def on_exception(
            session: Any, ctx: Any, params: aiohttp.TraceRequestExceptionParams
        ) -> None:
            self.discord_api_error("error")

        trace.on_request_end.append(on_end)
        trace.on_request_exception.append(on_exception)
        return trace

    # -- event loop --------------------------------------------------------------------------

    def observe_loop_lag(self, seconds: float) -> None:
        """Record one event-loop lag measurement."""
        self.loop_lag.observe(seconds)
        self.loop_lag_last.set(seconds)

    async def watch_event_loop(self, interval_s: float = LAG_INTERVAL_S) -> None:
        """Measure how late short sleeps wake up, forever (cancel the task to stop)."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(interval_s)
            # Any overshoot is time some callback held the loop (or the process was starved).
            self.observe_loop_lag(max(0.0, loop.time() - started - interval_s))

    def start_loop_monitor(self, interval_s: float = LAG_INTERVAL_S) -> asyncio.Task[None]:
        """Run `watch_event_loop` in a task on the running loop."""
        return asyncio.create_task(self.watch_event_loop(interval_s), name="nstbot-loop-lag")

    # -- exposition --------------------------------------------------------------------------

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The registry in the format the Accept header asks for: (body, content type)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def _usable(seconds: float) -> bool:
    # Clock steps can make a computed duration negative; a NaN would poison the histogram sum.
    return math.isfinite(seconds) and seconds >= 0
