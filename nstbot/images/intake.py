"""Intake: uploads from strangers checked and normalized to 8-bit RGB, pixels decoded last.

decode() decides the format from the bytes, enforces size limits from the header before any pixels
are decoded, and turns every failure into ImageRejected. check_declared() refuses an attachment
from its declared metadata before it is downloaded.
"""

from __future__ import annotations

import codecs
import io
import logging
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageCms, ImageFile

from nstbot.config import ImagesConfig as ImageLimits
from nstbot.images.modes import on_white, split_alpha
from nstbot.images.refusals import (
    ACCEPTED,
    ImageRejected,
    megabytes,
    reject,
    unsupported,
)
from nstbot.params import too_long_and_thin

log = logging.getLogger(__name__)

_LABELS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "GIF": "GIF", "BMP": "BMP"}
# Progressive JPEGs cost a pass over the whole image per scan; real files have about 10 to 20.
_MAX_JPEG_SCANS = 256
_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_FOREIGN = (
    (b"%PDF", "a PDF"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x00\x00\x01\x00", "an icon file"),
    (b"8BPS", "a Photoshop document"),
    (b"\xff\x0a", "a JPEG XL image"),
    (b"\x00\x00\x00\x0cJXL ", "a JPEG XL image"),
    (b"\x1a\x45\xdf\xa3", "a WebM video"),
    (b"OggS", "an Ogg media file"),
    (b"ID3", "an MP3 audio file"),
    (b"\x7fELF", "a program"),
    (b"MZ", "a program"),
)
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}


DEFAULT_LIMITS = ImageLimits()


@dataclass
class DecodedImage:
    image: Image.Image
    """8-bit RGB, composited on white where the source was transparent."""
    alpha: Image.Image | None
    """Mode "L", same size as `image`; None when the source was opaque."""
    source_format: str
    original_size: tuple[int, int]
    """Width and height as the user sees them (after EXIF orientation), before any resizing."""
    notes: list[str] = field(default_factory=list)


def sniff_format(data: bytes) -> str | None:
    """The Pillow format name of an accepted image type, judged from magic numbers, else None."""
    head = bytes(data[:32])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    # "BM" alone is too weak (text can start with it), so also require a known DIB header size.
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    return None


def describe_bytes(data: bytes) -> str:
    """What data that is not an accepted image looks like ("text", "a PDF", "an HTML page", ...)."""
    if not data:
        return "empty data"
    for magic, what in _FOREIGN:
        if data.startswith(magic):
            return what
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "an AVIF image"
        if brand in _HEIF_BRANDS:
            return "a HEIC image"
        return "a QuickTime video" if brand == b"qt  " else "an MP4 video"
    if data.startswith(b"RIFF"):
        return {b"AVI ": "an AVI video", b"WAVE": "a WAV audio file"}.get(data[8:12], "a RIFF file")
    sample = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    low = sample.lower()
    if low.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if b"<svg" in low:
        return "an SVG drawing"
    if any(tag in low for tag in (b"<html", b"<head", b"<body")):
        return "an HTML page"
    try:
        # Incremental so that a character cut at the end of the sample is not an error.
        text = codecs.getincrementaldecoder("utf-8")().decode(sample)
    except UnicodeDecodeError:
        return "unrecognized data"
    if text and all(c.isprintable() or c in "\t\n\r\f" for c in text):
        return "an XML document" if low.startswith(b"<?xml") else "text"
    return "unrecognized data"


def header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """Dimensions read before Pillow opens the file (Pillow's WebP decoder allocates at open)."""
    if fmt == "PNG" and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if fmt == "WEBP" and len(data) >= 30:
        chunk, le = data[12:16], (lambda a, b: int.from_bytes(data[a:b], "little"))
        if chunk == b"VP8X":
            return 1 + le(24, 27), 1 + le(27, 30)
        if chunk == b"VP8L" and data[20] == 0x2F:
            bits = le(21, 25)
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            return le(26, 28) & 0x3FFF, le(28, 30) & 0x3FFF
    return None


def _pixel_limit(limits: ImageLimits) -> int:
    # Pillow's own bomb guard warns above MAX_IMAGE_PIXELS; treat that warning as a refusal.
    return min(limits.max_pixels, Image.MAX_IMAGE_PIXELS or limits.max_pixels)


def _check_bounds(w: int, h: int, limits: ImageLimits, *, check_small: bool = True) -> None:
    if w > limits.max_side or h > limits.max_side:
        raise reject(
            f"That image is {w}×{h} pixels; each side can be at most {limits.max_side} pixels.",
            f"side too long {w}x{h}",
        )
    max_pixels = _pixel_limit(limits)
    if w * h > max_pixels:
        raise reject(
            f"That image has {megabytes(w * h)} megapixels; the limit is "
            f"{megabytes(max_pixels)} megapixels.",
            f"too many pixels {w}x{h}",
        )
    if check_small and min(w, h) < limits.reject_below:
        raise reject(
            f"That image is only {w}×{h} pixels; each side must be at least "
            f"{limits.reject_below} pixels.",
            f"too small {w}x{h}",
        )


