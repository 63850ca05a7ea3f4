"""Progress and delivery when Discord refuses: permissions, previews, dead interactions."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fakediscord import SEND_MESSAGES, FakeDiscord
from harness import (
    Running,
    final_channel_post,
    final_webhook_edit,
    picture,
    press,
    send_slash,
    wait_running,
    with_bot_config,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

JPEG = b"\xff\xd8\xff"


def bot_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Records the bot process logged (not the worker's forwarded lines)."""
    return [r for r in caplog.records if r.name.startswith(("nstbot.bot", "discord"))]


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    noisy = [r for r in bot_records(caplog) if r.exc_info or r.levelno >= logging.ERROR]
    assert not noisy, [r.getMessage() for r in noisy]


async def long_job(running: Running, fake: FakeDiscord, **kwargs: Any) -> dict[str, Any]:
    """A job with enough steps to show several progress edits and previews."""
    old = with_bot_config(running, max_steps=400)
    try:
        payload = await send_slash(fake, fake.snowflake(), quality="best", **kwargs)
        await fake.wait_for("PATCH", rf"/webhooks/\d+/{payload['token']}/messages/")
    finally:
        running.bot.config = old
    return payload


def owner_of(payload: dict[str, Any]) -> int:
    return int(payload["member"]["user"]["id"])


