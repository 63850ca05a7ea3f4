"""Start, stop and restart with real worker processes: recovery, workers that cannot start, and
a bot process that never imports torch."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from jobhelpers import ManualBackend, collect, make_config, png, tiny_job

from nstbot.jobs.backend import restart_delay
from nstbot.jobs.journal.journal import Journal
from nstbot.jobs.journal.storage import JobFiles
from nstbot.jobs.model import Failed, Finished, Progress
from nstbot.jobs.scheduler import Scheduler, WorkersUnavailable

IMG, STYLE = png("red"), png("blue")
ROOT = Path(__file__).resolve().parents[2]


async def test_restart_finishes_or_reports_every_job(tmp_path: Path) -> None:
    config = make_config(tmp_path, max_queue=0, per_user_queued=0, per_user_running=0)
    first = Scheduler(config)
    await first.start()
    running = await first.submit(
        tiny_job(1, steps=10, test_step_sleep=0.2), content=IMG, styles=[STYLE]
    )
    queued = [await first.submit(tiny_job(u), content=IMG, styles=[STYLE]) for u in (2, 3)]
    async for event in running.events():
        if isinstance(event, Progress):
            break
    await first.stop()
    assert running.interrupted and all(h.interrupted for h in queued)

    # As if a process had died: one job left "running", one whose input files are gone.
    journal, files = Journal(tmp_path / "journal.sqlite3"), JobFiles(tmp_path / "jobs")
    crashed, lost = tiny_job(4), tiny_job(5)
    for job in (crashed, lost):
        journal.add(job, files.write_inputs(job.id, IMG, [STYLE]))
    journal.mark_running(crashed.id, 1, time.time())
    files.remove(lost.id)
    journal.close()

    second = Scheduler(config)
    await second.start()
    handles = {h.id: h for h in second.recovered()}
    assert set(handles) == {running.id, queued[0].id, queued[1].id, crashed.id, lost.id}
    assert all(h.recovered for h in handles.values())
    assert handles[running.id].job == running.job  # delivery details included
    outcomes = {job_id: (await collect(h, 120))[-1] for job_id, h in handles.items()}
    assert isinstance(outcomes.pop(lost.id), Failed)
    assert all(isinstance(o, Finished) for o in outcomes.values()), outcomes
    for job_id in (running.id, queued[0].id, crashed.id):
        await second.record_delivery(job_id, True, None)
    await second.stop()

    # Results nobody recorded a delivery for are handed over once more, with their image.
    third = Scheduler(config, backend=ManualBackend())
    await third.start()
    (again,) = third.recovered()
    assert again.id == queued[1].id
    assert isinstance(again.outcome, Finished) and again.outcome.image.startswith(b"\x89PNG")
    await third.stop()


async def test_a_worker_that_cannot_start_makes_submit_fail_fast(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    missing = tmp_path / "missing-vgg19.pth"
    config = dataclasses.replace(
        config, engine=dataclasses.replace(config.engine, weights=str(missing))
    )
    scheduler = Scheduler(config)
    await scheduler.start()
    try:
        health = scheduler.health()
        assert not health.ok and health.workers_alive == 0
        assert health.unavailable_reason and str(missing) in health.unavailable_reason
        assert health.last_error == health.unavailable_reason
        worker = health.workers[0]
        assert worker.start_failed and worker.next_restart_in is not None
        asked = time.monotonic()
        with pytest.raises(WorkersUnavailable) as refused:
            await scheduler.submit(tiny_job(), content=IMG, styles=[STYLE])
        assert time.monotonic() - asked < 1.0
        assert "weights not found" in str(refused.value)
    finally:
        await scheduler.stop()


def test_restart_backoff_grows_to_a_cap() -> None:
    delays = [restart_delay(n, cap=60.0) for n in range(1, 12)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert delays[-1] == 60.0 and delays == sorted(delays)


def test_the_bot_process_never_imports_torch(tmp_path: Path) -> None:
    script = tmp_path / "bot_side.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, io, sys
            from PIL import Image
            from nstbot.config import Config, EngineConfig, ExecutorConfig
            from nstbot.jobs.model import Finished, Job
            from nstbot.jobs.scheduler import Scheduler
            from nstbot.params import TransferParams

            def png(color):
                buffer = io.BytesIO()
                Image.new("RGB", (40, 40), color).save(buffer, "PNG")
                return buffer.getvalue()

            async def main():
                config = Config(
                    data_dir={str(tmp_path / "data")!r},
                    engine=EngineConfig(device="cpu", weights="random", allow_download=False),
                    executor=ExecutorConfig(devices=("cpu",)),
                )
                scheduler = Scheduler(config)
                await scheduler.start()
                job = Job.new(user_id=1, params=TransferParams(size=32, min_size=32, scales=1,
                                                               steps=1))
                handle = await scheduler.submit(job, content=png("red"), styles=[png("blue")])
                result = await handle.wait()
                await scheduler.stop()
                assert isinstance(result, Finished), result
                leaked = [m for m in sys.modules if m == "torch" or m.startswith("nstbot.engine")]
                print("LEAKED", leaked)

            if __name__ == "__main__":
                asyncio.run(main())
            """
        )
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=180, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "LEAKED []" in done.stdout, done.stdout + done.stderr[-3000:]
