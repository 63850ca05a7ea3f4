"""End to end: timelapses with the real bot, worker and engine (random weights, 48 px, 3 steps)
against the fake Discord: the option, the upload limit, the button, and frames gone or damaged."""

from __future__ import annotations

import errno
import io
from pathlib import Path
from typing import Any

import pytest
from fakediscord import FakeDiscord
from harness import Running, ephemeral_followup, final_webhook_edit, picture, press, send_slash
from PIL import Image

from nstbot.bot.delivery import UPLOAD_HEADROOM
from nstbot.bot.timelapse import ANIMATION_SHARE
from nstbot.images.animation import encode_timelapse, unpack_frames
from nstbot.jobs.journal.storage import TIMELAPSE_FILE

pytestmark = pytest.mark.asyncio(loop_scope="module")


def frame_count(data: bytes) -> int:
    """Frames of an animated image, decoded by Pillow."""
    with Image.open(io.BytesIO(data)) as img:
        assert img.format in ("WEBP", "GIF"), img.format
        return int(getattr(img, "n_frames", 1))


def frame_count_or_still(data: bytes) -> int:
    """Frames of any image (1 for a still)."""
    with Image.open(io.BytesIO(data)) as img:
        return int(getattr(img, "n_frames", 1))


def buttons(message: dict[str, Any]) -> list[str]:
    """The custom_ids of a message's buttons."""
    return [c["custom_id"] for row in message.get("components") or [] for c in row["components"]]


def job_id_of(message: dict[str, Any]) -> str:
    return buttons(message)[0].split(":")[2]


def frames_file(running: Running, job_id: str) -> Path:
    return Path(running.bot.config.data_dir) / "jobs" / job_id / TIMELAPSE_FILE


async def private_answer(fake: FakeDiscord, payload: dict[str, Any]) -> tuple[str, list]:
    """Text and files of the ephemeral answer to a button press."""
    text = await ephemeral_followup(fake, payload["token"])
    sent = fake.find("POST", rf"^/webhooks/\d+/{payload['token']}$")
    return text, (sent[-1].files if sent else [])


async def test_the_option_attaches_an_animation_within_the_limit(
    running: Running, clean: FakeDiscord
) -> None:
    fake = clean
    payload = await send_slash(fake, fake.snowflake(), timelapse=True)
    final = await final_webhook_edit(fake, payload["token"])
    assert "✅ Done" in final.json["content"] and "· timelapse" in final.json["content"]
    (result_name, result), (anim_name, anim) = final.files
    assert result_name.startswith("nstbot-") and anim_name.endswith("-timelapse.webp")
    assert frame_count(anim) > 1
    assert len(result) + len(anim) <= 10 * 1024 * 1024 * UPLOAD_HEADROOM
    # Attached already: no Timelapse button, but Run again, which keeps the choice.
    assert [b.split(":")[1] for b in buttons(final.json)] == ["again"]
    again = await press(fake, fake.originals[payload["token"]], "nst:again:", fake.snowflake())
    final = await final_webhook_edit(fake, again["token"])
    (_, _), (_, anim) = final.files
    assert frame_count(anim) > 1 and "· timelapse" in final.json["content"]


