"""The ways to ask: /stylize, the "Stylize" message command, !stylize and @mention."""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.app_commands import Choice
from discord.ext import commands

from nstbot.bot.admission import (
    Requester,
    RequestRefused,
    Ticket,
    admitted,
    answer_refusal,
    channel_allowed,
    message_channel_allowed,
    take_ticket,
)
from nstbot.bot.artworks import (
    Choose,
    in_the_style_of,
    look_up,
    prefix_slots,
    preset_choices,
    slash_slots,
    style_credits,
    style_inputs,
)
from nstbot.bot.delivery import DeliveryInfo
from nstbot.bot.intake import Attachment, Refusal, image_attachments
from nstbot.bot.message_images import message_images, preset_message_images, split_images
from nstbot.bot.origin import InteractionGone, InteractionOrigin, MessageOrigin, Origin
from nstbot.bot.presets import QUALITIES, Limits, build_params, help_table
from nstbot.jobs.errors import SubmitRefused
from nstbot.jobs.model import Job
from nstbot.params import (
    REQUEST_SIZE_MIN,
    SIZE_MAX,
    STRENGTHS,
    ParamsError,
    TransferParams,
)

if TYPE_CHECKING:
    from nstbot.bot.client import NSTBot
    from nstbot.bot.runner import Inputs

log = logging.getLogger(__name__)

Prepared = tuple[Job, list[bytes], DeliveryInfo]
Prepare = Callable[[str], Awaitable[Prepared]]
"""Turns a new job id into the job, its input bytes and its delivery info (opening progress)."""

PREFIX_USAGE = (
    f"Usage: `{{p}}stylize [{'|'.join(QUALITIES)}] [{'|'.join(STRENGTHS)}] [size=N] [seed=N] "
    "[colors] [timelapse] [preset=NAME] [preset2=NAME]` "
    "with two images attached (photo first, artwork second), or one artwork attached in a "
    "reply to a message with the photo. With `preset=NAME` (see `/nst styles`) attach only "
    "the photo, or reply to it."
)
PRESET_WORDS = ("preset", "preset2")


@dataclass(frozen=True)
class Options:
    """What the requester chose; None means the default."""

    quality: str | None = None
    strength: str = TransferParams.strength
    size: int | None = None
    preserve_colors: bool = False
    seed: int | None = None
    timelapse: bool = False
    """Send the animation of the painting with the result."""
    preset: str | None = None
    preset2: str | None = None

    @property
    def presets(self) -> tuple[str | None, str | None]:
        """The `preset=` and `preset2=` names (prefix form)."""
        return (self.preset, self.preset2)


def parse_options(text: str) -> Options:
    """Parse prefix-command words like `best high size=512 seed=7 colors`; Refusal on junk."""
    values: dict[str, Any] = {}
    for word in text.lower().split():
        key, _, value = word.partition("=")
        if word in QUALITIES:
            values["quality"] = word
        elif word in STRENGTHS:
            values["strength"] = word
        elif word in ("colors", "colours", "preserve_colors", "keep-colors"):
            values["preserve_colors"] = True
        elif word in ("timelapse", "time-lapse"):
            values["timelapse"] = True
        elif key in ("size", "seed") and value.isdigit():
            values[key] = int(value)
        elif key in PRESET_WORDS and value:
            values[key] = value
        elif word.endswith("px") and word[:-2].isdigit():
            values["size"] = int(word[:-2])
        else:
            raise Refusal(f"I don't understand `{word[:40]}`.")
    size = values.get("size")
    if size is not None and not REQUEST_SIZE_MIN <= size <= SIZE_MAX:
        raise Refusal(f"The size must be between {REQUEST_SIZE_MIN} and {SIZE_MAX} pixels.")
    return Options(**values)


