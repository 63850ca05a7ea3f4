"""What runs inside a spawned worker process: one warm engine, one job at a time.

The parent imports this module only to name `worker_main` as the process target, so nothing here
imports torch at module level: the engine is imported inside the child.

Wire protocol (pickled tuples over a duplex Pipe; everything is plain data):
  parent -> worker: ("run", seq, RunRequest.to_dict()) | ("stop",)
  worker -> parent: ("ready", {device, pid}) | ("startup_error", {kind, message}) | ("hb", t)
                    | ("started", seq, {device, attempt}) | ("progress", seq, {...}, preview|None)
                    | ("finished", seq, stats, png) | ("failed", seq, {message, detail})
                    | ("cancelled", seq, {})
Cancellation arrives through a shared integer: the parent writes the seq of the run to stop, and
the step callback compares it with its own seq, so a late cancel can never hit the next job.
"""

from __future__ import annotations

import io
import logging
import math
import os
import signal
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from nstbot.jobs.model import Job

log = logging.getLogger(__name__)

# TEST-ONLY fault injection: when this environment variable is "1" in the worker's environment,
# params.extra["test_fault"] (crash | crash_always | hang | oom | oom_always) and
# params.extra["test_step_sleep"] (seconds per step) are honoured. Off by default.
TEST_FAULTS_ENV = "NSTBOT_TEST_FAULTS"

OOM_SHRINK = 0.7  # each out-of-memory retry runs at this fraction of the previous size
OOM_MAX_RETRIES = 3
PREVIEW_MAX_BYTES = 100_000
PREVIEW_MAX_SIDE = 256