async def test_refused_preview_keeps_text_progress(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    rules = []

    def refuse_previews(p: dict[str, Any]) -> None:
        rules.append(
            fake.fail(
                "PATCH",
                rf"/webhooks/\d+/{p['token']}/",
                403,
                code=50013,
                message="Missing Permissions",
                times=1000,
                when=lambda rec: bool(rec.files) and "Painting" in str(rec.json),
            )
        )

    payload = await long_job(running, fake, before=refuse_previews)
    token = payload["token"]
    pattern = rf"/webhooks/\d+/{token}/messages/"
    await fake.wait_until(lambda: rules[0].hits >= 1)
    refused_at = fake.find("PATCH", pattern)[-1].at

    def text_edits_after() -> list[Any]:
        return [
            r
            for r in fake.find("PATCH", pattern)
            if r.at > refused_at and r.status == 200 and "Painting" in str(r.json)
        ]

    await fake.wait_until(lambda: len(text_edits_after()) >= 2)
    assert all(not r.files for r in text_edits_after())
    assert rules[0].hits == 1  # once refused, no preview was tried again
    assert "step " in fake.messages[fake.originals[token]]["content"]
    await press(fake, fake.originals[token], "nst:cancel:", owner_of(payload))
    final = await final_webhook_edit(fake, token)
    assert final.json["content"].startswith("🛑 Cancelled")


async def test_retry_after_dead_token_uploads_a_whole_preview(
    running: Running, clean: FakeDiscord
) -> None:
    fake = clean

    def token_dies_on_preview(p: dict[str, Any]) -> None:
        fake.fail(
            "PATCH",
            rf"/webhooks/\d+/{p['token']}/",
            401,
            code=50027,
            message="Invalid Webhook Token",
            times=1000,
            when=lambda rec: bool(rec.files),
        )

    payload = await long_job(running, fake, before=token_dies_on_preview)
    mid = await wait_running(fake, payload["token"])
    pattern = rf"^/channels/{fake.channel_id}/messages/{mid}$"
    await fake.wait_until(lambda: any(r.files for r in fake.find("PATCH", pattern)))
    retried = next(r for r in fake.find("PATCH", pattern) if r.files)
    ((name, data),) = retried.files
    assert name == "preview.jpg" and len(data) > 100 and data.startswith(JPEG)
    await press(fake, mid, "nst:cancel:", owner_of(payload))
    await final_channel_post(fake, fake.channel_id)


async def test_dm_delivery_retires_the_progress_message(
    running: Running, clean: FakeDiscord
) -> None:
    fake = clean
    user = fake.snowflake()
    fake.fail("POST", rf"^/channels/{fake.channel_id}/messages$", 403, code=50013, times=1000)

    def expire(p: dict[str, Any]) -> None:
        fake.fail("PATCH", rf"/webhooks/\d+/{p['token']}/", 401, code=50027, times=1000)

    payload = await send_slash(fake, user, before=expire)
    final = await final_channel_post(fake, fake.dm_channel_id(user))
    assert "✅ Done" in final.json["content"]
    mid = fake.originals[payload["token"]]
    retire = rf"^/channels/{fake.channel_id}/messages/{mid}$"
    await fake.wait_until(lambda: any("by DM" in str(r.json) for r in fake.find("PATCH", retire)))
    message = fake.messages[mid]
    assert message["content"] == f"This job has ended: I sent its message to <@{user}> by DM."
    assert message["components"] == []  # no live Cancel button
    assert not message["attachments"]


@pytest.mark.parametrize(("status", "code"), [(404, 10062), (400, 40060)])
async def test_dead_interaction_on_defer_is_one_log_line(
    running: Running, clean: FakeDiscord, caplog: pytest.LogCaptureFixture, status: int, code: int
) -> None:
    fake = clean
    caplog.set_level(logging.INFO)

    def dead(p: dict[str, Any]) -> None:
        fake.fail("POST", rf"^/interactions/{p['id']}/", status, code=code, message="gone")

    payload = await send_slash(fake, fake.snowflake(), before=dead)
    await fake.wait_for("POST", rf"^/interactions/{payload['id']}/")
    await fake.wait_until(
        lambda: any("gone on defer" in r.getMessage() for r in caplog.records), timeout=30
    )
    # Nothing else was sent with the token, and nothing was downloaded for it.
    assert [r.path for r in fake.requests if payload["token"] in r.path] == [
        f"/interactions/{payload['id']}/{payload['token']}/callback"
    ]
    assert fake.find("GET", r"^/cdn/") == []
    lines = [r for r in bot_records(caplog) if payload["id"] in r.getMessage()]
    assert len(lines) == 1 and f"code {code}" in lines[0].getMessage()
    no_tracebacks(caplog)


async def test_prefix_request_where_the_bot_cannot_send(
    running: Running, clean: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    fake = clean
    caplog.set_level(logging.INFO)
    where = fake.other_channel_id
    await fake.deny_bot(where, SEND_MESSAGES)
    try:
        user = fake.snowflake()
        atts = [
            fake.attachment(picture(40, 60), "a.png", "image/png"),
            fake.attachment(picture(30, 30, seed=2), "b.png", "image/png"),
        ]
        msg = fake.message(author_id=user, content="!stylize", attachments=atts, channel_id=where)
        await fake.dispatch("MESSAGE_CREATE", msg)
        (dm,) = await fake.wait_for("POST", rf"^/channels/{fake.dm_channel_id(user)}/messages$")
        assert f"<#{where}>" in dm.json["content"] and "Send Messages" in dm.json["content"]

        closed = fake.snowflake()
        fake.fail("POST", rf"^/channels/{fake.dm_channel_id(closed)}/messages$", 403, code=50007)
        msg2 = fake.message(
            author_id=closed, content="!stylize", attachments=atts, channel_id=where
        )
        await fake.dispatch("MESSAGE_CREATE", msg2)
        (reaction,) = await fake.wait_for("PUT", rf"/messages/{msg2['id']}/reactions/")
        assert reaction.status == 204

        assert fake.find("GET", r"^/cdn/") == []  # checked before any download
        assert fake.find("POST", rf"^/channels/{where}/messages$") == []

        def told_lines() -> list[str]:
            return [m for r in bot_records(caplog) if "not started" in (m := r.getMessage())]

        await fake.wait_until(lambda: len(told_lines()) >= 2, timeout=10)
        told = told_lines()
        assert len(told) == 2 and "told by DM" in told[0] and "told by reaction" in told[1]
        no_tracebacks(caplog)
    finally:
        await fake.deny_bot(where, 0)


async def test_prefix_with_three_images_blends_two_styles(
    running: Running, clean: FakeDiscord
) -> None:
    fake = clean
    atts = [
        fake.attachment(picture(40, 60), "a.png", "image/png"),
        fake.attachment(picture(30, 30, seed=2), "b.png", "image/png"),
        fake.attachment(picture(30, 30, seed=3), "c.png", "image/png"),
    ]
    msg = fake.message(author_id=fake.snowflake(), content="!stylize", attachments=atts)
    await fake.dispatch("MESSAGE_CREATE", msg)
    (reply,) = await fake.wait_for("POST", rf"^/channels/{fake.channel_id}/messages$")
    pattern = rf"^/channels/{fake.channel_id}/messages/{reply.response['id']}$"
    await fake.wait_until(
        lambda: any(r.files and "Done" in r.json["content"] for r in fake.find("PATCH", pattern))
    )
    final = [r for r in fake.find("PATCH", pattern) if r.files][-1]
    assert "2 styles blended" in final.json["content"]
    fetched = {r.path.rsplit("/", 1)[-1] for r in fake.find("GET", r"^/cdn/")}
    assert fetched == {"a.png", "b.png", "c.png"}


async def test_prefix_with_four_images_is_refused(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    atts = [fake.attachment(picture(30, 30, seed=i), f"{i}.png", "image/png") for i in range(4)]
    msg = fake.message(author_id=fake.snowflake(), content="!stylize", attachments=atts)
    await fake.dispatch("MESSAGE_CREATE", msg)
    (reply,) = await fake.wait_for("POST", rf"^/channels/{fake.channel_id}/messages$")
    assert "at most three images" in reply.json["content"]
    assert fake.find("GET", r"^/cdn/") == []
