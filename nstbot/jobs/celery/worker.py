"""`nstbot worker`: a Celery worker for one device that keeps VGG19 warm across jobs.

Pool: prefork with one pool process, so one job at a time per GPU and one prefetched message.
The pool process is started with spawn (Celery >= 5.7, `worker_pool_start_method`): a fresh
interpreter that imports torch and loads VGG19 in `worker_process_init`, before it reports up.
The main process only talks to Redis and never imports torch, so when the pool process dies
mid-job (CUDA crash, OOM killer, SIGKILL) the main process survives, acknowledges the message
(the bot decides on a re-run and sends it to a ready worker) and starts a new pool process. With an
older Celery the pool forks instead, which is safe for the same reason: the parent holds no CUDA
state and no torch threads (checked before starting).

The run itself is `nstbot.jobs.runtime.run_job`, as in a local worker process; this module is
its Redis adapter: a `RedisReporter` (events to Redis keys and pub/sub) and a `RedisStop` (the
cancel flag and the fence in Redis).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from celery import shared_task
from celery.exceptions import Reject
from celery.signals import setup_logging as celery_setup_logging
from celery.signals import worker_process_init, worker_process_shutdown

from nstbot.config import CeleryConfig, Config, LoggingConfig
from nstbot.jobs import faults, messages
from nstbot.jobs.backend import WorkerState
from nstbot.jobs.celery.app import (
    SETTINGS_KEY,
    TASK_NAME,
    Keys,
    dumps,
    job_ttl,
    loads,
    make_app,
    outcome_record,
    redact_redis_url,
    sync_redis,
    url_password,
    wire_message,
)
from nstbot.jobs.model import (
    Cancelled,
    Event,
    Finished,
    PayloadError,
    Progress,
    Started,
    event_to_wire,
)
from nstbot.jobs.runtime import (
    EventReporter,
    RunSettings,
    WorkerSettings,
    describe_error,
    parse_request,
    run_job,
)
from nstbot.jobs.warmup import StyleWarmUp
from nstbot.logs import setup_logging

log = logging.getLogger(__name__)

CANCEL_CHECK_S = 0.5  # how stale the step callback's view of the cancel flag may be
FAILED_STATUS_TTL_S = 600  # a worker that cannot start stays visible to the bot this long

# SET final NX only while the fence names this run: a superseded or already-delivered run (its
# keys deleted) must not store an outcome nobody will collect.
CLAIM_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', ARGV[3])
end
return false
"""

_process: _PoolProcess | None = None


def run_worker(config: Config, device: str | None = None) -> int:
    """Run a Celery worker for one device until it is stopped; returns the exit status."""
    cfg = config.celery
    secrets = [p for p in (url_password(cfg.broker_url), url_password(cfg.result_backend)) if p]
    setup_logging(config.logging, secrets=secrets)
    device = device or config.engine.device
    name = f"nstbot.{device.replace(':', '')}.{os.getpid()}@{socket.gethostname()}"
    app = make_app(config, worker=True)
    app.conf[SETTINGS_KEY] = {
        "worker": WorkerSettings.from_config(config, name=name, device=device),
        "celery": dataclasses.asdict(cfg),
        "logging": dataclasses.asdict(config.logging),
        "secrets": secrets,
    }
    # Celery logs every message it receives, payload included; "attempt N on ..." says enough.
    logging.getLogger("celery.worker.strategy").setLevel(logging.WARNING)
    if "torch" in sys.modules:
        log.warning("torch is imported in the worker's main process; pool processes inherit it")
    log.info(
        "worker %s on %s: queue %s, broker %s",
        name, device, cfg.queue, redact_redis_url(cfg.broker_url),
    )  # fmt: skip
    worker = app.Worker(
        hostname=name,
        pool_cls="prefork",
        concurrency=1,
        queues=[cfg.queue],
        loglevel=config.logging.level,
        quiet=True,
        optimization="fair",
        # nstbot's own status keys replace Celery's worker events and cluster chatter.
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
    )
    worker.start()
    reason = _start_failure(cfg, name)
    if reason:
        log.error("worker %s stopped: the engine could not start: %s", name, reason)
        return 1
    return int(worker.exitcode or 0)


