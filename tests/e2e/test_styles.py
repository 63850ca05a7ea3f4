"""The style library end to end: /nst style add|remove, /nst styles, presets on every entry point.

Real bot, scheduler, worker process and SQLite against the fake Discord; tiny sizes, few steps.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from fakediscord import MEMBER_PERMISSIONS, FakeDiscord
from harness import (
    MANAGER,
    Running,
    autocomplete,
    decoded_size,
    ephemeral_followup,
    final_webhook_edit,
    is_final,
    nst_settings,
    picture,
    press,
    send_slash,
    start_blocker,
    wait_queued,
)
from PIL import Image

pytestmark = pytest.mark.asyncio(loop_scope="module")

STARRY = "in the style of The Starry Night (Vincent van Gogh, 1889)"


def style_data(
    fake: FakeDiscord, sub: str, image: dict[str, Any] | None = None, **options: Any
) -> dict[str, Any]:
    """Interaction data of `/nst style add|remove` (focus an option by passing `focused=NAME`)."""
    focused = options.pop("focused", None)
    opts: list[dict[str, Any]] = [
        {"name": k, "type": 3, "value": v} | ({"focused": True} if k == focused else {})
        for k, v in options.items()
    ]
    if image is not None:
        opts.append({"name": "image", "type": 11, "value": image["id"]})
    command = {"name": "style", "type": 2, "options": [{"name": sub, "type": 1, "options": opts}]}
    return fake.slash("nst", [command], [image] if image is not None else [])


async def answer(
    fake: FakeDiscord, data: dict[str, Any], *, perms: str = MANAGER, guild_id: int | None = None
) -> str:
    """Send a command as a member with `perms`; the text of its one ephemeral answer."""
    payload = fake.interaction(data, user_id=fake.snowflake(), permissions=perms, guild_id=guild_id)
    await fake.dispatch("INTERACTION_CREATE", payload)
    return await ephemeral_followup(fake, payload["token"])


async def add_style(
    fake: FakeDiscord, name: str, data: bytes | None = None, *, perms: str = MANAGER, **opts: Any
) -> str:
    """`/nst style add name image` with a small picture (or `data`); the answer's text."""
    image = fake.attachment(data or picture(40, 40, seed=3), "art.png", "image/png")
    return await answer(fake, style_data(fake, "add", image, name=name, **opts), perms=perms)


async def remove_style(fake: FakeDiscord, name: str, *, guild_id: int | None = None) -> str:
    """`/nst style remove name` as a manager; the answer's text."""
    return await answer(fake, style_data(fake, "remove", name=name), guild_id=guild_id)


async def show_styles(fake: FakeDiscord, *, guild_id: int | None = None) -> tuple[str, bytes]:
    """`/nst styles` as a plain member: the caption and the sheet's bytes."""
    data = fake.slash("nst", [{"name": "styles", "type": 1, "options": []}])
    payload = fake.interaction(
        data, user_id=fake.snowflake(), permissions=MEMBER_PERMISSIONS, guild_id=guild_id
    )
    await fake.dispatch("INTERACTION_CREATE", payload)
    text = await ephemeral_followup(fake, payload["token"])
    (sent,) = fake.find("POST", rf"^/webhooks/\d+/{payload['token']}$")
    ((_, sheet),) = sent.files
    return text, sheet


def preset_data(fake: FakeDiscord, typed: str) -> dict[str, Any]:
    """Autocomplete data of /stylize with `preset` focused."""
    return fake.slash("stylize", [{"name": "preset", "type": 3, "value": typed, "focused": True}])


def noise_png(side: int) -> bytes:
    """An image that compresses badly, so its stored copy is large."""
    buf = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buf, "PNG")
    return buf.getvalue()


def style_files(running: Running, guild_id: int) -> list[Path]:
    folder = Path(running.bot.config.data_dir) / "styles" / str(guild_id)
    return sorted(folder.glob("*")) if folder.exists() else []


async def final_reply(fake: FakeDiscord, request: dict[str, Any]) -> dict[str, Any]:
    """The final edit (or refusal) of the bot's reply to a message request."""

    def replies() -> list[Any]:
        return [
            r
            for r in fake.find("POST", rf"^/channels/{fake.channel_id}/messages$")
            if int(r.json["message_reference"]["message_id"]) == int(request["id"])
        ]

    await fake.wait_until(lambda: bool(replies()))
    reply = replies()[0]
    if "Queued" not in reply.json["content"]:
        return dict(reply.json)  # a refusal
    pattern = rf"^/channels/{fake.channel_id}/messages/{reply.response['id']}$"
    await fake.wait_until(lambda: any(is_final(r) for r in fake.find("PATCH", pattern)), 120)
    final = [r for r in fake.find("PATCH", pattern) if is_final(r)][-1]
    return dict(final.json) | {"files": final.files}


