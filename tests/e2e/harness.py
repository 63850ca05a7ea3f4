"""Starting the real bot (real scheduler, real worker process) against the fake Discord."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fakediscord import MEMBER_PERMISSIONS, FakeDiscord
from PIL import Image

from nstbot.bot.client import NSTBot
from nstbot.config import BotConfig, Config, EngineConfig, ExecutorConfig, WebConfig

TOKEN = "fake-token-abc.def.ghi"
MANAGER = str(int(MEMBER_PERMISSIONS) | (1 << 5))  # MANAGE_GUILD


class Clock:
    """Wall time plus an offset the tests can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Jump forward."""
        self.offset += seconds


def make_config(fake: FakeDiscord, data_dir: Path, **bot: Any) -> Config:
    """CPU worker with random weights, tiny sizes and few steps; the bot aimed at the fake."""
    bot_cfg = BotConfig(
        api_base=fake.api_base,
        attachment_hosts=("127.0.0.1",),
        message_commands=True,
        edit_interval_s=0.2,
        preview_interval_s=0.5,
        hardware="cpu",
        default_quality="fast",
        max_size=48,
        max_steps=3,
        download_timeout_s=10.0,
    )
    return Config(
        data_dir=str(data_dir),
        engine=EngineConfig(device="cpu", weights="random", allow_download=False),
        executor=ExecutorConfig(
            devices=("cpu",),
            max_queue=3,
            per_user_queued=3,
            progress_interval_s=0.05,
            preview_interval_s=0.2,
            heartbeat_timeout_s=60.0,
        ),
        web=WebConfig(port=0),
        bot=replace(bot_cfg, **bot),
    )


def picture(w: int = 64, h: int = 48, fmt: str = "PNG", seed: int = 0) -> bytes:
    """A small gradient image."""
    img = Image.new("RGB", (w, h))
    img.putdata(
        [
            ((x * 4 + seed) % 256, (y * 5) % 256, (x * y + seed * 7) % 256)
            for y in range(h)
            for x in range(w)
        ]
    )
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


@dataclass
class Running:
    """A started bot and what the tests need of it."""

    bot: NSTBot
    task: asyncio.Task[None]
    clock: Clock

    async def stop(self) -> None:
        """Close the bot (the journal keeps unfinished jobs)."""
        await self.bot.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 30)


async def start_bot(fake: FakeDiscord, config: Config, clock: Clock | None = None) -> Running:
    """Start the real client and wait until it is ready (workers up, guild cached)."""
    clock = clock or Clock()
    bot = NSTBot(config, clock=clock)
    fake.ready.clear()
    task = asyncio.create_task(bot.start(TOKEN))
    waiter = asyncio.create_task(bot.wait_until_ready())
    done, _ = await asyncio.wait({task, waiter}, timeout=240, return_when="FIRST_COMPLETED")
    if waiter not in done:
        waiter.cancel()
        if task.done():
            task.result()
        raise AssertionError("bot did not become ready")
    return Running(bot, task, clock)


def stylize_data(
    fake: FakeDiscord,
    content: dict[str, Any],
    style: dict[str, Any] | None,
    **options: Any,
) -> dict[str, Any]:
    """Interaction data of `/stylize` with its attachments (`style` None: none for slot 1, as
    with a preset) and optional options (`style2` an attachment payload)."""
    style2 = options.pop("style2", None)
    opts: list[dict[str, Any]] = [{"name": "content", "type": 11, "value": content["id"]}]
    for name, att in (("style", style), ("style2", style2)):
        if att is not None:
            opts.append({"name": name, "type": 11, "value": att["id"]})
    atts = [a for a in (content, style, style2) if a is not None]
    types = {"strength": 3, "quality": 3, "size": 4, "seed": 4, "preserve_colors": 5}
    types["timelapse"] = 5
    types |= {"preset": 3, "preset2": 3}
    for name, value in options.items():
        opts.append({"name": name, "type": types[name], "value": value})
    return fake.slash("stylize", opts, atts)


def decoded_size(data: bytes) -> tuple[int, int]:
    """Width and height of an encoded image."""
    with Image.open(io.BytesIO(data)) as img:
        return img.size


FINAL_MARKS = ("✅", "❌", "🛑")


def is_final(rec: Any) -> bool:
    """Whether a recorded message request carries a job's final message."""
    content = (rec.json or {}).get("content") or ""
    return any(mark in content for mark in FINAL_MARKS)


