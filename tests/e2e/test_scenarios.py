"""End to end against the fake Discord, with the real bot, scheduler and worker process."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiohttp
import pytest
from fakediscord import MANAGE_MESSAGES, MEMBER_PERMISSIONS, FakeDiscord
from harness import (
    Running,
    decoded_size,
    ephemeral_followup,
    final_channel_post,
    final_webhook_edit,
    nst_settings,
    picture,
    press,
    send_slash,
    start_blocker,
    wait_queued,
)

from nstbot.bot.client import TokenError, check_token, sync_commands

pytestmark = pytest.mark.asyncio(loop_scope="module")

MODERATOR = str(int(MEMBER_PERMISSIONS) | MANAGE_MESSAGES)


def delivery_row(running: Running, job_id: str) -> tuple[str | None, str | None]:
    """(delivery_status, delivery_detail) of a job in the journal."""
    path = Path(running.bot.config.data_dir) / "journal.sqlite3"
    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT delivery_status, delivery_detail FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
    assert row is not None, f"job {job_id} not in the journal"
    return row


def job_id_of(message: dict) -> str:
    """The job id carried by a message's button."""
    for row in message.get("components") or []:
        for comp in row["components"]:
            return str(comp["custom_id"].split(":")[2])
    raise AssertionError("message has no buttons")


def expire_token(fake: FakeDiscord, payload: dict) -> None:
    """Make every use of the interaction's token fail as Discord does after 15 minutes."""
    pattern = rf"/webhooks/\d+/{payload['token']}/"
    fake.fail("PATCH", pattern, 401, code=50027, message="Invalid Webhook Token", times=1000)


