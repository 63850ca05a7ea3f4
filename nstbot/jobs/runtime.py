"""One worker runtime for both backends: parse a payload, run it on a warm engine, report.

A local worker process (pipe) and a Celery pool process (Redis) are two thin adapters of this
module: each supplies a `Reporter` (where events go) and a `StopSignal` (when to stop), and calls
`parse_request` then `run_job`. Nothing here imports torch at module level: the bot process
imports this module to build `WorkerSettings`, and the engine is imported inside the worker.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nstbot import images
from nstbot.config import Config
from nstbot.jobs import messages
from nstbot.jobs.model import (
    PAYLOAD_VERSION,
    Cancelled,
    Event,
    Failed,
    Finished,
    PayloadError,
    Progress,
    RunRequest,
    Started,
)
from nstbot.jobs.warmup import warm_params
from nstbot.params import TransferParams, style_side

log = logging.getLogger(__name__)

OOM_SHRINK = 0.7  # each out-of-memory retry runs at this fraction of the previous size
OOM_MAX_RETRIES = 3
PREVIEW_MAX_BYTES = 100_000
PREVIEW_MAX_SIDE = 256

__all__ = [
    "PAYLOAD_VERSION",
    "EngineSettings",
    "EventReporter",
    "PayloadError",
    "Reporter",
    "RunSettings",
    "StopSignal",
    "WorkerSettings",
    "describe_error",
    "parse_request",
    "run_job",
]


# -- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineSettings:
    """What `StyleTransfer(...)` is built with; add a field here and it reaches both backends."""

    device: str
    weights: str
    precision: str
    allow_download: bool
    cache_bytes: int
    model: str = "vgg19"

    @classmethod
    def from_config(cls, config: Config, device: str | None = None) -> EngineSettings:
        """The [engine] section, for `device` (default: engine.device)."""
        engine = config.engine
        return cls(
            device=device or engine.device,
            weights=engine.weights,
            precision=engine.precision,
            allow_download=engine.allow_download,
            cache_bytes=engine.style_cache_mb << 20,
            model=engine.model,
        )

    def load(self) -> Any:
        """Load the engine (imports torch; worker processes only)."""
        from nstbot.engine.transfer import StyleTransfer

        return StyleTransfer(progress=False, **dataclasses.asdict(self))


@dataclass(frozen=True)
class RunSettings:
    """What shapes one run: report pacing, image limits and timelapse frames (on Celery, the
    bot's travel along)."""

    progress_interval_s: float
    preview_interval_s: float
    image_limits: images.ImageLimits = images.DEFAULT_LIMITS
    timelapse_side: int = 0
    """Record the run's frames at most this many px for a timelapse; 0 = record none. A worker
    of the previous version ignores it and sends no frames; a bot of the previous version never
    sets it, so it never sees frames it cannot read."""

    @classmethod
    def from_config(cls, config: Config) -> RunSettings:
        """The [executor] pacing, the [images] limits and the [timelapse] frames."""
        timelapse = config.timelapse
        return cls(
            progress_interval_s=config.executor.progress_interval_s,
            preview_interval_s=config.executor.preview_interval_s,
            image_limits=images.ImageLimits.from_config(config.images),
            timelapse_side=timelapse.frame_side if timelapse.enabled else 0,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSettings:
        """Inverse of `to_dict`; limits this version does not know are ignored."""
        known = {f.name for f in dataclasses.fields(images.ImageLimits)}
        limits = {k: v for k, v in dict(data.get("image_limits") or {}).items() if k in known}
        return cls(
            progress_interval_s=float(data["progress_interval_s"]),
            preview_interval_s=float(data["preview_interval_s"]),
            image_limits=images.ImageLimits(**limits),
            timelapse_side=int(data.get("timelapse_side") or 0),
        )


@dataclass(frozen=True)
class WorkerSettings:
    """Everything a worker needs, built once from the config (picklable: it crosses `spawn`)."""

    name: str
    engine: EngineSettings
    run: RunSettings
    heartbeat_interval_s: float
    log_level: str = "INFO"
    warm_params: Mapping[str, tuple[TransferParams, ...]] = field(default_factory=dict)
    """Per kind of hardware, the parameters whose built-in style targets are cached at start."""

    @classmethod
    def from_config(
        cls, config: Config, *, name: str = "", device: str | None = None
    ) -> WorkerSettings:
        """Settings of one worker; `device` overrides engine.device."""
        return cls(
            name=name,
            engine=EngineSettings.from_config(config, device),
            run=RunSettings.from_config(config),
            # Several beats per timeout, so one late beat under load is not fatal.
            heartbeat_interval_s=max(0.05, min(1.0, config.executor.heartbeat_timeout_s / 5)),
            log_level=config.logging.level,
            warm_params=warm_params(config),
        )

    def replace(self, **changes: Any) -> WorkerSettings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


# -- the two ends ------------------------------------------------------------------------------


class Reporter(Protocol):
    """Where a run's events go: exactly one of finished, failed or cancelled ends each run."""

    def started(self, device: str, attempt: int) -> None:
        """The run began."""

    def progress(self, progress: Progress) -> None:
        """A step is done (throttled by the runtime)."""

    def finished(self, image: bytes, stats: dict[str, Any], timelapse: bytes | None) -> None:
        """The PNG, figures of the run, and its packed frames (None when none were recorded)."""

    def failed(self, message: str, detail: str | None) -> None:
        """The run ended without a result; `message` is fit for the user."""

    def cancelled(self) -> None:
        """The run stopped because the `StopSignal` was set."""


class StopSignal(Protocol):
    """Whether the run should stop now (cancel, timeout, superseded)."""

    def is_set(self) -> bool:
        """True once the run should stop; checked at every step."""


class EventReporter:
    """A Reporter that turns each call into a model event for `emit`, the one hook transports
    override; the events then travel with the model's codec (`event_to_wire`)."""

    def started(self, device: str, attempt: int) -> None:
        """Emit Started."""
        self.emit(Started(device=device, attempt=attempt))

    def progress(self, progress: Progress) -> None:
        """Emit the Progress."""
        self.emit(progress)

    def finished(self, image: bytes, stats: dict[str, Any], timelapse: bytes | None) -> None:
        """Emit Finished."""
        self.emit(Finished(image=image, stats=stats, timelapse=timelapse))

    def failed(self, message: str, detail: str | None) -> None:
        """Emit Failed."""
        self.emit(Failed(message=message, detail=detail))

    def cancelled(self) -> None:
        """Emit Cancelled."""
        self.emit(Cancelled())

    def emit(self, event: Event) -> None:
        """Send one event on (transports override this)."""
        raise NotImplementedError


# -- the run -----------------------------------------------------------------------------------


def describe_error(exc: BaseException) -> str:
    """An exception's message, or its class name when it has none."""
    return str(exc) or type(exc).__name__


def parse_request(payload: Any) -> RunRequest:
    """The RunRequest of a payload; PayloadError (fit for the user) when this worker cannot read
    it: another payload version, or a parameter this version does not know."""
    return RunRequest.from_dict(payload)


def run_job(
    engine: Any, request: RunRequest, settings: RunSettings, reporter: Reporter, stop: StopSignal
) -> None:
    """Run one job on a warm engine and report exactly one outcome; never raises."""
    from nstbot.engine.errors import EngineError, OutOfMemoryError, StylizeCancelled

    job = request.job
    reporter.started(engine.device, request.attempt)
    try:
        stats, png, timelapse = _run(engine, request, settings, reporter, stop)
    except StylizeCancelled as exc:
        log.info("job %s cancelled: %s", job.id, exc)
        reporter.cancelled()
    except images.ImageRejected as exc:
        _fail(reporter, job.id, str(exc), None)
    except FileNotFoundError as exc:
        _fail(reporter, job.id, messages.INPUTS_GONE, str(exc))
    except OutOfMemoryError as exc:
        _fail(reporter, job.id, messages.OUT_OF_MEMORY, str(exc))
    except (EngineError, ValueError) as exc:
        _fail(reporter, job.id, messages.engine_failed(describe_error(exc)), None)
    except Exception:
        _fail(reporter, job.id, messages.RUN_FAILED, traceback.format_exc())
    else:
        reporter.finished(png, stats, timelapse)


def _fail(reporter: Reporter, job_id: str, message: str, detail: str | None) -> None:
    log.warning("job %s failed: %s", job_id, detail or message)
    reporter.failed(message, detail)


def _run(
    engine: Any,
    request: RunRequest,
    settings: RunSettings,
    reporter: Reporter,
    stop: StopSignal,
) -> tuple[dict[str, Any], bytes, bytes | None]:
    from nstbot.engine.errors import OutOfMemoryError, StylizeCancelled

    begin = time.time()
    job = request.job
    params = job.params
    limits = settings.image_limits
    content = _decode(request.inputs[0], params.size, limits)
    style_long_side = style_side(params.size, params.style_scale)
    styles = [_decode(path, style_long_side, limits).image for path in request.inputs[1:]]
    if stop.is_set():
        raise StylizeCancelled("cancelled before the first step")
    on_step = StepReporter(reporter, stop, settings)
    passes_before = getattr(engine, "style_extractions", 0)
    oom_retries = 0
    while True:
        # A fresh recorder per try: frames of a run at another size do not belong together.
        recorder = _new_recorder(job.id, params.steps, settings.timelapse_side)
        try:
            result = engine.stylize(content.image, styles, params, on_step=on_step, frames=recorder)
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
        device=engine.device,
        attempt=request.attempt,
        requested_size=job.params.size,
        retried_smaller=oom_retries > 0,
        oom_retries=oom_retries,
        has_alpha=content.alpha is not None,
        notes=list(content.notes or []),
        worker_seconds=round(time.time() - begin, 3),
        # Feature passes over style images: 0 when the cache (warmed at start) had every target.
        style_passes=getattr(engine, "style_extractions", 0) - passes_before,
        worker_done_at=done_at,
    )
    timelapse = _pack_frames(job.id, recorder, stats)
    return stats, buffer.getvalue(), timelapse


def _new_recorder(job_id: str, total_steps: int, side: int) -> Any:
    """A FrameRecorder for one try, or None when frames are off or one cannot be made."""
    if side <= 0:
        return None
    try:
        from nstbot.jobs.frames import GuardedRecorder

        return GuardedRecorder.for_steps(total_steps, max_side=side)
    except Exception:
        # A timelapse is a bonus: the job runs on without one.
        log.exception("job %s: cannot record a timelapse; running without", job_id)
        return None


def _pack_frames(job_id: str, recorder: Any, stats: dict[str, Any]) -> bytes | None:
    """The recorder's frames in their travelling form; None (logged) when they cannot be had."""
    if recorder is None:
        return None
    from nstbot.images import animation

    begin = time.perf_counter()
    try:
        frames = recorder.frames
        packed = animation.pack_frames(frames) if len(frames) > 1 else None
    except Exception:
        log.exception("job %s: cannot pack the timelapse frames; delivering without", job_id)
        return None
    if packed is None:
        why = getattr(recorder, "error", None) or f"{len(frames)} frames"
        log.warning("job %s: no timelapse to send (%s)", job_id, why)
        return None
    stats.update(
        timelapse_frames=len(frames),
        timelapse_bytes=len(packed),
        timelapse_pack_s=round(time.perf_counter() - begin, 3),
    )
    return packed


def _decode(path: str, working_size: int, limits: images.ImageLimits) -> images.DecodedImage:
    data = Path(path).read_bytes()
    try:
        return images.decode(data, limits=limits, working_size=working_size)
    except images.ImageRejected:
        # A working size below the image's long side can push a narrow image's short side
        # under min_side; the bot accepted this image at full size, so decode it that way.
        return images.decode(data, limits=limits)


class StepReporter:
    """The engine's step callback: stop when signalled, throttled progress and previews."""

    def __init__(self, reporter: Reporter, stop: StopSignal, settings: RunSettings) -> None:
        self.reporter = reporter
        self.stop = stop
        self.progress_interval = settings.progress_interval_s
        self.preview_interval = settings.preview_interval_s
        self.last_progress = -math.inf
        # The first preview waits one interval: step 1 looks like the content image.
        self.last_preview = time.monotonic()

    def __call__(self, info: Any) -> bool:
        if self.stop.is_set():
            return True
        now = time.monotonic()
        final = info.step >= info.total
        if now - self.last_progress >= self.progress_interval or final:
            self.last_progress = now
            preview = None
            if now - self.last_preview >= self.preview_interval and not final:
                self.last_preview = now
                preview = images.encode_preview(
                    info.preview(PREVIEW_MAX_SIDE),
                    max_bytes=PREVIEW_MAX_BYTES,
                    max_side=PREVIEW_MAX_SIDE,
                )
            self.reporter.progress(
                Progress(
                    step=info.step,
                    total=info.total,
                    eta=info.eta,
                    preview=preview,
                    scale=info.scale,
                    scales=info.scales,
                    elapsed=info.elapsed,
                )
            )
        return self.stop.is_set()