def _start_failure(cfg: CeleryConfig, name: str) -> str | None:
    try:
        with contextlib.closing(sync_redis(cfg, retry=False)) as client:
            status = loads(client.get(Keys(cfg.queue).worker(name)))
    except Exception:
        return None
    return status.get("last_error") if status and status.get("start_failed") else None


@celery_setup_logging.connect
def _leave_logging_alone(**_: Any) -> None:
    """Connected so that Celery does not configure logging: nstbot.logs already did."""


@worker_process_init.connect
def _init_pool_process(**_: Any) -> None:
    """In the pool process: set up logging, start the status heartbeat, load the engine."""
    global _process
    from celery import current_app

    settings = current_app.conf.get(SETTINGS_KEY)
    if not settings:
        return
    setup_logging(LoggingConfig(**settings["logging"]), secrets=settings.get("secrets", ()))
    proc = _PoolProcess(settings)
    _process = proc
    proc.start_heartbeat()
    try:
        proc.engine = proc.settings.engine.load()
    except BaseException as exc:  # any failure to start must reach the bot with its reason
        reason = describe_error(exc)
        log.error("worker %s cannot start: %s", proc.name, reason)
        proc.set_status(state=WorkerState.STOPPED, last_error=reason, start_failed=True)
        # Without an engine this worker must not take jobs: ask the main process to stop.
        os.kill(os.getppid(), signal.SIGTERM)
        return
    # Before READY: jobs go to ready workers only, and each then finds the cache warm.
    StyleWarmUp(proc.engine, proc.settings).run()
    proc.set_status(state=WorkerState.READY, resolved_device=proc.engine.device)
    log.info("worker %s ready on %s", proc.name, proc.engine.device)


@worker_process_shutdown.connect
def _exit_pool_process(**_: Any) -> None:
    """A clean exit (worker stopping): withdraw the status so no job is sent here meanwhile."""
    if _process is not None:
        _process.withdraw()


@shared_task(name=TASK_NAME, bind=True)
def run_task(self: Any, payload: Any) -> dict[str, Any]:
    """Run one job on this pool process's warm engine."""
    proc = _process
    if proc is None or proc.engine is None:
        raise Reject("the engine is not loaded", requeue=True)
    return proc.run(str(self.request.id), payload)


