"""Jobs and events are plain data that survive JSON."""

from __future__ import annotations

import json

import pytest

from nstbot.jobs.model import (
    Cancelled,
    Failed,
    Finished,
    Job,
    JobState,
    Progress,
    Queued,
    Started,
    event_from_wire,
    event_to_wire,
    is_terminal,
)
from nstbot.params import TransferParams


def test_job_round_trips_through_json() -> None:
    job = Job.new(
        user_id=1, guild_id=2, channel_id=3, params=TransferParams(size=64, style_blend=(1.0,)),
        delivery={"token": "abc", "message_id": 9},
    )  # fmt: skip
    again = Job.from_dict(json.loads(json.dumps(job.to_dict())))
    assert again == job
    assert again.delivery == {"token": "abc", "message_id": 9}
    assert len(job.id) == 16 and job.created_at > 0


def test_every_event_round_trips_with_bytes_alongside() -> None:
    events = [
        Queued(3, job_id="j"),
        Started(device="cpu", attempt=2),
        Progress(4, 10, eta=1.5, preview=b"\xff\xd8jpeg"),
        Progress(4, 10, eta=None),
        Finished(image=b"\x89PNG", stats={"seconds": 1.0}),
        Finished(image=b"\x89PNG", timelapse=b"RIFFframes"),
        Finished(image=b"", timelapse=b""),
        Failed("nope", "detail"),
        Cancelled("user"),
    ]
    for event in events:
        data, blob = event_to_wire(event)
        assert isinstance(json.loads(json.dumps(data)), dict)
        assert event_from_wire(json.loads(json.dumps(data)), blob) == event


def test_frames_ride_after_the_image_and_only_when_recorded() -> None:
    with_frames = Finished(image=b"\x89PNG-image", stats={"s": 1}, timelapse=b"RIFF-frames")
    data, blob = event_to_wire(with_frames)
    assert blob == b"\x89PNG-imageRIFF-frames" and data["timelapse_bytes"] == 11
    assert "timelapse" not in data  # bytes never go inside the JSON
    back = event_from_wire(json.loads(json.dumps(data)), blob)
    assert back.image == b"\x89PNG-image" and back.timelapse == b"RIFF-frames"

    # Without frames the wire form is what a bot of the previous version reads.
    data, blob = event_to_wire(Finished(image=b"\x89PNG"))
    assert set(data) == {"type", "stats", "filename", "job_id"} and blob == b"\x89PNG"
    assert event_from_wire(data, blob).timelapse is None


@pytest.mark.parametrize("size", [12, -1, "3", None])
def test_a_frames_length_that_does_not_match_the_bytes_is_refused(size: object) -> None:
    data, blob = event_to_wire(Finished(image=b"\x89PNG", timelapse=b"RIFF"))
    data["timelapse_bytes"] = size
    with pytest.raises(ValueError, match="timelapse"):
        event_from_wire(data, blob)


def test_terminal_events_and_states() -> None:
    assert [is_terminal(e) for e in (Queued(1), Started(), Progress(1, 2))] == [False] * 3
    assert all(is_terminal(e) for e in (Finished(b""), Failed("x"), Cancelled()))
    assert [s.final for s in JobState] == [False, False, True, True, True]
