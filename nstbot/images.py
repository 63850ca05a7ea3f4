"""Image intake and output: every upload is checked and normalized here, every result encoded here.

Uploads come from strangers, so decode() decides the format from the bytes, enforces size limits
from the header before any pixels are decoded, and turns every failure into ImageRejected, whose
message can be shown to the user as is. Pillow only: the bot process must never import torch.

Policies worth knowing:
- Images under `min_side` on the short side are upscaled to it; a side under `reject_below` is
  refused. When the short side cannot reach `min_side` while the long side stays within the
  working size (or `max_side`, or `max_pixels`), the image is refused as too long and thin: with a
  working size of 512 and min_side 32 the sides may differ by a factor of at most 16.
- Transparent images are composited on white; the alpha channel comes back as `DecodedImage.alpha`.
- encode() writes `metadata` as PNG text chunks; for WebP and JPEG it goes, as JSON, into the EXIF
  ImageDescription tag. JPEG cannot carry alpha, so it is dropped there (the pixels are on white).
"""

from __future__ import annotations

import codecs
import io
import json
import logging
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from PIL import Image, ImageCms, ImageFile, PngImagePlugin

from nstbot.params import too_long_and_thin

log = logging.getLogger(__name__)

ACCEPTED = "Please send a PNG, JPEG, WebP, GIF or BMP image."
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


class ImageRejected(ValueError):
    """An image the bot will not use; str() is a short message fit to show a chat user as is.

    `plain` says the same without the bot's voice, as a predicate whose subject is the file
    ("is an HTML page, not a PNG, ... image"), for surfaces that name the file themselves (the CLI).
    """

    def __init__(self, message: str, plain: str | None = None) -> None:
        super().__init__(message)
        self.plain = plain if plain is not None else _predicate(message)


def _predicate(message: str) -> str:
    for subject in ("That image ", "That file "):
        if message.startswith(subject):
            return message.removeprefix(subject)
    return f"was refused: {message}"


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 25_000_000
    max_pixels: int = 40_000_000
    max_side: int = 12_000
    min_side: int = 32
    reject_below: int = 8

    @classmethod
    def from_config(cls, cfg: Any) -> ImageLimits:
        """Limits from an ImagesConfig (or a whole Config, whose `images` section is used)."""
        section = getattr(cfg, "images", cfg)
        return cls(**{f.name: getattr(section, f.name) for f in fields(cls)})


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


def _reject(message: str, reason: str, plain: str | None = None) -> ImageRejected:
    log.info("image rejected: %s", reason)
    return ImageRejected(message, plain)


def _unsupported(what: str) -> ImageRejected:
    return _reject(
        f"I received {what}, which I can't use. {ACCEPTED}",
        f"not an image ({what})",
        plain=f"is {what}, not a PNG, JPEG, WebP, GIF or BMP image",
    )


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f}".removesuffix(".0")


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


