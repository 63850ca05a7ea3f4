"""An answer Discord will not take (a refusal, a button's acknowledgement) is one log line,
not a traceback or a retry."""

from __future__ import annotations

import logging

import pytest
from fakediscord import FakeDiscord
from harness import Running, final_webhook_edit, picture, press, send_slash, start_blocker

pytestmark = pytest.mark.asyncio(loop_scope="module")


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Bot-side records with a traceback or at ERROR and above."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith(("nstbot.bot", "discord"))
        and (r.exc_info or r.levelno >= logging.ERROR)
    ]


async def test_prefix_refusal_reply_refused(
    running: Running, clean: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    fake = clean
    caplog.set_level(logging.INFO)
    # The request vanished before the answer: Discord refuses a reply to it.
    fake.fail("POST", rf"^/channels/{fake.channel_id}/messages$", 400, code=50035, times=10)
    atts = [
        fake.attachment(b"not a picture" * 20, "a.png", "image/png"),
        fake.attachment(picture(30, 30, seed=2), "b.png", "image/png"),
    ]
    msg = fake.message(author_id=fake.snowflake(), content="!stylize", attachments=atts)
    await fake.dispatch("MESSAGE_CREATE", msg)
    (reply,) = await fake.wait_for("POST", rf"^/channels/{fake.channel_id}/messages$")
    assert reply.status == 400

    def lines() -> list[str]:
        return [m for r in caplog.records if "refusal not delivered" in (m := r.getMessage())]

    await fake.wait_until(lambda: bool(lines()), timeout=10)
    assert lines() == [f"message {msg['id']}: refusal not delivered: HTTP 400 (code 50035)"]
    assert tracebacks(caplog) == []


async def test_slash_refusal_on_a_dead_token(
    running: Running, clean: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    fake = clean
    caplog.set_level(logging.INFO)
    junk = fake.attachment(b"not a picture" * 20, "cat.png", "image/png")

    def token_dies(p: dict[str, object]) -> None:
        fake.fail("POST", rf"^/webhooks/\d+/{p['token']}$", 401, code=50027, times=10)

    payload = await send_slash(fake, fake.snowflake(), content=junk, before=token_dies)
    token = str(payload["token"])

    def lines() -> list[str]:
        return [m for r in caplog.records if "refusal not delivered" in (m := r.getMessage())]

    await fake.wait_until(lambda: bool(lines()), timeout=30)
    assert lines() == [f"interaction {payload['id']}: refusal not delivered: HTTP 401 (code 50027)"]
    # One follow-up tried, not a second "something went wrong" on the same dead token.
    assert len(fake.find("POST", rf"^/webhooks/\d+/{token}$")) == 1
    assert tracebacks(caplog) == []


async def test_cancel_press_on_a_dead_interaction_still_cancels(
    running: Running, clean: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    fake = clean
    caplog.set_level(logging.INFO)
    payload, user, mid = await start_blocker(running, fake)
    # Only the press answers now: the job's own interaction was deferred long ago.
    fake.fail("POST", r"^/interactions/\d+/", 404, code=10062, message="Unknown interaction")
    pressed = await press(fake, mid, "nst:cancel:", user)
    final = await final_webhook_edit(fake, payload["token"])
    assert final.json["content"].startswith("🛑 Cancelled")
    lines = [m for r in caplog.records if pressed["id"] in (m := r.getMessage())]
    assert len(lines) == 1 and "code 10062" in lines[0], lines
    assert len(fake.find("POST", rf"^/interactions/{pressed['id']}/")) == 1
    assert tracebacks(caplog) == []