class _PoolProcess:
    """The pool process's engine, Redis client and status heartbeat."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.cfg = CeleryConfig(**settings["celery"])
        self.keys = Keys(self.cfg.queue)
        # Outcomes go through a client that retries across a Redis blip; status beats and the
        # cancel check use one that fails at once, so neither stalls the heartbeat or the run.
        self.redis = sync_redis(self.cfg)
        self.quick = sync_redis(self.cfg, retry=False)
        self.settings: WorkerSettings = settings["worker"]
        self.name = self.settings.name
        self.engine: Any = None
        self.ttl = job_ttl(self.cfg)
        self.claim = self.redis.register_script(CLAIM_SCRIPT)
        self._lock = threading.Lock()
        self._unreachable = False
        self._withdrawn = False
        self._status: dict[str, Any] = {
            "name": self.name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": self.settings.engine.device,
            "resolved_device": None,
            "state": WorkerState.STARTING,
            "job_id": None,
            "jobs_done": 0,
            "last_error": None,
            "start_failed": False,
        }

    def start_heartbeat(self) -> None:
        """Write the status now and then every `heartbeat_interval_s` from a daemon thread."""
        self._write_status()
        threading.Thread(target=self._beat, name="nstbot-status", daemon=True).start()

    def set_status(self, **changes: Any) -> None:
        """Change the status and write it at once (the bot counts free workers from it)."""
        with self._lock:
            self._status.update(changes)
        self._write_status()

    def withdraw(self) -> None:
        """Stop the heartbeat and remove the status, unless it explains a failed start."""
        with self._lock:
            self._withdrawn = True
            keep = self._status["start_failed"]
        if not keep:
            with contextlib.suppress(Exception):
                self.redis.delete(self.keys.worker(self.name))
                self.redis.srem(self.keys.workers, self.name)

    def _beat(self) -> None:
        while True:
            time.sleep(self.cfg.heartbeat_interval_s)
            self._write_status()

    def _write_status(self) -> None:
        with self._lock:
            if self._withdrawn:
                return
            status = dict(self._status, at=time.time())
        ttl = FAILED_STATUS_TTL_S if status["start_failed"] else self.cfg.worker_timeout_s
        try:
            pipe = self.quick.pipeline()
            pipe.set(self.keys.worker(self.name), dumps(status), px=int(ttl * 1000))
            pipe.sadd(self.keys.workers, self.name)
            pipe.execute()
        except Exception as exc:  # Redis down: the bot sees the worker vanish, which is true
            if not self._unreachable:
                log.warning("worker %s: cannot write its status to Redis: %s", self.name, exc)
            self._unreachable = True
            return
        if self._unreachable:
            log.info("worker %s: Redis reachable again", self.name)
        self._unreachable = False

    def run(self, task_id: str, payload: Any) -> dict[str, Any]:
        """Check the fence, fetch the inputs, run, publish the outcome."""
        job_id = _job_id(payload)
        if job_id is None:
            # Without a job id no outcome can be stored for the bot to find; its job timeout
            # ends the job.
            log.error("task %s: payload without a job id, dropped: %.200r", task_id, payload)
            return {"skipped": True}
        key = self._job_key(job_id)
        fence, final, cancel = self.redis.mget(key("task"), key("final"), key("cancel"))
        if fence is None or fence.decode() != task_id or final is not None:
            # Redelivered after the bot sent the job again, or after it ended: nothing to do.
            log.info("job %s: task %s is stale, skipped", job_id, task_id)
            return {"skipped": True}
        attempt = _attempt(payload)  # counted by the bot's scheduler, reported as it is
        stop = RedisStop(self, job_id, task_id)
        reporter = RedisReporter(self, job_id, task_id, attempt, stop)
        try:
            request = parse_request(payload)
            settings = _run_settings(payload)
        except PayloadError as exc:
            log.error("job %s: cannot read the job: %s", job_id, exc.detail)
            reporter.failed(str(exc), exc.detail)
            return {"attempt": attempt}
        if cancel is not None:
            reporter.cancelled()
            return {"attempt": attempt}
        blobs = self.redis.mget(request.inputs)
        if not blobs or any(b is None for b in blobs):
            reporter.failed(messages.INPUTS_GONE, "inputs expired")
            return {"attempt": attempt}
        self.set_status(state=WorkerState.BUSY, job_id=job_id)
        log.info("job %s: attempt %d on %s (task %s)", job_id, attempt, self.name, task_id)
        try:
            with tempfile.TemporaryDirectory(prefix=f"nstbot-{job_id}-") as folder:
                paths = []
                for i, blob in enumerate(blobs):
                    path = Path(folder) / f"in{i}.img"
                    path.write_bytes(blob)
                    paths.append(str(path))
                local = dataclasses.replace(request, inputs=paths, attempt=attempt)
                run_job(faults.for_run(self.engine, local), local, settings, reporter, stop)
        finally:
            with self._lock:
                self._status["jobs_done"] += 1
            self.set_status(state=WorkerState.READY, job_id=None)
        return {"attempt": attempt}

    def _job_key(self, job_id: str) -> Any:
        return lambda part: self.keys.job(job_id, part)


def _job_id(payload: Any) -> str | None:
    job = payload.get("job") if isinstance(payload, dict) else None
    job_id = job.get("id") if isinstance(job, dict) else None
    return job_id if isinstance(job_id, str) and job_id else None


def _attempt(payload: dict[str, Any]) -> int:
    try:
        return max(1, int(payload.get("attempt", 1)))
    except (TypeError, ValueError):
        return 1  # parse_request names the problem


def _run_settings(payload: dict[str, Any]) -> RunSettings:
    try:
        return RunSettings.from_dict(payload["settings"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PayloadError(f"malformed run settings: {type(exc).__name__}: {exc}") from exc


class RedisStop:
    """Set once the bot asked to cancel the job or sent it again (this run is superseded)."""

    def __init__(self, proc: _PoolProcess, job_id: str, task_id: str) -> None:
        self.proc = proc
        self.keys = [proc.keys.job(job_id, p) for p in ("cancel", "task", "final")]
        self.task_id = task_id.encode()
        self.reason: str | None = None  # "cancel" (the user) or "fenced" (superseded)
        self._checked = -1e9

    def is_set(self) -> bool:
        """Read the flags at most every CANCEL_CHECK_S; a Redis blip does not stop a run."""
        now = time.monotonic()
        if self.reason is None and now - self._checked >= CANCEL_CHECK_S:
            self._checked = now
            try:
                cancel, fence, final = self.proc.quick.mget(self.keys)
            except Exception:
                return False
            if cancel is not None:
                self.reason = "cancel"
            elif fence != self.task_id or final is not None:
                self.reason = "fenced"
        return self.reason is not None


class RedisReporter(EventReporter):
    """A run's events as Redis writes: progress to the state key and the event channel, the
    outcome to the job's `final` key (first one wins) and a note on the channel."""

    def __init__(
        self, proc: _PoolProcess, job_id: str, task_id: str, attempt: int, stop: RedisStop
    ) -> None:
        self.proc = proc
        self.job_id = job_id
        self.task_id = task_id
        self.attempt = attempt
        self.stop = stop
        self._state: dict[str, Any] = {}
        self._warned = False

    def emit(self, event: Event) -> None:
        """Publish one event (with the attempt the bot sent)."""
        if isinstance(event, Started):
            event = dataclasses.replace(event, attempt=self.attempt)
            self._state = {"status": "running", "task": self.task_id, "worker": self.proc.name,
                           "attempt": self.attempt, "device": event.device}  # fmt: skip
            self._update(event)
        elif isinstance(event, Progress):
            self._state["progress"] = event_to_wire(dataclasses.replace(event, preview=None))[0]
            self._update(event)
        elif isinstance(event, Finished):
            self._finished(event)
        elif isinstance(event, Cancelled) and self.stop.reason == "fenced":
            log.info("job %s: run superseded (task %s), stopped", self.job_id, self.task_id)
        else:
            self._final(event)

    def _update(self, event: Event) -> None:
        proc = self.proc
        message = wire_message(event, job=self.job_id, task=self.task_id, worker=proc.name)
        try:
            # Best effort, at once: a Redis blip must not hold up the run.
            pipe = proc.quick.pipeline(transaction=False)
            pipe.set(proc.keys.job(self.job_id, "state"), dumps(self._state), ex=proc.ttl)
            pipe.publish(proc.keys.events, dumps(message))
            pipe.execute()
        except Exception as exc:  # progress is best effort; the outcome is retried
            if not self._warned:
                self._warned = True
                log.warning("job %s: cannot publish progress: %s", self.job_id, exc)

    def _finished(self, event: Finished) -> None:
        proc = self.proc
        image_key = proc.keys.job(self.job_id, f"image:{self.task_id}")
        event = dataclasses.replace(event, stats=dict(event.stats, worker=proc.name))
        ttl = int(proc.cfg.result_ttl_s)
        # The event's bytes in wire form: the PNG, then its timelapse frames if any.
        proc.redis.set(image_key, event_to_wire(event)[1] or b"", ex=ttl)
        if not self._final(event, image_key=image_key):
            proc.redis.delete(image_key)

    def _final(self, event: Event, image_key: str | None = None) -> bool:
        """Store the job's outcome if this run is still the job's current one and nothing ended
        the job first (another run, or the bot); then notify the bot."""
        proc = self.proc
        # Free before final: the bot counts this worker idle as soon as it reads the outcome.
        proc.set_status(state=WorkerState.READY, job_id=None)
        outcome = outcome_record(
            event, task=self.task_id, worker=proc.name, attempt=self.attempt, image_key=image_key
        )
        fence, key = proc.keys.job(self.job_id, "task"), proc.keys.job(self.job_id, "final")
        ttl = int(proc.cfg.result_ttl_s)
        if not proc.claim(keys=[fence, key], args=[self.task_id, dumps(outcome), ttl]):
            log.info("job %s: already ended or superseded; %s discarded", self.job_id,
                     type(event).__name__)  # fmt: skip
            return False
        log.info("job %s %s (attempt %d)", self.job_id, type(event).__name__, self.attempt)
        note = {"type": "final", "job": self.job_id, "task": self.task_id}
        with contextlib.suppress(Exception):  # the bot's poll finds `final` anyway
            proc.redis.publish(proc.keys.events, dumps(note))
        return True
