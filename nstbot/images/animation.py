"""Timelapse animations: frames encoded within a byte budget, and the compact form frames travel in.

encode_timelapse() tries animated WebP at falling quality, then smaller frames, and GIF where WebP
cannot fit (or is not available, or is asked for). pack_frames()/unpack_frames() carry frames from
the worker to the bot and into the job folder as a high-quality animated WebP; unpack_frames()
reads bytes from disk or the network, so it treats them as hostile. Pillow only: no torch here.
"""

from __future__ import annotations

import io
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image, features

from nstbot.images.intake import header_size, sniff_format
from nstbot.images.refusals import ImageRejected, megabytes, reject
from nstbot.params import TIMELAPSE_FPS

log = logging.getLogger(__name__)

AnimationFormat = Literal["webp", "gif"]

_WEBP_QUALITIES = (80, 65, 50, 35)  # highest first
_GIF_COLOURS = (256, 128, 64, 32)
_MIN_SIDE = 48  # frames smaller than this show nothing worth sending
_PACK_QUALITY = 90
# Encoders merge a frame identical to the one before into it, adding the durations; packed frames
# each last one unit, so a merged frame's duration says how many frames it stands for.
_PACK_UNIT_MS = 10
_CONTENT_TYPES = {"webp": "image/webp", "gif": "image/gif"}


class AnimationTooLarge(ValueError):
    """No encoding of the frames fits the byte budget; str() is fit to show a user."""


@dataclass(frozen=True)
class Animation:
    """An encoded timelapse."""

    data: bytes
    format: str
    """"webp" or "gif"."""
    size: tuple[int, int]
    frames: int
    duration_s: float

    def filename(self, stem: str) -> str:
        """A safe file name for an upload, e.g. "timelapse.webp"."""
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:64] or "timelapse"
        return f"{safe}.{self.format}"

    @property
    def content_type(self) -> str:
        """The MIME type of `data`."""
        return _CONTENT_TYPES[self.format]


def webp_animation_available() -> bool:
    """Whether this Pillow writes animated WebP (always since Pillow 11, optional before)."""
    if not features.check_module("webp"):
        return False
    # Pillow 11 dropped the "webp_anim" feature when animation support became unconditional.
    return "webp_anim" not in features.features or bool(features.check_feature("webp_anim"))


def encode_timelapse(
    frames: Sequence[Image.Image],
    *,
    max_bytes: int | None = None,
    fps: int = TIMELAPSE_FPS,
    hold_s: float = 1.0,
    format: AnimationFormat | None = None,
) -> Animation:
    """Encode `frames` at `fps`, the last one held `hold_s` longer, within `max_bytes`."""
    if not frames:
        raise ValueError("a timelapse needs at least one frame")
    if fps < 1 or not 0 <= hold_s <= 60:
        raise ValueError("fps must be at least 1 and hold_s between 0 and 60")
    if max_bytes is not None and max_bytes < 1:
        raise ValueError("max_bytes must be positive")
    if format not in (None, "webp", "gif"):
        raise ValueError("format must be webp or gif")
    if format == "webp" and not webp_animation_available():
        raise ValueError("this Pillow cannot write animated WebP")
    first = frames[0].convert("RGB")
    pictures = [first] + [_same_size(f.convert("RGB"), first.size) for f in frames[1:]]
    if format is not None:
        order: tuple[AnimationFormat, ...] = (format,)
    else:
        order = ("webp", "gif") if webp_animation_available() else ("gif",)
    for fmt in order:
        found = _fit(pictures, fmt, fps, hold_s, max_bytes)
        if found is not None:
            return found
    assert max_bytes is not None  # without a budget the first rung always fits
    log.info("timelapse of %d frames not encodable within %d bytes", len(pictures), max_bytes)
    raise AnimationTooLarge(
        f"The timelapse doesn't fit into {_budget(max_bytes)}, even with small frames."
    )


def pack_frames(frames: Sequence[Image.Image]) -> bytes:
    """The frames as one compact file (a high-quality animated WebP; GIF without WebP)."""
    if not frames:
        raise ValueError("no frames to pack")
    first = frames[0].convert("RGB")
    pictures = [first] + [_same_size(f.convert("RGB"), first.size) for f in frames[1:]]
    durations = [_PACK_UNIT_MS] * len(pictures)
    if webp_animation_available():
        return _save(pictures, "webp", durations, {"quality": _PACK_QUALITY, "method": 4})
    return _save(_quantized(pictures, 256), "gif", durations, {})


def unpack_frames(
    data: bytes,
    *,
    max_frames: int = 200,
    max_side: int = 2048,
    max_pixels: int = 1 << 25,
) -> list[Image.Image]:
    """The frames of pack_frames() output, RGB; ImageRejected for anything else.

    `max_side` bounds each frame's sides and `max_pixels` all frames' pixels together, both
    checked before the pixels are decoded.
    """
    data = bytes(data)
    fmt = sniff_format(data)
    if fmt not in ("WEBP", "GIF"):
        raise reject("The saved timelapse frames are unreadable.", "frames: not WebP or GIF")
    canvas = header_size(data, fmt)
    if fmt == "GIF" and len(data) >= 10:
        canvas = int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if canvas is not None:
        _check_frame(canvas, 1, max_side, max_pixels)
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            return _read_frames(im, max_frames, max_side, max_pixels)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise reject("The saved timelapse frames are too large.", "frames: bomb guard") from None
    except Exception as exc:  # any damage Pillow trips over
        raise reject(
            "The saved timelapse frames are damaged.",
            f"frames: {type(exc).__name__} in {len(data)} bytes",
        ) from None


