"""The Celery backend's settings, selection and failure reports: the app's guarantees, TLS and
passwords, no torch on the bot side, no worker connected, a worker that cannot start."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import ssl
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from celery_helpers import ROOT, Workers, celery_config
from jobhelpers import collect, png, tiny_job, until
from redis_server import redis_available, redis_server

from nstbot.config import CeleryConfig, Config, ConfigError, load_config
from nstbot.jobs.celery.app import async_redis, make_app, redact_redis_url
from nstbot.jobs.celery.backend import CeleryBackend
from nstbot.jobs.model import Cancelled, Finished, RunRequest
from nstbot.jobs.scheduler import Scheduler, WorkersUnavailable

IMG, STYLE = png("red"), png("blue")
PASSWORD = "correct-horse-battery-staple"


def test_the_app_sends_json_only_and_acknowledges_late() -> None:
    cfg = CeleryConfig(queue="gpu", hard_time_limit_s=100.0, visibility_timeout_s=150.0)
    conf = make_app(Config(celery=cfg)).conf
    assert conf.task_serializer == conf.result_serializer == "json"
    assert conf.accept_content == ["json"]
    # Late acks, but no re-queue when the pool process dies: the bot alone sends a re-run, to a
    # ready worker's own queue.
    assert conf.task_acks_late and not conf.task_reject_on_worker_lost and conf.worker_direct
    assert conf.worker_prefetch_multiplier == 1 and conf.worker_concurrency == 1
    assert conf.broker_transport_options["visibility_timeout"] == 150
    assert conf.task_time_limit == 100.0 and conf.task_default_queue == "gpu"
    assert conf.worker_proc_alive_timeout >= 60  # loading VGG19 takes longer than Celery's 4 s
    assert conf.get("worker_pool_start_method", "spawn") == "spawn"


def test_config_keys_and_their_checks() -> None:
    env = {"NSTBOT_CELERY_BROKER_URL": f"rediss://:{PASSWORD}@redis.example:6380/0"}
    assert load_config(env=env).celery.broker_url.startswith("rediss://")
    for bad, key in [
        ({"NSTBOT_CELERY_VISIBILITY_TIMEOUT_S": "60"}, "celery.visibility_timeout_s"),
        ({"NSTBOT_CELERY_SSL_CERT_REQS": "maybe"}, "celery.ssl_cert_reqs"),
        ({"NSTBOT_CELERY_MAX_ATTEMPTS": "0"}, "celery.max_attempts"),
    ]:
        with pytest.raises(ConfigError, match=key):
            load_config(env=bad)


def test_rediss_urls_get_tls_options_and_passwords_stay_out_of_logs() -> None:
    url = f"rediss://:{PASSWORD}@redis.example:6380/0"
    cfg = CeleryConfig(broker_url=url, ssl_ca_certs="/etc/ca.pem")
    assert make_app(Config(celery=cfg)).conf.broker_use_ssl == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": "/etc/ca.pem",
    }
    loose = dataclasses.replace(cfg, ssl_cert_reqs="none", ssl_ca_certs="")
    assert make_app(Config(celery=loose)).conf.broker_use_ssl == {"ssl_cert_reqs": ssl.CERT_NONE}
    assert not make_app(Config()).conf.broker_use_ssl
    client = async_redis(cfg)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] == "required" and kwargs["ssl_ca_certs"] == "/etc/ca.pem"
    assert redact_redis_url(url) == "rediss://:***@redis.example:6380/0"
    assert redact_redis_url("redis://u:p4ss@h/1") == "redis://u:***@h/1"
    assert redact_redis_url("redis://h:6379/0") == "redis://h:6379/0"


def test_executor_backend_selects_the_backend(tmp_path: Path) -> None:
    config = celery_config(tmp_path, "redis://127.0.0.1:1/0", "q")
    assert isinstance(Scheduler(config)._backend, CeleryBackend)
    wrong = dataclasses.replace(config.executor, backend="carrier-pigeon")
    with pytest.raises(ValueError, match="local or celery"):
        Scheduler(dataclasses.replace(config, executor=wrong))


def test_neither_the_bot_side_nor_a_worker_main_process_imports_torch() -> None:
    code = (
        "import sys, nstbot.jobs.celery.backend, nstbot.jobs.celery.worker, nstbot.jobs.scheduler;"
        "print([m for m in sys.modules if m == 'torch' or m.startswith('nstbot.engine')])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


async def test_with_no_worker_connected_jobs_are_refused_after_the_grace(
    redis_url: str, tmp_path: Path
) -> None:
    config = celery_config(tmp_path, redis_url, f"empty{uuid.uuid4().hex[:6]}")
    grace = dataclasses.replace(config.celery, no_worker_grace_s=0.5)
    scheduler = Scheduler(dataclasses.replace(config, celery=grace))
    await scheduler.start()
    try:
        waiting = await scheduler.submit(tiny_job(), content=IMG, styles=[STYLE])
        assert waiting.position == 1  # queued while the grace lasts
        result = await asyncio.wait_for(waiting.wait(), 10)
        assert "no GPU worker is connected" in result.message
        with pytest.raises(WorkersUnavailable, match="no GPU worker"):
            await scheduler.submit(tiny_job(), content=IMG, styles=[STYLE])
    finally:
        await scheduler.stop()


async def test_a_worker_that_cannot_start_says_why(redis_url: str, tmp_path: Path) -> None:
    queue = f"broken{uuid.uuid4().hex[:6]}"
    pool = Workers(redis_url, queue, tmp_path)
    missing = tmp_path / "missing-vgg19.pth"
    (proc,) = pool.start(1, NSTBOT_ENGINE_WEIGHTS=str(missing))
    scheduler = Scheduler(celery_config(tmp_path / "data", redis_url, queue))
    await scheduler.start(wait_ready=False)
    try:
        await until(lambda: scheduler.health().unavailable_reason, 60, "the failure to show")
        assert str(missing) in scheduler.health().unavailable_reason
        assert scheduler.health().workers[0].start_failed
        with pytest.raises(WorkersUnavailable, match="weights"):
            await scheduler.submit(tiny_job(), content=IMG, styles=[STYLE])
        assert await asyncio.to_thread(proc.wait, 60) == 1, pool.logs()
    finally:
        await scheduler.stop()
        pool.stop()


@pytest.mark.skipif(not redis_available(), reason="redis-server is not installed")
async def test_a_job_over_tls_with_a_password(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    queue = f"tls{uuid.uuid4().hex[:6]}"
    with redis_server(password=PASSWORD, tls=True) as server:
        pool = Workers(server.url, queue, tmp_path)
        pool.redis = pool.redis.from_url(server.url, ssl_ca_certs=server.ca_certs)
        pool.start(1, NSTBOT_CELERY_SSL_CA_CERTS=server.ca_certs or "")
        config = celery_config(tmp_path / "data", server.url, queue)
        tls = dataclasses.replace(config.celery, ssl_ca_certs=server.ca_certs)
        scheduler = Scheduler(dataclasses.replace(config, celery=tls))
        await scheduler.start()
        try:
            await until(lambda: scheduler.health().workers_alive == 1, 60, "the worker")
            handle = await scheduler.submit(tiny_job(), content=IMG, styles=[STYLE])
            events = await collect(handle, 60)
            assert isinstance(events[-1], Finished), events
        finally:
            await scheduler.stop()
            pool.stop()
        assert "rediss://:***@127.0.0.1" in pool.logs()
        assert PASSWORD not in pool.logs() and PASSWORD not in caplog.text


class Listener:
    """Records what a backend reports."""

    def __init__(self) -> None:
        self.events: list = []

    def job_event(self, job_id: str, event) -> None:
        self.events.append(event)

    def capacity_changed(self) -> None:
        pass


def announce_ready(raw: redis.Redis, queue: str, name: str, *, ttl: int) -> None:
    """Write a worker status saying `name` is ready, as a worker that takes nothing would."""
    raw.set(f"nstbot:{queue}:worker:{name}", json.dumps({"name": name, "state": "ready"}), ex=ttl)
    raw.sadd(f"nstbot:{queue}:workers", name)


def write_inputs(folder: Path) -> list[str]:
    """A job's content and style files, as the journal would have written them."""
    paths = [folder / "content.img", folder / "style0.img"]
    for path, data in zip(paths, (IMG, STYLE), strict=True):
        path.write_bytes(data)
    return [str(p) for p in paths]


