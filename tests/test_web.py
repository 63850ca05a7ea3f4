"""nstbot.web: /healthz and /metrics on a real aiohttp server on 127.0.0.1 (ephemeral port)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nstbot.config import WebConfig, load_config
from nstbot.metrics import Metrics
from nstbot.web import HealthStatus, WebError, WebServer, discord_health, start_web


@dataclass
class State:
    """What a test's health provider reports; tests change it between requests."""

    connected: bool = True
    alive: int = 1
    total: int = 1
    queue: int = 0
    running: int = 0
    restarts: int | None = None
    calls: int = 0
    fail: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> HealthStatus:
        self.calls += 1
        if self.fail:
            raise RuntimeError("scheduler exploded")
        return HealthStatus(
            gateway_connected=self.connected,
            workers_alive=self.alive,
            workers_total=self.total,
            queue_depth=self.queue,
            running=self.running,
            worker_restarts=self.restarts,
            details=self.details,
        )


LOCAL = WebConfig(host="127.0.0.1", port=0)


@pytest.fixture
async def served() -> AsyncIterator[tuple[WebServer, State, Metrics, aiohttp.ClientSession]]:
    state, metrics = State(), Metrics()
    server = await start_web(LOCAL, state, metrics)
    async with aiohttp.ClientSession() as session:
        yield server, state, metrics, session
    await server.stop()


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_defaults_match_the_issue() -> None:
    web = load_config(env={}).web
    assert (web.enabled, web.host, web.port) == (True, "127.0.0.1", 8787)
    web = load_config(env={"NSTBOT_WEB_PORT": "9100", "NSTBOT_WEB_HOST": "0.0.0.0"}).web
    assert (web.host, web.port) == ("0.0.0.0", 9100)


async def test_bound_to_loopback_on_an_ephemeral_port(served: Any) -> None:
    server, _, _, session = served
    assert server.enabled and server.host == "127.0.0.1"
    assert server.port and server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    status, _, text = await get(session, server.url + "/")
    assert status == 200 and "/healthz" in text


async def test_healthz_200_only_when_connected_with_a_live_worker(served: Any) -> None:
    server, state, _, session = served
    url = server.url + "/healthz"
    state.details = {"latency_s": float("inf"), "note": "hi"}
    status, content_type, text = await get(session, url)
    body = json.loads(text)  # strict JSON: inf became null
    assert status == 200 and content_type.startswith("application/json")
    assert body["ok"] is True and body["gateway_connected"] is True
    assert body["workers_alive"] == 1 and body["details"] == {"latency_s": None, "note": "hi"}

    state.connected = False
    status, _, text = await get(session, url)
    assert status == 503 and json.loads(text)["ok"] is False

    state.connected, state.alive = True, 0
    status, _, text = await get(session, url)
    assert status == 503 and json.loads(text)["workers_alive"] == 0

    state.alive = 2
    async with session.head(url) as response:
        assert response.status == 200


async def test_healthz_503_when_the_provider_fails(served: Any) -> None:
    server, state, _, session = served
    state.fail = True
    status, _, text = await get(session, server.url + "/healthz")
    assert status == 503
    assert json.loads(text) == {
        "error": "the health check itself failed; see the bot's log",
        "ok": False,
    }


async def test_async_provider() -> None:
    async def provide() -> HealthStatus:
        await asyncio.sleep(0)
        return HealthStatus(gateway_connected=True, workers_alive=1, workers_total=1)

    server = await start_web(LOCAL, provide, Metrics())
    try:
        async with aiohttp.ClientSession() as session:
            status, _, _ = await get(session, server.url + "/healthz")
        assert status == 200
    finally:
        await server.stop()


