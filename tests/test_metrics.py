"""nstbot.metrics: a fresh registry per Metrics, the update methods, loop lag, the HTTP trace."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from nstbot.metrics import OUTCOMES, Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition text, keyed by (name, sorted labels)."""
    body, _ = metrics.render()
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float:
    """One sample's value (KeyError when absent)."""
    return samples(metrics)[(name, tuple(sorted(labels.items())))]


def test_each_metrics_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.job_finished("finished", run_s=3.0, wait_s=1.0)
    assert value(a, "nstbot_jobs_total", outcome="finished") == 1
    assert value(b, "nstbot_jobs_total", outcome="finished") == 0


def test_outcomes_start_at_zero_and_count() -> None:
    m = Metrics()
    for outcome in OUTCOMES:
        assert value(m, "nstbot_jobs_total", outcome=outcome) == 0
    m.job_finished("finished", run_s=12.0, wait_s=0.5)
    m.job_finished("finished", run_s=30.0, wait_s=4.0)
    m.job_finished("failed")
    m.job_finished("cancelled", wait_s=2.0)
    m.job_refused()
    assert value(m, "nstbot_jobs_total", outcome="finished") == 2
    assert value(m, "nstbot_jobs_total", outcome="failed") == 1
    assert value(m, "nstbot_jobs_total", outcome="cancelled") == 1
    assert value(m, "nstbot_jobs_total", outcome="refused") == 1
    assert value(m, "nstbot_job_run_seconds_count") == 2
    assert value(m, "nstbot_job_run_seconds_sum") == pytest.approx(42.0)
    assert value(m, "nstbot_job_run_seconds_bucket", le="20.0") == 1
    assert value(m, "nstbot_job_queue_wait_seconds_count") == 3
    assert value(m, "nstbot_job_queue_wait_seconds_sum") == pytest.approx(6.5)


def test_unknown_outcome_and_bad_durations() -> None:
    m = Metrics()
    with pytest.raises(ValueError, match="unknown job outcome"):
        m.job_finished("exploded")
    m.job_finished("finished", run_s=float("nan"), wait_s=-1.0)
    assert value(m, "nstbot_jobs_total", outcome="finished") == 1
    assert value(m, "nstbot_job_run_seconds_count") == 0
    assert value(m, "nstbot_job_queue_wait_seconds_count") == 0


def test_gauges_and_restarts() -> None:
    m = Metrics()
    m.set_queue(7, running=2)
    m.set_workers(1, 2)
    m.set_gateway_connected(True)
    assert value(m, "nstbot_queue_depth") == 7
    assert value(m, "nstbot_jobs_running") == 2
    assert value(m, "nstbot_workers_alive") == 1
    assert value(m, "nstbot_workers_total") == 2
    assert value(m, "nstbot_gateway_connected") == 1
    m.observe_worker_restarts(1)
    m.observe_worker_restarts(0)  # a new scheduler: counts from 0 again, the counter stays at 1
    m.observe_worker_restarts(3)  # a cumulative total from health(): adds the difference
    m.observe_worker_restarts(3)
    assert value(m, "nstbot_worker_restarts_total") == 4
    m.observe_worker_restarts(0)  # the scheduler restarted: the counter never goes down
    m.observe_worker_restarts(1)
    assert value(m, "nstbot_worker_restarts_total") == 5
    assert value(m, "nstbot_build_info", version=__import__("nstbot").__version__) == 1


def test_discord_api_errors_by_status() -> None:
    m = Metrics()
    m.discord_api_error(429)
    m.discord_api_error(429)
    m.discord_api_error("error")
    assert value(m, "nstbot_discord_api_errors_total", status="429") == 2
    assert value(m, "nstbot_discord_api_errors_total", status="error") == 1


def test_openmetrics_on_request() -> None:
    m = Metrics()
    body, content_type = m.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")


async def test_loop_lag_monitor_sees_a_blocked_loop() -> None:
    m = Metrics()
    task = m.start_loop_monitor(interval_s=0.01)
    await asyncio.sleep(0.03)
    time.sleep(0.15)  # hold the loop the way a blocking call in a handler would
    await asyncio.sleep(0.03)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert value(m, "nstbot_event_loop_lag_seconds_count") >= 2
    # The 0.15 s block lands above the 0.05 s bucket and in the sum.
    assert value(m, "nstbot_event_loop_lag_seconds_sum") >= 0.1
    assert value(m, "nstbot_event_loop_lag_seconds_bucket", le="0.05") < value(
        m, "nstbot_event_loop_lag_seconds_count"
    )


async def test_http_trace_counts_error_responses() -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]))

    app = web.Application()
    app.router.add_get("/{code}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    m = Metrics()
    try:
        async with aiohttp.ClientSession(trace_configs=[m.discord_http_trace()]) as session:
            for code in (200, 204, 404, 429, 429, 500):
                async with session.get(f"http://127.0.0.1:{port}/{code}") as response:
                    assert response.status == code
    finally:
        await runner.cleanup()
    # A port nothing listens on any more: no response at all.
    async with aiohttp.ClientSession(trace_configs=[m.discord_http_trace()]) as session:
        with pytest.raises(aiohttp.ClientError):
            await session.get(f"http://127.0.0.1:{port}/200")
    assert value(m, "nstbot_discord_api_errors_total", status="404") == 1
    assert value(m, "nstbot_discord_api_errors_total", status="429") == 2
    assert value(m, "nstbot_discord_api_errors_total", status="500") == 1
    assert value(m, "nstbot_discord_api_errors_total", status="error") == 1
    assert ("nstbot_discord_api_errors_total", (("status", "200"),)) not in samples(m)
