"""TEST-ONLY fault injection, kept out of the runtime: a wrapper around the engine.

When `NSTBOT_TEST_FAULTS=1` is in a worker's environment, both worker adapters wrap their engine
in `FaultyEngine` for each run, which honours `params.extra["test_fault"]` (crash | crash_always |
hang | oom | oom_always) and `params.extra["test_step_sleep"]` (seconds per step). Off by default;
without the variable the engine is used as it is.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from nstbot.jobs.model import RunRequest

TEST_FAULTS_ENV = "NSTBOT_TEST_FAULTS"


def for_run(engine: Any, request: RunRequest) -> Any:
    """The engine to run `request` on: wrapped when test faults are enabled."""
    if os.environ.get(TEST_FAULTS_ENV) != "1":
        return engine
    extra = request.job.params.extra
    if not extra.get("test_fault") and not extra.get("test_step_sleep"):
        return engine
    return FaultyEngine(engine, request)


class FaultyEngine:
    """The engine, failing on purpose as `params.extra` asks (attempt 1 only unless *_always)."""

    def __init__(self, engine: Any, request: RunRequest) -> None:
        self.engine = engine
        self.device = engine.device
        self.fault = request.job.params.extra.get("test_fault")
        self.step_sleep = float(request.job.params.extra.get("test_step_sleep") or 0.0)
        self.attempt = request.attempt
        self.calls = 0

    def stylize(self, content: Any, styles: Any, params: Any, *, on_step: Any, **kw: Any) -> Any:
        from nstbot.engine.errors import OutOfMemoryError

        self.calls += 1
        if self.fault == "oom_always" or (self.fault == "oom" and self.calls == 1):
            raise OutOfMemoryError(f"simulated out of memory at size {params.size}")

        def step(info: Any) -> Any:
            self._inject()
            return on_step(info)

        return self.engine.stylize(content, styles, params, on_step=step, **kw)

    def _inject(self) -> None:
        if self.step_sleep:
            time.sleep(self.step_sleep)
        if self.fault == "crash_always" or (self.fault == "crash" and self.attempt == 1):
            os.kill(os.getpid(), signal.SIGKILL)
        if self.fault == "hang" and self.attempt == 1:
            # Freezes every thread, heartbeat included: what a wedged driver call looks like.
            os.kill(os.getpid(), signal.SIGSTOP)
