"""The Celery backend: the scheduler's jobs run on `nstbot worker` processes on any host.

The bot keeps the fair queue (nstbot.jobs.scheduler) and hands Celery only as many jobs as there
are idle workers, so the fair order decides who runs next, not Redis' list order. Workers write
their status to Redis every heartbeat (nstbot.jobs.celery.watch); jobs travel as JSON, inputs
and results as bytes in Redis keys with a TTL (layout in nstbot.jobs.celery.app). Events come
back over Redis pub/sub, with a poll of the same keys as the fallback.

Delivery: a message goes to the own queue of a worker that reports ready (Celery's
`worker_direct`), never to the shared queue where a worker still reloading its pool process could
hold it. It is acknowledged after its run, also when the process running it dies: the bot alone
sends a re-run, so one crash costs one attempt. A lost run is noticed by the worker's status (a
new pool process that is not running it, or the status expiring when the host is down) and
reported as `WorkerLost`: the scheduler's retry policy and attempt counter (`celery.max_attempts`)
decide whether the job is dispatched again, under a new task id (the fence), which turns any older
message for it into a no-op. However often it runs, a job ends once: its outcome is stored with
SET NX, and the scheduler journals it once.

After a restart the scheduler re-queues the journal's unfinished jobs; dispatching one looks in
Redis first: a stored outcome is delivered without running again, a job still running on a live
worker is adopted (its progress keeps flowing), anything else is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from celery.utils.nodenames import worker_direct

from nstbot.config import Config
from nstbot.jobs import messages
from nstbot.jobs.backend import Backend, BackendListener, WorkerLost, WorkerStatus, wait_while
from nstbot.jobs.celery.app import (
    TASK_NAME,
    Keys,
    async_redis,
    data_url,
    dumps,
    job_ttl,
    loads,
    make_app,
    message_event,
    outcome_event,
    outcome_kind,
    outcome_record,
    redact_redis_url,
    url_password,
)
from nstbot.jobs.celery.watch import Run, WorkerRegistry, listen
from nstbot.jobs.model import (
    Cancelled,
    Event,
    Failed,
    Progress,
    RunRequest,
    Started,
    event_from_wire,
)
from nstbot.jobs.runtime import RunSettings
from nstbot.logs import add_secret

log = logging.getLogger(__name__)

SENDING = ("sending", "sent")
CLEANUP_DELAY_S = 3.0  # lets the journal write of the outcome land before Redis forgets it


class CeleryBackend(Backend):
    """Jobs on Celery workers anywhere, with Redis as broker and job store."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._cfg = cfg = config.celery
        self._keys = Keys(cfg.queue)
        self._ttl = job_ttl(cfg)
        self._settings = RunSettings.from_config(config).to_dict()
        self._cancel_grace = max(15.0, cfg.worker_timeout_s)
        self._io = ThreadPoolExecutor(1, thread_name_prefix="nstbot-celery")  # Celery calls block
        self._app: Any = None
        self._redis: Any = None
        self._events: Any = None  # the subscription's client, which reconnects on its own
        self._listener: BackendListener | None = None
        self._registry = WorkerRegistry(cfg)
        self._runs: dict[str, Run] = {}
        self._expected: set[str] = set()  # jobs of a previous bot process still on a worker
        self._stored: set[str] = set()  # ...and those whose outcome waits in Redis
        self._polled = asyncio.Event()
        self._changed = asyncio.Event()
        self._capacity: tuple[Any, ...] = ()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cleanups: dict[str, tuple[asyncio.TimerHandle, list[str]]] = {}
        self._stopping = False
        self._reachable_since = -math.inf  # when Redis came back after an outage

    # -- Backend API -------------------------------------------------------------------------

    async def start(self, listener: BackendListener) -> None:
        """Connect to Redis and start following workers and events (returns at once)."""
        self._listener = listener
        for url in (self._cfg.broker_url, self._cfg.result_backend):
            if password := url_password(url):
                add_secret(password)
        self._app = make_app(self._config)
        self._redis = async_redis(self._cfg)
        where = redact_redis_url(data_url(self._cfg))
        log.info("celery backend: queue %s, redis %s", self._cfg.queue, where)
        self._spawn(self._poll_loop())
        self._events = async_redis(self._cfg, reconnect=True)
        self._spawn(listen(self._events, self._keys.events, self._on_event, lambda: self._stopping))

    async def wait_ready(self, timeout: float) -> None:
        """Wait for the first look at the workers and for those starting to be ready."""
        await wait_while(
            lambda: not self._polled.is_set() or bool(self._registry.starting()),
            self._changed,
            timeout,
        )

    async def resumable(self, job_ids: list[str]) -> set[str]:
        """Of these jobs, those with an outcome in Redis or still running on a live worker."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._polled.wait(), 10.0)
        if not job_ids or self._registry.unreachable_since is not None:
            return set()
        try:
            finals = await self._redis.mget([self._keys.job(j, "final") for j in job_ids])
        except Exception as exc:
            log.warning("cannot read job outcomes from Redis: %s", exc)
            return set()
        self._stored = {j for j, final in zip(job_ids, finals, strict=True) if final}
        self._expected = self._registry.busy_jobs() & (set(job_ids) - self._stored)
        return self._expected | self._stored

    def free_slots(self) -> int:
        """Idle workers (and those running a job of ours) less the jobs handed out; a stored
        outcome needs no worker to be delivered, so each adds a slot until dispatched."""
        if self._registry.unreachable_since is not None:
            return 0  # the worker list is from before the outage: nothing is known to be free
        ours = self._runs.keys() | self._expected
        return max(0, self._registry.capacity(ours) + len(self._stored) - len(self._runs))

    def dispatch(self, request: RunRequest) -> None:
        """Take the slot at once, then reconcile with Redis or send the job, in a task."""
        run = Run(request)
        self._runs[run.job_id] = run
        self._expected.discard(run.job_id)
        self._stored.discard(run.job_id)
        self._spawn(self._start_run(run))

    def cancel(self, job_id: str) -> None:
        """Set the job's cancel flag; a job not yet on a worker ends here and now."""
        run = self._runs.get(job_id)
        if run is not None and run.phase == "waiting" and not run.ended:
            self._finish(run, Cancelled())  # never sent: nothing to stop
        elif run is not None and run.cancel_at is None and not run.ended:
            run.cancel_at = time.monotonic()
            self._spawn(self._cancel(run))

    def unavailable_reason(self) -> str | None:
        """Redis unreachable, every worker failed to start, or none connected for a while."""
        return self._registry.unavailable_reason()

    def workers(self) -> list[WorkerStatus]:
        """Every worker that wrote its status lately."""
        return self._registry.statuses()

    async def stop(self) -> None:
        """Stop following; jobs keep running on the workers and are adopted at the next start."""
        self._stopping = True
        self._listener = None
        for task in list(self._tasks):
            task.cancel()
        # Bounded: a cancel that lands inside a Redis call may come out as a connection error.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
        for handle, keys in self._cleanups.values():
            handle.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._redis.delete(*keys), 2.0)
        self._cleanups.clear()
        for client in (self._redis, self._events):
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.aclose(), 5.0)
        if self._app is not None:
            loop = asyncio.get_running_loop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(loop.run_in_executor(self._io, self._app.close), 5.0)
        self._io.shutdown(wait=False)

    # -- sending and ending ------------------------------------------------------------------

    async def _start_run(self, run: Run) -> None:
        key = functools.partial(self._keys.job, run.job_id)
        try:
            final, fence, raw = await self._redis.mget(key("final"), key("task"), key("state"))
        except Exception as exc:
            self._wait_for_redis(run, exc)
            return
        state, task_id = loads(raw) or {}, fence.decode() if fence else None
        if final is not None:
            log.info("job %s: outcome already in Redis, delivering it", run.job_id)
            run.task_id, run.phase = task_id or "-", "sent"  # the poll retries a failed read
            await self._collect(run)
        elif (
            task_id
            and state.get("task") == task_id
            and state.get("status") == "running"
            and self._registry.runs(state.get("worker"), run.job_id)
        ):
            run.task_id, run.phase, run.worker = task_id, "running", state["worker"]
            log.info("job %s: still running on %s, adopted", run.job_id, run.worker)
            self._follow(run, state)
        else:
            await self._send(run)

    async def _send(self, run: Run) -> None:
        job = run.request.job
        try:
            blobs = await asyncio.to_thread(
                lambda: [Path(p).read_bytes() for p in run.request.inputs]
            )
        except OSError as exc:
            self._finish(run, Failed(messages.INPUTS_GONE, str(exc)))
            return
        # Workers sent a job they have not shown as busy yet (a concurrent send included).
        taken = {r.worker for r in self._runs.values() if r is not run and r.phase in SENDING}
        target = self._registry.ready({w for w in taken if w})
        if target is None:
            self._wait_for_worker(run)
            return
        task_id = f"{job.id}-{uuid.uuid4().hex[:12]}"
        run.task_id, run.phase, run.lost_since, run.worker = task_id, "sending", None, target
        inputs = self._keys.inputs(job.id, len(blobs))
        # Only what a worker needs: `delivery` holds Discord tokens and stays with the bot.
        request = RunRequest(dataclasses.replace(job, delivery={}), inputs, run.request.attempt)
        payload = dict(self.payload(request), settings=self._settings)
        try:
            pipe = self._redis.pipeline(transaction=True)
            for name, blob in zip(inputs, blobs, strict=True):
                pipe.set(name, blob, ex=self._ttl)
            pipe.set(self._keys.job(job.id, "task"), task_id, ex=self._ttl)
            state = dumps({"status": "sent", "task": task_id})
            pipe.set(self._keys.job(job.id, "state"), state, ex=self._ttl)
            await pipe.execute()
            send = functools.partial(self._app.send_task, TASK_NAME, args=[payload],
                                     task_id=task_id, queue=worker_direct(target))  # fmt: skip
            await asyncio.get_running_loop().run_in_executor(self._io, send)
        except Exception as exc:
            self._wait_for_redis(run, exc)
            return
        if run.phase == "sending":
            run.phase = "sent"
        log.info("job %s sent to %s (task %s)", job.id, target, task_id)

    async def _cancel(self, run: Run) -> None:
        try:
            await self._redis.set(self._keys.job(run.job_id, "cancel"), b"1", ex=self._ttl)
            if run.phase in ("sending", "sent"):
                # Not on a worker yet: end it here; the message, if delivered, finds `final`.
                await self._claim(run, Cancelled())
                self._revoke(run.task_id, terminate=False)
        except Exception as exc:
            log.warning("job %s: cancel failed (%s); ending it after the grace", run.job_id, exc)

    async def _claim(self, run: Run, event: Failed | Cancelled) -> None:
        """End the job from the bot's side unless a worker ended it first; then collect it."""
        key = self._keys.job(run.job_id, "final")
        outcome = dumps(outcome_record(event, worker="bot"))
        await self._redis.set(key, outcome, nx=True, ex=int(self._cfg.result_ttl_s))
        await self._collect(run)

    def _revoke(self, task_id: str | None, *, terminate: bool) -> None:
        if task_id and self._app is not None:
            control = self._app.control
            self._io.submit(control.revoke, task_id, terminate=terminate, signal="SIGKILL")

    async def _collect(self, run: Run) -> None:
        if run.collecting or run.ended:
            return
        run.collecting = True
        try:
            outcome = loads(await self._redis.get(self._keys.job(run.job_id, "final")))
            image = None
            if outcome and outcome_kind(outcome) == "finished":
                image = await self._redis.get(outcome.get("image_key") or "")
        except Exception as exc:
            log.warning("job %s: cannot read its outcome yet: %s", run.job_id, exc)
            return
        finally:
            run.collecting = False
        if outcome is None:
            return
        if outcome_kind(outcome) == "finished":  # a run may have ended before we saw it start
            device = (outcome["event"].get("stats") or {}).get("device", "")
            self._report(run.job_id, run.started(device, int(outcome.get("attempt") or 1)))
        self._registry.mark_idle(outcome.get("worker"), run.job_id)
        self._finish(run, outcome_event(outcome, image), outcome.get("image_key"))

    def _finish(self, run: Run, event: Any, image_key: str | None = None) -> None:
        if run.ended:
            return
        run.ended = True
        self._runs.pop(run.job_id, None)
        self._report(run.job_id, event)
        keys = self._keys.job_keys(run.job_id, len(run.request.inputs))
        keys += [image_key] if image_key else []
        handle = asyncio.get_running_loop().call_later(CLEANUP_DELAY_S, self._cleanup, run.job_id)
        self._cleanups[run.job_id] = (handle, keys)
        self._notify_capacity()

    def _cleanup(self, job_id: str) -> None:
        entry = self._cleanups.pop(job_id, None)
        if entry is not None:
            self._spawn(self._delete(entry[1]))

    async def _delete(self, keys: list[str]) -> None:
        try:
            await self._redis.delete(*keys)
        except Exception as exc:  # they expire anyway (every job key has a TTL)
            log.info("cannot delete %d job keys yet: %s", len(keys), exc)

    def _wait_for_redis(self, run: Run, exc: Exception) -> None:
        """Redis failed us before the job reached a worker: it waits, and the first poll that
        reaches Redis again sends it (or the no-worker grace ends it)."""
        if run.phase != "waiting":
            log.warning("job %s: cannot reach Redis (%s); it waits", run.job_id, exc)
        run.phase, run.task_id = "waiting", None

    def _wait_for_worker(self, run: Run) -> None:
        """No worker reports ready (one may be reloading after a crash): the job waits, and a
        poll sends it to the first one that does."""
        if run.phase != "waiting":
            log.info("job %s: no worker is ready; it waits", run.job_id)
        run.phase, run.task_id = "waiting", None

    def _lose(self, run: Run, detail: str) -> None:
        log.warning("job %s: %s", run.job_id, detail)
        if not run.ended:
            run.ended = True
            self._runs.pop(run.job_id, None)
            self._report(run.job_id, WorkerLost(detail=detail))
            self._notify_capacity()

    # -- events in ---------------------------------------------------------------------------

    def _on_event(self, message: dict[str, Any]) -> None:
        run = self._runs.get(message.get("job", ""))
        if run is None or run.ended:
            return
        if message.get("type") == "final":
            self._spawn(self._collect(run))
            return
        if message.get("task") != run.task_id:
            return  # from a run that was superseded
        event = message_event(message)
        if isinstance(event, Started):
            run.phase, run.worker = "running", message.get("worker")
            self._report(run.job_id, run.started(event.device, event.attempt))
        elif isinstance(event, Progress):
            self._report(run.job_id, run.progress(event))

    def _follow(self, run: Run, state: dict[str, Any]) -> None:
        """Report what a job's state key says: its run started, its latest progress."""
        self._report(run.job_id, run.started(state.get("device", ""), int(state.get("attempt", 1))))
        with contextlib.suppress(KeyError, TypeError, ValueError):
            progress = event_from_wire(state["progress"])
            if isinstance(progress, Progress):
                self._report(run.job_id, run.progress(progress))

    # -- polling -----------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        while not self._stopping:
            try:
                await self._poll()
            except Exception as exc:
                if self._registry.unreachable_since is None:
                    self._registry.unreachable_since = time.monotonic()
                    where = redact_redis_url(data_url(self._cfg))
                    log.error("cannot reach Redis at %s: %s", where, exc)
                self._end_waiting_runs()
            self._polled.set()
            self._changed.set()
            self._notify_capacity(only_if_changed=True)
            await asyncio.sleep(self._cfg.poll_interval_s)

    def _end_waiting_runs(self) -> None:
        """Past the no-worker grace of an outage, jobs that never reached a worker fail."""
        reason = self._registry.unavailable_reason()
        if reason is None:
            return
        for run in [r for r in self._runs.values() if r.phase == "waiting" and not r.ended]:
            self._finish(run, Failed(messages.unavailable(reason), "Redis unreachable"))

    async def _poll(self) -> None:
        await self._registry.refresh(self._redis)
        if self._registry.unreachable_since is not None:
            log.info("Redis reachable again")
            self._reachable_since = time.monotonic()  # before judging any run, below
            self._registry.unreachable_since = None
        self._expected &= self._registry.busy_jobs()
        for run in [r for r in self._runs.values() if r.phase == "waiting" and not r.ended]:
            run.phase = "sending"
            self._spawn(self._start_run(run))
        runs = [r for r in self._runs.values() if r.task_id and not r.ended]
        if not runs:
            return
        keys = [self._keys.job(r.job_id, p) for r in runs for p in ("final", "state")]
        values = await self._redis.mget(keys)
        now = time.monotonic()
        for i, run in enumerate(runs):
            final, state = values[2 * i], loads(values[2 * i + 1]) or {}
            if final is not None:
                self._spawn(self._collect(run))
                continue
            if state.get("task") == run.task_id and state.get("status") == "running":
                if run.phase != "sending":
                    run.phase, run.worker = "running", state.get("worker")
                self._follow(run, state)
            self._check(run, now)

    def _check(self, run: Run, now: float) -> None:
        """End a job that ignores its cancel; send again a job whose worker is gone."""
        if run.cancel_at is not None and now - run.cancel_at > self._cancel_grace:
            run.cancel_at = now  # once per grace
            log.warning("job %s: the worker did not stop when asked; ending it", run.job_id)
            self._revoke(run.task_id, terminate=True)
            self._spawn(self._claim(run, Cancelled(reason="did not stop")))
            return
        if run.phase == "sent" and not self._registry.known(run.worker):
            # Its worker went away before taking it: it never ran, so no attempt is spent.
            run.phase = "sending"
            self._spawn(self._send(run))
            return
        if run.phase != "running" or self._registry.runs(run.worker, run.job_id):
            run.lost_since = None
            return
        if now - self._reachable_since < self._cfg.worker_timeout_s:
            # Redis was just unreachable: the workers could not write their status meanwhile,
            # and a worker that kept painting gets one status period to say so.
            return
        # Gone (status expired: host down, main process killed), or moved on: its pool process
        # died (Celery acknowledged the message, so the re-run is the scheduler's alone).
        run.lost_since = run.lost_since or now
        gone = not self._registry.known(run.worker)
        reloading = self._registry.reloading(run.worker)
        if gone or reloading or now - run.lost_since >= self._cfg.worker_timeout_s:
            what = "went silent" if gone else "is no longer running it"
            what = "lost its pool process" if reloading else what
            # The scheduler's retry policy decides whether it runs again; it dispatches anew.
            self._lose(run, f"worker {run.worker} {what}")

    # -- reporting ---------------------------------------------------------------------------

    def _report(self, job_id: str, event: Event | WorkerLost | None) -> None:
        if event is not None and self._listener is not None:
            self._listener.job_event(job_id, event)

    def _notify_capacity(self, *, only_if_changed: bool = False) -> None:
        capacity = (self.free_slots(), self.unavailable_reason(), self._registry.states())
        if only_if_changed and capacity == self._capacity:
            return
        self._capacity = capacity
        if self._listener is not None:
            self._listener.capacity_changed()

    def _spawn(self, coro: Any) -> None:
        if self._stopping:
            coro.close()
            return
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("celery backend task failed", exc_info=task.exception())