def _read_frames(
    im: Image.Image, max_frames: int, max_side: int, max_pixels: int
) -> list[Image.Image]:
    count = getattr(im, "n_frames", 1)
    if count > max_frames:
        raise reject("The saved timelapse has too many frames.", f"frames: {count} > {max_frames}")
    out: list[Image.Image] = []
    for index in range(count):
        im.seek(index)
        _check_frame(im.size, len(out) + 1, max_side, max_pixels)
        im.load()
        picture = im.convert("RGB")
        if out and picture.size != out[0].size:
            raise reject(
                "The saved timelapse frames are damaged.", "frames: frames of different sizes"
            )
        copies = max(1, round(int(im.info.get("duration") or 0) / _PACK_UNIT_MS))
        if len(out) + copies > max_frames:
            raise reject("The saved timelapse has too many frames.", f"frames: over {max_frames}")
        _check_frame(picture.size, len(out) + copies, max_side, max_pixels)
        out.extend([picture] * copies)
    return out


def _check_frame(size: tuple[int, int], frames: int, max_side: int, max_pixels: int) -> None:
    w, h = size
    if w > max_side or h > max_side or w * h * frames > max_pixels:
        raise reject(
            "The saved timelapse frames are too large.",
            f"frames: {frames} of {w}x{h} over {max_side} px or {megabytes(max_pixels)} MP",
        )


def _fit(
    pictures: list[Image.Image],
    fmt: AnimationFormat,
    fps: int,
    hold_s: float,
    max_bytes: int | None,
) -> Animation | None:
    """The best rung of `fmt` that fits, shrinking the frames until one does (or none can)."""
    durations = _durations(len(pictures), fps, hold_s, fmt)
    rungs = _WEBP_QUALITIES if fmt == "webp" else _GIF_COLOURS
    w, h = pictures[0].size
    current = pictures

    def made(data: bytes) -> Animation:
        seconds = round(sum(durations) / 1000, 3)
        return Animation(data, fmt, current[0].size, len(pictures), seconds)

    scale = 1.0
    while True:
        best = _encode(current, fmt, rungs[0], durations)
        if max_bytes is None or len(best) <= max_bytes:
            return made(best)
        # The worst rung tells whether this size can fit at all; then the rungs between.
        worst = _encode(current, fmt, rungs[-1], durations)
        if len(worst) <= max_bytes:
            for rung in rungs[1:-1]:
                data = _encode(current, fmt, rung, durations)
                if len(data) <= max_bytes:
                    return made(data)
            return made(worst)
        # Bytes grow about with the pixel count: jump near the size that should fit.
        scale *= min(0.8, 0.95 * math.sqrt(max_bytes / len(worst)))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if max(size) < _MIN_SIDE:
            return None
        current = [p.resize(size, Image.Resampling.LANCZOS) for p in pictures]


def _encode(
    pictures: list[Image.Image], fmt: AnimationFormat, rung: int, durations: list[int]
) -> bytes:
    if fmt == "webp":
        return _save(pictures, fmt, durations, {"quality": rung, "method": 4})
    return _save(_quantized(pictures, rung), fmt, durations, {})


def _save(
    pictures: list[Image.Image], fmt: str, durations: list[int], opts: dict[str, Any]
) -> bytes:
    buf = io.BytesIO()
    pictures[0].save(
        buf,
        fmt.upper(),
        save_all=True,
        append_images=pictures[1:],
        duration=durations if len(pictures) > 1 else durations[0],
        loop=0,
        **opts,
    )
    return buf.getvalue()


def _quantized(pictures: list[Image.Image], colours: int) -> list[Image.Image]:
    """The frames on one shared palette, so colours do not flicker from frame to frame."""
    w, h = pictures[0].size
    picks = [*pictures[:: max(1, len(pictures) // 8)], pictures[-1]]
    sheet = Image.new("RGB", (w, h * len(picks)))
    for i, picture in enumerate(picks):
        sheet.paste(picture, (0, i * h))
    palette = sheet.quantize(colours, method=Image.Quantize.MEDIANCUT)
    return [p.quantize(palette=palette, dither=Image.Dither.NONE) for p in pictures]


def _durations(count: int, fps: int, hold_s: float, fmt: AnimationFormat) -> list[int]:
    """Milliseconds per frame, the last held longer; GIF counts in hundredths of a second."""
    step = 10 if fmt == "gif" else 1
    frame = max(step, round(1000 / fps / step) * step)
    hold = round(hold_s * 1000 / step) * step
    return [frame] * (count - 1) + [frame + hold]


def _same_size(picture: Image.Image, size: tuple[int, int]) -> Image.Image:
    return picture if picture.size == size else picture.resize(size, Image.Resampling.LANCZOS)


def _budget(max_bytes: int) -> str:
    if max_bytes >= 100_000:
        return f"{megabytes(max_bytes)} MB"
    return f"{max(1, round(max_bytes / 1000))} KB"
