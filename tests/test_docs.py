"""The docs quote the figures the code uses: expected times come from the quality presets alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from nstbot.bot.presets import EXPECT_BASIS, PRESETS, QUALITIES, Limits, help_table, preset_summary
from nstbot.checks import expected_time
from nstbot.config import Config

ROOT = Path(__file__).resolve().parent.parent


def text_of(name: str) -> str:
    return " ".join((ROOT / name).read_text(encoding="utf-8").split())


@pytest.mark.parametrize("doc", ["README.md", "docs/operations.md"])
@pytest.mark.parametrize("hardware", ["cpu", "gpu"])
def test_docs_quote_every_preset_and_where_it_was_measured(doc: str, hardware: str) -> None:
    text = text_of(doc)
    for quality in QUALITIES:
        assert preset_summary(hardware, quality) in text, (doc, hardware, quality)
    assert EXPECT_BASIS[hardware] in text


def test_help_and_check_quote_the_same_figures() -> None:
    for hardware in ("cpu", "gpu"):
        table = help_table(hardware, Limits())
        for quality in QUALITIES:
            assert PRESETS[hardware][quality].expect in table
        assert EXPECT_BASIS[hardware] in table
        line = expected_time(Config(), hardware)
        assert preset_summary(hardware, "balanced") in line and EXPECT_BASIS[hardware] in line


def test_cpu_figures_are_the_measured_runs() -> None:
    # docs/performance.md records the runs the CPU table's times come from.
    text = text_of("docs/performance.md")
    for quality in QUALITIES:
        preset = PRESETS["cpu"][quality]
        assert f"| {quality} | {preset.size} / {preset.steps} / {preset.scales} |" in text
        assert f'"{preset.expect}"' in text
    for quality in QUALITIES:
        assert f'"{PRESETS["gpu"][quality].expect}"' in text