def _target_size(w: int, h: int, limits: ImageLimits, working_size: int | None) -> tuple[int, int]:
    short, long = min(w, h), max(w, h)
    cap = limits.max_side
    if working_size is not None and working_size > 0:
        cap = min(cap, max(working_size, limits.min_side))
    if short < limits.min_side:
        scale = limits.min_side / short
    elif long > cap:
        scale = cap / long
    else:
        return w, h
    # Rounding can leave the long side a pixel over the cap when the short side is scaled up.
    tw, th = min(cap, max(1, round(w * scale))), min(cap, max(1, round(h * scale)))
    if too_long_and_thin(w, h, cap, limits.min_side) or tw * th > limits.max_pixels:
        raise reject(
            f"That image is too long and thin ({w}×{h} pixels) for me to work with; its long "
            f"side can be at most {cap // max(1, limits.min_side)} times its short side.",
            f"aspect ratio {w}x{h}",
            plain=f"is too long and thin ({w}×{h} pixels): its long side can be at most "
            f"{cap // max(1, limits.min_side)} times its short side",
        )
    return tw, th


def _to_srgb(base: Image.Image, icc: bytes | None, notes: list[str]) -> Image.Image:
    if icc:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            # A fresh sRGB profile per call: decode() runs in several threads at once.
            srgb = ImageCms.createProfile("sRGB")
            out = ImageCms.profileToProfile(base, src, srgb, outputMode="RGB")
            if out is not None:
                notes.append("converted its colours from the embedded colour profile to sRGB")
                return out
        except Exception as exc:
            log.debug("colour profile not applied (%s)", type(exc).__name__, exc_info=True)
        notes.append("could not use its embedded colour profile, so colours may be slightly off")
    return base.convert("RGB")


def decode(
    data: bytes,
    *,
    limits: ImageLimits = DEFAULT_LIMITS,
    working_size: int | None = None,
) -> DecodedImage:
    """Check, decode and normalize an upload to 8-bit RGB (plus alpha), or raise ImageRejected."""
    try:
        raw = _checked_bytes(data, limits)
        fmt = _accepted_format(raw, limits)
        return _open(raw, fmt, limits, working_size)
    except ImageRejected:
        raise
    except Exception as exc:
        log.warning("image decode failed unexpectedly (%s)", type(exc).__name__, exc_info=True)
        raise reject(
            "I couldn't read that image.",
            f"unexpected {type(exc).__name__}",
            plain=f"cannot be read ({type(exc).__name__})",
        ) from None


def _checked_bytes(data: Any, limits: ImageLimits) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise unsupported("empty data" if data is None else "unrecognized data")
    data = bytes(data)
    if len(data) > limits.max_bytes:
        raise reject(
            f"That file is {megabytes(len(data))} MB; the limit is "
            f"{megabytes(limits.max_bytes)} MB.",
            f"too many bytes {len(data)}",
        )
    return data


def _accepted_format(data: bytes, limits: ImageLimits) -> str:
    """The format judged from the bytes, once nothing in the header rules the file out."""
    fmt = sniff_format(data)
    if fmt is None:
        raise unsupported(describe_bytes(data))
    if fmt == "JPEG" and data.count(b"\xff\xda") > _MAX_JPEG_SCANS:
        raise reject(
            f"That JPEG file has an unusual structure that I won't decode. {ACCEPTED}",
            "jpeg with too many scans",
            plain=f"is a JPEG with over {_MAX_JPEG_SCANS} scans, which is not decoded",
        )
    if (declared := header_size(data, fmt)) is not None:
        _check_bounds(*declared, limits)
    return fmt


def _open(data: bytes, fmt: str, limits: ImageLimits, working_size: int | None) -> DecodedImage:
    """Pillow's part, with each of its failures turned into a refusal."""
    label = _LABELS[fmt]
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # A process-wide Pillow switch; with it on, damaged files come back half grey.
        log.warning("ImageFile.LOAD_TRUNCATED_IMAGES was on; turning it off")
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            return _normalize(im, fmt, limits, working_size)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise reject(
            f"That image has too many pixels; the limit is "
            f"{megabytes(_pixel_limit(limits))} megapixels.",
            f"decompression bomb guard ({label})",
        ) from None
    except MemoryError:
        raise reject(
            "That image is too large for me to process.",
            "out of memory",
            plain="is too large to decode in the memory available",
        ) from None
    except Exception as exc:
        log.debug("%s decode failed", label, exc_info=True)
        raise reject(
            f"That {label} file is damaged or incomplete, so I can't read it.",
            f"corrupt {label} ({type(exc).__name__}), {len(data)} bytes",
            plain=f"is a damaged or incomplete {label} file",
        ) from None


