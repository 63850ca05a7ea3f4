"""Submit -> first step for a built-in style (cache warmed at worker start) against an upload.

Starts a real Scheduler and local worker process with `styles.warm_up` on, waits until the worker
logs that its warm-up is done, then, for each quality preset of the chosen hardware table, submits
jobs as the bot builds them (`nstbot.quality.build_params`) and times submit -> the first Progress
event (step 1), then cancels the job. "preset" jobs carry a built-in style's bytes, as the bot
sends them; "upload" jobs carry the same painting with one pixel changed, so the image costs the
same to decode and to extract but is new to the cache, as a member's upload is. Medians of the
repeats, in seconds; the presets and uploads alternate so that drift hits both alike.

    .venv/bin/python -m benchmarks.styles [--repeats 3] [--hardware cpu] [--device cpu]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from nstbot.config import Config, EngineConfig, ExecutorConfig, StylesConfig
from nstbot.jobs.model import Job, Progress
from nstbot.jobs.scheduler import Scheduler
from nstbot.quality import QUALITIES, Limits, build_params
from nstbot.styles import BUILTIN_STYLES

CONTENT = Path(__file__).resolve().parent / "images" / "content-astronaut.jpg"
WARMED = re.compile(r"style cache warmed: (\d+) targets of the built-in styles in ([\d.]+) s")


def altered(data: bytes, seed: int) -> bytes:
    """The same picture with one pixel changed: a style new to the cache, as an upload is."""
    with Image.open(io.BytesIO(data)) as im:
        image = im.convert("RGB")
    image.putpixel((seed % image.width, 0), (seed % 256, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


async def first_step(scheduler: Scheduler, job: Job, content: bytes, style: bytes) -> float:
    """Seconds from submit to the first step's Progress event; the job is then cancelled."""
    began = time.perf_counter()
    handle = await scheduler.submit(job, content=content, styles=[style])
    async for event in handle.events():
        if isinstance(event, Progress):
            seconds = time.perf_counter() - began
            await handle.cancel("benchmark: first step seen")
            await handle.wait()
            return seconds
    raise RuntimeError(f"job ended before its first step: {handle.outcome}")


async def wait_for_warm_up(log_path: Path, timeout: float) -> tuple[int, float]:
    """(targets, seconds) from the worker's warm-up log line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := WARMED.search(log_path.read_text(errors="replace")):
            return int(found.group(1)), float(found.group(2))
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no warm-up line in the worker's log:\n{log_path.read_text()[-2000:]}")


async def run(repeats: int, hardware: str, device: str, weights: str) -> None:
    """Start a scheduler, time the jobs, print the medians."""
    with tempfile.TemporaryDirectory(prefix="nstbot-bench-") as data_dir:
        config = Config(
            data_dir=data_dir,
            engine=EngineConfig(device=device, weights=weights, allow_download=False),
            executor=ExecutorConfig(
                devices=(device,), max_queue=0, per_user_queued=0, per_user_running=0,
                progress_interval_s=0.0, preview_interval_s=3600.0,
            ),
            styles=StylesConfig(warm_up=True),
        )  # fmt: skip
        log_path = Path(data_dir) / "worker.log"
        scheduler = Scheduler(config)
        # The worker process inherits this process's stderr: point it at a file to read its log.
        saved = os.dup(2)
        with log_path.open("wb") as log_file:
            os.dup2(log_file.fileno(), 2)
            try:
                began = time.perf_counter()
                await scheduler.start()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
        ready = time.perf_counter() - began
        targets, warm_s = await wait_for_warm_up(log_path, 600)
        print(
            f"worker ready in {ready:.1f} s on {device}; warm-up: {targets} targets in {warm_s} s"
        )
        content = CONTENT.read_bytes()
        # One untimed job first: the worker's and the engine's first-use costs are not the style's.
        primer, _ = build_params(quality="fast", hardware=hardware, limits=Limits())
        await first_step(scheduler, Job.new(user_id=1, params=primer), content,
                         altered(BUILTIN_STYLES[0].read_bytes(), 9999))  # fmt: skip
        rows = []
        for quality in QUALITIES:
            params, _ = build_params(quality=quality, hardware=hardware, limits=Limits())
            times: dict[str, list[float]] = {"preset": [], "upload": []}
            for i in range(repeats):
                style = BUILTIN_STYLES[i % len(BUILTIN_STYLES)]
                kinds = [("preset", style.read_bytes()), ("upload", altered(style.read_bytes(), i))]
                for kind, data in kinds if i % 2 == 0 else kinds[::-1]:
                    job = Job.new(user_id=1, params=params)
                    times[kind].append(await first_step(scheduler, job, content, data))
            preset, upload = (statistics.median(times[k]) for k in ("preset", "upload"))
            rows.append((quality, params, preset, upload))
        await scheduler.stop()
    print(f"submit -> first step, median of {repeats}, {hardware} presets, {weights} weights")
    print("| quality | size / scales | first scale | preset style | uploaded style | saved |")
    print("| --- | --- | --- | --- | --- | --- |")
    for quality, params, preset, upload in rows:
        # The first step needs only the first scale's targets; later scales' come later.
        first = params.min_size if params.scales > 1 else params.size
        print(
            f"| {quality} | {params.size} / {params.scales} | {first} px | {preset:.2f} s "
            f"| {upload:.2f} s "
            f"| {upload - preset:.2f} s ({(upload - preset) / upload:.0%}) |"
        )


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hardware", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", default="random")
    args = parser.parse_args()
    asyncio.run(run(args.repeats, args.hardware, args.device, args.weights))


if __name__ == "__main__":
    sys.exit(main())
