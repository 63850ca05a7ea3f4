"""`nstbot worker`: a Celery worker for one device that keeps VGG19 warm across jobs.

Pool: prefork with one pool process, so one job at a time per GPU and one prefetched message.
The pool process is started with spawn (Celery >= 5.7, `worker_pool_start_method`): a fresh
interpreter that imports torch and loads VGG19 in `worker_process_init`, before it reports up.
The main process only talks to Redis and never imports torch, so when the pool process dies
mid-job (CUDA crash, OOM killer, SIGKILL) the main process survives, puts the message back
(`task_reject_on_worker_lost`) for any worker to run, and starts a new pool process. With an
older Celery the pool forks instead, which is safe for the same reason: the parent holds no CUDA
state and no torch threads (checked before starting).

The run itself is the local backend's `_JobRunner` (decode, stylize with OOM retries, encode);
only its two ends differ: events go to Redis instead of a pipe, and cancellation is a Redis key.
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
from base64 import b64encode
from pathlib import Path
from typing import Any

from celery import shared_task
from celery.exceptions import Reject
from celery.signals import setup_logging as celery_setup_logging
from celery.signals import worker_process_init, worker_process_shutdown

from nstbot.config import CeleryConfig, Config, LoggingConfig
from nstbot.jobs.celery_app import (
    MSG_INPUTS_GONE,
    MSG_POISON,
    SETTINGS_KEY,
    TASK_NAME,
    Keys,
    dumps,
    job_ttl,
    loads,
    make_app,
    redact_url,
    sync_redis,
    url_password,
)
from nstbot.jobs.worker import _JobRunner
from nstbot.logs import setup_logging

log = logging.getLogger(__name__)

CANCEL_CHECK_S = 0.5  # how stale the step callback's view of the cancel flag may be
FAILED_STATUS_TTL_S = 600  # a worker that cannot start stays visible to the bot this long
FINAL_RETRIES = 6

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
        "name": name,
        "device": device,
        "engine": {
            "weights": config.engine.weights,
            "model": config.engine.model,
            "precision": config.engine.precision,
            "allow_download": config.engine.allow_download,
            "cache_bytes": config.engine.style_cache_mb << 20,
        },
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
        name, device, cfg.queue, redact_url(cfg.broker_url),
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
        with contextlib.closing(sync_redis(cfg)) as client:
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
        from nstbot.engine.transfer import StyleTransfer

        engine = settings["engine"]
        proc.engine = StyleTransfer(device=settings["device"], progress=False, **engine)
    except BaseException as exc:  # any failure to start must reach the bot with its reason
        reason = str(exc) or type(exc).__name__
        log.error("worker %s cannot start: %s", proc.name, reason)
        proc.set_status(state="stopped", last_error=reason, start_failed=True)
        # Without an engine this worker must not take jobs: ask the main process to stop.
        os.kill(os.getppid(), signal.SIGTERM)
        return
    proc.set_status(state="ready", resolved_device=proc.engine.device)
    log.info("worker %s ready on %s", proc.name, proc.engine.device)


@worker_process_shutdown.connect
def _exit_pool_process(**_: Any) -> None:
    """A clean exit (worker stopping): withdraw the status so no job is sent here meanwhile."""
    if _process is not None:
        _process.withdraw()


@shared_task(name=TASK_NAME, bind=True)
def run_job(self: Any, payload: dict[str, Any]) -> dict[str, Any]:
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
        self.redis = sync_redis(self.cfg)
        self.name = settings["name"]
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
            "device": settings["device"],
            "resolved_device": None,
            "state": "starting",
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
            pipe = self.redis.pipeline()
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

    def run(self, task_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Check the fence and the attempt count, fetch the inputs, run, publish the outcome."""
        job = payload["job"]
        job_id = job["id"]
        key = self._job_key(job_id)
        fence, final, cancel = self.redis.mget(key("task"), key("final"), key("cancel"))
        if fence is None or fence.decode() != task_id or final is not None:
            # Redelivered after the bot sent the job again, or after it ended: nothing to do.
            log.info("job %s: task %s is stale, skipped", job_id, task_id)
            return {"skipped": True}
        pipe = self.redis.pipeline()
        pipe.incr(key("attempts"))
        pipe.expire(key("attempts"), self.ttl)
        attempt = int(pipe.execute()[0])
        events = _RedisEvents(self, job_id, task_id, attempt)
        if attempt > self.cfg.max_attempts:
            log.warning("job %s: attempt %d is over the limit; failing it", job_id, attempt)
            events.final({"type": "failed", "message": MSG_POISON.format(n=attempt - 1),
                          "detail": f"max_attempts ({self.cfg.max_attempts}) reached"})  # fmt: skip
            return {"attempt": attempt}
        if cancel is not None:
            events.final({"type": "cancelled", "reason": "cancelled"})
            return {"attempt": attempt}
        blobs = self.redis.mget(self.keys.inputs(job_id, int(payload["inputs"])))
        if not blobs or any(b is None for b in blobs):
            events.final({"type": "failed", "message": MSG_INPUTS_GONE, "detail": "inputs expired"})
            return {"attempt": attempt}
        self.set_status(state="busy", job_id=job_id)
        log.info("job %s: attempt %d on %s (task %s)", job_id, attempt, self.name, task_id)
        try:
            with tempfile.TemporaryDirectory(prefix=f"nstbot-{job_id}-") as folder:
                paths = []
                for i, blob in enumerate(blobs):
                    path = Path(folder) / f"in{i}.img"
                    path.write_bytes(blob)
                    paths.append(str(path))
                token = _CancelToken(self, job_id, task_id)
                runner = _JobRunner(self.engine, events, token, payload["settings"])
                events.token = token
                runner.run(1, {"job": job, "inputs": paths, "attempt": attempt})
        finally:
            with self._lock:
                self._status["jobs_done"] += 1
            self.set_status(state="ready", job_id=None)
        return {"attempt": attempt}

    def _job_key(self, job_id: str) -> Any:
        return lambda part: self.keys.job(job_id, part)