async def test_the_prefix_word_asks_for_it_too(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    atts = [
        fake.attachment(picture(40, 60), "a.png", "image/png"),
        fake.attachment(picture(30, 30, seed=2), "b.png", "image/png"),
    ]
    msg = fake.message(author_id=fake.snowflake(), content="!stylize timelapse", attachments=atts)
    await fake.dispatch("MESSAGE_CREATE", msg)
    (reply,) = await fake.wait_for("POST", rf"^/channels/{fake.channel_id}/messages$")
    pattern = rf"^/channels/{fake.channel_id}/messages/{reply.response['id']}$"

    def done() -> list:
        edits = fake.find("PATCH", pattern)
        return [r for r in edits if "Done" in (r.json or {}).get("content", "")]

    await fake.wait_until(lambda: bool(done()))
    final = done()[-1]
    (_, _), (name, anim) = final.files
    assert name.endswith(".webp") and frame_count(anim) > 1


async def test_a_small_limit_sends_the_result_and_offers_the_button(
    running: Running, clean: FakeDiscord
) -> None:
    fake = clean
    user = fake.snowflake()
    limit = 1200  # a third of it cannot hold the animation even as a small GIF
    payload = await send_slash(fake, user, timelapse=True, upload_limit=limit)
    final = await final_webhook_edit(fake, payload["token"])
    ((_, result),) = final.files
    assert len(result) <= limit * UPLOAD_HEADROOM
    assert "did not fit beside the picture" in final.json["content"]
    assert "press **Timelapse**" in final.json["content"]
    assert any(b.startswith("nst:timelapse:") for b in buttons(final.json))

    # Pressed (by anyone), it comes on its own within the presser's limit, for them only.
    pressed = await press(fake, fake.originals[payload["token"]], "nst:timelapse:", user + 1)
    text, files = await private_answer(fake, pressed)
    assert text.startswith("🎞️ Timelapse of job")
    ((name, anim),) = files
    assert name.endswith((".webp", ".gif")) and frame_count(anim) > 1


async def test_a_tight_limit_forces_a_smaller_encode_of_both(
    running: Running, clean: FakeDiscord
) -> None:
    fake = clean
    limit = 4000
    share = limit * UPLOAD_HEADROOM * ANIMATION_SHARE
    payload = await send_slash(fake, fake.snowflake(), timelapse=True, upload_limit=limit)
    final = await final_webhook_edit(fake, payload["token"])
    (_, result), (_, anim) = final.files
    assert len(anim) <= share and frame_count(anim) > 1
    assert len(result) + len(anim) <= limit * UPLOAD_HEADROOM
    # The same frames without a budget would not have fitted: the limit shaped this encode.
    kept = frames_file(running, job_id_of(final.json)).read_bytes()
    assert len(encode_timelapse(unpack_frames(kept)).data) > share


async def test_the_button_after_the_frames_are_gone_says_how_long_they_are_kept(
    running: Running, clean: FakeDiscord
) -> None:
    fake = clean
    user = fake.snowflake()
    payload = await send_slash(fake, user)
    final = await final_webhook_edit(fake, payload["token"])
    assert len(final.files) == 1  # not asked for: the button offers it
    job_id = job_id_of(final.json)
    assert f"nst:timelapse:{job_id}:{user}" in buttons(final.json)
    # Once the delivery is recorded only the frames are left in the folder.
    await fake.wait_until(lambda: not (frames_file(running, job_id).parent / "nstbot.png").exists())
    frames_file(running, job_id).unlink()  # as the keep_hours sweep does

    pressed = await press(fake, fake.originals[payload["token"]], "nst:timelapse:", user)
    text, _ = await private_answer(fake, pressed)
    assert text == (
        "The timelapse of this picture is no longer kept: timelapses are kept for 24 hours "
        "after the picture is made."
    )


async def test_damaged_frames_are_answered_plainly(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    user = fake.snowflake()
    payload = await send_slash(fake, user)
    final = await final_webhook_edit(fake, payload["token"])
    job_id = job_id_of(final.json)
    frames_file(running, job_id).write_bytes(b"RIFF\x10\x00\x00\x00WEBPgarbage" * 4)

    pressed = await press(fake, fake.originals[payload["token"]], "nst:timelapse:", user)
    text, files = await private_answer(fake, pressed)
    assert text == "🎞️ The timelapse of this picture cannot be read any more, sorry."
    assert files == []


async def test_frames_that_cannot_be_stored_still_come_with_the_result(
    running: Running, clean: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = clean
    files = running.bot.scheduler._records.files
    write_file = files.write_file

    def disk_full_for_frames(path: Path, data: bytes) -> None:
        if path.name == TIMELAPSE_FILE:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write_file(path, data)

    monkeypatch.setattr(files, "write_file", disk_full_for_frames)
    payload = await send_slash(fake, fake.snowflake(), timelapse=True)
    final = await final_webhook_edit(fake, payload["token"])
    (_, result), (_, anim) = final.files
    assert frame_count(anim) > 1 and frame_count_or_still(result) == 1
    job_id = job_id_of(final.json)
    assert not frames_file(running, job_id).exists()
    assert not any(b.startswith("nst:timelapse:") for b in buttons(final.json))


async def test_help_tells_how_to_get_one(running: Running, clean: FakeDiscord) -> None:
    fake = clean
    payload = fake.interaction(fake.slash("stylize-help", []), user_id=fake.snowflake())
    await fake.dispatch("INTERACTION_CREATE", payload)
    (answer,) = await fake.wait_for("POST", rf"/interactions/{payload['id']}/")
    text = answer.json["data"]["content"]
    assert "`timelapse`" in text and "**Timelapse**" in text and "24 h" in text
    assert "[timelapse]" in text  # the prefix usage (message commands are on here)
    assert len(text) <= 2000  # Discord's message limit
