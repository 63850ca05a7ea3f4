"""The local worker process: the pipe adapter of `nstbot.jobs.runtime`.

The parent imports this module only to name `worker_main` as the process target, so nothing here
imports torch at module level: the engine is loaded inside the child.

Wire protocol (pickled tuples over a duplex Pipe; everything is plain data):
  parent -> worker: ("run", seq, RunRequest.to_dict()) | ("stop",)
  worker -> parent: ("ready", {device, pid}) | ("startup_error", {kind, message}) | ("hb", t)
                    | ("event", seq, data, blob)   data, blob: `model.event_to_wire(event)`
Cancellation arrives through a shared integer: the parent writes the seq of the run to stop, and
the run's StopSignal compares it with its own seq, so a late cancel can never hit the next job.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from nstbot.jobs import faults
from nstbot.jobs.model import Event, PayloadError, event_to_wire
from nstbot.jobs.runtime import (
    EventReporter,
    WorkerSettings,
    describe_error,
    parse_request,
    run_job,
)
from nstbot.jobs.warmup import StyleWarmUp

log = logging.getLogger(__name__)


class PipeSender:
    """Thread-safe sends: the heartbeat thread and the job share one pipe."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        """Send one message; exit when the parent is gone."""
        try:
            with self._lock:
                self._conn.send(message)
        except (OSError, EOFError):
            # The parent is gone: nobody wants the result, and an orphan would hold the GPU.
            os._exit(0)


class PipeReporter(EventReporter):
    """Events of run `seq`, in the model's wire form, to the parent."""

    def __init__(self, sender: PipeSender, seq: int) -> None:
        self.sender = sender
        self.seq = seq

    def emit(self, event: Event) -> None:
        """Send the event with its run's seq."""
        data, blob = event_to_wire(event)
        self.sender.send(("event", self.seq, data, blob))


class SeqStop:
    """Set once the parent wrote this run's seq into the shared integer."""

    def __init__(self, token: Any, seq: int) -> None:
        self.token = token
        self.seq = seq

    def is_set(self) -> bool:
        """Whether this run was asked to stop."""
        return bool(self.token.value == self.seq)


def worker_main(conn: Connection, cancel_token: Any, settings: WorkerSettings) -> None:
    """Entry point of a worker process: load the engine once, then serve jobs until told to stop."""
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=settings.log_level,
        format=f"%(asctime)s worker[{settings.name or '?'}] %(levelname)s %(name)s: %(message)s",
    )
    sender = PipeSender(conn)
    beat = threading.Thread(
        target=_heartbeat, args=(sender, settings.heartbeat_interval_s), daemon=True
    )
    beat.start()
    try:
        engine = settings.engine.load()
    except BaseException as exc:  # any failure to start must reach the parent with its reason
        log.error("worker cannot start: %s", exc)
        sender.send(("startup_error", {"kind": type(exc).__name__, "message": describe_error(exc)}))
        return
    sender.send(("ready", {"device": engine.device, "pid": os.getpid()}))
    warm_up = StyleWarmUp(engine, settings)
    while True:
        # One style at a time while nothing waits: a job that arrives goes first.
        while warm_up.pending and not conn.poll():
            warm_up.step()
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        if message[0] == "run":
            _serve(engine, settings, sender, cancel_token, message[1], message[2])


def _serve(
    engine: Any,
    settings: WorkerSettings,
    sender: PipeSender,
    cancel_token: Any,
    seq: int,
    payload: Any,
) -> None:
    reporter = PipeReporter(sender, seq)
    try:
        request = parse_request(payload)
    except PayloadError as exc:
        log.error("run %d: cannot read the job: %s", seq, exc.detail)
        reporter.failed(str(exc), exc.detail)
        return
    run_job(
        faults.for_run(engine, request),
        request,
        settings.run,
        reporter,
        SeqStop(cancel_token, seq),
    )


def _heartbeat(sender: PipeSender, interval: float) -> None:
    while True:
        time.sleep(interval)
        sender.send(("hb", time.time()))
