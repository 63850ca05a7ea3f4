"""How the quality presets read to users: the lines of `/stylize-help`, `nstbot check` and the docs.

The table itself and the parameters built from it live in `nstbot.quality` (plain data that
workers read too); the names are re-exported here for the bot's modules.
"""

from __future__ import annotations

from nstbot.quality import (
    EXPECT_BASIS,
    PRESETS,
    QUALITIES,
    Limits,
    Preset,
    build_params,
    cap_quality,
    effective_max_size,
    quality_rank,
)

__all__ = [
    "EXPECT_BASIS",
    "PRESETS",
    "QUALITIES",
    "Limits",
    "Preset",
    "build_params",
    "cap_quality",
    "effective_max_size",
    "help_table",
    "preset_summary",
    "quality_rank",
]


def preset_summary(hardware: str, quality: str) -> str:
    """One preset in the words the docs quote, e.g. "`fast` 256 px / 60 steps, about 40 s"."""
    preset = PRESETS[hardware][quality]
    return f"`{quality}` {preset.size} px / {preset.steps} steps, {preset.expect}"


def help_table(hardware: str, limits: Limits) -> str:
    """Lines describing each quality level as this host runs it."""
    rows = []
    for name in QUALITIES:
        preset = PRESETS["gpu" if hardware == "gpu" else "cpu"][name]
        if quality_rank(name) > quality_rank(limits.max_quality):
            continue
        steps = preset.steps if not limits.max_steps else min(preset.steps, limits.max_steps)
        size = min(preset.size, effective_max_size(preset, limits))
        rows.append(
            f"**{name}**: {size} px, {steps} steps, up to "
            f"{effective_max_size(preset, limits)} px; {preset.expect}"
        )
    rows.append(f"(times {EXPECT_BASIS['gpu' if hardware == 'gpu' else 'cpu']})")
    return "\n".join(rows)