async def test_metrics_change_after_the_metric_methods(served: Any) -> None:
    server, state, metrics, session = served
    url = server.url + "/metrics"
    status, content_type, text = await get(session, url)
    assert status == 200 and content_type.startswith("text/plain")
    before = parse_metrics(text)
    assert before[("nstbot_jobs_total", (("outcome", "finished"),))] == 0

    metrics.job_finished("finished", run_s=8.0, wait_s=2.0)
    metrics.job_finished("failed", run_s=1.0)
    metrics.job_refused()
    metrics.discord_api_error(403)
    state.queue, state.running, state.alive, state.total, state.restarts = 4, 1, 1, 2, 3

    after = parse_metrics((await get(session, url))[2])
    assert after[("nstbot_jobs_total", (("outcome", "finished"),))] == 1
    assert after[("nstbot_jobs_total", (("outcome", "failed"),))] == 1
    assert after[("nstbot_jobs_total", (("outcome", "refused"),))] == 1
    assert after[("nstbot_job_run_seconds_count", ())] == 2
    assert after[("nstbot_job_queue_wait_seconds_sum", ())] == 2.0
    assert after[("nstbot_discord_api_errors_total", (("status", "403"),))] == 1
    # Read from the health provider at scrape time:
    assert after[("nstbot_queue_depth", ())] == 4
    assert after[("nstbot_jobs_running", ())] == 1
    assert after[("nstbot_workers_alive", ())] == 1
    assert after[("nstbot_workers_total", ())] == 2
    assert after[("nstbot_worker_restarts_total", ())] == 3
    assert after[("nstbot_gateway_connected", ())] == 1
    # The server started the loop-lag monitor.
    await asyncio.sleep(0.3)
    after = parse_metrics((await get(session, url))[2])
    assert after[("nstbot_event_loop_lag_seconds_count", ())] >= 1


async def test_metrics_still_served_when_health_fails(served: Any) -> None:
    server, state, metrics, session = served
    state.fail = True
    metrics.job_finished("cancelled")
    status, _, text = await get(session, server.url + "/metrics")
    assert status == 200
    assert parse_metrics(text)[("nstbot_jobs_total", (("outcome", "cancelled"),))] == 1


async def test_disabled_serves_nothing() -> None:
    server = await start_web(WebConfig(enabled=False), State(), Metrics())
    assert not server.enabled and server.port is None and server.url is None
    await server.stop()


async def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(WebError, match=f"127.0.0.1:{port}.*web.enabled = false"):
            await start_web(WebConfig(port=port), State(), Metrics())


async def test_stop_closes_the_port_and_is_idempotent() -> None:
    server = await start_web(LOCAL, State(), Metrics())
    url = server.url
    await server.stop()
    await server.stop()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"{url}/healthz")


# -- discord_health against stand-ins for discord.py's client and the scheduler ---------------


class FakeWS:
    open = True


class FakeClient:
    def __init__(self, ready: bool = True, closed: bool = False, ws: Any = None) -> None:
        self._ready, self._closed = ready, closed
        self.ws = ws if ws is not None else FakeWS()
        self.latency = float("inf")
        self.guilds = [object(), object()]

    def is_ready(self) -> bool:
        return self._ready

    def is_closed(self) -> bool:
        return self._closed


@dataclass
class FakeWorker:
    name: str
    device: str
    resolved_device: str | None
    state: str
    jobs_done: int
    restarts: int


@dataclass
class FakeHealth:
    accepting: bool = True
    workers_alive: int = 1
    workers_total: int = 2
    last_error: str | None = "cuda:1: out of memory"
    unavailable_reason: str | None = None
    queued: int = 3
    running: int = 1
    workers: tuple[FakeWorker, ...] = (
        FakeWorker("w0", "auto", "cuda:0", "busy", 5, 1),
        FakeWorker("w1", "cuda:1", None, "waiting", 0, 2),
    )


class FakeScheduler:
    def health(self) -> FakeHealth:
        return FakeHealth()


def test_discord_health_reads_client_and_scheduler() -> None:
    status = discord_health(FakeClient(), FakeScheduler())()
    assert isinstance(status, HealthStatus) and status.ok
    assert (status.workers_alive, status.workers_total) == (1, 2)
    assert (status.queue_depth, status.running, status.worker_restarts) == (3, 1, 3)
    assert status.details["guilds"] == 2
    assert status.details["last_error"] == "cuda:1: out of memory"
    assert [w["device"] for w in status.details["workers"]] == ["cuda:0", "cuda:1"]
    json.dumps(status.to_dict())


def test_discord_health_gateway_states() -> None:
    closed_ws = FakeWS()
    closed_ws.open = False
    for client in (FakeClient(ready=False), FakeClient(closed=True), FakeClient(ws=closed_ws)):
        assert not discord_health(client, FakeScheduler())().gateway_connected
    unstarted = discord_health(FakeClient(), None)()
    assert unstarted.gateway_connected and not unstarted.ok
    assert unstarted.details["scheduler"] == "not started"