class _Sender:
    """Thread-safe sends: the heartbeat thread and the job share one pipe."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        try:
            with self._lock:
                self._conn.send(message)
        except (OSError, EOFError):
            # The parent is gone: nobody wants the result, and an orphan would hold the GPU.
            os._exit(0)


def worker_main(conn: Connection, cancel_token: Any, settings: dict[str, Any]) -> None:
    """Entry point of a worker process: load the engine once, then serve jobs until told to stop."""
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=settings.get("log_level", "INFO"),
        format=f"%(asctime)s worker[{settings.get('name', '?')}] %(levelname)s %(name)s: "
        "%(message)s",
    )
    sender = _Sender(conn)
    beat = threading.Thread(
        target=_heartbeat, args=(sender, settings["heartbeat_interval_s"]), daemon=True
    )
    beat.start()
    try:
        from nstbot.engine.transfer import StyleTransfer

        engine = StyleTransfer(
            device=settings["device"],
            weights=settings["weights"],
            model=settings["model"],
            precision=settings["precision"],
            allow_download=settings["allow_download"],
            cache_bytes=settings["cache_bytes"],
            progress=False,
        )
    except BaseException as exc:  # any failure to start must reach the parent with its reason
        log.error("worker cannot start: %s", exc)
        sender.send(("startup_error", {"kind": type(exc).__name__, "message": _describe(exc)}))
        return
    sender.send(("ready", {"device": engine.device, "pid": os.getpid()}))
    runner = _JobRunner(engine, sender, cancel_token, settings)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        if message[0] == "run":
            runner.run(message[1], message[2])


def _heartbeat(sender: _Sender, interval: float) -> None:
    while True:
        time.sleep(interval)
        sender.send(("hb", time.time()))


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class _JobRunner:
    """Runs one job: read and decode inputs, stylize with progress, encode the result."""

    def __init__(
        self, engine: Any, sender: _Sender, cancel_token: Any, settings: dict[str, Any]
    ) -> None:
        from nstbot import images

        self.engine = engine
        self.images = images
        self.sender = sender
        self.cancel_token = cancel_token
        self.progress_interval = float(settings["progress_interval_s"])
        self.preview_interval = float(settings["preview_interval_s"])
        self.limits = _image_limits(images, settings.get("image_limits", {}))
        self.test_faults = os.environ.get(TEST_FAULTS_ENV) == "1"

    def run(self, seq: int, payload: dict[str, Any]) -> None:
        """Run one job and send exactly one final message for it."""
        from nstbot.engine.errors import EngineError, OutOfMemoryError, StylizeCancelled

        job = Job.from_dict(payload["job"])
        attempt = int(payload.get("attempt", 1))
        self.sender.send(("started", seq, {"device": self.engine.device, "attempt": attempt}))
        try:
            stats, png = self._run(seq, job, payload["inputs"], attempt)
        except StylizeCancelled as exc:
            log.info("job %s cancelled: %s", job.id, exc)
            self.sender.send(("cancelled", seq, {}))
        except self.images.ImageRejected as exc:
            self._fail(seq, job, str(exc), None)
        except FileNotFoundError as exc:
            self._fail(seq, job, "The images for this job are no longer stored.", str(exc))
        except OutOfMemoryError as exc:
            self._fail(
                seq,
                job,
                "Your image is too large for the GPU's memory, even at a smaller size; "
                "try a smaller size.",
                str(exc),
            )
        except (EngineError, ValueError) as exc:
            self._fail(seq, job, f"Style transfer failed: {_describe(exc)}", None)
        except Exception:
            self._fail(
                seq, job, "Something went wrong while painting your image.", traceback.format_exc()
            )
        else:
            self.sender.send(("finished", seq, stats, png))

    def _fail(self, seq: int, job: Job, message: str, detail: str | None) -> None:
        log.warning("job %s failed: %s", job.id, detail or message)
        self.sender.send(("failed", seq, {"message": message, "detail": detail}))

    def _run(
        self, seq: int, job: Job, inputs: list[str], attempt: int
    ) -> tuple[dict[str, Any], bytes]:
        from nstbot.engine.errors import OutOfMemoryError, StylizeCancelled

        begin = time.time()
        params = job.params
        fault = self._fault(job, "test_fault")
        step_sleep = float(self._fault(job, "test_step_sleep") or 0.0)
        content = self._decode(inputs[0], params.size)
        style_side = max(16, math.ceil(params.size * params.style_scale))
        styles = [self._decode(path, style_side).image for path in inputs[1:]]
        if self.cancel_token.value == seq:
            raise StylizeCancelled("cancelled before the first step")
        on_step = _StepHandler(self, seq, attempt, fault, step_sleep)
        oom_retries = 0
        while True:
            try:
                if fault == "oom_always" or (fault == "oom" and oom_retries == 0):
                    raise OutOfMemoryError(f"simulated out of memory at size {params.size}")
                result = self.engine.stylize(content.image, styles, params, on_step=on_step)
                break
            except OutOfMemoryError as exc:
                smaller = int(params.size * OOM_SHRINK)
                if oom_retries >= OOM_MAX_RETRIES or smaller < 16:
                    raise
                oom_retries += 1
                log.warning("job %s: %s; retrying at size %d", job.id, exc, smaller)
                params = params.replace(size=smaller, min_size=min(params.min_size, smaller))
        done_at = time.time()
        image = result.image
        if content.alpha is not None:
            image = image.convert("RGBA")
            image.putalpha(content.alpha.resize(image.size))
        buffer = io.BytesIO()
        # Lossless, light compression: the bot re-encodes to fit Discord's upload limit anyway.
        image.save(buffer, "PNG", compress_level=3)
        stats = dict(result.stats)
        stats.update(
            device=self.engine.device,
            attempt=attempt,
            requested_size=job.params.size,
            retried_smaller=oom_retries > 0,
            oom_retries=oom_retries,
            has_alpha=content.alpha is not None,
            notes=list(getattr(content, "notes", []) or []),
            worker_seconds=round(time.time() - begin, 3),
            worker_done_at=done_at,
        )
        return stats, buffer.getvalue()

    def _decode(self, path: str, working_size: int) -> Any:
        data = Path(path).read_bytes()
        try:
            return self.images.decode(data, limits=self.limits, working_size=working_size)
        except self.images.ImageRejected:
            # A working size below the image's long side can push a narrow image's short side
            # under min_side; the bot accepted this image at full size, so decode it that way.
            return self.images.decode(data, limits=self.limits)

    def _fault(self, job: Job, key: str) -> Any:
        return job.params.extra.get(key) if self.test_faults else None


class _StepHandler:
    """The engine's step callback: cancellation, throttled progress and previews."""

    def __init__(
        self, runner: _JobRunner, seq: int, attempt: int, fault: Any, step_sleep: float
    ) -> None:
        self.runner = runner
        self.seq = seq
        self.attempt = attempt
        self.fault = fault
        self.step_sleep = step_sleep
        now = time.monotonic()
        self.last_progress = -math.inf
        self.last_preview = now  # the first preview waits one interval: step 1 looks like content

    def __call__(self, info: Any) -> bool:
        runner = self.runner
        if runner.cancel_token.value == self.seq:
            return True
        self._inject_fault()
        now = time.monotonic()
        final = info.step >= info.total
        if now - self.last_progress >= runner.progress_interval or final:
            self.last_progress = now
            preview = None
            if now - self.last_preview >= runner.preview_interval and not final:
                self.last_preview = now
                preview = runner.images.encode_preview(
                    info.preview(PREVIEW_MAX_SIDE),
                    max_bytes=PREVIEW_MAX_BYTES,
                    max_side=PREVIEW_MAX_SIDE,
                )
            data = {
                "step": info.step,
                "total": info.total,
                "eta": info.eta,
                "scale": info.scale,
                "scales": info.scales,
                "elapsed": info.elapsed,
            }
            runner.sender.send(("progress", self.seq, data, preview))
        return runner.cancel_token.value == self.seq

    def _inject_fault(self) -> None:
        # TEST-ONLY (see TEST_FAULTS_ENV).
        if self.step_sleep:
            time.sleep(self.step_sleep)
        if self.fault == "crash_always" or (self.fault == "crash" and self.attempt == 1):
            os.kill(os.getpid(), signal.SIGKILL)
        if self.fault == "hang" and self.attempt == 1:
            # Freezes every thread, heartbeat included: what a wedged driver call looks like.
            os.kill(os.getpid(), signal.SIGSTOP)


def _image_limits(images: Any, values: dict[str, Any]) -> Any:
    """ImageLimits from the [images] config, keeping only the fields ImageLimits knows."""
    import dataclasses

    cls = images.ImageLimits
    if dataclasses.is_dataclass(cls):
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
    return cls()