def _normalize(
    im: Image.Image, fmt: str, limits: ImageLimits, working_size: int | None
) -> DecodedImage:
    w, h = im.size
    _check_bounds(w, h, limits)
    target = _target_size(w, h, limits, working_size)
    notes: list[str] = []
    if getattr(im, "is_animated", False):
        notes.append(f"used the first frame of an animated {_LABELS[fmt]}")
    if fmt == "JPEG" and target[0] < w:
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: far less work and memory.
        im.draft(None, target)
    im.load()
    orientation = _orientation(im)
    icc = im.info.get("icc_profile")
    base, alpha = _resized(*_composited(im), target)
    if (method := _ORIENTATION.get(orientation)) is not None:
        # Transposing after the resize is cheaper and gives the same pixels.
        base = base.transpose(method)
        alpha = alpha.transpose(method) if alpha is not None else None
        notes.append("turned it as its EXIF orientation says")
    image = _to_srgb(base, icc if isinstance(icc, bytes) else None, notes)
    if target != (w, h):
        how = "scaled up" if target[0] > w else "scaled down"
        shown = f"{h}×{w}" if orientation in (5, 6, 7, 8) else f"{w}×{h}"
        notes.append(f"{how} from {shown} to {image.width}×{image.height} pixels")
    if alpha is not None:
        notes.append("put its transparent parts on white (the transparency is kept apart)")
    size = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    return DecodedImage(image, alpha, fmt, size, notes)


def _orientation(im: Image.Image) -> int | None:
    try:
        value = im.getexif().get(0x0112)
    except Exception:  # a broken EXIF block only costs us the orientation
        return None
    return value if isinstance(value, int) else None


def _composited(im: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """The base on white where the image is transparent, and its alpha (None when opaque)."""
    base, alpha = split_alpha(im)
    if alpha is None or alpha.getextrema() == (255, 255):
        return base, None
    # Compositing before resizing matches a premultiplied resize: no dark fringes.
    return on_white(base, alpha), alpha


def _resized(
    base: Image.Image, alpha: Image.Image | None, size: tuple[int, int]
) -> tuple[Image.Image, Image.Image | None]:
    if base.size == size:
        return base, alpha
    # A box pre-reduction (reducing_gap) halves the cost of big downscales; at 3 it is
    # indistinguishable from a plain Lanczos resize.
    gap = 3.0 if size[0] < base.width else None
    base = base.resize(size, Image.Resampling.LANCZOS, reducing_gap=gap)
    if alpha is not None:
        alpha = alpha.resize(size, Image.Resampling.LANCZOS, reducing_gap=gap)
    return base, alpha


_CONTENT_TYPES = {
    "text/html": "an HTML page",
    "application/pdf": "a PDF",
    "application/zip": "a ZIP archive",
    "video/mp4": "an MP4 video",
    "image/svg+xml": "an SVG drawing",
    "image/tiff": "a TIFF image",
    "image/heic": "a HEIC image",
    "image/heif": "a HEIC image",
    "image/avif": "an AVIF image",
    "image/jxl": "a JPEG XL image",
    "image/x-icon": "an icon file",
    "image/vnd.microsoft.icon": "an icon file",
}


def check_declared(
    *,
    size: int | None,
    content_type: str | None,
    width: int | None,
    height: int | None,
    limits: ImageLimits,
) -> None:
    """Refuse an attachment from its declared metadata alone, before downloading it."""
    if size is not None and size > limits.max_bytes:
        raise reject(
            f"That file is {megabytes(size)} MB; the limit is {megabytes(limits.max_bytes)} MB.",
            f"declared size {size}",
        )
    ctype = (content_type or "").split(";")[0].strip().lower()
    # Files without a known extension arrive as octet-stream; the bytes decide those.
    if ctype and ctype not in ("application/octet-stream", "binary/octet-stream"):
        if ctype in _CONTENT_TYPES:
            raise unsupported(_CONTENT_TYPES[ctype])
        if not ctype.startswith("image/"):
            kind = ctype.split("/")[0]
            what = {"text": "text", "video": "a video", "audio": "an audio file"}.get(kind)
            raise unsupported(what or "a file that is not an image")
    w = width if width and width > 0 else None
    h = height if height and height > 0 else None
    if w is not None or h is not None:
        _check_bounds(w or 1, h or 1, limits, check_small=False)
