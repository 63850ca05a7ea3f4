"""Plain data of the executor queue: a job and the events it produces.

Everything here serializes to JSON (image bytes travel alongside, never inside the JSON), so the
same objects cross a process pipe today and a Celery broker later. No torch, no Discord.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nstbot.jobs import messages
from nstbot.params import ParamsError, TransferParams

PAYLOAD_VERSION = 1
"""Bumped whenever a worker of the previous version could not run a payload of this one."""


class JobState(StrEnum):
    """Where a job stands; the last three are final."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """Whether the job has ended."""
        return self in (JobState.FINISHED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class Job:
    """One stylization request: who asked, where to deliver, and with which parameters."""

    id: str
    user_id: int
    params: TransferParams
    guild_id: int | None = None
    channel_id: int | None = None
    delivery: dict[str, Any] = field(default_factory=dict, compare=False)
    """JSON owned by the bot (interaction token, message ids...); the queue only stores it."""
    created_at: float = 0.0

    @classmethod
    def new(
        cls,
        *,
        user_id: int,
        guild_id: int | None = None,
        channel_id: int | None = None,
        params: TransferParams | None = None,
        delivery: dict[str, Any] | None = None,
    ) -> Job:
        """A job with a fresh id and the current time."""
        return cls(
            id=uuid.uuid4().hex[:16],
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            params=params or TransferParams(),
            delivery=dict(delivery or {}),
            created_at=time.time(),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "id": self.id,
            "user_id": self.user_id,
            "guild_id": self.guild_id,
            "channel_id": self.channel_id,
            "params": self.params.to_dict(),
            "delivery": self.delivery,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        """Inverse of `to_dict`."""
        return cls(
            id=data["id"],
            user_id=data["user_id"],
            guild_id=data.get("guild_id"),
            channel_id=data.get("channel_id"),
            params=TransferParams.from_dict(data.get("params", {})),
            delivery=dict(data.get("delivery") or {}),
            created_at=float(data.get("created_at", 0.0)),
        )


class PayloadError(ValueError):
    """A worker cannot read a job payload; `str()` is fit for the user, `detail` names the
    mismatch for the operator."""

    def __init__(self, detail: str) -> None:
        super().__init__(messages.VERSION_SKEW)
        self.detail = detail


@dataclass(frozen=True)
class RunRequest:
    """One attempt at one job: the job, where its input images are (content first), attempt."""

    job: Job
    inputs: list[str]
    """File paths (local) or Redis keys (Celery)."""
    attempt: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict, with the payload version."""
        return {
            "version": PAYLOAD_VERSION,
            "job": self.job.to_dict(),
            "inputs": list(self.inputs),
            "attempt": self.attempt,
        }

    @classmethod
    def from_dict(cls, data: Any) -> RunRequest:
        """Inverse of `to_dict`; PayloadError naming the mismatch when it cannot be read."""
        if not isinstance(data, dict):
            raise PayloadError(f"payload is {type(data).__name__}, not an object")
        version = data.get("version")
        if version != PAYLOAD_VERSION:
            raise PayloadError(
                f"payload version {version!r} from the bot, this worker reads version "
                f"{PAYLOAD_VERSION}"
            )
        try:
            job = Job.from_dict(data["job"])
            inputs = [str(i) for i in data["inputs"]]
            attempt = int(data.get("attempt", 1))
        except ParamsError as exc:
            raise PayloadError(f"job parameters this worker does not know: {exc}") from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PayloadError(f"malformed payload: {type(exc).__name__}: {exc}") from exc
        if not inputs:
            raise PayloadError("malformed payload: no input images")
        return cls(job=job, inputs=inputs, attempt=attempt)


# Events. Every field has a default except the few the contract names positionally, so fields can
# be added later without breaking callers; `job_id` is filled in by the scheduler.


@dataclass(frozen=True)
class Queued:
    """Waiting; `position` is 1-based (1 = next to start)."""

    position: int
    job_id: str = ""


@dataclass(frozen=True)
class Started:
    """A worker began the job (again, after a crash retry: see `attempt`)."""

    device: str = ""
    attempt: int = 1
    job_id: str = ""


@dataclass(frozen=True)
class Progress:
    """One step done; `preview` is a small JPEG/WebP now and then, else None."""

    step: int
    total: int
    eta: float | None = None
    preview: bytes | None = field(default=None, repr=False)
    scale: int = 0
    scales: int = 1
    elapsed: float = 0.0
    job_id: str = ""


@dataclass(frozen=True)
class Finished:
    """The result: lossless PNG bytes and figures about the run."""

    image: bytes = field(repr=False)
    stats: dict[str, Any] = field(default_factory=dict, compare=False)
    filename: str = "nstbot.png"
    job_id: str = ""
    timelapse: bytes | None = field(default=None, repr=False)
    """The run's frames (`images.animation.pack_frames`), or None when none were recorded."""


@dataclass(frozen=True)
class Failed:
    """The job ended without a result; `message` is fit to show the user, `detail` is for logs."""

    message: str
    detail: str | None = None
    job_id: str = ""


@dataclass(frozen=True)
class Cancelled:
    """The job was cancelled (by the user, an admin, or shutdown policy)."""

    reason: str = "cancelled"
    job_id: str = ""


Event = Queued | Started | Progress | Finished | Failed | Cancelled
TERMINAL_EVENTS: tuple[type, ...] = (Finished, Failed, Cancelled)
_EVENT_TYPES: dict[str, type] = {
    cls.__name__.lower(): cls for cls in (Queued, Started, Progress, Finished, Failed, Cancelled)
}
_BLOB_FIELD = {Progress: "preview", Finished: "image"}


def is_terminal(event: object) -> bool:
    """Whether an event ends the job's stream."""
    return isinstance(event, TERMINAL_EVENTS)


def final_state(event: Finished | Failed | Cancelled) -> JobState:
    """The job state a final event leaves the job in."""
    if isinstance(event, Finished):
        return JobState.FINISHED
    if isinstance(event, Failed):
        return JobState.FAILED
    return JobState.CANCELLED


def event_to_wire(event: Event) -> tuple[dict[str, Any], bytes | None]:
    """(JSON-safe dict with a "type" key, the image bytes or None).

    A Finished event's frames ride in the same bytes, after the image, with their length under
    "timelapse_bytes": one blob per event keeps both transports (pipe, Redis key) unchanged. The
    key appears only when frames were recorded, which only a bot that asks for them sees.
    """
    data = dataclasses.asdict(event)
    blob_field = _BLOB_FIELD.get(type(event))
    blob = data.pop(blob_field) if blob_field else None
    if isinstance(event, Finished):
        frames = data.pop("timelapse")
        if frames is not None:
            data["timelapse_bytes"] = len(frames)
            blob = (blob or b"") + frames
    data["type"] = type(event).__name__.lower()
    return data, blob


def event_from_wire(data: dict[str, Any], blob: bytes | None = None) -> Event:
    """Inverse of `event_to_wire`; ValueError when the bytes do not match the data."""
    data = dict(data)
    cls = _EVENT_TYPES[data.pop("type")]
    blob_field = _BLOB_FIELD.get(cls)
    if blob_field:
        data[blob_field] = blob if blob is not None or cls is Progress else b""
    if cls is Finished and "timelapse_bytes" in data:
        image, size = data["image"], data.pop("timelapse_bytes")
        if not isinstance(size, int) or not 0 <= size <= len(image):
            raise ValueError(f"timelapse of {size!r} bytes in a blob of {len(image)}")
        cut = len(image) - size
        data["image"], data["timelapse"] = image[:cut], image[cut:]
    return cls(**data)