async def final_webhook_edit(fake: FakeDiscord, token: str, timeout: float = 120) -> Any:
    """The final edit of an interaction's original message."""
    pattern = rf"/webhooks/\d+/{token}/messages/"
    await fake.wait_until(
        lambda: any(is_final(r) and r.status == 200 for r in fake.find("PATCH", pattern)), timeout
    )
    return [r for r in fake.find("PATCH", pattern) if is_final(r) and r.status == 200][-1]


async def final_channel_post(
    fake: FakeDiscord, channel_id: int, starts: str = "", timeout: float = 120
) -> Any:
    """The final message posted in a channel (fallback deliveries), optionally by its start."""
    pattern = rf"^/channels/{channel_id}/messages$"

    def found() -> list[Any]:
        return [
            r
            for r in fake.find("POST", pattern)
            if is_final(r) and r.status == 200 and r.json["content"].startswith(starts)
        ]

    await fake.wait_until(lambda: bool(found()), timeout)
    return found()[-1]


async def ephemeral_followup(fake: FakeDiscord, token: str, timeout: float = 60) -> str:
    """The text of an ephemeral answer to an interaction: a follow-up sent with its token, or
    (for a refusal by a check, before any defer) the interaction's own response."""

    def answers() -> list[dict[str, Any]]:
        out = [r.json for r in fake.find("POST", rf"^/webhooks/\d+/{token}$")]
        out += [
            r.json["data"]
            for r in fake.find("POST", rf"^/interactions/\d+/{token}/callback$")
            if r.json.get("type") == 4
        ]
        return out

    await fake.wait_until(lambda: bool(answers()), timeout)
    (answer,) = answers()
    assert answer["flags"] & 64, "refusal was not ephemeral"
    return str(answer["content"])


