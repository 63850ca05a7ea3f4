"""Small pieces the benchmarks share: percentiles and tiny test images."""

from __future__ import annotations

import io
import math
import statistics

from PIL import Image


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def latency_line(name: str, values_ms: list[float]) -> str:
    """`name  p50 ... ms  p95 ... ms  max ... ms` for a list of milliseconds."""
    return (
        f"{name:<22} p50 {statistics.median(values_ms):7.2f} ms   "
        f"p95 {percentile(values_ms, 95):7.2f} ms   max {max(values_ms):7.2f} ms"
    )


def solid_png(color: str, side: int) -> bytes:
    """A side x side PNG of one colour."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), color).save(buffer, "PNG")
    return buffer.getvalue()
