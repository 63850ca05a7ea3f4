"""Output: results encoded under a byte budget (PNG, else WebP, else JPEG), and progress previews.

encode() writes `metadata` as PNG text chunks; for WebP and JPEG it goes, as JSON, into the EXIF
ImageDescription tag. JPEG cannot carry alpha, so it is dropped there (the pixels are on white).
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
from typing import Any

from PIL import Image, PngImagePlugin

from nstbot.images.modes import on_white, split_alpha
from nstbot.images.refusals import ImageRejected

log = logging.getLogger(__name__)

_LADDER = (50, 60, 70, 80, 90)  # ascending, for the binary search in _ladder()
_WEBP_MAX_SIDE = 16383
_SAMPLE_ABOVE = 1_000_000  # pixels; larger images get their sizes predicted from sample bands
_SAMPLE_PIXELS = 600_000


def _prepare(
    image: Image.Image, alpha: Image.Image | None
) -> tuple[Image.Image, Image.Image | None]:
    base, own = split_alpha(image)
    if own is not None:
        base = on_white(base, own)
        alpha = own if alpha is None else alpha
    rgb = base.convert("RGB")
    if alpha is not None:
        alpha = alpha.convert("L") if alpha.mode != "L" else alpha
        if alpha.size != rgb.size:
            alpha = alpha.resize(rgb.size, Image.Resampling.LANCZOS)
        if alpha.getextrema() == (255, 255):
            alpha = None
    return rgb, alpha


def _save(im: Image.Image, fmt: str, opts: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **opts)
    return buf.getvalue()


def _sized(im: Image.Image, fmt: str, opts: dict[str, Any]) -> tuple[bytes | None, float]:
    """The encoding and its size; for large images only a size predicted from sample bands."""
    w, h = im.size
    band = max(8, _SAMPLE_PIXELS // (3 * w))
    if w * h <= _SAMPLE_ABOVE or 3 * band >= h:
        data = _save(im, fmt, opts)
        return data, len(data)
    cheap = {k: v for k, v in opts.items() if k not in ("pnginfo", "exif")}
    ys = (h // 6, h // 2 - band // 2, h - h // 6 - band)
    sampled = sum(len(_save(im.crop((0, y, w, y + band)), fmt, cheap)) for y in ys)
    return None, sampled * h / (3 * band)


def _attempt(
    im: Image.Image, fmt: str, opts: dict[str, Any], max_bytes: int
) -> tuple[bytes | None, float]:
    """The encoding if it fits, and its (measured or predicted) size."""
    data, size = _sized(im, fmt, opts)
    if data is None and size <= 1.2 * max_bytes:
        data = _save(im, fmt, opts)
        size = len(data)
    return (data if size <= max_bytes else None), size


def _ladder(
    im: Image.Image, fmt: str, opts: dict[str, Any], max_bytes: int
) -> tuple[bytes | None, float]:
    """The highest quality rung that fits, assuming size grows with quality."""
    tried: dict[int, tuple[bytes | None, float]] = {}
    lo, hi, best = 0, len(_LADDER) - 1, -1
    while lo <= hi:  # binary search on cheap predictions, then confirm with full encodes
        mid = (lo + hi) // 2
        tried[mid] = _sized(im, fmt, {**opts, "quality": _LADDER[mid]})
        if tried[mid][1] <= max_bytes:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    smallest = min(size for _, size in tried.values())
    for i in range(best, max(best - 2, -1), -1):
        data = tried.get(i, (None, 0.0))[0] or _save(im, fmt, {**opts, "quality": _LADDER[i]})
        if len(data) <= max_bytes:
            return data, smallest
        smallest = min(smallest, len(data))
    return None, smallest


def _fit(
    rgb: Image.Image, alpha: Image.Image | None, max_bytes: int, meta: dict[str, Any]
) -> tuple[tuple[bytes, str] | None, float]:
    full = rgb
    if alpha is not None:
        full = rgb.copy()
        full.putalpha(alpha)
    data, png_size = _attempt(full, "PNG", {"pnginfo": meta["pnginfo"]}, max_bytes)
    if data is not None:
        return (data, "png"), png_size
    smallest = png_size
    exif = {"exif": meta["exif"]}
    if max(rgb.size) <= _WEBP_MAX_SIDE:
        # Lossless WebP rarely beats PNG by more than a third; skip it when it cannot help.
        if png_size <= 1.5 * max_bytes:
            data, size = _attempt(full, "WEBP", {**exif, "lossless": True}, max_bytes)
            if data is not None:
                return (data, "webp"), size
        data, size = _ladder(full, "WEBP", {**exif, "method": 4}, max_bytes)
        if data is not None:
            return (data, "webp"), size
        smallest = min(smallest, size)
    data, size = _ladder(rgb, "JPEG", exif, max_bytes)
    if data is not None:
        return (data, "jpg"), size
    return None, min(smallest, size)


def _metadata(metadata: dict[str, str] | None) -> dict[str, Any]:
    if not metadata:
        return {"pnginfo": None, "exif": b""}
    info = PngImagePlugin.PngInfo()
    for key, value in metadata.items():
        # PNG keywords are 1-79 Latin-1 characters; values that are not Latin-1 go to iTXt.
        keyword = str(key).encode("latin-1", "replace").decode("latin-1")[:79].strip() or "key"
        info.add_text(keyword, str(value))
    exif = Image.Exif()
    exif[0x010E] = json.dumps(metadata, sort_keys=True, separators=(",", ":"), default=str)
    exif[0x0131] = "nstbot"
    return {"pnginfo": info, "exif": exif.tobytes()}


def encode(
    image: Image.Image,
    *,
    max_bytes: int,
    alpha: Image.Image | None = None,
    metadata: dict[str, str] | None = None,
    basename: str = "nstbot",
) -> tuple[bytes, str]:
    """Encode as PNG, else WebP, else JPEG, shrinking as needed; never more than max_bytes."""
    if max_bytes < 1:
        raise ValueError("max_bytes must be positive")
    rgb, alpha = _prepare(image, alpha)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", basename).strip("._")[:64] or "nstbot"
    meta = _metadata(metadata)
    w, h = rgb.size
    scale, cur, cur_alpha = 1.0, rgb, alpha
    for _ in range(40):
        found, smallest = _fit(cur, cur_alpha, max_bytes, meta)
        if found is not None:
            data, ext = found
            return data, f"{name}.{ext}"
        if max(cur.size) <= 8:
            break
        # Bytes grow roughly with pixel count: jump near the size that should fit.
        scale *= min(0.75, 0.9 * math.sqrt(max_bytes / max(smallest, 1.0)))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        cur = rgb.resize(size, Image.Resampling.LANCZOS)
        cur_alpha = alpha.resize(size, Image.Resampling.LANCZOS) if alpha is not None else None
    log.info("result not encodable within %d bytes", max_bytes)
    raise ImageRejected(
        f"I couldn't fit the result into {max_bytes} bytes.", f"does not fit into {max_bytes} bytes"
    )


def encode_preview(image: Image.Image, *, max_bytes: int = 100_000, max_side: int = 256) -> bytes:
    """A small JPEG for live progress, never more than max_bytes."""
    if max_bytes < 1 or max_side < 1:
        raise ValueError("max_bytes and max_side must be positive")
    rgb, _ = _prepare(image, None)
    w, h = rgb.size
    side = max_side
    while side >= 8:
        scale = min(1.0, side / max(w, h))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        thumb = (
            rgb
            if size == rgb.size
            else rgb.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
        )
        for quality in (80, 65, 50, 35):
            data = _save(thumb, "JPEG", {"quality": quality})
            if len(data) <= max_bytes:
                return data
        side //= 2
    raise ImageRejected(
        f"I couldn't fit a preview into {max_bytes} bytes.",
        f"does not fit into a {max_bytes}-byte preview",
    )