async def test_cancel_of_a_job_still_in_celerys_queue_ends_it_at_once(
    redis_url: str, tmp_path: Path
) -> None:
    queue = f"idle{uuid.uuid4().hex[:6]}"
    # A worker that says it is ready but takes nothing (stalled): the message waits in its queue.
    raw = redis.Redis.from_url(redis_url)
    ghost = "nstbot.cpu.1@ghost"
    announce_ready(raw, queue, ghost, ttl=60)
    backend = CeleryBackend(celery_config(tmp_path, redis_url, queue))
    listener = Listener()
    await backend.start(listener)
    try:
        await backend.wait_ready(10)
        job = tiny_job()
        backend.dispatch(RunRequest(job, write_inputs(tmp_path), 1))
        await until(lambda: raw.llen(f"{ghost}.dq2") == 1, 10, "the message in Celery's queue")
        backend.cancel(job.id)
        await until(lambda: listener.events, 5, "the outcome")
        assert isinstance(listener.events[-1], Cancelled)
        # Its keys go; the message, if a worker ever takes it, finds no fence and is dropped.
        key = f"nstbot:{queue}:job:{job.id}:task"
        await until(lambda: not raw.exists(key), 10, "the job's keys to be removed")
    finally:
        await backend.stop()


async def test_a_job_sent_to_a_worker_that_vanishes_before_taking_it_goes_to_another(
    redis_url: str, tmp_path: Path
) -> None:
    queue = f"gone{uuid.uuid4().hex[:6]}"
    raw = redis.Redis.from_url(redis_url)
    # Two workers that say they are ready but take nothing; the first one's status expires soon
    # (its host went away with the message in its own queue).
    doomed, spare = "nstbot.cpu.1@ghost", "nstbot.cpu.2@ghost"
    for name, ttl in ((doomed, 2), (spare, 60)):
        announce_ready(raw, queue, name, ttl=ttl)
    backend = CeleryBackend(celery_config(tmp_path, redis_url, queue))
    listener = Listener()
    await backend.start(listener)
    try:
        await backend.wait_ready(10)
        job = tiny_job()
        backend.dispatch(RunRequest(job, write_inputs(tmp_path), 1))
        await until(lambda: raw.llen(f"{doomed}.dq2") == 1, 10, "the message for the first")
        await until(lambda: raw.llen(f"{spare}.dq2") == 1, 15, "the message sent again")
        assert listener.events == []  # it never ran: no attempt spent, nothing reported
        fence = raw.get(f"nstbot:{queue}:job:{job.id}:task")
        assert fence is not None and fence.decode() in raw.lindex(f"{spare}.dq2", 0).decode()
        backend.cancel(job.id)
        await until(lambda: listener.events, 5, "the outcome")
        assert isinstance(listener.events[-1], Cancelled)
    finally:
        await backend.stop()
        raw.delete(f"{doomed}.dq2", f"{spare}.dq2")
