"""End to end: jobs in the journal survive a bot restart and are delivered by the next process."""

from __future__ import annotations

import pytest
from fakediscord import FakeDiscord
from harness import (
    decoded_size,
    final_webhook_edit,
    make_config,
    press,
    send_slash,
    start_bot,
    wait_queued,
    wait_running,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_restart_recovers_journaled_jobs(fake: FakeDiscord, tmp_path) -> None:
    config = make_config(fake, tmp_path)
    first = await start_bot(fake, config)
    long_user, user = fake.snowflake(), fake.snowflake()
    try:
        # A long job holds the only worker, so the second one is still queued at shutdown.
        first.bot.config = make_config(fake, tmp_path, max_steps=2000)
        long_job = await send_slash(fake, long_user, quality="best")
        await wait_running(fake, long_job["token"])
        first.bot.config = config
        queued = await send_slash(fake, user, seed=11)
        await wait_queued(fake, queued["token"])
    finally:
        await first.stop()
    assert not fake.find("PATCH", rf"/webhooks/\d+/{queued['token']}/.*")[-1].files

    second = await start_bot(fake, config)
    try:
        assert len(second.bot.scheduler.recovered()) == 2
        # The Cancel button of a message sent by the first process works in the second.
        long_mid = fake.originals[long_job["token"]]
        await wait_running(fake, long_job["token"])
        await press(fake, long_mid, "nst:cancel:", long_user)
        cancelled = await final_webhook_edit(fake, long_job["token"])
        assert cancelled.json["content"] == f"🛑 Cancelled by <@{long_user}>."

        final = await final_webhook_edit(fake, queued["token"])
        assert "✅ Done" in final.json["content"] and "seed 11" in final.json["content"]
        assert final.path.endswith(f"/messages/{fake.originals[queued['token']]}")
        assert decoded_size(final.files[0][1]) == (48, 36)
        # Delivered through the stored interaction token: no second defer, no channel message.
        assert len(fake.find("POST", rf"/interactions/{queued['id']}/")) == 1
        assert not fake.find("POST", r"^/channels/\d+/messages$")
    finally:
        await second.stop()
    assert fake.connections == 2


async def test_the_timelapse_button_works_after_a_restart(fake: FakeDiscord, tmp_path) -> None:
    config = make_config(fake, tmp_path)
    user = fake.snowflake()
    first = await start_bot(fake, config)
    try:
        payload = await send_slash(fake, user)
        await final_webhook_edit(fake, payload["token"])
    finally:
        await first.stop()

    second = await start_bot(fake, config)
    try:
        pressed = await press(fake, fake.originals[payload["token"]], "nst:timelapse:", user)
        await fake.wait_for("POST", rf"^/webhooks/\d+/{pressed['token']}$")
        (answer,) = fake.find("POST", rf"^/webhooks/\d+/{pressed['token']}$")
        assert answer.json["flags"] & 64 and answer.json["content"].startswith("🎞️ Timelapse")
        ((name, data),) = answer.files
        assert name.endswith(".webp") and decoded_size(data) == (48, 36)
    finally:
        await second.stop()
