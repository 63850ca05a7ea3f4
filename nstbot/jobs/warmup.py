"""A worker's style-target cache, filled at start for the built-in styles at the presets' sizes.

A preset job's style input is the built-in file's bytes, which the runtime decodes like any upload
(`images.decode` at `style_side(size, style_scale)`); decoding the same file the same way here
gives the same image, so the engine computes the same cache key as that job will, and the job
skips its style feature pass. The warm-up never evicts: it stops when the cache's byte budget is
reached. Nothing here imports torch at module level (the bot builds WorkerSettings).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nstbot import images
from nstbot.config import Config
from nstbot.params import TransferParams, style_side
from nstbot.quality import Limits, default_params
from nstbot.styles import BUILTIN_STYLES, Style

if TYPE_CHECKING:
    from nstbot.jobs.runtime import WorkerSettings

log = logging.getLogger(__name__)

HARDWARE = ("cpu", "gpu")


def warm_params(config: Config) -> Mapping[str, tuple[TransferParams, ...]]:
    """Per kind of worker device, the parameters of a default request at each quality under the
    config's caps (empty when styles.warm_up is off). A bot.hardware of cpu or gpu makes every
    worker use that table, as it makes the bot."""
    if not config.styles.warm_up:
        return {}
    limits = Limits(max_size=config.bot.max_size, max_steps=config.bot.max_steps)
    forced = config.bot.hardware if config.bot.hardware in HARDWARE else None
    return {hardware: default_params(forced or hardware, limits) for hardware in HARDWARE}


def hardware_of(device: str) -> str:
    """Which preset table jobs on this device use (the bot's rule: CUDA is a GPU)."""
    return "gpu" if device.startswith("cuda") else "cpu"


@dataclass(frozen=True)
class WarmUpResult:
    targets: int
    """Style targets newly cached."""
    seconds: float
    """Time spent warming (not counting jobs served in between)."""
    complete: bool
    """False when the cache's budget (or an error) stopped it early."""


class StyleWarmUp:
    """The warm-up in steps (one style at one preset each), so a worker may serve a job between."""

    def __init__(self, engine: Any, settings: WorkerSettings) -> None:
        self.engine = engine
        self.limits = settings.run.image_limits
        plan = settings.warm_params.get(hardware_of(str(engine.device)), ())
        self._todo: list[tuple[Style, TransferParams]] = [
            (style, params) for params in _distinct(plan) for style in BUILTIN_STYLES
        ]
        self.targets = 0
        self.seconds = 0.0
        self.complete = True
        self.result: WarmUpResult | None = None if self._todo else WarmUpResult(0, 0.0, True)

    @property
    def pending(self) -> bool:
        """Whether steps remain."""
        return bool(self._todo)

    def step(self) -> None:
        """Warm the next style at the next preset; never raises (a failure ends the warm-up)."""
        if not self._todo:
            return
        style, params = self._todo.pop(0)
        begin = time.perf_counter()
        try:
            decoded = images.decode(
                style.read_bytes(),
                limits=self.limits,
                working_size=style_side(params.size, params.style_scale),
            )
            added, room = self.engine.warm_style_targets(decoded.image, params)
        except Exception as exc:
            log.warning("style warm-up stopped: %s failed (%s)", style.name, exc, exc_info=True)
            added, room = 0, False
        self.targets += added
        self.seconds += time.perf_counter() - begin
        if not room:
            self.complete = False
            self._todo.clear()
        if not self._todo:
            self._finish()

    def run(self) -> WarmUpResult:
        """Every step at once."""
        while self._todo:
            self.step()
        assert self.result is not None
        return self.result

    def _finish(self) -> None:
        self.result = WarmUpResult(self.targets, round(self.seconds, 3), self.complete)
        cache = self.engine.cache
        log.info(
            "style cache warmed: %d targets of the built-in styles in %.1f s (%.0f of %.0f MB%s)",
            self.targets, self.seconds, cache.bytes_used / 2**20, cache.max_bytes / 2**20,
            "" if self.complete else "; stopped early: the cache is full",
        )  # fmt: skip


def _distinct(plan: tuple[TransferParams, ...]) -> list[TransferParams]:
    """Presets that differ in what the style targets depend on (the same size twice warms once)."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for params in plan:
        key = (params.size, params.scales, params.min_size, params.style_scale, params.style_layers)
        if key not in seen:
            seen.add(key)
            out.append(params)
    return out