class _CancelToken:
    """Stands in for the local worker's shared integer: `value == 1` means stop this run."""

    def __init__(self, proc: _PoolProcess, job_id: str, task_id: str) -> None:
        self.proc = proc
        self.keys = [proc.keys.job(job_id, p) for p in ("cancel", "task", "final")]
        self.task_id = task_id.encode()
        self.reason: str | None = None  # "cancel" (the user) or "fenced" (superseded)
        self._checked = -1e9

    @property
    def value(self) -> int:
        """1 once the bot asked to cancel or the run was superseded; read at most every 0.5 s."""
        now = time.monotonic()
        if self.reason is None and now - self._checked >= CANCEL_CHECK_S:
            self._checked = now
            try:
                cancel, fence, final = self.proc.redis.mget(self.keys)
            except Exception:
                return 0  # a Redis blip does not stop a run
            if cancel is not None:
                self.reason = "cancel"
            elif fence != self.task_id or final is not None:
                self.reason = "fenced"
        return 1 if self.reason else 0


class _RedisEvents:
    """Stands in for the local worker's pipe: the runner's messages become Redis writes."""

    def __init__(self, proc: _PoolProcess, job_id: str, task_id: str, attempt: int) -> None:
        self.proc = proc
        self.job_id = job_id
        self.task_id = task_id
        self.attempt = attempt
        self.token: _CancelToken | None = None
        self._state: dict[str, Any] = {}
        self._warned = False

    def send(self, message: tuple[Any, ...]) -> None:
        """Handle one runner message: started, progress, finished, failed or cancelled."""
        kind = message[0]
        if kind == "started":
            self._state = {"status": "running", "task": self.task_id, "worker": self.proc.name,
                           "attempt": self.attempt, "device": message[2]["device"]}  # fmt: skip
            self._update({"type": "started", "device": message[2]["device"],
                          "attempt": self.attempt, "worker": self.proc.name})  # fmt: skip
        elif kind == "progress":
            self._state["progress"] = message[2]
            preview = message[3]
            event = dict(message[2], type="progress")
            event["preview"] = b64encode(preview).decode() if preview else None
            self._update(event)
        elif kind == "finished":
            self._finished(message[2], message[3])
        elif kind == "failed":
            self.final({"type": "failed", **message[2]})
        elif kind == "cancelled":
            if self.token is not None and self.token.reason == "fenced":
                log.info("job %s: run superseded (task %s), stopped", self.job_id, self.task_id)
            else:
                self.final({"type": "cancelled", "reason": "cancelled"})

    def _update(self, event: dict[str, Any]) -> None:
        proc = self.proc
        event.update(job=self.job_id, task=self.task_id)
        try:
            pipe = proc.redis.pipeline(transaction=False)
            pipe.set(proc.keys.job(self.job_id, "state"), dumps(self._state), ex=proc.ttl)
            pipe.publish(proc.keys.events, dumps(event))
            pipe.execute()
        except Exception as exc:  # progress is best effort; the outcome is retried
            if not self._warned:
                self._warned = True
                log.warning("job %s: cannot publish progress: %s", self.job_id, exc)

    def _finished(self, stats: dict[str, Any], png: bytes) -> None:
        proc = self.proc
        image_key = proc.keys.job(self.job_id, f"image:{self.task_id}")
        stats = dict(stats, worker=proc.name)
        ttl = int(proc.cfg.result_ttl_s)
        self._retry(lambda: proc.redis.set(image_key, png, ex=ttl))
        if not self.final({"type": "finished", "stats": stats, "image_key": image_key}):
            self._retry(lambda: proc.redis.delete(image_key))

    def final(self, outcome: dict[str, Any]) -> bool:
        """Store the job's outcome if this run is still the job's current one and nothing ended
        the job first (another run, or the bot); then notify the bot."""
        proc = self.proc
        # Free before final: the bot counts this worker idle as soon as it reads the outcome.
        proc.set_status(state="ready", job_id=None)
        outcome = dict(outcome, task=self.task_id, worker=proc.name, attempt=self.attempt)
        fence, key = proc.keys.job(self.job_id, "task"), proc.keys.job(self.job_id, "final")
        ttl = int(proc.cfg.result_ttl_s)
        won = self._retry(
            lambda: proc.claim(keys=[fence, key], args=[self.task_id, dumps(outcome), ttl])
        )
        if not won:
            log.info("job %s: already ended or superseded; %s discarded", self.job_id,
                     outcome["type"])  # fmt: skip
            return False
        log.info("job %s %s (attempt %d)", self.job_id, outcome["type"], self.attempt)
        note = {"type": "final", "job": self.job_id, "task": self.task_id}
        with contextlib.suppress(Exception):  # the bot's poll finds `final` anyway
            proc.redis.publish(proc.keys.events, dumps(note))
        return True

    def _retry(self, call: Any) -> Any:
        for attempt in range(FINAL_RETRIES):
            try:
                return call()
            except Exception as exc:
                if attempt == FINAL_RETRIES - 1:
                    raise
                log.warning("job %s: Redis write failed (%s); retrying", self.job_id, exc)
                time.sleep(min(10.0, 0.5 * 2**attempt))
        return None