async def test_add_show_use_remove(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    text = await add_style(fake, "Sunset-Art", description="Warm sunset")
    assert text.startswith("Added the style `sunset-art`") and "preset:sunset-art" in text
    assert "1 of 25 styles" in text
    assert len(style_files(running, fake.guild_id)) == 1

    caption, sheet = await show_styles(fake)
    assert "`starry-night`: The Starry Night (Vincent van Gogh, 1889)" in caption
    assert "`sunset-art`: Warm sunset · this server's" in caption
    assert "preset:<name>" in caption and "!stylize preset=<name>" in caption
    with Image.open(io.BytesIO(sheet)) as img:
        img.load()
        assert img.width >= 256 and img.height >= 256

    job = await send_slash(fake, fake.snowflake(), preset="sunset-art")
    final = await final_webhook_edit(fake, job["token"])
    assert "✅ Done" in final.json["content"]
    assert "in the style of Warm sunset" in final.json["content"]
    assert decoded_size(final.files[0][1]) == (48, 36)

    assert (await remove_style(fake, "sunset-art")).startswith("Removed the style `sunset-art`")
    assert style_files(running, fake.guild_id) == []
    again = await send_slash(fake, fake.snowflake(), preset="sunset-art")
    assert "no style called `sunset-art`" in await ephemeral_followup(fake, again["token"])


async def test_refusals_and_caps(
    running: Running, clean: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    fake = clean
    caplog.set_level(logging.INFO, logger="nstbot")
    refusals = [
        (await add_style(fake, "member-art", perms=MEMBER_PERMISSIONS), "Manage Server"),
        (await add_style(fake, "No Spaces!"), "not a usable style name"),
        (await add_style(fake, "x"), "2 to 32 characters"),
        (await add_style(fake, "Starry-Night"), "built-in style"),
        (await add_style(fake, "junk", b"not a picture at all" * 20), "image was refused"),
        (await remove_style(fake, "never-added"), "no style named `never-added`"),
    ]
    assert (await add_style(fake, "dup-art")).startswith("Added")
    refusals.append((await add_style(fake, "DUP-art"), "already has a style named `dup-art`"))
    try:
        text = await nst_settings(fake, max_styles=26)
        assert "Not saved: max styles can be at most 25" in text
        text = await nst_settings(fake, max_styles=1, max_styles_mb=2)
        assert "Server styles: up to 1 (this server's cap), 2 MB (this server's cap)" in text
        refusals.append((await add_style(fake, "second-art"), "already has 1 styles"))
        await nst_settings(fake, max_styles=0, max_styles_mb=1)
        # About 0.9 MB stored each (a JPEG of noise): the first fits in 1 MB, the second not.
        assert (await add_style(fake, "noise-one", noise_png(1024))).startswith("Added")
        refusals.append((await add_style(fake, "noise-two", noise_png(1024)), "of the 1 MB"))
    finally:
        await nst_settings(fake, max_styles=0, max_styles_mb=0)
        for name in ("dup-art", "noise-one"):
            await remove_style(fake, name)
    for text, expected in refusals:
        assert expected in text, text
    assert not any(
        p.name.startswith(("member-art", "junk", "second"))
        for p in style_files(running, fake.guild_id)
    )
    logged = [r.getMessage() for r in caplog.records if "refused (" in r.getMessage()]
    # One log line for the operator per refusal (the missing permission logs its own line).
    assert len([m for m in logged if "StyleRequestRefused" in m]) == len(refusals) - 1
    assert any("lacks Manage Server" in r.getMessage() for r in caplog.records)


async def test_autocomplete_and_another_server(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    other = fake.snowflake()
    assert (await add_style(fake, "house-art", description="Our house")).startswith("Added")
    try:
        mine = await autocomplete(fake, preset_data(fake, "house"))
        assert [c["value"] for c in mine] == ["house-art"]
        assert mine[0]["name"] == "house-art: Our house"
        everything = {c["value"] for c in await autocomplete(fake, preset_data(fake, ""))}
        assert {"starry-night", "woman-with-a-hat", "house-art"} <= everything
        by_title = await autocomplete(fake, preset_data(fake, "starry n"))
        assert by_title[0]["value"] == "starry-night"

        assert await autocomplete(fake, preset_data(fake, "house"), guild_id=other) == []
        theirs = {
            c["value"] for c in await autocomplete(fake, preset_data(fake, ""), guild_id=other)
        }
        assert "starry-night" in theirs and "house-art" not in theirs
        removable = style_data(fake, "remove", name="ho", focused="name")
        assert [c["value"] for c in await autocomplete(fake, removable)] == ["house-art"]
        assert await autocomplete(fake, removable, guild_id=other) == []

        job = await send_slash(fake, fake.snowflake(), preset="house-art", guild_id=other)
        assert "no style called `house-art`" in await ephemeral_followup(fake, job["token"])
        caption, _ = await show_styles(fake, guild_id=other)
        assert "house-art" not in caption and "starry-night" in caption
        assert "no style named" in await remove_style(fake, "house-art", guild_id=other)
    finally:
        assert (await remove_style(fake, "house-art")).startswith("Removed")


async def test_neither_or_both_artworks_refused(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    neither = await send_slash(fake, fake.snowflake(), no_style=True)
    assert "Which artwork?" in await ephemeral_followup(fake, neither["token"])
    art = fake.attachment(picture(30, 30, seed=1), "art.png", "image/png")
    both = await send_slash(fake, fake.snowflake(), style=art, preset="starry-night")
    assert "either `style` or `preset`" in await ephemeral_followup(fake, both["token"])
    both2 = await send_slash(fake, fake.snowflake(), preset="starry-night", style2=art, preset2="x")
    assert "either `style2` or `preset2`" in await ephemeral_followup(fake, both2["token"])
    assert not fake.find("GET", r"^/cdn/")  # refused before any download

    help_text = await answer(fake, fake.slash("stylize-help", []), perms=MEMBER_PERMISSIONS)
    assert "preset:starry-night" in help_text and "/nst style add" in help_text
    assert "preset=NAME" in help_text


async def test_prefix_presets(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    photo = fake.attachment(picture(40, 60), "photo.png", "image/png")
    art = fake.attachment(picture(30, 30, seed=8), "art.png", "image/png")
    msg = fake.message(
        author_id=fake.snowflake(),
        content="!stylize preset=starry-night seed=2",
        attachments=[photo, art],
    )
    await fake.dispatch("MESSAGE_CREATE", msg)
    final = await final_reply(fake, msg)
    assert "✅ Done" in final["content"] and f"{STARRY} and your artwork" in final["content"]
    assert "2 styles blended" in final["content"]
    assert decoded_size(final["files"][0][1]) == (32, 48)

    original = fake.message(author_id=fake.snowflake(), attachments=[photo])
    reply = fake.message(
        author_id=fake.snowflake(), content="!stylize preset2=woman-with-a-hat", reference=original
    )
    await fake.dispatch("MESSAGE_CREATE", reply)
    assert "I need an artwork" in (await final_reply(fake, reply))["content"]

    reply = fake.message(
        author_id=fake.snowflake(), content="!stylize preset=woman-with-a-hat", reference=original
    )
    await fake.dispatch("MESSAGE_CREATE", reply)
    final = await final_reply(fake, reply)
    assert "in the style of Woman with a Hat (Henri Matisse, 1905)" in final["content"]

    unknown = fake.message(
        author_id=fake.snowflake(), content="!stylize preset=nope", attachments=[photo]
    )
    await fake.dispatch("MESSAGE_CREATE", unknown)
    assert "no style called `nope`" in (await final_reply(fake, unknown))["content"]


async def test_run_again_keeps_a_removed_preset(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    assert (await add_style(fake, "gone-soon", description="Gone soon")).startswith("Added")
    user = fake.snowflake()
    first = await send_slash(fake, user, preset="gone-soon", seed=1)
    await final_webhook_edit(fake, first["token"])
    assert (await remove_style(fake, "gone-soon")).startswith("Removed")
    # "Run again" resubmits the job's own inputs: the library is not asked again.
    again = await press(fake, fake.originals[first["token"]], "nst:again:", user)
    final = await final_webhook_edit(fake, again["token"])
    assert (
        "✅ Done" in final.json["content"] and "in the style of Gone soon" in final.json["content"]
    )
    assert "seed 1 " not in final.json["content"] + " "


async def test_style_removed_while_its_job_is_queued(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    assert (await add_style(fake, "queued-art")).startswith("Added")
    (stored,) = style_files(running, fake.guild_id)
    style_bytes = stored.read_bytes()
    _, blocker_user, blocker_mid = await start_blocker(running, fake)
    job = await send_slash(fake, fake.snowflake(), preset="queued-art")
    mid = await wait_queued(fake, job["token"])
    job_id = fake.messages[mid]["components"][0]["components"][0]["custom_id"].split(":")[2]
    kept = Path(running.bot.config.data_dir) / "jobs" / job_id / "style0.img"
    assert kept.read_bytes() == style_bytes  # the job's own copy

    assert (await remove_style(fake, "queued-art")).startswith("Removed")
    assert not stored.exists()
    await press(fake, blocker_mid, "nst:cancel:", blocker_user)
    final = await final_webhook_edit(fake, job["token"])
    assert (
        "✅ Done" in final.json["content"] and "in the style of queued-art" in final.json["content"]
    )
    assert final.files
