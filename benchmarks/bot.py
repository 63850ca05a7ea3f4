"""Bot responsiveness against the fake Discord: defer latency and event-loop lag under load.

Runs the real bot (real scheduler, one CPU worker with random weights) in this process's event loop
and the fake Discord in a thread with its own loop, so the fake's work does not count as the bot's
lag. Sends /stylize requests from distinct users while jobs run, and prints:

- defer latency: INTERACTION_CREATE leaving the fake → the defer callback arriving (p50, p95, max);
- event-loop lag: how late a 10 ms sleep in the bot's loop wakes up, sampled while a job runs.

Targets: defer p95 < 100 ms, loop lag p99 < 20 ms. Figures, not pass/fail.

    .venv/bin/python -m benchmarks.bot [--requests 40] [--interval 0.25] [--steps 8]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

# Run as a plain script, the folder would come first on sys.path, where benchmarks/queue.py
# shadows the standard library's `queue` (imported lazily, later): drop it, add the e2e helpers.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent / "tests" / "e2e"))

from fakediscord import FakeDiscord  # noqa: E402
from harness import make_config, picture, start_bot, stylize_data  # noqa: E402

from benchmarks.common import percentile  # noqa: E402
from nstbot.config import ExecutorConfig  # noqa: E402

T = TypeVar("T")


class FakeThread:
    """The fake Discord on its own event loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake: FakeDiscord = self.call(self._make())

    async def _make(self) -> FakeDiscord:
        fake = FakeDiscord()
        await fake.start()
        return fake

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the fake's loop and wait for it (blocking)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def acall(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the fake's loop and await it from another loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def close(self) -> None:
        """Stop the fake and its loop."""
        self.call(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def lag_monitor(samples: list[float], busy: Callable[[], bool], stop: asyncio.Event) -> None:
    """Sample how late a 10 ms sleep wakes up, while `busy()` says a job runs."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(0.01)
        late = time.perf_counter() - start - 0.01
        if busy():
            samples.append(late)


async def main(args: argparse.Namespace) -> None:
    side = FakeThread()
    fake = side.fake
    with tempfile.TemporaryDirectory() as tmp:
        config = make_config(
            fake,
            Path(tmp),
            max_size=64,
            max_steps=args.steps,
            edit_interval_s=3.0,
            preview_interval_s=15.0,
        )
        config = type(config)(
            data_dir=config.data_dir,
            engine=config.engine,
            images=config.images,
            executor=ExecutorConfig(devices=("cpu",), max_queue=1000, per_user_queued=5),
            bot=config.bot,
        )
        t0 = time.perf_counter()
        running = await start_bot(fake, config)
        print(f"bot ready in {time.perf_counter() - t0:.1f} s (worker start included)")
        scheduler = running.bot.scheduler
        assert scheduler is not None
        lag: list[float] = []
        stop = asyncio.Event()
        monitor = asyncio.create_task(
            lag_monitor(lag, lambda: scheduler.health().running > 0, stop)
        )
        content = picture(64, 48)
        style = picture(40, 40, seed=3)
        sent: list[tuple[str, float]] = []
        for _ in range(args.requests):
            c = fake.attachment(content, "photo.png", "image/png", width=64, height=48)
            s = fake.attachment(style, "art.png", "image/png", width=40, height=40)
            payload = fake.interaction(stylize_data(fake, c, s), user_id=fake.snowflake())
            at = await side.acall(fake.dispatch("INTERACTION_CREATE", payload))
            sent.append((payload["id"], at))
            await asyncio.sleep(args.interval)
        deadline = time.monotonic() + 30
        defer_ms: list[float] = []
        while time.monotonic() < deadline:
            by_id = {
                r.path.split("/")[2]: r.at
                for r in list(fake.requests)
                if r.method == "POST" and r.path.startswith("/interactions/")
            }
            if all(i in by_id for i, _ in sent):
                defer_ms = [(by_id[i] - at) * 1000 for i, at in sent]
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(args.settle)
        stop.set()
        await monitor
        stats = scheduler.stats()
        await running.stop()
    side.close()

    print(f"requests: {args.requests}, one every {args.interval} s; jobs 64 px, {args.steps} steps")
    print(f"jobs finished while measuring: {stats['finished']}")
    if defer_ms:
        print(
            f"defer latency ms: p50 {statistics.median(defer_ms):.1f}  "
            f"p95 {percentile(defer_ms, 95):.1f}"
            f"  max {max(defer_ms):.1f}  (n={len(defer_ms)}; target p95 < 100)"
        )
    else:
        print("defer latency: some requests were never deferred")
    if lag:
        lag_ms = [x * 1000 for x in lag]
        print(
            f"loop lag ms while a job runs: p50 {statistics.median(lag_ms):.2f}"
            f"  p99 {percentile(lag_ms, 99):.2f}  max {max(lag_ms):.2f}"
            f"  (n={len(lag_ms)}; target p99 < 20)"
        )
    else:
        print("loop lag: no sample while a job ran")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to keep sampling lag")
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(parser.parse_args()))