class Stylize(commands.Cog):
    """Stylization requests from every surface."""

    def __init__(self, bot: NSTBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Stylize", callback=self.stylize_message)
        # The same checks, in the same order, as the slash command's decorators.
        self.menu.add_check(channel_allowed)
        self.menu.add_check(admitted)

    async def cog_load(self) -> None:
        """Register the message command (context menus cannot be declared inside a cog)."""
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        """Unregister the message command."""
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    # --- slash command --------------------------------------------------------------------

    @app_commands.command(name="stylize", description="Repaint a photo in the style of an artwork")
    @app_commands.describe(
        content="The photo to repaint",
        style="The artwork whose style to borrow (or pick a preset)",
        preset="A style from the library instead of an upload (/nst styles shows them)",
        style2="A second artwork to blend in (optional)",
        preset2="A second style from the library to blend in (optional)",
        strength="How strongly the style takes over (default medium)",
        size="Longest side of the result in pixels (capped by quality and server settings)",
        preserve_colors="Keep the photo's colours and take only the brush work",
        quality="fast, balanced or best: more steps and scales take longer",
        seed="Random seed, to repeat a result exactly",
        timelapse="Also send an animation of the painting, from your photo to the result",
    )
    @app_commands.choices(
        strength=[Choice(name=s, value=s) for s in STRENGTHS],
        quality=[Choice(name=q, value=q) for q in QUALITIES],
    )
    @app_commands.autocomplete(preset=preset_choices, preset2=preset_choices)
    # Checks run bottom-up: the channel first, then admission takes the cooldown and a slot.
    @app_commands.check(admitted)
    @app_commands.check(channel_allowed)
    async def stylize(
        self,
        interaction: discord.Interaction[Any],
        content: discord.Attachment,
        style: discord.Attachment | None = None,
        preset: str | None = None,
        style2: discord.Attachment | None = None,
        preset2: str | None = None,
        strength: str = TransferParams.strength,
        size: app_commands.Range[int, REQUEST_SIZE_MIN, SIZE_MAX] | None = None,
        preserve_colors: bool = False,
        quality: str | None = None,
        seed: app_commands.Range[int, 0, 2**53] | None = None,
        timelapse: bool = False,
    ) -> None:
        """/stylize content style|preset [style2|preset2] [strength] [size] [preserve_colors]
        [quality] [seed] [timelapse]."""
        origin = InteractionOrigin(interaction, self.bot.clock)
        opts = Options(quality, strength, size, preserve_colors, seed, timelapse=timelapse)

        async def prepare(job_id: str) -> Prepared:
            slots = slash_slots(style, preset, style2, preset2)
            return await self._prepare(origin, content, slots, opts, job_id)

        await self.handle(origin, take_ticket(interaction), prepare)

    async def stylize_message(
        self, interaction: discord.Interaction[Any], message: discord.Message
    ) -> None:
        """Message command: the first image is the photo, the next one or two the artworks."""
        origin = InteractionOrigin(interaction, self.bot.clock)

        async def prepare(job_id: str) -> Prepared:
            content, styles = split_images(image_attachments(message.attachments))
            return await self._prepare(origin, content, list(styles), Options(), job_id)

        await self.handle(origin, take_ticket(interaction), prepare)

    @app_commands.command(name="stylize-help", description="How /stylize works, with an example")
    async def stylize_help(self, interaction: discord.Interaction[Any]) -> None:
        """Explain the options and what each quality costs on this host."""
        await interaction.response.send_message(
            self.help_text(interaction.guild_id), ephemeral=True
        )

    def help_text(self, guild_id: int | None) -> str:
        """The help message, with this server's caps."""
        limits = self.limits(guild_id)
        config = self.bot.config
        p = config.bot.prefix
        hardware = "a GPU" if self.bot.hardware() == "gpu" else "CPU only (no GPU)"
        lines = [
            "**/stylize** repaints your photo in the style of an artwork.",
            "`content`: the photo · `style`: the artwork · `style2`: a second artwork to blend",
            "`preset` / `preset2`: a style from the library instead of an upload; type to "
            "search, `/nst styles` shows them all",
            "`strength`: low / medium / high · `preserve_colors`: keep the photo's colours",
            "`size`: longest side in pixels · `seed`: repeat a result exactly",
            *([timelapse_help(config.timelapse_hours)] if config.timelapse.enabled else []),
            f"`quality` (this bot runs on {hardware}):",
            help_table(self.bot.hardware(), limits),
            "Example: `/stylize content:cat.jpg style:starry-night.jpg strength:high`",
            "With a preset: `/stylize content:cat.jpg preset:starry-night`",
            "Server admins add styles with `/nst style add name image` "
            "(and remove them with `/nst style remove name`).",
            "You can also right-click a message with two images → Apps → **Stylize**.",
        ]
        if config.bot.message_commands:
            lines.append(PREFIX_USAGE.format(p=p))
        return "\n".join(lines)

    # --- prefix command, reply and mention ------------------------------------------------

    @commands.command(name="stylize")
    @commands.check(message_channel_allowed)
    # Checked before any download: the bot must be able to answer in the channel at all.
    @commands.bot_has_permissions(send_messages=True, read_message_history=True)
    async def stylize_prefix(self, ctx: commands.Context[Any], *, options: str = "") -> None:
        """!stylize [options] with attachments, or in a reply; a bare mention comes here too."""
        # RequestRefused propagates to on_command_error, which answers every refusal.
        ticket = self.bot.admission.admit(Requester.of_message(ctx.message))
        origin = MessageOrigin(ctx.message)
        try:
            opts = parse_options(options)
            if any(opts.presets):
                content, uploads = await preset_message_images(ctx.message)
                slots = prefix_slots(uploads, opts.presets)
            else:
                content, styles = await message_images(ctx.message)
                slots = list(styles)
        except Refusal as exc:
            ticket.release()
            usage = PREFIX_USAGE.format(p=self.bot.config.bot.prefix)
            await origin.refuse(f"{exc}\n{usage}")
            return
        await self.handle(origin, ticket, self._from_attachments(origin, content, slots, opts))

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """A bare mention of the bot with images attached is `!stylize` without options."""
        me = self.bot.user
        if me is None or message.author.bot or not self.bot.config.bot.message_commands:
            return
        if message.content.strip() in (f"<@{me.id}>", f"<@!{me.id}>"):
            ctx = await self.bot.get_context(message)
            # Invoked as the command itself, so its checks and error handler apply unchanged;
            # the mention is the whole message, so nothing is left to read as options.
            ctx.view.read_rest()
            ctx.command = self.stylize_prefix
            ctx.invoked_with = self.stylize_prefix.name
            await self.bot.invoke(ctx)

    # --- "Run again" ----------------------------------------------------------------------

    async def run_again(self, interaction: discord.Interaction[Any], inputs: Inputs) -> None:
        """The "Run again" button: same images and parameters, a new seed, for the presser.

        A button is no app command, so the checks the commands' decorators run are called here.
        """
        who = Requester.of_interaction(interaction)
        try:
            self.bot.admission.check_channel(who)
            ticket = self.bot.admission.admit(who)
        except RequestRefused as exc:
            await answer_refusal(interaction, exc)
            return
        origin = InteractionOrigin(interaction, self.bot.clock)
        await self.handle(origin, ticket, functools.partial(self._again, origin, inputs))

    async def _again(self, origin: Origin, inputs: Inputs, job_id: str) -> Prepared:
        params = inputs.params.replace(seed=random.randrange(2**31))
        quality = str(params.extra.get("quality", "balanced"))
        n_styles = len(inputs.blobs) - 1
        job, info = await self._open_job(origin, job_id, params, quality, n_styles, [])
        return job, inputs.blobs, info

    # --- the shared path ------------------------------------------------------------------

    def limits(self, guild_id: int | None) -> Limits:
        """Config caps narrowed by the server's settings."""
        cfg = self.bot.config.bot
        settings = self.bot.settings.get(guild_id)
        sizes = [s for s in (cfg.max_size, settings.max_size) if s]
        return Limits(
            max_size=min(sizes) if sizes else 0,
            max_steps=cfg.max_steps,
            max_quality=settings.max_quality,
        )

    async def handle(self, origin: Origin, ticket: Ticket | None, prepare: Prepare) -> None:
        """Acknowledge, prepare, submit; every refusal goes back to the requester only.

        The admission ticket is settled once the job is submitted and released on any other end.
        """
        job_id = Job.new(user_id=origin.user_id).id
        if ticket is None:
            # Every entry point admits first; a path that forgot must not run unlimited.
            log.error("job %s: request reached handle() without admission", job_id)
            await origin.ack()
            await origin.refuse(f"Something went wrong on my side. (job `{job_id}`)")
            return
        try:
            refusal = await self._submit(origin, prepare, job_id)
            if refusal is None:
                ticket.settle()
        finally:
            # Given back before any answer: a retry prompted by it must find the hold released.
            ticket.release()
        if refusal:
            await origin.refuse(refusal)

    async def _submit(self, origin: Origin, prepare: Prepare, job_id: str) -> str | None:
        """Acknowledge, prepare and submit: None once submitted, else what to tell the user."""
        try:
            await origin.ack()
            job, blobs, info = await prepare(job_id)
            await self.bot.runner.submit(job, blobs, info)
        except InteractionGone as exc:
            # Discord no longer takes any answer on this interaction: nothing to send.
            log.info("job %s: dropped, %s", job_id, exc)
            return ""
        except Refusal as exc:
            log.info("job %s: refused: %s", job_id, exc)
            return str(exc)
        except SubmitRefused as exc:
            log.info("job %s: queue refused: %s", job_id, exc.message)
            self.bot.runner.count_refused()
            return exc.message
        except Exception:
            log.exception("job %s: request failed", job_id)
            return f"Something went wrong on my side; please try again. (job `{job_id}`)"
        return None

    def _from_attachments(
        self,
        origin: Origin,
        content: discord.Attachment,
        styles: list[Choose],
        opts: Options,
    ) -> Prepare:
        return functools.partial(self._prepare, origin, content, styles, opts)

    async def _prepare(
        self,
        origin: Origin,
        content: discord.Attachment,
        styles: list[Choose],
        opts: Options,
        job_id: str,
    ) -> Prepared:
        bot = self.bot
        artworks = await look_up(bot.styles, origin.guild_id, styles)
        quality = opts.quality or bot.config.bot.default_quality
        seed = opts.seed if opts.seed is not None else random.randrange(2**31)
        try:
            params, notes = build_params(
                quality=quality,
                hardware=bot.hardware(),
                limits=self.limits(origin.guild_id),
                size=opts.size,
                strength=opts.strength,
                preserve_colors=opts.preserve_colors,
                seed=seed,
                n_styles=len(styles),
            )
        except (ParamsError, ValueError) as exc:
            raise Refusal(f"{exc}.") from None
        if opts.timelapse:
            # A label in the job's params: the journal and "Run again" keep it with them.
            params = params.replace(extra={**params.extra, "timelapse": True})
        credits = style_credits(artworks)
        if credits:
            # Carried with the job, so the summary and "Run again" name the style.
            params = params.replace(extra={**params.extra, "styles": credits})
        inputs = await style_inputs(artworks)
        blobs = await bot.intake.load_all(Attachment.from_discord(content), inputs, params.size)
        job, info = await self._open_job(origin, job_id, params, quality, len(styles), notes)
        return job, blobs, info

    async def _open_job(
        self,
        origin: Origin,
        job_id: str,
        params: TransferParams,
        quality: str,
        n_styles: int,
        notes: list[str],
    ) -> tuple[Job, DeliveryInfo]:
        """The Job and its DeliveryInfo, with the progress message opened."""
        now = self.bot.clock()
        info = DeliveryInfo(
            channel_id=origin.channel_id,
            user_id=origin.user_id,
            guild_id=origin.guild_id,
            summary=describe(params, quality, n_styles, notes),
            requested_at=now,
            **origin.delivery_fields(),
        )
        info.message_id = await origin.open_progress()
        job = Job(
            id=job_id,
            user_id=origin.user_id,
            params=params,
            guild_id=origin.guild_id,
            channel_id=origin.channel_id,
            created_at=now,
        )
        return job, info


def timelapse_help(hours: float) -> str:
    """The /stylize-help line about timelapses."""
    return (
        "`timelapse`: also send an animation of the painting, from the photo to the result; "
        f"or press **Timelapse** on a result, up to {hours:g} h after it is made"
    )


def describe(params: TransferParams, quality: str, n_styles: int, notes: list[str]) -> str:
    """One line of parameters for the progress and result messages."""
    parts = [
        f"{quality}",
        f"{params.size} px",
        f"{params.steps} steps",
        f"strength {params.strength}",
        f"seed {params.seed}",
    ]
    style_line = in_the_style_of(params.extra.get("styles"))
    if style_line:
        parts.insert(0, style_line)
    if params.preserve_colors:
        parts.append("colours kept")
    if n_styles > 1:
        parts.append(f"{n_styles} styles blended")
    if params.extra.get("timelapse"):
        parts.append("timelapse")
    text = " · ".join(parts)
    if notes:
        text += " (" + "; ".join(notes) + ")"
    return text


async def setup(bot: NSTBot) -> None:
    """Extension entry point."""
    cog = Stylize(bot)
    await bot.add_cog(cog)
    if bot.runner is not None:
        bot.runner.requester_again = cog.run_again
