"""Celery backend overhead per job versus the local backend, and throughput with 1 and 2 workers.

Starts its own redis-server (tests/jobs/redis_server.py) unless --redis-url is given, and real
`nstbot worker` processes (CPU, random weights unless told otherwise). Reports, in milliseconds:
  submit -> Started   (journal, dispatch; Celery: inputs to Redis, send, pick-up, pub/sub)
  done -> Finished    (worker's stylize() returned -> the caller reads Finished)
as p50 / p95 for the same tiny jobs on each backend, then jobs per second for a burst of jobs
with one worker and with two. Figures, not pass/fail.

    .venv/bin/python -m benchmarks.celery [--jobs 40] [--burst 12] [--burst-size 64]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.common import latency_line, solid_png
from nstbot.config import CeleryConfig, Config, EngineConfig, ExecutorConfig, LoggingConfig
from nstbot.jobs.model import Finished, Job, Started
from nstbot.jobs.scheduler import Scheduler
from nstbot.params import TransferParams

ROOT = Path(__file__).resolve().parent.parent


def _config(data_dir: str, backend: str, url: str, queue: str, weights: str) -> Config:
    return Config(
        data_dir=data_dir,
        engine=EngineConfig(device="cpu", weights=weights, allow_download=False),
        executor=ExecutorConfig(
            backend=backend, devices=("cpu",), max_queue=0, per_user_queued=0, per_user_running=0
        ),
        celery=CeleryConfig(broker_url=url, queue=queue),
        logging=LoggingConfig(level="WARNING"),
    )


async def _latency(config: Config, jobs: int) -> tuple[list[float], list[float]]:
    """submit -> Started and done -> Finished of `jobs` one-step jobs, one at a time."""
    scheduler = Scheduler(config)
    await scheduler.start()
    content, style = solid_png("red", 32), solid_png("blue", 32)
    params = TransferParams(size=32, min_size=32, scales=1, steps=1)
    to_started, to_finished = [], []
    for i in range(jobs + 1):
        t_submit = time.perf_counter()
        handle = await scheduler.submit(Job.new(user_id=i % 7, params=params), content=content,
                                        styles=[style])  # fmt: skip
        async for event in handle.events():
            if isinstance(event, Started):
                t_started = time.perf_counter()
            elif isinstance(event, Finished) and i > 0:  # job 0 warms up both ends
                to_started.append((t_started - t_submit) * 1000)
                to_finished.append((time.time() - event.stats["worker_done_at"]) * 1000)
    await scheduler.stop()
    return to_started, to_finished


async def _burst(config: Config, jobs: int, size: int, steps: int) -> float:
    """Jobs per second for `jobs` jobs of different users submitted at once."""
    scheduler = Scheduler(config)
    await scheduler.start()
    content, style = solid_png("red", size), solid_png("blue", size)
    params = TransferParams(size=size, min_size=size, scales=1, steps=steps)
    began = time.perf_counter()
    handles = [
        await scheduler.submit(Job.new(user_id=i, params=params), content=content, styles=[style])
        for i in range(jobs)
    ]
    results = [await h.wait() for h in handles]
    elapsed = time.perf_counter() - began
    await scheduler.stop()
    assert all(isinstance(r, Finished) for r in results), results
    return jobs / elapsed


def _start_worker(url: str, queue: str, weights: str, log_dir: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, NSTBOT_CELERY_BROKER_URL=url, NSTBOT_CELERY_QUEUE=queue,
               NSTBOT_ENGINE_WEIGHTS=weights, NSTBOT_ENGINE_DEVICE="cpu",
               NSTBOT_ENGINE_ALLOW_DOWNLOAD="false", NSTBOT_LOGGING_LEVEL="WARNING",
               PYTHONPATH=str(ROOT))  # fmt: skip
    log = open(Path(log_dir) / f"worker-{uuid.uuid4().hex[:6]}.log", "wb")  # noqa: SIM115
    command = [sys.executable, "-m", "nstbot.cli", "worker"]
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


async def _wait_workers(config: Config, count: int, timeout: float = 120.0) -> None:
    scheduler = Scheduler(config)
    await scheduler.start(wait_ready=False)
    deadline = time.monotonic() + timeout
    while sum(w.state == "ready" for w in scheduler.health().workers) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} workers not ready: {scheduler.health()}")
        await asyncio.sleep(0.2)
    await scheduler.stop()


async def run(args: argparse.Namespace, url: str) -> None:
    """Measure and print."""
    queue = f"bench{uuid.uuid4().hex[:6]}"
    workers: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="nstbot-bench-") as tmp:
        local = _config(f"{tmp}/local", "local", url, queue, args.weights)
        celery = _config(f"{tmp}/celery", "celery", url, queue, args.weights)
        try:
            print(f"latency: {args.jobs} jobs of 32 px, 1 step, one at a time (CPU)")
            for name, config in (("local", local), ("celery", celery)):
                if name == "celery":
                    workers.append(_start_worker(url, queue, args.weights, tmp))
                    await _wait_workers(celery, 1)
                started, finished = await _latency(config, args.jobs)
                print(f" {name} backend")
                print(latency_line("submit -> Started", started))
                print(latency_line("done -> Finished", finished))
            size, steps, burst = args.burst_size, args.burst_steps, args.burst
            print(f"throughput: {burst} jobs of {size} px, {steps} steps, submitted at once")
            local_rate = await _burst(local, burst, size, steps)
            print(f"  {'local, 1 worker':<18} {local_rate:6.2f} jobs/s")
            rates = {}
            for count in (1, 2):
                while len(workers) < count:
                    workers.append(_start_worker(url, queue, args.weights, tmp))
                await _wait_workers(celery, count)
                rates[count] = await _burst(celery, burst, size, steps)
                label = f"celery, {count} worker{'s' if count > 1 else ''}"
                print(f"  {label:<18} {rates[count]:6.2f} jobs/s")
            print(f"  celery speed-up with 2 workers: {rates[2] / rates[1]:.2f}x")
        finally:
            for proc in workers:
                proc.terminate()
            for proc in workers:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(20)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--burst", type=int, default=12)
    parser.add_argument("--burst-size", type=int, default=64)
    parser.add_argument("--burst-steps", type=int, default=10)
    parser.add_argument("--weights", default="random")
    parser.add_argument("--redis-url", help="an existing Redis (default: start redis-server)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per worker: 2 workers, 2 cores
    if args.redis_url:
        asyncio.run(run(args, args.redis_url))
        return
    sys.path.insert(0, str(ROOT / "tests" / "jobs"))
    from redis_server import redis_server

    with redis_server() as server:
        asyncio.run(run(args, server.url))


if __name__ == "__main__":
    main()