def _header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
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
        raise _reject(
            f"That image is {w}×{h} pixels; each side can be at most {limits.max_side} pixels.",
            f"side too long {w}x{h}",
        )
    max_pixels = _pixel_limit(limits)
    if w * h > max_pixels:
        raise _reject(
            f"That image has {_mb(w * h)} megapixels; the limit is {_mb(max_pixels)} megapixels.",
            f"too many pixels {w}x{h}",
        )
    if check_small and min(w, h) < limits.reject_below:
        raise _reject(
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
        raise _reject(
            f"That image is too long and thin ({w}×{h} pixels) for me to work with; its long "
            f"side can be at most {cap // max(1, limits.min_side)} times its short side.",
            f"aspect ratio {w}x{h}",
            plain=f"is too long and thin ({w}×{h} pixels): its long side can be at most "
            f"{cap // max(1, limits.min_side)} times its short side",
        )
    return tw, th


def _to_8bit(im: Image.Image) -> Image.Image:
    """16-bit and float greyscale to "L", scaling rather than clipping (Pillow clips at 255)."""
    if im.mode.startswith("I;16"):
        im, lo, hi = im.convert("I"), 0.0, 65535.0
    else:
        if im.mode != "F":
            im = im.convert("I")
        lo, hi = im.getextrema()
        if im.mode == "F" and lo >= 0 and hi <= 1:
            lo, hi = 0.0, 1.0
        elif lo >= 0 and hi <= 255:
            lo, hi = 0.0, 255.0
        elif lo >= 0 and hi <= 65535:
            lo, hi = 0.0, 65535.0
    if not hi > lo:  # also catches NaN
        return Image.new("L", im.size, 0)
    scale = 255.0 / (hi - lo)
    return im.point(lambda v: v * scale - lo * scale + 0.5).convert("L")


def _split(im: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """Base in L, RGB or CMYK (what colour profiles describe), and the alpha channel if any."""
    if im.mode.startswith(("I", "F")):
        return _to_8bit(im), None
    if im.mode == "LA":
        return im.getchannel("L"), im.getchannel("A")
    if im.mode in ("RGBA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        return rgba.convert("RGB"), rgba.getchannel("A")
    if im.mode in ("L", "RGB", "CMYK"):
        return im, None
    return im.convert("L" if im.mode == "1" else "RGB"), None


def _on_white(base: Image.Image, alpha: Image.Image) -> Image.Image:
    out = Image.new(base.mode, base.size, "white")
    out.paste(base, mask=alpha)
    return out


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
        return _decode(data, limits, working_size)
    except ImageRejected:
        raise
    except Exception as exc:
        log.warning("image decode failed unexpectedly (%s)", type(exc).__name__, exc_info=True)
        raise _reject(
            "I couldn't read that image.",
            f"unexpected {type(exc).__name__}",
            plain=f"cannot be read ({type(exc).__name__})",
        ) from None


def _decode(data: Any, limits: ImageLimits, working_size: int | None) -> DecodedImage:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _unsupported("empty data" if data is None else "unrecognized data")
    data = bytes(data)
    if len(data) > limits.max_bytes:
        raise _reject(
            f"That file is {_mb(len(data))} MB; the limit is {_mb(limits.max_bytes)} MB.",
            f"too many bytes {len(data)}",
        )
    fmt = sniff_format(data)
    if fmt is None:
        raise _unsupported(describe_bytes(data))
    label = _LABELS[fmt]
    if fmt == "JPEG" and data.count(b"\xff\xda") > _MAX_JPEG_SCANS:
        raise _reject(
            f"That JPEG file has an unusual structure that I won't decode. {ACCEPTED}",
            "jpeg with too many scans",
            plain=f"is a JPEG with over {_MAX_JPEG_SCANS} scans, which is not decoded",
        )
    if (declared := _header_size(data, fmt)) is not None:
        _check_bounds(*declared, limits)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # A process-wide Pillow switch; with it on, damaged files come back half grey.
        log.warning("ImageFile.LOAD_TRUNCATED_IMAGES was on; turning it off")
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    notes: list[str] = []
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            w, h = im.size
            _check_bounds(w, h, limits)
            tw, th = _target_size(w, h, limits, working_size)
            resized = None if (tw, th) == (w, h) else "scaled up" if tw > w else "scaled down"
            if getattr(im, "is_animated", False):
                notes.append(f"used the first frame of an animated {label}")
            if fmt == "JPEG" and tw < w:
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: far less work and memory.
                im.draft(None, (tw, th))
            im.load()
            try:
                orientation = im.getexif().get(0x0112)
            except Exception:  # a broken EXIF block only costs us the orientation
                orientation = None
            method = _ORIENTATION.get(orientation) if isinstance(orientation, int) else None
            icc = im.info.get("icc_profile")
            base, alpha = _split(im)
            if alpha is not None and alpha.getextrema() == (255, 255):
                alpha = None
            if alpha is not None:
                # Compositing before resizing matches a premultiplied resize: no dark fringes.
                base = _on_white(base, alpha)
            if base.size != (tw, th):
                # A box pre-reduction (reducing_gap) halves the cost of big downscales; at 3
                # it is indistinguishable from a plain Lanczos resize.
                gap = 3.0 if tw < base.width else None
                base = base.resize((tw, th), Image.Resampling.LANCZOS, reducing_gap=gap)
                if alpha is not None:
                    alpha = alpha.resize((tw, th), Image.Resampling.LANCZOS, reducing_gap=gap)
            if method is not None:
                # Transposing after the resize is cheaper and gives the same pixels.
                base = base.transpose(method)
                alpha = alpha.transpose(method) if alpha is not None else None
                notes.append("turned it as its EXIF orientation says")
                if orientation in (5, 6, 7, 8):
                    w, h = h, w
            image = _to_srgb(base, icc if isinstance(icc, bytes) else None, notes)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _reject(
            f"That image has too many pixels; the limit is {_mb(_pixel_limit(limits))} megapixels.",
            f"decompression bomb guard ({label})",
        ) from None
    except MemoryError:
        raise _reject(
            "That image is too large for me to process.",
            "out of memory",
            plain="is too large to decode in the memory available",
        ) from None
    except Exception as exc:
        log.debug("%s decode failed", label, exc_info=True)
        raise _reject(
            f"That {label} file is damaged or incomplete, so I can't read it.",
            f"corrupt {label} ({type(exc).__name__}), {len(data)} bytes",
            plain=f"is a damaged or incomplete {label} file",
        ) from None
    if resized:
        notes.append(f"{resized} from {w}×{h} to {image.width}×{image.height} pixels")
    if alpha is not None:
        notes.append("put its transparent parts on white (the transparency is kept apart)")
    return DecodedImage(image, alpha, fmt, (w, h), notes)


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
        raise _reject(
            f"That file is {_mb(size)} MB; the limit is {_mb(limits.max_bytes)} MB.",
            f"declared size {size}",
        )
    ctype = (content_type or "").split(";")[0].strip().lower()
    # Files without a known extension arrive as octet-stream; the bytes decide those.
    if ctype and ctype not in ("application/octet-stream", "binary/octet-stream"):
        if ctype in _CONTENT_TYPES:
            raise _unsupported(_CONTENT_TYPES[ctype])
        if not ctype.startswith("image/"):
            kind = ctype.split("/")[0]
            what = {"text": "text", "video": "a video", "audio": "an audio file"}.get(kind)
            raise _unsupported(what or "a file that is not an image")
    w = width if width and width > 0 else None
    h = height if height and height > 0 else None
    if w is not None or h is not None:
        _check_bounds(w or 1, h or 1, limits, check_small=False)


_LADDER = (50, 60, 70, 80, 90)  # ascending, for the binary search in _ladder()
_WEBP_MAX_SIDE = 16383
_SAMPLE_ABOVE = 1_000_000  # pixels; larger images get their sizes predicted from sample bands
_SAMPLE_PIXELS = 600_000


def _prepare(
    image: Image.Image, alpha: Image.Image | None
) -> tuple[Image.Image, Image.Image | None]:
    base, own = _split(image)
    if own is not None:
        base = _on_white(base, own)
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
