"""Quality presets: the one table mapping fast / balanced / best to steps, scales and sizes.

Plain data (no torch, no discord): the bot builds a request's parameters from it, and a worker
reads it to warm its style cache at the sizes jobs will use. `nstbot.bot.presets` shows it to
users.

CPU and GPU hosts get different tables so that the defaults finish in a few minutes either way.

The expected times here are the one source of those figures: `/stylize-help`, `nstbot check`, the
README and docs/operations.md quote them (tests/test_docs.py checks the docs). They come from
docs/performance.md: on the CPU, whole `nstbot stylize` runs on 2 idle cores ("Bot quality presets
on a CPU": 30 s, 40 s, 109 s); on a GPU, an H200 ("Whole jobs on a GPU": 300 steps in 2.1 s at
512 px and 2.6 s at 1024 px, warm). A GPU step there is bound by kernel launches, not by the size,
so a preset's time is scaled from those by its steps; smaller GPUs take longer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from nstbot.config import Quality
from nstbot.params import TransferParams

QUALITIES: tuple[str, ...] = get_args(Quality)


@dataclass(frozen=True)
class Preset:
    """Steps, scales and sizes of one quality level on one kind of hardware."""

    steps: int
    scales: int
    size: int
    """Default longest side of the output."""
    max_size: int
    """Largest longest side a user may ask for at this quality."""
    expect: str
    """Rough run time on the hardware EXPECT_BASIS names, shown by /stylize-help."""


PRESETS: dict[str, dict[str, Preset]] = {
    "gpu": {
        "fast": Preset(steps=150, scales=2, size=512, max_size=768, expect="about 1 s"),
        "balanced": Preset(steps=300, scales=3, size=768, max_size=1024, expect="about 2.5 s"),
        "best": Preset(steps=600, scales=3, size=1024, max_size=1536, expect="about 5 s"),
    },
    "cpu": {
        "fast": Preset(steps=60, scales=1, size=256, max_size=384, expect="about 40 s"),
        "balanced": Preset(steps=100, scales=2, size=384, max_size=512, expect="about a minute"),
        "best": Preset(steps=160, scales=2, size=512, max_size=640, expect="about 2½ minutes"),
    },
}
EXPECT_BASIS: dict[str, str] = {
    "gpu": "measured on an H200; smaller GPUs take longer",
    "cpu": "measured on 2 idle CPU cores",
}
"""Where the expected times were measured, quoted next to them."""


@dataclass(frozen=True)
class Limits:
    """Caps that narrow a preset: from the config (every server) and from one server's settings."""

    max_size: int = 0
    """0 means no cap beyond the preset's."""
    max_steps: int = 0
    max_quality: str = "best"


def quality_rank(quality: str) -> int:
    """Position of a quality in QUALITIES (fast = 0)."""
    return QUALITIES.index(quality)


def cap_quality(quality: str, max_quality: str) -> str:
    """The lower of the two qualities."""
    return quality if quality_rank(quality) <= quality_rank(max_quality) else max_quality


def effective_max_size(preset: Preset, limits: Limits) -> int:
    """The largest output side allowed for this preset under these limits."""
    cap = preset.max_size
    if limits.max_size:
        cap = min(cap, limits.max_size)
    return cap


def build_params(
    *,
    quality: str,
    hardware: str,
    limits: Limits,
    size: int | None = None,
    strength: str = TransferParams.strength,
    preserve_colors: bool = False,
    seed: int | None = None,
    n_styles: int = 1,
) -> tuple[TransferParams, list[str]]:
    """TransferParams for a request, and notes for the user about anything that was capped."""
    notes: list[str] = []
    if quality not in QUALITIES:
        raise ValueError(f"unknown quality {quality!r}")
    capped = cap_quality(quality, limits.max_quality)
    if capped != quality:
        notes.append(f"quality lowered to {capped} (this server's maximum)")
        quality = capped
    preset = PRESETS["gpu" if hardware == "gpu" else "cpu"][quality]
    cap = effective_max_size(preset, limits)
    wanted = size if size is not None else preset.size
    out_size = min(wanted, cap)
    if size is not None and size > cap:
        notes.append(f"size lowered to {cap} px (the maximum for {quality} here)")
    steps = preset.steps if not limits.max_steps else min(preset.steps, limits.max_steps)
    # Each extra scale halves the working size; below ~64 px a scale adds nothing but cost.
    scales = preset.scales
    while scales > 1 and out_size >> (scales - 1) < 64:
        scales -= 1
    scales = max(1, min(scales, steps))
    min_size = max(16, min(TransferParams.min_size, out_size >> (scales - 1)))
    params = TransferParams(
        size=out_size,
        steps=steps,
        scales=scales,
        min_size=min_size,
        strength=strength,  # type: ignore[arg-type]
        preserve_colors=preserve_colors,
        seed=seed,
        style_blend=None if n_styles == 1 else (1.0,) * n_styles,
        extra={"quality": quality},
    )
    return params, notes


def default_params(hardware: str, limits: Limits) -> tuple[TransferParams, ...]:
    """The parameters of a request at each quality's default size, under `limits`."""
    return tuple(
        build_params(quality=quality, hardware=hardware, limits=limits)[0]
        for quality in QUALITIES
        if quality_rank(quality) <= quality_rank(limits.max_quality)
    )
