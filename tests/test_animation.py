"""Timelapse animations (nstbot.images.animation): budgets, formats, and hostile packed frames."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from nstbot import images
from nstbot.images.animation import (
    Animation,
    AnimationTooLarge,
    encode_timelapse,
    pack_frames,
    unpack_frames,
    webp_animation_available,
)


@pytest.fixture(scope="module")
def frames(data_dir: Path) -> list[Image.Image]:
    """36 frames of a photo turning into stripes, with a bar sweeping across so that each frame
    differs plainly from the last (the lossy encoder merges frames that barely change)."""
    with Image.open(data_dir / "content-astronaut.jpg") as img:
        photo = img.convert("RGB")
    photo.thumbnail((320, 320))
    stripes = Image.new("RGB", photo.size)
    draw = ImageDraw.Draw(stripes)
    for x in range(0, photo.width, 6):
        draw.line([(x, 0), (x + photo.height, photo.height)], fill=(30 + x % 200, 80, 160), width=3)
    out = []
    for i in range(36):
        frame = Image.blend(photo, stripes, i / 35)
        x = i * photo.width // 36
        ImageDraw.Draw(frame).rectangle([x, 0, x + 12, photo.height], fill=(250, 240, 20))
        out.append(frame)
    return out


def decoded(data: bytes) -> tuple[str, int, list[int], tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as im:
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            im.load()
            durations.append(im.info["duration"])
        return im.format, im.n_frames, durations, im.size


def test_webp_is_available_here() -> None:
    # Every supported Pillow wheel has it; without it the GIF path is the only one.
    assert webp_animation_available()


def test_fits_a_small_budget_and_decodes_with_its_frames_and_hold(frames) -> None:
    animation = encode_timelapse(frames, max_bytes=200_000)
    assert isinstance(animation, Animation)
    assert animation.format == "webp" and animation.content_type == "image/webp"
    assert len(animation.data) <= 200_000
    fmt, count, durations, size = decoded(animation.data)
    assert (fmt, count, size) == ("WEBP", 36, animation.size)
    assert animation.frames == 36
    assert durations[:-1] == [83] * 35  # 12 fps
    assert durations[-1] == 83 + 1000  # the result held about a second
    assert animation.duration_s == pytest.approx(sum(durations) / 1000)
    assert animation.filename("job 12/timelapse") == "job_12_timelapse.webp"


def test_without_a_budget_frames_keep_their_size(frames) -> None:
    animation = encode_timelapse(frames)
    assert animation.size == frames[0].size


def test_tighter_budgets_give_smaller_frames(frames) -> None:
    roomy = encode_timelapse(frames, max_bytes=2_000_000)
    tight = encode_timelapse(frames, max_bytes=60_000)
    assert len(tight.data) <= 60_000
    assert roomy.size == frames[0].size
    assert max(tight.size) < max(roomy.size)
    assert abs(tight.size[0] / tight.size[1] - roomy.size[0] / roomy.size[1]) < 0.05


def test_gif_when_asked(frames) -> None:
    animation = encode_timelapse(frames, max_bytes=400_000, format="gif", fps=15, hold_s=0.5)
    assert animation.format == "gif" and animation.content_type == "image/gif"
    assert len(animation.data) <= 400_000
    fmt, count, durations, _ = decoded(animation.data)
    assert (fmt, count) == ("GIF", 36)
    assert durations[:-1] == [70] * 35  # GIF counts in hundredths of a second
    assert durations[-1] == 70 + 500
    assert animation.filename("t") == "t.gif"


def test_impossible_budget_is_a_clear_refusal(frames) -> None:
    with pytest.raises(AnimationTooLarge, match="doesn't fit into 1 KB") as caught:
        encode_timelapse(frames, max_bytes=1000)
    assert isinstance(caught.value, ValueError)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        encode_timelapse([])
    with pytest.raises(ValueError, match="max_bytes"):
        encode_timelapse([Image.new("RGB", (8, 8))], max_bytes=0)


def test_pack_and_unpack_keep_every_frame(frames) -> None:
    # Identical neighbours are merged by the encoder; unpacking restores them.
    some = [frames[0], frames[0], frames[5], frames[9], frames[9], frames[9], frames[35]]
    data = pack_frames(some)
    back = unpack_frames(data)
    assert len(back) == len(some)
    assert {p.size for p in back} == {frames[0].size}
    assert {p.mode for p in back} == {"RGB"}
    assert back[1].tobytes() == back[0].tobytes()
    assert back[2].tobytes() != back[1].tobytes()
    single = unpack_frames(pack_frames([frames[3]]))
    assert len(single) == 1


def test_unpack_refuses_hostile_bytes(frames) -> None:
    data = pack_frames(frames[:10])
    cases = [
        b"",
        b"not an image at all",
        data[: len(data) // 2],  # truncated
        data[:30] + bytes(len(data) - 30),  # damaged after the header
    ]
    for bad in cases:
        with pytest.raises(images.ImageRejected):
            unpack_frames(bad)
    with pytest.raises(images.ImageRejected, match="too many frames"):
        unpack_frames(data, max_frames=5)
    with pytest.raises(images.ImageRejected, match="too large"):
        unpack_frames(data, max_side=100)
    with pytest.raises(images.ImageRejected, match="too large"):
        unpack_frames(data, max_pixels=5 * frames[0].width * frames[0].height)


def test_unpack_refuses_a_huge_canvas_before_decoding() -> None:
    # A WebP header claiming 16384 x 16384 pixels: refused from the header alone.
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(
        buf, "WEBP", save_all=True, append_images=[Image.new("RGB", (16, 16), "red")]
    )
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"VP8X"
    data[24:27] = (16383).to_bytes(3, "little")
    data[27:30] = (16383).to_bytes(3, "little")
    with pytest.raises(images.ImageRejected, match="too large"):
        unpack_frames(bytes(data))


def test_unpack_refuses_a_gif_whose_durations_claim_millions_of_frames() -> None:
    buf = io.BytesIO()
    one, two = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    one.save(buf, "GIF", save_all=True, append_images=[two], duration=[600_000, 10])
    with pytest.raises(images.ImageRejected, match="too many frames"):
        unpack_frames(buf.getvalue())