async def send_slash(
    fake: FakeDiscord,
    user: int,
    *,
    content: dict[str, Any] | None = None,
    style: dict[str, Any] | None = None,
    upload_limit: int = 10 * 1024 * 1024,
    before: Callable[[dict[str, Any]], None] | None = None,
    no_style: bool = False,
    guild_id: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Dispatch /stylize with two fresh small pictures (or the given attachments; no artwork
    upload with a `preset` or `no_style`); `before` sees the payload first (to install error
    rules for its token); `guild_id` sends it from another server."""
    content = content or fake.attachment(
        picture(64, 48), "photo.png", "image/png", width=64, height=48
    )
    if style is None and not no_style and "preset" not in options:
        style = fake.attachment(
            picture(40, 40, seed=5), "art.png", "image/png", width=40, height=40
        )
    payload = fake.interaction(
        stylize_data(fake, content, style, **options),
        user_id=user,
        upload_limit=upload_limit,
        guild_id=guild_id,
    )
    if before is not None:
        before(payload)
    await fake.dispatch("INTERACTION_CREATE", payload)
    return payload


def button_id(message: dict[str, Any], prefix: str) -> str:
    """The custom_id of the first button on a stored message starting with `prefix`."""
    for row in message.get("components") or []:
        for comp in row.get("components", []):
            if comp.get("custom_id", "").startswith(prefix):
                return str(comp["custom_id"])
    raise AssertionError(f"no {prefix} button on message {message.get('id')}")


async def press(
    fake: FakeDiscord, message_id: int, prefix: str, user: int, *, permissions: str | None = None
) -> dict[str, Any]:
    """Press a button on a message as `user`."""
    msg = fake.messages[message_id]
    data = {"custom_id": button_id(msg, prefix), "component_type": 2}
    kwargs = {"permissions": permissions} if permissions is not None else {}
    payload = fake.interaction(data, user_id=user, itype=3, message=msg, **kwargs)
    await fake.dispatch("INTERACTION_CREATE", payload)
    return payload


async def wait_running(fake: FakeDiscord, token: str, timeout: float = 60) -> int:
    """Wait until a job's progress message shows it running; returns the message id."""
    pattern = rf"/webhooks/\d+/{token}/messages/"
    await fake.wait_until(
        lambda: any(
            "Painting" in ((r.json or {}).get("content") or "") for r in fake.find("PATCH", pattern)
        ),
        timeout,
    )
    return fake.originals[token]


async def wait_queued(fake: FakeDiscord, token: str, timeout: float = 60) -> int:
    """Wait until a job's progress message shows it queued; returns the message id."""
    pattern = rf"/webhooks/\d+/{token}/messages/"
    await fake.wait_until(
        lambda: any(
            "Queued" in ((r.json or {}).get("content") or "") and "Cancel" in str(r.json)
            for r in fake.find("PATCH", pattern)
        ),
        timeout,
    )
    return fake.originals[token]


def with_bot_config(running: Running, **changes: Any) -> Config:
    """Swap some bot settings on the live bot (read at request time); returns the old config."""
    old = running.bot.config
    running.bot.config = replace(old, bot=replace(old.bot, **changes))
    return old


async def start_blocker(running: Running, fake: FakeDiscord) -> tuple[dict[str, Any], int, int]:
    """A long job that keeps the single worker busy: (payload, user, message id)."""
    user = fake.snowflake()
    old = with_bot_config(running, max_steps=2000)
    try:
        payload = await send_slash(fake, user, quality="best")
        await fake.wait_for("POST", rf"/interactions/{payload['id']}/")
        await running.bot.wait_until_ready()
        # The request reads the config while it is prepared: wait until it was submitted.
        await fake.wait_for("PATCH", rf"/webhooks/\d+/{payload['token']}/messages/")
    finally:
        running.bot.config = old
    mid = await wait_running(fake, payload["token"])
    return payload, user, mid


def settings_data(fake: FakeDiscord, **options: object) -> dict[str, Any]:
    """Interaction data of `/nst settings` with options."""
    types = {
        "cooldown": 4,
        "max_size": 4,
        "max_styles": 4,
        "max_styles_mb": 4,
        "queue_limit": 4,
        "all_channels": 5,
        "max_quality": 3,
        "allow_channel": 7,
    }
    opts = [{"name": k, "type": types[k], "value": v} for k, v in options.items()]
    data = fake.slash("nst", [{"name": "settings", "type": 1, "options": opts}])
    if "allow_channel" in options:
        chan = fake.channel(int(str(options["allow_channel"])))
        data["resolved"] = {"channels": {chan["id"]: chan}}
    return data


async def nst_settings(fake: FakeDiscord, perms: str = MANAGER, **options: object) -> str:
    """Run `/nst settings` as a member with `perms`; the ephemeral answer's text."""
    payload = fake.interaction(
        settings_data(fake, **options), user_id=fake.snowflake(), permissions=perms
    )
    await fake.dispatch("INTERACTION_CREATE", payload)
    (answer,) = await fake.wait_for("POST", rf"/interactions/{payload['id']}/")
    assert answer.json["data"]["flags"] & 64
    return str(answer.json["data"]["content"])


async def autocomplete(
    fake: FakeDiscord, data: dict[str, Any], *, guild_id: int | None = None
) -> list[dict[str, Any]]:
    """Send an autocomplete interaction (type 4) and return the choices of its answer (type 8).

    `data` is a command's interaction data with one option marked `"focused": True`.
    """
    payload = fake.interaction(data, user_id=fake.snowflake(), itype=4, guild_id=guild_id)
    await fake.dispatch("INTERACTION_CREATE", payload)
    (answer,) = await fake.wait_for("POST", rf"/interactions/{payload['id']}/")
    assert answer.json["type"] == 8, answer.json
    return list(answer.json["data"]["choices"])
