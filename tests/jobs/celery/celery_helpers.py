"""Helpers of the Celery tests: real `nstbot worker` subprocesses on CPU with random weights."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
from jobhelpers import make_config

from nstbot.config import CeleryConfig, Config

ROOT = Path(__file__).resolve().parents[3]

# Short beats and timeouts so losses show within seconds; the visibility timeout is still far
# longer than any test job, as it must exceed the hard limit.
CELERY = {
    "heartbeat_interval_s": 0.5,
    "worker_timeout_s": 3.0,
    "poll_interval_s": 0.25,
    "hard_time_limit_s": 60.0,
    "visibility_timeout_s": 90.0,
    "max_attempts": 2,
}


def celery_config(data_dir: Path, url: str, queue: str, **executor: Any) -> Config:
    """A bot config on the Celery backend (CPU, random weights), no queue limits."""
    ex = {"max_queue": 0, "per_user_queued": 0, "per_user_running": 0, "job_timeout_s": 120.0}
    ex.update(executor)
    config = make_config(data_dir, **ex)
    return dataclasses.replace(
        config,
        executor=dataclasses.replace(config.executor, backend="celery"),
        celery=CeleryConfig(broker_url=url, queue=queue, **CELERY),  # type: ignore[arg-type]
    )


def worker_env(url: str, queue: str, **extra: str) -> dict[str, str]:
    """The environment of an `nstbot worker` for these tests."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", NSTBOT_TEST_FAULTS="1")
    env.update(
        NSTBOT_CELERY_BROKER_URL=url,
        NSTBOT_CELERY_QUEUE=queue,
        NSTBOT_ENGINE_WEIGHTS="random",
        NSTBOT_ENGINE_DEVICE="cpu",
        NSTBOT_ENGINE_ALLOW_DOWNLOAD="false",
        # The warm-up at the presets' full sizes would hold every worker's READY back for long.
        NSTBOT_STYLES_WARM_UP="false",
    )
    env.update({f"NSTBOT_CELERY_{k.upper()}": str(v) for k, v in CELERY.items()})
    env.update(extra)
    return env


class Workers:
    """`nstbot worker` subprocesses, each in its own process group, logging to files."""

    def __init__(self, url: str, queue: str, log_dir: Path) -> None:
        self.url, self.queue, self.log_dir = url, queue, log_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.redis = redis.Redis.from_url(url)

    def start(self, count: int = 1, **env: str) -> list[subprocess.Popen[bytes]]:
        """Start `count` workers (not waiting for them)."""
        started = []
        for _ in range(count):
            log = open(self.log_dir / f"worker{len(self.procs)}.log", "wb")  # noqa: SIM115
            proc = subprocess.Popen(
                [sys.executable, "-m", "nstbot.cli", "worker"],
                env=worker_env(self.url, self.queue, **env),
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
            )  # fmt: skip
            log.close()
            self.procs.append(proc)
            started.append(proc)
        return started

    def statuses(self) -> dict[str, dict[str, Any]]:
        """Every live worker status in Redis, by name."""
        prefix = f"nstbot:{self.queue}:worker:"
        out = {}
        for key in self.redis.scan_iter(f"{prefix}*"):
            raw = self.redis.get(key)
            if raw:
                out[key.decode()[len(prefix) :]] = json.loads(raw)
        return out

    def wait_ready(self, count: int, timeout: float = 120.0) -> dict[str, dict[str, Any]]:
        """Wait until `count` workers report ready (and none is busy or starting)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = self.statuses()
            states = [s["state"] for s in statuses.values()]
            if states.count("ready") == count and len(states) == count:
                return statuses
            for proc in self.procs:
                if proc.poll() is not None and proc.returncode not in (0, -9):
                    raise AssertionError(f"worker exited {proc.returncode}: {self.logs()}")
            time.sleep(0.1)
        raise AssertionError(f"workers not ready: {self.statuses()}\n{self.logs()}")

    def main_pid(self, name: str) -> int:
        """The main process of the worker with this status name (nstbot.cpu.<pid>@host)."""
        return int(name.split("@")[0].rsplit(".", 1)[1])

    def logs(self) -> str:
        """The tail of every worker's log."""
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.log_dir.glob("worker*.log"))
        )

    def stop(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL for the group)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.redis.close()
