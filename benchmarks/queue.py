"""Queue overhead per job beyond the engine's own compute.

Runs N tiny jobs one after another through a real Scheduler and worker process, and reports:
  submit -> Started   (journal write, input files, dispatch, pipe, worker pick-up)
  done -> Finished    (worker's stylize() returned -> the caller reads Finished: PNG encode, pipe,
                       event loop, handle)
as p50 / p95 / max in milliseconds. Figures, not pass/fail; the target is p95 < 50 ms each.

    .venv/bin/python -m benchmarks.queue [--jobs 100] [--size 32] [--device cpu]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file's name shadows the standard library's `queue` (which asyncio and concurrent.futures
# import) when run as a script, because the script's folder comes first on sys.path: drop it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from benchmarks.common import latency_line, solid_png  # noqa: E402
from nstbot.config import Config, EngineConfig, ExecutorConfig  # noqa: E402
from nstbot.jobs.model import Finished, Job, Started  # noqa: E402
from nstbot.jobs.scheduler import Scheduler  # noqa: E402
from nstbot.params import TransferParams  # noqa: E402


async def run(jobs: int, size: int, device: str, weights: str) -> None:
    """Start a scheduler, run `jobs` jobs in sequence, print the figures."""
    with tempfile.TemporaryDirectory(prefix="nstbot-bench-") as data_dir:
        config = Config(
            data_dir=data_dir,
            engine=EngineConfig(device=device, weights=weights, allow_download=False),
            executor=ExecutorConfig(devices=(device,), max_queue=0, per_user_queued=0),
        )
        scheduler = Scheduler(config)
        began = time.perf_counter()
        await scheduler.start()
        print(f"worker ready in {time.perf_counter() - began:.2f} s on {device}")
        content, style = solid_png("red", size), solid_png("blue", size)
        params = TransferParams(size=size, min_size=size, scales=1, steps=1)
        to_started, to_finished, compute, total = [], [], [], []
        for i in range(jobs + 1):
            job = Job.new(user_id=i % 7, params=params)
            t_submit = time.perf_counter()
            handle = await scheduler.submit(job, content=content, styles=[style])
            async for event in handle.events():
                if isinstance(event, Started):
                    t_started = time.perf_counter()
                elif isinstance(event, Finished):
                    now_wall, t_end = time.time(), time.perf_counter()
                    if i == 0:
                        break  # warm-up: first-use costs in the worker and the engine
                    to_started.append((t_started - t_submit) * 1000)
                    to_finished.append((now_wall - event.stats["worker_done_at"]) * 1000)
                    compute.append(event.stats["seconds"] * 1000)
                    total.append((t_end - t_submit) * 1000)
        await scheduler.stop()
    print(f"{jobs} jobs of {size} px, 1 step, one at a time")
    print(latency_line("submit -> Started", to_started))
    print(latency_line("done -> Finished", to_finished))
    overhead = [t - c for t, c in zip(total, compute, strict=True)]
    print(latency_line("total - engine compute", overhead))
    print(latency_line("engine compute", compute))


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", default="random")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny images gain nothing from threads
    asyncio.run(run(args.jobs, args.size, args.device, args.weights))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
