"""Benchmark nstbot.images on a 12 MP photo: decode+normalize and encode under byte budgets.

Run: .venv/bin/python benchmarks/images.py [--reps N]
Times are the median of N runs. "Python peak" is tracemalloc's peak (Python objects such as the
encoded bytes; Pillow's pixel buffers live in C and are not counted there); "RSS peak" is the
process's high-water mark after all runs, which does include them.
"""

from __future__ import annotations

import argparse
import functools
import io
import resource
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops

from nstbot.images import decode, encode

ROOT = Path(__file__).resolve().parent.parent
SIZE = (4000, 3000)


def photo() -> Image.Image:
    """The coffee photo upscaled to 12 MP with mild Gaussian noise, like a real camera shot."""
    with Image.open(ROOT / "tests" / "data" / "content-coffee.jpg") as im:
        big = im.convert("RGB").resize(SIZE, Image.Resampling.BICUBIC)
    grain = Image.merge("RGB", [Image.effect_noise(SIZE, 6) for _ in range(3)])
    return ImageChops.add(big, grain, scale=1.0, offset=-128)


def measure(fn: Callable[[], Any], reps: int) -> tuple[float, float, Any]:
    """Median seconds over `reps` runs, tracemalloc peak in MB of one more run, last result."""
    times = []
    result = None
    for _ in range(reps):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    try:
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return statistics.median(times), peak / 1e6, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    reps = parser.parse_args().reps

    im = photo()
    sources = {}
    for fmt, opts in (("JPEG", {"quality": 90}), ("PNG", {})):
        buf = io.BytesIO()
        im.save(buf, fmt, **opts)
        sources[fmt] = buf.getvalue()
    print(f"source image: {SIZE[0]}x{SIZE[1]} ({SIZE[0] * SIZE[1] / 1e6:.0f} MP), median of {reps}")
    for fmt, data in sources.items():
        print(f"  {fmt}: {len(data) / 1e6:.1f} MB")

    print("\ndecode + normalize")
    for fmt, data in sources.items():
        for working_size in (512, None):
            run = functools.partial(decode, data, working_size=working_size)
            seconds, peak, d = measure(run, reps)
            target = "full size" if working_size is None else f"working size {working_size}"
            label = f"{fmt} -> {target}"
            print(
                f"  {label:<28} {seconds * 1000:8.0f} ms   Python peak {peak:6.1f} MB   "
                f"result {d.image.size[0]}x{d.image.size[1]}"
            )

    print("\nencode (12 MP RGB result)")
    for budget in (8_000_000, 1_000_000):
        run = functools.partial(encode, im, max_bytes=budget)
        seconds, peak, (out, name) = measure(run, reps)
        with Image.open(io.BytesIO(out)) as back:
            size = back.size
        print(
            f"  budget {budget / 1e6:.0f} MB {'':<14} {seconds * 1000:8.0f} ms   Python peak "
            f"{peak:6.1f} MB   -> {name}, {len(out) / 1e6:.2f} MB, {size[0]}x{size[1]}"
        )

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nprocess RSS peak (whole run, includes Pillow buffers): {rss:.0f} MB")


if __name__ == "__main__":
    main()