async def test_slash_command_end_to_end(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    user = fake.snowflake()
    payload = await send_slash(fake, user, seed=7, strength="high")
    token = payload["token"]

    (callback,) = await fake.wait_for("POST", rf"/interactions/{payload['id']}/.*/callback")
    assert callback.json["type"] == 5  # deferred: its message becomes the progress message
    final = await final_webhook_edit(fake, token)
    assert "✅ Done" in final.json["content"]
    assert "seed 7" in final.json["content"] and "strength high" in final.json["content"]
    ((filename, data),) = final.files
    assert filename.startswith("nstbot-")
    assert decoded_size(data) == (48, 36)  # longest side capped at 48, aspect kept
    again = [c["custom_id"] for row in final.json["components"] for c in row["components"]]
    # Run again, and Timelapse while the frames are kept (timelapse.enabled is on by default).
    assert [c.split(":")[1] for c in again] == ["again", "timelapse"]

    edits = fake.find("PATCH", rf"/webhooks/\d+/{token}/messages/")
    progress = [e for e in edits if e is not final and "nst:cancel:" in str(e.json)]
    assert progress, "no progress edit carried the Cancel button"
    assert all(e.path.endswith(f"/messages/{fake.originals[token]}") for e in edits)
    assert fake.find("POST", r"^/channels/\d+/messages$") == []
    job_id = job_id_of(final.json)
    await fake.wait_until(lambda: delivery_row(running, job_id)[0] is not None)
    assert delivery_row(running, job_id)[0] == "ok"


async def test_progress_shows_bar_step_and_eta(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    payload, user, mid = await start_blocker(running, fake)
    token = payload["token"]
    running_edits = [
        e.json["content"]
        for e in fake.find("PATCH", rf"/webhooks/\d+/{token}/messages/")
        if "Painting" in (e.json.get("content") or "")
    ]
    text = running_edits[-1]
    await fake.wait_until(
        lambda: any(
            name == "preview.jpg" and data[:3] == b"\xff\xd8\xff"
            for e in fake.find("PATCH", rf"/webhooks/\d+/{token}/messages/")
            for name, data in e.files
        )
    )
    assert "step " in text and "/" in text and "ETA" in text and "%" in text and "[" in text
    await press(fake, mid, "nst:cancel:", user)
    final = await final_webhook_edit(fake, token)
    assert final.json["content"].startswith("🛑 Cancelled")


async def test_cancel_owner_moderator_and_stranger(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    blocker, blocker_user, blocker_mid = await start_blocker(running, fake)
    owner = fake.snowflake()
    queued = await send_slash(fake, owner)
    mid = await wait_queued(fake, queued["token"])

    stranger = await press(fake, mid, "nst:cancel:", fake.snowflake())
    (answer,) = await fake.wait_for("POST", rf"/interactions/{stranger['id']}/")
    assert answer.json["type"] == 4 and answer.json["data"]["flags"] & 64
    assert "isn't your" in answer.json["data"]["content"]

    await press(fake, mid, "nst:cancel:", owner)
    final = await final_webhook_edit(fake, queued["token"])
    assert final.json["content"] == f"🛑 Cancelled by <@{owner}>."
    assert not final.files

    moderator = fake.snowflake()
    await press(fake, blocker_mid, "nst:cancel:", moderator, permissions=MODERATOR)
    final = await final_webhook_edit(fake, blocker["token"])
    assert final.json["content"] == f"🛑 Cancelled by <@{moderator}>."
    assert blocker_user != moderator


async def test_queue_full_is_refused(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    blocker, blocker_user, blocker_mid = await start_blocker(running, fake)
    waiting = []
    for _ in range(3):  # executor.max_queue = 3
        user = fake.snowflake()
        payload = await send_slash(fake, user)
        await wait_queued(fake, payload["token"])
        waiting.append((user, payload))
    refused = await send_slash(fake, fake.snowflake())
    text = await ephemeral_followup(fake, refused["token"])
    assert "queue is full" in text
    await fake.wait_for("DELETE", rf"/webhooks/\d+/{refused['token']}/messages/@original")

    for user, payload in waiting:
        await press(fake, fake.originals[payload["token"]], "nst:cancel:", user)
    await press(fake, blocker_mid, "nst:cancel:", blocker_user)
    for _, payload in [*waiting, (blocker_user, blocker)]:
        final = await final_webhook_edit(fake, payload["token"])
        assert final.json["content"].startswith("🛑")


async def test_bad_image_is_refused(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    junk = fake.attachment(b"this is not a picture at all" * 10, "cat.png", "image/png")
    payload = await send_slash(fake, fake.snowflake(), content=junk)
    text = await ephemeral_followup(fake, payload["token"])
    assert text.startswith("The content image was refused")
    await fake.wait_for("DELETE", rf"/webhooks/\d+/{payload['token']}/messages/@original")
    assert fake.find("POST", r"^/channels/") == []


async def test_oversized_attachment_is_refused_before_download(
    running: Running, clean: FakeDiscord
) -> None:
    fake = clean
    photo = fake.attachment(picture(), "photo.png", "image/png")
    big = fake.attachment(picture(), "huge.png", "image/png", size=30_000_000)
    payload = await send_slash(fake, fake.snowflake(), content=photo, style=big)
    text = await ephemeral_followup(fake, payload["token"])
    assert text.startswith("The style image was refused") and "30 MB" in text
    # Neither attachment was fetched: every check runs before any download.
    assert fake.find("GET", r"^/cdn/") == []


async def test_rate_limited_edit_is_retried(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    rules = []
    payload = await send_slash(
        fake,
        fake.snowflake(),
        before=lambda p: rules.append(
            fake.fail("PATCH", rf"/webhooks/\d+/{p['token']}/", 429, retry_after=0.3)
        ),
    )
    token = payload["token"]
    (rule,) = rules
    final = await final_webhook_edit(fake, token)
    assert rule.hits == 1
    statuses = [r.status for r in fake.find("PATCH", rf"/webhooks/\d+/{token}/")]
    assert statuses[0] == 429 and statuses[-1] == 200
    assert final.files


async def test_expired_token_falls_back_to_channel_message(
    running: Running, clean: FakeDiscord
) -> None:
    fake = clean
    user = fake.snowflake()
    payload = await send_slash(fake, user, before=lambda p: expire_token(fake, p))
    token = payload["token"]
    final = await final_channel_post(fake, fake.channel_id)
    assert final.json["content"].startswith(f"<@{user}> ✅ Done")
    assert [int(u) for u in final.json["allowed_mentions"]["users"]] == [user]
    ((_, data),) = final.files
    assert max(decoded_size(data)) == 48
    # After the first 401 the bot stopped using the token.
    assert len(fake.find("PATCH", rf"/webhooks/\d+/{token}/")) == 1


async def test_clock_past_token_lifetime_uses_channel(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    user = fake.snowflake()
    blocker, blocker_user, blocker_mid = await start_blocker(running, fake)
    payload = await send_slash(fake, user)
    await wait_queued(fake, payload["token"])
    before = len(fake.find("PATCH", rf"/webhooks/\d+/{payload['token']}/"))
    running.clock.advance(16 * 60)
    try:
        await press(fake, blocker_mid, "nst:cancel:", blocker_user)
        final = await final_channel_post(fake, fake.channel_id, starts=f"<@{user}> ✅ Done")
    finally:
        running.clock.advance(-16 * 60)
    assert final.files
    # Past the token's lifetime by the clock, the token was not even tried.
    assert len(fake.find("PATCH", rf"/webhooks/\d+/{payload['token']}/")) == before
    assert blocker["token"] != payload["token"]


async def test_too_large_upload_is_reencoded_smaller(running: Running, clean: FakeDiscord) -> None:
    fake = clean

    def too_large(payload: dict) -> None:
        fake.fail(
            "PATCH",
            rf"/webhooks/\d+/{payload['token']}/",
            413,
            code=40005,
            message="Request entity too large",
            when=lambda rec: bool(rec.files) and "Done" in ((rec.json or {}).get("content") or ""),
        )

    payload = await send_slash(fake, fake.snowflake(), upload_limit=4000, before=too_large)
    token = payload["token"]
    final = await final_webhook_edit(fake, token)
    attempts = [
        r
        for r in fake.find("PATCH", rf"/webhooks/\d+/{token}/")
        if r.files and "Done" in r.json["content"]
    ]
    assert [r.status for r in attempts] == [413, 200]
    first, second = (len(r.files[0][1]) for r in attempts)
    assert first <= 4000 * 0.95  # within the channel's limit from the start
    assert second < first
    assert final is attempts[-1]


async def test_missing_permissions_fall_back_to_dm(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    user = fake.snowflake()
    fake.fail(
        "POST",
        rf"^/channels/{fake.channel_id}/messages$",
        403,
        code=50013,
        message="Missing Permissions",
        times=1000,
    )
    await send_slash(fake, user, before=lambda p: expire_token(fake, p))
    dm = fake.dm_channel_id(user)
    final = await final_channel_post(fake, dm)
    assert "✅ Done" in final.json["content"] and f"<#{fake.channel_id}>" in final.json["content"]
    assert final.files
    (opened,) = fake.find("POST", r"^/users/@me/channels$")[-1:]
    assert int(opened.json["recipient_id"]) == user
    job_id = job_id_of(final.json)
    await fake.wait_until(lambda: delivery_row(running, job_id)[0] is not None)
    assert delivery_row(running, job_id)[0] == "ok"


async def test_every_route_failing_is_journaled(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    user = fake.snowflake()
    fake.fail("POST", rf"^/channels/{fake.channel_id}/messages$", 403, code=50013, times=1000)
    fake.fail(
        "POST",
        rf"^/channels/{fake.dm_channel_id(user)}/messages$",
        403,
        code=50007,
        message="Cannot send messages to this user",
        times=1000,
    )
    await send_slash(fake, user, before=lambda p: expire_token(fake, p))
    await fake.wait_for("POST", rf"^/channels/{fake.dm_channel_id(user)}/messages$")
    job_ids = []

    def recorded() -> bool:
        path = Path(running.bot.config.data_dir) / "journal.sqlite3"
        with sqlite3.connect(path) as db:
            rows = db.execute(
                "SELECT id FROM jobs WHERE user_id = ? AND delivery_status IS NOT NULL", (user,)
            ).fetchall()
        job_ids[:] = [r[0] for r in rows]
        return bool(rows)

    await fake.wait_until(recorded)
    status, detail = delivery_row(running, job_ids[0])
    assert status == "failed"
    assert "token expired" in detail and "50013" in detail and "50007" in detail


async def test_context_menu(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    user = fake.snowflake()
    atts = [
        fake.attachment(picture(60, 40), "a.png", "image/png", width=60, height=40),
        fake.attachment(picture(30, 30, seed=9), "b.png", "image/png", width=30, height=30),
    ]
    msg = fake.message(author_id=user, attachments=atts)
    data = {
        "id": str(fake.snowflake()),
        "name": "Stylize",
        "type": 3,
        "target_id": msg["id"],
        "resolved": {"messages": {msg["id"]: msg}},
    }
    payload = fake.interaction(data, user_id=user)
    await fake.dispatch("INTERACTION_CREATE", payload)
    final = await final_webhook_edit(fake, payload["token"])
    assert decoded_size(final.files[0][1]) == (48, 32)  # the first image is the content


async def test_context_menu_needs_two_images(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    user = fake.snowflake()
    msg = fake.message(author_id=user, attachments=[fake.attachment(picture(), "a.png")])
    data = {
        "id": "1",
        "name": "Stylize",
        "type": 3,
        "target_id": msg["id"],
        "resolved": {"messages": {msg["id"]: msg}},
    }
    payload = fake.interaction(data, user_id=user)
    await fake.dispatch("INTERACTION_CREATE", payload)
    assert "two images" in await ephemeral_followup(fake, payload["token"])


async def _final_reply(fake: FakeDiscord, request: dict) -> tuple:
    """The bot's reply to a message request, and its final edit."""
    (reply,) = await fake.wait_for("POST", rf"^/channels/{fake.channel_id}/messages$")
    assert int(reply.json["message_reference"]["message_id"]) == int(request["id"])
    reply_id = reply.response["id"]
    pattern = rf"^/channels/{fake.channel_id}/messages/{reply_id}$"
    await fake.wait_until(
        lambda: any(r.files and "Done" in r.json["content"] for r in fake.find("PATCH", pattern))
    )
    return reply, [r for r in fake.find("PATCH", pattern) if r.files][-1]


async def test_prefix_command(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    user = fake.snowflake()
    atts = [
        fake.attachment(picture(40, 60), "a.png", "image/png"),
        fake.attachment(picture(30, 30, seed=2), "b.png", "image/png"),
    ]
    msg = fake.message(author_id=user, content="!stylize high seed=3", attachments=atts)
    await fake.dispatch("MESSAGE_CREATE", msg)
    _, final = await _final_reply(fake, msg)
    assert "seed 3" in final.json["content"] and "strength high" in final.json["content"]
    assert decoded_size(final.files[0][1]) == (32, 48)


async def test_reply_form_uses_replied_image_as_content(
    running: Running, clean: FakeDiscord
) -> None:
    fake = clean
    user = fake.snowflake()
    photo = fake.attachment(picture(60, 45), "photo.png", "image/png")
    original = fake.message(author_id=fake.snowflake(), attachments=[photo])
    art = fake.attachment(picture(30, 30, seed=4), "art.png", "image/png")
    msg = fake.message(author_id=user, content="!stylize", attachments=[art], reference=original)
    await fake.dispatch("MESSAGE_CREATE", msg)
    _, final = await _final_reply(fake, msg)
    assert decoded_size(final.files[0][1]) == (48, 36)
    assert [r for r in fake.find("GET", r"^/cdn/") if photo["id"] in r.path]


async def test_mention_with_two_images(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    atts = [
        fake.attachment(picture(48, 48), "a.png", "image/png"),
        fake.attachment(picture(30, 30, seed=6), "b.png", "image/png"),
    ]
    msg = fake.message(author_id=fake.snowflake(), content=f"<@{fake.bot_id}>", attachments=atts)
    await fake.dispatch("MESSAGE_CREATE", msg)
    _, final = await _final_reply(fake, msg)
    assert decoded_size(final.files[0][1]) == (48, 48)


async def test_prefix_command_with_one_image_explains(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    msg = fake.message(
        author_id=fake.snowflake(),
        content="!stylize",
        attachments=[fake.attachment(picture(), "a.png", "image/png")],
    )
    await fake.dispatch("MESSAGE_CREATE", msg)
    (reply,) = await fake.wait_for("POST", rf"^/channels/{fake.channel_id}/messages$")
    assert "I need two images" in reply.json["content"]
    assert not fake.find("GET", r"^/cdn/")


async def test_settings_need_manage_server(running: Running, clean: FakeDiscord) -> None:
    text = await nst_settings(clean, perms=MEMBER_PERMISSIONS, cooldown=60)
    assert "Manage Server" in text
    assert running.bot.settings.get(clean.guild_id).cooldown_s == 0


async def test_settings_cooldown_and_channels(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    try:
        text = await nst_settings(fake, cooldown=600, allow_channel=str(fake.other_channel_id))
        assert "Cooldown: 10m 00s" in text and f"<#{fake.other_channel_id}>" in text
        wrong = await send_slash(fake, fake.snowflake())
        refusal = await ephemeral_followup(fake, wrong["token"])
        assert "this channel" in refusal and f"<#{fake.other_channel_id}>" in refusal

        await nst_settings(fake, all_channels=True)
        user = fake.snowflake()
        first = await send_slash(fake, user)
        await final_webhook_edit(fake, first["token"])
        second = await send_slash(fake, user)
        assert "again in" in await ephemeral_followup(fake, second["token"])
    finally:
        await nst_settings(fake, cooldown=0, all_channels=True)
    assert running.bot.settings.get(fake.guild_id).cooldown_s == 0


async def test_help_and_queue_and_stats(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    for data, expect in [
        (fake.slash("stylize-help", []), "fast"),
        (fake.slash("nst", [{"name": "queue", "type": 1, "options": []}]), "queue is empty"),
        (fake.slash("nst", [{"name": "stats", "type": 1, "options": []}]), "finished"),
    ]:
        payload = fake.interaction(data, user_id=fake.snowflake())
        await fake.dispatch("INTERACTION_CREATE", payload)
        (answer,) = await fake.wait_for("POST", rf"/interactions/{payload['id']}/")
        assert expect in answer.json["data"]["content"]
        assert answer.json["data"]["flags"] & 64


async def test_run_again_button(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    user = fake.snowflake()
    first = await send_slash(fake, user, seed=1)
    await final_webhook_edit(fake, first["token"])
    again = await press(fake, fake.originals[first["token"]], "nst:again:", user)
    final = await final_webhook_edit(fake, again["token"])
    assert final.files and "seed 1 " not in final.json["content"] + " "
    await asyncio.sleep(0)


async def test_sync_and_token_check_use_the_configured_api(
    running: Running, clean: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = clean
    monkeypatch.setenv("DISCORD_TOKEN", "fake-token-abc.def.ghi")
    config = running.bot.config
    assert await asyncio.to_thread(sync_commands, config, fake.guild_id) == 0
    (put,) = fake.find("PUT", rf"^/applications/{fake.bot_id}/guilds/{fake.guild_id}/commands$")
    names = {(c["name"], c.get("type", 1)) for c in put.json}
    assert names == {("stylize", 1), ("stylize-help", 1), ("nst", 1), ("Stylize", 3)}
    stylize = next(c for c in put.json if c["name"] == "stylize")
    options = {o["name"]: o for o in stylize["options"]}
    assert [c["value"] for c in options["quality"]["choices"]] == ["fast", "balanced", "best"]
    assert all(o["description"] for o in stylize["options"])
    assert [o["name"] for o in stylize["options"] if o.get("autocomplete")] == ["preset", "preset2"]
    nst = {o["name"]: o for o in next(c for c in put.json if c["name"] == "nst")["options"]}
    assert [o["name"] for o in nst["style"]["options"]] == ["add", "remove"]
    assert nst["style"]["type"] == 2 and nst["styles"]["type"] == 1
    assert fake.find("GET", r"^/gateway") == []  # syncing never opens the gateway

    text = await asyncio.to_thread(check_token, config)
    assert text.startswith("token OK") and str(fake.bot_id) in text
    fake.fail("GET", r"^/users/@me$", 401, code=0, message="401: Unauthorized")
    with pytest.raises(TokenError, match="refused"):
        await asyncio.to_thread(check_token, config)


async def test_owner_prefix_sync(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    stranger = fake.message(author_id=fake.snowflake(), content="!sync")
    await fake.dispatch("MESSAGE_CREATE", stranger)
    owner = fake.message(author_id=fake.owner_id, content="!sync")
    await fake.dispatch("MESSAGE_CREATE", owner)
    (reply,) = await fake.wait_for("POST", rf"^/channels/{fake.channel_id}/messages$")
    assert reply.json["content"] == "Synced 4 commands."
    assert int(reply.json["message_reference"]["message_id"]) == int(owner["id"])
    assert len(fake.find("PUT", rf"^/applications/{fake.bot_id}/commands$")) == 1


async def test_health_and_metrics_endpoints(running: Running, clean: FakeDiscord) -> None:
    web = running.bot.web
    assert web is not None and web.url is not None
    async with aiohttp.ClientSession() as session:
        async with session.get(web.url + "/healthz") as resp:
            assert resp.status == 200
            body = await resp.json()
        async with session.get(web.url + "/metrics") as resp:
            text = await resp.text()
    assert body["ok"] is True and body["gateway_connected"] is True
    finished = [
        line
        for line in text.splitlines()
        if line.startswith('nstbot_jobs_total{outcome="finished"}')
    ]
    assert finished and float(finished[0].split()[-1]) >= 1
    # The fake answered 401/403/413/429 in earlier tests; those were counted.
    assert "nstbot_discord_api_errors_total" in text


async def test_server_queue_limit_per_member(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    try:
        await nst_settings(fake, queue_limit=1)
        _, user, mid = await start_blocker(running, fake)
        second = await send_slash(fake, user)
        text = await ephemeral_followup(fake, second["token"])
        assert "already have 1 image(s) in progress" in text
        other = await send_slash(fake, fake.snowflake())  # someone else is not limited
        await wait_queued(fake, other["token"])
        await press(fake, mid, "nst:cancel:", user)
        await final_webhook_edit(fake, other["token"])
    finally:
        await nst_settings(fake, queue_limit=0)
