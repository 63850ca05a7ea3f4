"""What the bot and the Celery workers share: the Celery app, Redis clients, key names, wire data.

Nothing here imports torch: the bot process and a worker's main (consumer) process use it too.

Redis layout (prefix `nstbot:<queue>`; every job key has a TTL, results are deleted at delivery):
  :workers                  set of worker names; `:worker:<name>` holds each one's status JSON
                            with a TTL of `worker_timeout_s`, rewritten every heartbeat
  :events                   pub/sub channel of job events: {job, task, worker, event, blob}
                            with `event` in the model's wire form and a preview in base64
  :job:<id>:in<N>           input image bytes, content first, written by the bot at dispatch
  :job:<id>:task            the Celery task id the bot last sent for the job (the fence: a
                            message with any other id is stale and exits at once)
  :job:<id>:state           JSON: sent | running (worker, attempt, device, latest progress)
  :job:<id>:cancel          set by the bot: stop this job
  :job:<id>:final           the job's one outcome {task, worker, attempt, event, image_key}
                            (SET NX: the first to end the job wins)
  :job:<id>:image:<task>    the PNG of a finished run, then its timelapse frames if any (per
                            task, so a duplicate run cannot overwrite the winner's image)
"""

from __future__ import annotations

import json
import ssl
from base64 import b64decode, b64encode
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from celery import Celery
from celery.app.defaults import DEFAULTS

from nstbot.config import CeleryConfig, Config
from nstbot.jobs import messages
from nstbot.jobs.model import Event, Failed, event_from_wire, event_to_wire

TASK_NAME = "nstbot.run_job"
WORKER_MODULE = "nstbot.jobs.celery.worker"
SETTINGS_KEY = "nstbot_worker"
"""Custom Celery setting carrying what a pool process needs (it travels with the pickled app)."""

REDIS_RETRIES = 6  # with exponential backoff from 0.5 s to 10 s: about half a minute in all

_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}


class Keys:
    """Names of nstbot's Redis keys for one queue."""

    def __init__(self, queue: str) -> None:
        self.prefix = f"nstbot:{queue}"
        self.workers = f"{self.prefix}:workers"
        self.events = f"{self.prefix}:events"

    def worker(self, name: str) -> str:
        """The status key of one worker."""
        return f"{self.prefix}:worker:{name}"

    def job(self, job_id: str, part: str) -> str:
        """One key of one job: in0, task, state, cancel, final, image:<task>."""
        return f"{self.prefix}:job:{job_id}:{part}"

    def inputs(self, job_id: str, count: int) -> list[str]:
        """The input image keys of a job, content first."""
        return [self.job(job_id, f"in{i}") for i in range(count)]

    def job_keys(self, job_id: str, count: int) -> list[str]:
        """Every fixed-name key of a job (image keys are named in `final`)."""
        parts = ("task", "state", "cancel", "final")
        return self.inputs(job_id, count) + [self.job(job_id, p) for p in parts]


def data_url(cfg: CeleryConfig) -> str:
    """The Redis holding nstbot's keys: `result_backend`, or the broker when empty."""
    return cfg.result_backend or cfg.broker_url


def job_ttl(cfg: CeleryConfig) -> int:
    """Lifetime of a job's inputs and markers: long enough for a redelivery after a host died."""
    return int(cfg.visibility_timeout_s + cfg.hard_time_limit_s + 600)


def redact_redis_url(url: str) -> str:
    """The URL with its password replaced, fit for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def url_password(url: str) -> str | None:
    """The password in a Redis URL, if any (to register with the log redaction)."""
    return urlsplit(url).password


def _redis_ssl(cfg: CeleryConfig, url: str) -> dict[str, Any]:
    if urlsplit(url).scheme != "rediss":
        return {}
    options: dict[str, Any] = {"ssl_cert_reqs": cfg.ssl_cert_reqs}
    if cfg.ssl_ca_certs:
        options["ssl_ca_certs"] = cfg.ssl_ca_certs
    return options


def sync_redis(cfg: CeleryConfig, *, retry: bool = True) -> Any:
    """A blocking redis-py client for the job data (workers); with `retry`, a command that meets
    a dropped connection is retried with backoff for about half a minute before it raises."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    url = data_url(cfg)
    retries = REDIS_RETRIES if retry else 0
    return redis.Redis.from_url(
        url,
        socket_timeout=30,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=10.0, base=0.5), retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        **_redis_ssl(cfg, url),
    )


