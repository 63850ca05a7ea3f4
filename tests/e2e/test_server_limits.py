"""Server limits hold at admission: bursts, "Run again", prefix requests, released holds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fakediscord import FakeDiscord
from harness import (
    Running,
    ephemeral_followup,
    final_webhook_edit,
    nst_settings,
    picture,
    press,
    send_slash,
    start_blocker,
    stylize_data,
    wait_queued,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


def callback_types(fake: FakeDiscord, payloads: list[dict[str, Any]]) -> list[int]:
    """The response type each interaction got (5: deferred, so admitted; 4: answered)."""
    out = []
    for payload in payloads:
        (rec,) = fake.find("POST", rf"^/interactions/{payload['id']}/")
        out.append(rec.json["type"])
    return out


async def burst(fake: FakeDiscord, user: int, count: int = 3) -> list[dict[str, Any]]:
    """`count` /stylize requests of one member sent back to back, before any is answered."""
    payloads = []
    for i in range(count):
        photo = picture(64, 48, seed=i)
        content = fake.attachment(photo, "p.png", "image/png", width=64, height=48)
        style = fake.attachment(picture(40, 40, seed=9), "s.png", "image/png", width=40, height=40)
        payloads.append(fake.interaction(stylize_data(fake, content, style), user_id=user))
    await asyncio.gather(*(fake.dispatch("INTERACTION_CREATE", p) for p in payloads))
    for payload in payloads:
        await fake.wait_for("POST", rf"^/interactions/{payload['id']}/")
    return payloads


async def cancel_all(fake: FakeDiscord, jobs: list[tuple[int, dict[str, Any]]]) -> None:
    """Cancel waiting/running jobs (as their owners) and wait for their final messages."""
    for user, payload in jobs:
        await press(fake, fake.originals[payload["token"]], "nst:cancel:", user)
    for _, payload in jobs:
        await final_webhook_edit(fake, payload["token"])


async def test_burst_cannot_pass_the_member_queue_limit(
    running: Running, clean: FakeDiscord
) -> None:
    fake = clean
    await nst_settings(fake, queue_limit=1)
    blocker, blocker_user, _ = await start_blocker(running, fake)
    try:
        user = fake.snowflake()
        downloads_before = len(fake.find("GET", r"^/cdn/"))
        payloads = await burst(fake, user)
        types = callback_types(fake, payloads)
        assert sorted(types) == [4, 4, 5]
        refused = [p for p, t in zip(payloads, types, strict=True) if t == 4]
        for payload in refused:
            text = await ephemeral_followup(fake, payload["token"])
            assert "already have 1 image(s) in progress" in text
        (admitted,) = [p for p, t in zip(payloads, types, strict=True) if t == 5]
        await wait_queued(fake, admitted["token"])
        # The refused requests never downloaded anything: two attachments, once each.
        assert len(fake.find("GET", r"^/cdn/")) - downloads_before == 2
        await cancel_all(fake, [(user, admitted), (blocker_user, blocker)])
    finally:
        await nst_settings(fake, queue_limit=0)


async def test_burst_cannot_pass_the_cooldown(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    await nst_settings(fake, cooldown=600)
    try:
        user = fake.snowflake()
        payloads = await burst(fake, user)
        types = callback_types(fake, payloads)
        assert sorted(types) == [4, 4, 5]
        for payload, kind in zip(payloads, types, strict=True):
            if kind == 4:
                assert "again in 10m" in await ephemeral_followup(fake, payload["token"])
            else:
                final = await final_webhook_edit(fake, payload["token"])
                assert "✅ Done" in final.json["content"]
    finally:
        await nst_settings(fake, cooldown=0)


async def test_run_again_respects_the_cooldown(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    user = fake.snowflake()
    await nst_settings(fake, cooldown=600)
    try:
        first = await send_slash(fake, user)
        await final_webhook_edit(fake, first["token"])
        again = await press(fake, fake.originals[first["token"]], "nst:again:", user)
        text = await ephemeral_followup(fake, again["token"])
        assert text.startswith("Slow down a little")
        (answer,) = fake.find("POST", rf"^/interactions/{again['id']}/")
        assert answer.json["type"] == 4  # answered at once: no job, no progress message
        assert not fake.find("PATCH", rf"/webhooks/\d+/{again['token']}/")
        # After the cooldown the same button works.
        running.clock.advance(601)
        later = await press(fake, fake.originals[first["token"]], "nst:again:", user)
        final = await final_webhook_edit(fake, later["token"])
        assert "✅ Done" in final.json["content"]
    finally:
        running.clock.offset = 0.0
        await nst_settings(fake, cooldown=0)


async def test_run_again_respects_the_member_queue_limit(
    running: Running, clean: FakeDiscord
) -> None:
    fake = clean
    user = fake.snowflake()
    first = await send_slash(fake, user)
    await final_webhook_edit(fake, first["token"])
    await nst_settings(fake, queue_limit=1)
    try:
        blocker, blocker_user, _ = await start_blocker(running, fake)
        waiting = await send_slash(fake, user)
        await wait_queued(fake, waiting["token"])
        again = await press(fake, fake.originals[first["token"]], "nst:again:", user)
        text = await ephemeral_followup(fake, again["token"])
        assert "already have 1 image(s) in progress" in text
        assert len(running.bot.scheduler.queue_snapshot()) == 2  # the blocker and `waiting`
        await cancel_all(fake, [(user, waiting), (blocker_user, blocker)])
    finally:
        await nst_settings(fake, queue_limit=0)


async def test_refused_image_gives_the_cooldown_back(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    user = fake.snowflake()
    await nst_settings(fake, cooldown=600)
    try:
        junk = fake.attachment(b"not a picture" * 20, "cat.png", "image/png")
        bad = await send_slash(fake, user, content=junk)
        assert "refused" in await ephemeral_followup(fake, bad["token"])
        good = await send_slash(fake, user)
        final = await final_webhook_edit(fake, good["token"])
        assert "✅ Done" in final.json["content"]
    finally:
        await nst_settings(fake, cooldown=0)


async def test_prefix_request_during_cooldown_is_refused(
    running: Running, clean: FakeDiscord
) -> None:
    fake = clean
    user = fake.snowflake()
    await nst_settings(fake, cooldown=600)
    try:
        first = await send_slash(fake, user)
        await final_webhook_edit(fake, first["token"])
        atts = [
            fake.attachment(picture(40, 60), "a.png", "image/png"),
            fake.attachment(picture(30, 30, seed=2), "b.png", "image/png"),
        ]
        msg = fake.message(author_id=user, content="!stylize", attachments=atts)
        await fake.dispatch("MESSAGE_CREATE", msg)
        (reply,) = await fake.wait_for("POST", rf"^/channels/{fake.channel_id}/messages$")
        assert reply.json["content"].startswith("Slow down a little")
        assert int(reply.json["message_reference"]["message_id"]) == int(msg["id"])
        assert not [r for r in fake.find("GET", r"^/cdn/") if atts[0]["id"] in r.path]
    finally:
        await nst_settings(fake, cooldown=0)


async def test_settings_refusal_comes_from_the_permission_check(
    running: Running, clean: FakeDiscord
) -> None:
    from fakediscord import MEMBER_PERMISSIONS

    text = await nst_settings(clean, perms=MEMBER_PERMISSIONS, queue_limit=5)
    assert text == "Only members with Manage Server can do that."
    assert running.bot.settings.get(clean.guild_id).per_user_queue == 0
