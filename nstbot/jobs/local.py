"""The local backend: one warm worker process per configured device on this machine.

Workers are started with multiprocessing's `spawn` context (never fork: the parent runs an event
loop and threads, and CUDA cannot survive a fork). Each worker has a duplex pipe, read by one
thread here that hands messages to the event loop; a monitor task notices silent workers, slow
starts, ignored cancels, and restarts dead workers with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from nstbot.config import Config
from nstbot.jobs.backend import (
    Backend,
    BackendListener,
    RunRequest,
    WorkerLost,
    WorkerStatus,
    restart_delay,
    wait_while,
)
from nstbot.jobs.model import Cancelled, Failed, Finished, Progress, Started
from nstbot.jobs.worker import worker_main

log = logging.getLogger(__name__)

MONITOR_INTERVAL_S = 0.2
STOP_GRACE_S = 5.0


class _Slot:
    """One worker process and what we know about it."""

    def __init__(self, index: int, device: str) -> None:
        self.name = f"w{index}"
        self.device = device
        self.state = "stopped"
        self.proc: Any = None
        self.conn: Connection | None = None
        self.token: Any = None
        self.gen = 0  # bumped on every spawn and death, so stale pipe messages are ignored
        self.resolved_device: str | None = None
        self.request: RunRequest | None = None
        self.seq = 0
        self.spawned_at = 0.0
        self.last_seen = 0.0
        self.cancel_deadline: float | None = None
        self.kill_reason: str | None = None
        self.startup_error: str | None = None
        self.failures = 0  # consecutive; reset by a completed job
        self.restarts = 0
        self.jobs_done = 0
        self.last_error: str | None = None
        self.start_failed = False
        self.next_start_at: float | None = None

    def status(self, now: float) -> WorkerStatus:
        return WorkerStatus(
            name=self.name,
            device=self.device,
            resolved_device=self.resolved_device,
            state=self.state,
            pid=self.proc.pid if self.proc is not None and self.state != "waiting" else None,
            job_id=self.request.job.id if self.request else None,
            jobs_done=self.jobs_done,
            restarts=self.restarts,
            last_error=self.last_error,
            start_failed=self.start_failed,
            next_restart_in=max(0.0, self.next_start_at - now) if self.next_start_at else None,
        )


class LocalBackend(Backend):
    """Worker processes on this machine, one per entry of `executor.devices`."""

    def __init__(self, config: Config) -> None:
        ex = config.executor
        self._settings_base: dict[str, Any] = {
            "weights": config.engine.weights,
            "model": config.engine.model,
            "precision": config.engine.precision,
            "allow_download": config.engine.allow_download,
            "cache_bytes": config.engine.style_cache_mb << 20,
            "progress_interval_s": ex.progress_interval_s,
            "preview_interval_s": ex.preview_interval_s,
            # Several beats per timeout, so one late beat under load is not fatal.
            "heartbeat_interval_s": max(0.05, min(1.0, ex.heartbeat_timeout_s / 5)),
            "image_limits": {
                f: getattr(config.images, f) for f in config.images.__dataclass_fields__
            },
            "log_level": config.logging.level,
        }
        self._heartbeat_timeout = ex.heartbeat_timeout_s
        self._start_timeout = ex.worker_start_timeout_s
        self._backoff_cap = ex.restart_backoff_max_s
        self._cancel_grace = max(15.0, ex.heartbeat_timeout_s)
        self._slots = [_Slot(i, device) for i, device in enumerate(ex.devices)]
        self._ctx = multiprocessing.get_context("spawn")
        self._seq = itertools.count(1)
        self._listener: BackendListener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- Backend API -------------------------------------------------------------------------

    async def start(self, listener: BackendListener) -> None:
        """Spawn every worker; returns before they are ready."""
        self._listener = listener
        self._loop = asyncio.get_running_loop()
        for slot in self._slots:
            await self._spawn(slot)
        self._monitor = asyncio.create_task(self._monitor_loop(), name="nstbot-worker-monitor")

    async def wait_ready(self, timeout: float) -> None:
        """Wait until no worker is still starting for the first time (or `timeout` passes)."""
        await wait_while(
            lambda: any(s.state in ("starting", "dying") for s in self._slots),
            self._changed,
            timeout,
        )

    def free_slots(self) -> int:
        """Ready workers."""
        return sum(1 for s in self._slots if s.state == "ready")

    def dispatch(self, request: RunRequest) -> None:
        """Send the job to the first ready worker."""
        slot = next(s for s in self._slots if s.state == "ready")
        slot.seq = next(self._seq)
        slot.request = request
        slot.state = "busy"
        slot.cancel_deadline = None
        try:
            assert slot.conn is not None
            slot.conn.send(("run", slot.seq, request.to_dict()))
        except (OSError, AssertionError):
            # The worker just died; its pipe's end-of-file reports the job as lost.
            log.warning("job %s: worker %s pipe closed on dispatch", request.job.id, slot.name)

    def cancel(self, job_id: str) -> None:
        """Ask the worker running `job_id` to stop; kill it if it has not within the grace."""
        for slot in self._slots:
            if slot.request is not None and slot.request.job.id == job_id:
                slot.token.value = slot.seq
                if slot.cancel_deadline is None:
                    slot.cancel_deadline = time.monotonic() + self._cancel_grace

    def unavailable_reason(self) -> str | None:
        """The last start error, when every worker's latest start failed."""
        if self._slots and all(s.start_failed for s in self._slots):
            return next((s.last_error for s in self._slots if s.last_error), "workers failed")
        return None

    def workers(self) -> list[WorkerStatus]:
        """Status of every worker."""
        now = time.monotonic()
        return [s.status(now) for s in self._slots]

    async def stop(self) -> None:
        """Interrupt jobs, ask workers to exit, kill those that do not within a few seconds."""
        self._stopping = True
        self._listener = None
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for slot in self._slots:
            if slot.request is not None and slot.token is not None:
                slot.token.value = slot.seq
            if slot.conn is not None:
                with contextlib.suppress(OSError):
                    slot.conn.send(("stop",))
        procs = [s.proc for s in self._slots if s.proc is not None]
        await asyncio.to_thread(_join_all, procs, STOP_GRACE_S)
        for slot in self._slots:
            slot.state = "stopped"
            slot.gen += 1
            slot.request = None
        for task in list(self._tasks):
            task.cancel()

    # -- process lifecycle -------------------------------------------------------------------

    async def _spawn(self, slot: _Slot) -> None:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        token = self._ctx.RawValue("q", 0)
        settings = dict(self._settings_base, device=slot.device, name=slot.name)
        proc = self._ctx.Process(
            target=worker_main,
            args=(child_conn, token, settings),
            name=f"nstbot-worker-{slot.name}",
            daemon=True,
        )
        slot.gen += 1
        slot.state = "starting"
        slot.next_start_at = None
        slot.kill_reason = None
        slot.startup_error = None
        slot.spawned_at = time.monotonic()
        try:
            # Starting a spawn process pickles and writes its preparation data: not for the loop.
            await asyncio.to_thread(proc.start)
        except Exception as exc:
            child_conn.close()
            parent_conn.close()
            log.error("worker %s could not be spawned: %s", slot.name, exc)
            self._after_death(slot, f"could not start a process: {exc}", start_failed=True)
            return
        child_conn.close()  # keep only the child's copy, so its death reads as end-of-file here
        slot.proc, slot.conn, slot.token = proc, parent_conn, token
        log.info("worker %s spawned on %s (pid %s)", slot.name, slot.device, proc.pid)
        threading.Thread(
            target=self._read_pipe,
            args=(slot, slot.gen, parent_conn, self._loop),
            name=f"nstbot-pipe-{slot.name}",
            daemon=True,
        ).start()

    def _read_pipe(
        self, slot: _Slot, gen: int, conn: Connection, loop: asyncio.AbstractEventLoop
    ) -> None:
        try:
            while True:
                message = conn.recv()
                loop.call_soon_threadsafe(self._on_message, slot, gen, message)
        except (EOFError, OSError):
            pass
        finally:
            conn.close()
            with contextlib.suppress(RuntimeError):  # the loop may be closed at interpreter exit
                loop.call_soon_threadsafe(self._on_eof, slot, gen)

    def _on_message(self, slot: _Slot, gen: int, message: tuple[Any, ...]) -> None:
        if gen != slot.gen or self._stopping:
            return
        slot.last_seen = time.monotonic()
        kind = message[0]
        if kind == "hb":
            return
        if kind == "ready":
            slot.state = "ready"
            slot.resolved_device = message[1]["device"]
            slot.start_failed = False
            log.info("worker %s ready on %s", slot.name, slot.resolved_device)
            self._notify_capacity()
            return
        if kind == "startup_error":
            info = message[1]
            slot.startup_error = f"{info['message']}"
            log.error("worker %s cannot start: %s: %s", slot.name, info["kind"], info["message"])
            return
        seq, request = message[1], slot.request
        if request is None or seq != slot.seq:
            return  # an answer about a run we no longer track
        job_id = request.job.id
        if kind == "started":
            self._report(job_id, Started(device=message[2]["device"], attempt=request.attempt))
        elif kind == "progress":
            self._report(job_id, Progress(**message[2], preview=message[3]))
        elif kind in ("finished", "failed", "cancelled"):
            if kind == "finished":
                event: Any = Finished(image=message[3], stats=message[2])
            elif kind == "failed":
                event = Failed(message=message[2]["message"], detail=message[2].get("detail"))
            else:
                event = Cancelled()
            slot.request = None
            slot.state = "ready"
            slot.cancel_deadline = None
            slot.jobs_done += 1
            slot.failures = 0
            self._report(job_id, event)
            self._notify_capacity()

    def _on_eof(self, slot: _Slot, gen: int) -> None:
        if gen != slot.gen or self._stopping or slot.state == "dying":
            return
        slot.gen += 1  # anything else this process sent is now stale
        was_starting = slot.state == "starting"
        slot.state = "dying"
        task = asyncio.ensure_future(self._reap(slot, slot.proc, was_starting))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reap(self, slot: _Slot, proc: Any, was_starting: bool) -> None:
        await asyncio.to_thread(proc.join, 2.0)
        if proc.exitcode is None:
            proc.kill()
            await asyncio.to_thread(proc.join, 2.0)
        if slot.kill_reason:
            reason = slot.kill_reason
        elif slot.startup_error:
            reason = slot.startup_error
        elif was_starting:
            reason = f"worker process exited while starting ({_exit_text(proc.exitcode)})"
        else:
            reason = f"worker process exited ({_exit_text(proc.exitcode)})"
        self._after_death(slot, reason, start_failed=was_starting)

    def _after_death(self, slot: _Slot, reason: str, *, start_failed: bool) -> None:
        if self._stopping:
            return
        request, slot.request = slot.request, None
        slot.proc = slot.conn = None
        slot.last_error = reason
        slot.start_failed = start_failed
        slot.failures += 1
        slot.restarts += 1
        delay = restart_delay(slot.failures, self._backoff_cap)
        slot.state = "waiting"
        slot.next_start_at = time.monotonic() + delay
        log.warning("worker %s down: %s; restarting in %.1f s", slot.name, reason, delay)
        if request is not None:
            self._report(request.job.id, WorkerLost(detail=reason))
        self._notify_capacity()

    def _kill(self, slot: _Slot, reason: str) -> None:
        if slot.kill_reason is None:
            slot.kill_reason = reason
            log.warning("worker %s killed: %s", slot.name, reason)
            with contextlib.suppress(Exception):
                slot.proc.kill()

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(MONITOR_INTERVAL_S)
            now = time.monotonic()
            for slot in self._slots:
                if slot.state == "waiting" and slot.next_start_at and now >= slot.next_start_at:
                    await self._spawn(slot)
                elif slot.state == "starting" and now - slot.spawned_at > self._start_timeout:
                    self._kill(slot, f"worker did not start within {self._start_timeout:.0f} s")
                elif slot.state in ("ready", "busy"):
                    if now - slot.last_seen > self._heartbeat_timeout:
                        self._kill(
                            slot,
                            f"worker stopped responding (no heartbeat for "
                            f"{self._heartbeat_timeout:g} s)",
                        )
                    elif slot.cancel_deadline is not None and now > slot.cancel_deadline:
                        self._kill(slot, "worker did not stop the job when asked")
                alive = slot.state in ("starting", "ready", "busy")
                if alive and slot.proc is not None and slot.proc.exitcode is not None:
                    # Backstop: normally the pipe's end-of-file reports a death first.
                    self._on_eof(slot, slot.gen)

    # -- reporting ---------------------------------------------------------------------------

    def _report(self, job_id: str, event: Any) -> None:
        if self._listener is not None:
            self._listener.job_event(job_id, event)

    def _notify_capacity(self) -> None:
        self._changed.set()
        if self._listener is not None:
            self._listener.capacity_changed()


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _join_all(procs: list[Any], grace: float) -> None:
    deadline = time.monotonic() + grace
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.exitcode is None:
            proc.kill()
            proc.join(2.0)
