"""Submitting jobs and following them: progress edits, buttons, the final delivery, recovery."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import discord

from nstbot.bot.delivery import (
    UPLOAD_HEADROOM,
    Deliverer,
    DeliveryInfo,
    Outcome,
    http_error_summary,
)
from nstbot.bot.origin import tell_privately
from nstbot.bot.progress import ProgressReporter, format_duration, render_progress, render_queued
from nstbot.bot.timelapse import (
    NOT_RECORDED,
    TURNED_OFF,
    ResultFiles,
    answer_press,
    did_not_fit,
    open_frames,
)
from nstbot.bot.views import again_view, cancel_view, may_cancel
from nstbot.config import Config
from nstbot.jobs.model import Cancelled, Failed, Finished, Job, Progress, Queued, Started
from nstbot.metrics import Metrics
from nstbot.params import TransferParams

if TYPE_CHECKING:
    from discord.ext import commands
    from discord.interactions import Interaction

    from nstbot.jobs.scheduler import JobHandle, Scheduler

log = logging.getLogger(__name__)

# "Run again" needs the inputs; they are kept in memory for recent jobs only.
INPUT_CACHE_BYTES = 64 << 20


@dataclass
class Inputs:
    """What a job was made of, kept so that "Run again" can resubmit it."""

    blobs: list[bytes]
    params: TransferParams

    @property
    def nbytes(self) -> int:
        """Memory held."""
        return sum(len(b) for b in self.blobs)


class JobRunner:
    """Owns the bot's side of every job from submission to delivery."""

    def __init__(
        self,
        bot: commands.Bot,
        scheduler: Scheduler,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.bot = bot
        self.metrics = metrics
        self.scheduler = scheduler
        self.config = config
        self.clock = clock
        self.deliverer = Deliverer(
            bot,
            clock=clock,
            token_lifetime_s=config.bot.token_lifetime_s,
            token_margin_s=config.bot.token_margin_s,
        )
        self.handles: dict[str, JobHandle] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.cancelled_by: dict[str, int] = {}
        self._inputs: OrderedDict[str, Inputs] = OrderedDict()
        self.requester_again: Callable[[Interaction[Any], Inputs], Awaitable[None]] | None = None
        """Set by the stylize cog: resubmits a recent job for whoever pressed "Run again"."""

    # --- limits --------------------------------------------------------------------------

    def active_jobs(self, guild_id: int | None, user_id: int) -> int:
        """Jobs of this user in this server that are waiting or running."""
        return sum(
            1
            for row in self.scheduler.queue_snapshot()
            if row.user_id == user_id and row.guild_id == guild_id
        )

    # --- submission -----------------------------------------------------------------------

    async def submit(self, job: Job, blobs: list[bytes], info: DeliveryInfo) -> JobHandle:
        """Submit to the scheduler (SubmitRefused propagates) and start following the job."""
        job = _with_delivery(job, info)
        handle = await self.scheduler.submit(job, content=blobs[0], styles=blobs[1:])
        log.info(
            "job %s: submitted by user %s in guild %s (%s px, %s steps)",
            job.id,
            job.user_id,
            job.guild_id,
            job.params.size,
            job.params.steps,
        )
        self._remember(job, blobs)
        self.follow(handle, job.id, info)
        return handle

    def follow(self, handle: JobHandle, job_id: str, info: DeliveryInfo) -> None:
        """Follow a job's events in a task until it is delivered."""
        self.handles[job_id] = handle
        task = asyncio.create_task(self._follow(handle, job_id, info), name=f"job-{job_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def recover(self) -> int:
        """Follow the jobs the journal re-queued at start; returns how many."""
        count = 0
        for handle in self.scheduler.recovered():
            job = handle.job
            try:
                info = DeliveryInfo.from_dict(job.delivery)
            except (TypeError, ValueError):
                log.error("job %s: recovered without usable delivery data; dropped", job.id)
                continue
            log.info("job %s: recovered from the journal", job.id)
            self.follow(handle, job.id, info)
            count += 1
        return count

    async def shutdown(self) -> None:
        """Stop following jobs (they stay in the journal and are recovered on the next start)."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    # --- following ------------------------------------------------------------------------

    async def _follow(self, handle: JobHandle, job_id: str, info: DeliveryInfo) -> None:
        cfg = self.config.bot
        view = cancel_view(job_id, info.user_id)
        header = f"<@{info.user_id}> · {info.summary}\n" if info.summary else ""

        async def edit(content: str, preview: bytes | None) -> bool:
            return await self.deliverer.edit_progress(job_id, info, content, preview, view)

        reporter = ProgressReporter(
            edit,
            interval=cfg.edit_interval_s,
            preview_interval=cfg.preview_interval_s,
            job_id=job_id,
        )
        final: Finished | Failed | Cancelled | None = None
        try:
            async for event in handle.events():
                if isinstance(event, Queued):
                    reporter.update(header + render_queued(event.position))
                elif isinstance(event, Started):
                    log.info("job %s: started on %s", job_id, event.device or "a worker")
                    reporter.update(header + "🎨 Starting…")
                elif isinstance(event, Progress):
                    text = render_progress(event.step, event.total, event.eta)
                    reporter.update(header + text, event.preview)
                elif isinstance(event, Finished | Failed | Cancelled):
                    final = event
                    break
        except asyncio.CancelledError:
            await reporter.close()
            raise
        except Exception:
            log.exception("job %s: following the job failed", job_id)
            final = Failed("Something went wrong on my side.", detail="event stream failed")
        await reporter.close()
        if final is None and handle.interrupted:
            # The scheduler stopped first; the journal resumes the job on the next start.
            log.info("job %s: interrupted by shutdown; left to the journal", job_id)
            self.handles.pop(job_id, None)
            return
        self._count(final)
        try:
            outcome = await self._deliver_final(job_id, info, final, wants_timelapse(handle.job))
        except Exception as exc:
            log.exception("job %s: delivery crashed", job_id)
            outcome = Outcome(False, "none", f"delivery crashed: {type(exc).__name__}")
        finally:
            self.handles.pop(job_id, None)
        try:
            await self.scheduler.record_delivery(job_id, outcome.ok, outcome.detail)
        except Exception:
            log.exception("job %s: could not record the delivery", job_id)
        log.info("job %s: delivered=%s via %s", job_id, outcome.ok, outcome.route)

    def _count(self, final: Finished | Failed | Cancelled | None) -> None:
        if self.metrics is None:
            return
        if isinstance(final, Finished):
            stats = final.stats or {}
            self.metrics.job_finished("finished", stats.get("seconds"), stats.get("wait_s"))
        else:
            self.metrics.job_finished("cancelled" if isinstance(final, Cancelled) else "failed")

    def count_refused(self) -> None:
        """Count a request the queue turned away."""
        if self.metrics is not None:
            self.metrics.job_refused()

    async def _deliver_final(
        self,
        job_id: str,
        info: DeliveryInfo,
        final: Finished | Failed | Cancelled | None,
        timelapse: bool = False,
    ) -> Outcome:
        elapsed = format_duration(self.clock() - info.requested_at) if info.requested_at else "?"
        if isinstance(final, Finished):
            log.info("job %s: finished (%d bytes)", job_id, len(final.image))
            picture = await asyncio.to_thread(_open_png, final.image)
            files, view = await self._result_files(job_id, info, final, picture, timelapse)
            text = f"✅ Done in {elapsed}. {info.summary}".strip()
            return await self.deliverer.deliver(job_id, info, text, encoder=files, view=view)
        if isinstance(final, Cancelled):
            who = self.cancelled_by.pop(job_id, None)
            by = f" by <@{who}>" if who is not None else ""
            log.info("job %s: cancelled (%s)", job_id, final.reason)
            return await self.deliverer.deliver(job_id, info, f"🛑 Cancelled{by}.")
        message = final.message if isinstance(final, Failed) else "The job ended unexpectedly."
        if isinstance(final, Failed):
            log.warning("job %s: failed: %s (%s)", job_id, final.message, final.detail)
        return await self.deliverer.deliver(job_id, info, f"❌ {message} (job `{job_id}`)")

    async def _result_files(
        self, job_id: str, info: DeliveryInfo, final: Finished, picture: Any, wanted: bool
    ) -> tuple[ResultFiles, discord.ui.View]:
        """The result's files (with its animation when asked for) and its buttons: Timelapse
        while the frames are kept and not already attached."""
        kept = final.timelapse is not None and await self._frames_kept(job_id)
        if not wanted:
            return ResultFiles(picture, job_id), again_view(job_id, info.user_id, timelapse=kept)
        frames = None
        if final.timelapse is not None:
            frames = await asyncio.to_thread(open_frames, final.timelapse, job_id)
        if frames is None:
            note = NOT_RECORDED if self.config.timelapse.enabled else TURNED_OFF
            files = ResultFiles(picture, job_id, note=note)
            return files, again_view(job_id, info.user_id, timelapse=kept)
        files = ResultFiles(picture, job_id, frames, no_fit_note=did_not_fit(kept))
        budget = int(info.upload_limit * UPLOAD_HEADROOM)
        fits = await asyncio.to_thread(files.animation, budget) is not None
        return files, again_view(job_id, info.user_id, timelapse=kept and not fits)

    async def _frames_kept(self, job_id: str) -> bool:
        try:
            return await self.scheduler.timelapse(job_id) is not None
        except OSError as exc:
            log.error("job %s: timelapse frames unreadable: %s", job_id, exc)
            return False

    # --- buttons --------------------------------------------------------------------------

    async def on_cancel_pressed(
        self, interaction: Interaction[Any], job_id: str, owner_id: int
    ) -> None:
        """Cancel for the requester or a moderator; a short 'not yours' for anyone else."""
        perms = interaction.permissions if interaction.guild_id else None
        if not may_cancel(interaction.user.id, owner_id, perms):
            await tell_privately(
                interaction,
                "This isn't your image: only the person who asked (or a moderator) can cancel it.",
            )
            return
        handle = self.handles.get(job_id)
        if handle is None:
            await tell_privately(interaction, "That job has already finished.")
            return
        try:
            await interaction.response.defer()
        except discord.HTTPException as exc:
            # A press Discord no longer takes an answer for (10062, 40060) still means cancel.
            log.info(
                "job %s: cancel press %s not acknowledged: %s",
                job_id,
                interaction.id,
                http_error_summary(exc),
            )
        self.cancelled_by[job_id] = interaction.user.id
        log.info("job %s: cancel requested by user %s", job_id, interaction.user.id)
        await handle.cancel()

    async def on_again_pressed(
        self, interaction: Interaction[Any], job_id: str, owner_id: int
    ) -> None:
        """Resubmit a recent job with a new seed, for whoever pressed."""
        if self.requester_again is None or job_id not in self._inputs:
            await tell_privately(interaction, "I no longer have those images; run /stylize again.")
            return
        await self.requester_again(interaction, self._inputs[job_id])

    async def on_timelapse_pressed(
        self, interaction: Interaction[Any], job_id: str, owner_id: int
    ) -> None:
        """The animation of a finished job, for whoever pressed (only they see it)."""
        hours = self.scheduler.timelapse_hours
        try:
            what = await answer_press(interaction, job_id, self.scheduler.timelapse, hours)
        except Exception:
            log.exception("job %s: answering a timelapse press failed", job_id)
            await tell_privately(interaction, "Something went wrong on my side; please try again.")
            return
        log.info("job %s: timelapse pressed by user %s: %s", job_id, interaction.user.id, what)

    def _remember(self, job: Job, blobs: list[bytes]) -> None:
        self._inputs[job.id] = Inputs(blobs, job.params)
        total = sum(i.nbytes for i in self._inputs.values())
        while total > INPUT_CACHE_BYTES and len(self._inputs) > 1:
            _, dropped = self._inputs.popitem(last=False)
            total -= dropped.nbytes


def wants_timelapse(job: Job) -> bool:
    """Whether the requester asked for the animation with the result (Run again keeps it)."""
    return bool(job.params.extra.get("timelapse"))


def _with_delivery(job: Job, info: DeliveryInfo) -> Job:
    return replace(job, delivery=info.to_dict())


def _open_png(data: bytes) -> Any:
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.load()
    return img