def async_redis(cfg: CeleryConfig, *, reconnect: bool = False) -> Any:
    """A redis.asyncio client for the job data (the bot's event loop); no retries: the bot's
    poll loop comes back every poll interval and must not stall on one command. With
    `reconnect` (the event subscription), it reconnects with backoff for as long as it takes
    and resubscribes: redis-py's Retry, instead of a loop of our own."""
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    url = data_url(cfg)
    options: dict[str, Any] = {}
    if reconnect:
        options["retry"] = Retry(ExponentialBackoff(cap=10.0, base=0.5), -1)  # -1: no limit
        options["retry_on_error"] = [redis.ConnectionError, redis.TimeoutError]
    return redis.asyncio.Redis.from_url(
        url, socket_timeout=30, health_check_interval=30, **options, **_redis_ssl(cfg, url)
    )


def make_app(config: Config, *, worker: bool = False) -> Celery:
    """The Celery app: JSON only, late acks, one prefetched job, limits from `[celery]`."""
    cfg = config.celery
    app = Celery("nstbot", set_as_current=False)
    app.conf.update(
        broker_url=cfg.broker_url,
        # Must be the same on every host and exceed the hard limit, or a job still running is
        # handed to a second worker (config.py checks the order).
        broker_transport_options={"visibility_timeout": int(cfg.visibility_timeout_s)},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker behind a home line waits for Redis
        # JSON only: never unpickle what came over the network.
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # Acknowledge after the run, also when the process running it dies: the bot notices the
        # loss and decides on a re-run (one owner, so one crash costs one attempt).
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        task_acks_on_failure_or_timeout=True,
        # Each worker also reads its own queue (`<name>.dq2`): the bot sends every job to a
        # worker that reports ready, never to one whose pool process is still reloading.
        worker_direct=True,
        task_ignore_result=True,  # outcomes travel in nstbot's own keys (see the module doc)
        task_time_limit=cfg.hard_time_limit_s,
        task_default_queue=cfg.queue,
        task_routes={TASK_NAME: {"queue": cfg.queue}},
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        # A Redis blip must not kill a long GPU run: a duplicate delivery is harmless (fence and
        # `final` marker), lost work is not.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # The pool process loads VGG19 before it reports up; Celery's default is 4 s.
        worker_proc_alive_timeout=config.executor.worker_start_timeout_s,
        include=[WORKER_MODULE] if worker else [],
    )
    if "worker_pool_start_method" in DEFAULTS:  # Celery >= 5.7
        app.conf.worker_pool_start_method = "spawn"
    if urlsplit(cfg.broker_url).scheme == "rediss":
        use_ssl: dict[str, Any] = {"ssl_cert_reqs": _CERT_REQS[cfg.ssl_cert_reqs]}
        if cfg.ssl_ca_certs:
            use_ssl["ssl_ca_certs"] = cfg.ssl_ca_certs
        app.conf.broker_use_ssl = use_ssl
    return app


def dumps(data: dict[str, Any]) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(data, separators=(",", ":")).encode()


def loads(raw: bytes | str | None) -> dict[str, Any] | None:
    """JSON from Redis, or None when missing or unreadable."""
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def wire_message(event: Event, **fields: Any) -> dict[str, Any]:
    """A pub/sub message: `fields` (job, task, worker) and the event in the model's wire form,
    its bytes (a preview) in base64."""
    data, blob = event_to_wire(event)
    return dict(fields, event=data, blob=b64encode(blob).decode() if blob else None)


def message_event(message: dict[str, Any]) -> Event | None:
    """The event of a pub/sub message, or None when it carries none this version reads."""
    blob = message.get("blob")
    try:
        return event_from_wire(message["event"], b64decode(blob) if blob else None)
    except (KeyError, TypeError, ValueError):
        return None


def outcome_record(event: Event, *, image_key: str | None = None, **fields: Any) -> dict[str, Any]:
    """What `:job:<id>:final` holds: `fields` (task, worker, attempt), the event in wire form
    (a Finished one's bytes, the PNG then any timelapse frames, live under `image_key`)."""
    return dict(fields, event=event_to_wire(event)[0], image_key=image_key)


def outcome_kind(outcome: dict[str, Any]) -> str | None:
    """finished, failed or cancelled: the type of a stored outcome."""
    event = outcome.get("event")
    return event.get("type") if isinstance(event, dict) else None


def outcome_event(outcome: dict[str, Any], image: bytes | None) -> Event:
    """The final event a stored outcome stands for (`image`: the bytes a finished run stored)."""
    if outcome_kind(outcome) == "finished" and image is None:
        return Failed(messages.RESULT_GONE, "result image expired")
    try:
        event = event_from_wire(outcome["event"], image)
    except (KeyError, TypeError, ValueError) as exc:
        return Failed(messages.RUN_FAILED, f"unreadable outcome in Redis: {exc}")
    return event
