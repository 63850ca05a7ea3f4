"""Helpers for the executor-queue tests: tiny images, tiny jobs, configs, a hand-driven backend."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Any

from PIL import Image

from nstbot.config import Config, EngineConfig, ExecutorConfig, StylesConfig
from nstbot.jobs.backend import Backend, BackendListener, WorkerLost, WorkerStatus
from nstbot.jobs.model import Event, Finished, Job, RunRequest, is_terminal
from nstbot.params import TransferParams


def png(color: str = "red", size: tuple[int, int] = (40, 40), mode: str = "RGB") -> bytes:
    """A small PNG of one colour."""
    buffer = io.BytesIO()
    fill: Any = color if mode == "RGB" else (255, 0, 0, 128)
    Image.new(mode, size, fill).save(buffer, "PNG")
    return buffer.getvalue()


def tiny_params(steps: int = 2, **extra: Any) -> TransferParams:
    """A 32 px single-scale run; `extra` carries test faults."""
    return TransferParams(size=32, min_size=32, scales=1, steps=steps, extra=extra)


def tiny_job(user_id: int = 1, guild_id: int | None = None, steps: int = 2, **extra: Any) -> Job:
    """A tiny job for one user."""
    return Job.new(
        user_id=user_id, guild_id=guild_id, channel_id=3, params=tiny_params(steps, **extra)
    )


def make_config(data_dir: Path, **executor: Any) -> Config:
    """A CPU, random-weights config with overrides for [executor]."""
    ex = {"devices": ("cpu",), "progress_interval_s": 0.0, "preview_interval_s": 0.0}
    ex.update(executor)
    return Config(
        data_dir=str(data_dir),
        engine=EngineConfig(device="cpu", weights="random", allow_download=False),
        executor=ExecutorConfig(**ex),
        # Warming the built-in styles at the presets' full sizes costs CPU time these tests need.
        styles=StylesConfig(warm_up=False),
    )


class ManualBackend(Backend):
    """`slots` pretend workers; the test plays their part with `emit`."""

    def __init__(self, slots: int = 1) -> None:
        self.slots = slots
        self.running: dict[str, RunRequest] = {}
        self.dispatched: list[RunRequest] = []
        self.cancelled: list[str] = []
        self.unavailable: str | None = None
        self.listener: BackendListener | None = None
        self.stopped = False

    async def start(self, listener: BackendListener) -> None:
        self.listener = listener

    async def wait_ready(self, timeout: float) -> None:
        return None

    def free_slots(self) -> int:
        return 0 if self.unavailable else self.slots - len(self.running)

    def dispatch(self, request: RunRequest) -> None:
        assert self.free_slots() > 0
        self.running[request.job.id] = request
        self.dispatched.append(request)

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)

    def unavailable_reason(self) -> str | None:
        return self.unavailable

    def workers(self) -> list[WorkerStatus]:
        return [
            WorkerStatus(
                name=f"w{i}",
                device="cpu",
                resolved_device="cpu",
                state="waiting" if self.unavailable else "ready",
                pid=None,
                job_id=None,
                jobs_done=0,
                restarts=0,
                last_error=self.unavailable,
                start_failed=bool(self.unavailable),
                next_restart_in=None,
            )
            for i in range(self.slots)
        ]

    async def stop(self) -> None:
        self.stopped = True
        self.listener = None

    def emit(self, job_id: str, event: Event | WorkerLost) -> None:
        """Play a worker reporting `event` for a running job."""
        freed = is_terminal(event) or isinstance(event, WorkerLost)
        if freed:
            del self.running[job_id]
        assert self.listener is not None
        self.listener.job_event(job_id, event)
        if freed:
            self.listener.capacity_changed()

    def set_unavailable(self, reason: str | None) -> None:
        """Pretend every worker failed to start (or came back)."""
        self.unavailable = reason
        assert self.listener is not None
        self.listener.capacity_changed()


async def collect(handle, timeout: float = 60.0) -> list:
    """Every event of a job until its final one."""

    async def gather() -> list:
        return [event async for event in handle.events()]

    return await asyncio.wait_for(gather(), timeout)


async def until(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    """Poll until `predicate()` is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def until_idle(scheduler, timeout: float = 90.0) -> None:
    """Wait until every worker is up and nothing is queued or running."""

    def idle() -> bool:
        h = scheduler.health()
        return h.workers_alive == h.workers_total and h.queued == 0 and h.running == 0

    await until(idle, timeout, "an idle scheduler")


async def style_passes(
    scheduler: Any, params: TransferParams, photo: bytes, preset: bytes, upload: bytes
) -> dict[str, int]:
    """Style feature passes of one job with a built-in style's bytes and one with an upload."""
    passes = {}
    for label, style in (("preset", preset), ("upload", upload)):
        job = Job.new(user_id=1, channel_id=3, params=params)
        result = await (await scheduler.submit(job, content=photo, styles=[style])).wait()
        assert isinstance(result, Finished), result
        passes[label] = result.stats["style_passes"]
    return passes
