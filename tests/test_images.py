"""Tests for nstbot.images: a hostile corpus built in place, plus encoding under byte budgets."""

from __future__ import annotations

import io
import json
import logging
import random
import struct
import tracemalloc
import warnings
import zlib
from pathlib import Path
from unittest.mock import ANY

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageFile, ImageOps

from nstbot.config import Config, ImagesConfig
from nstbot.images import (
    DEFAULT_LIMITS,
    DecodedImage,
    ImageLimits,
    ImageRejected,
    check_declared,
    decode,
    describe_bytes,
    encode,
    encode_preview,
    sniff_format,
)

DATA = Path(__file__).parent / "data"
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
PERMISSIVE = ImageLimits(max_side=1_000_000, max_pixels=10**12)


def save(im: Image.Image, fmt: str, **opts: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **opts)
    return buf.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(w: int, h: int) -> bytes:
    """A PNG whose IHDR (with a correct CRC) declares w×h, followed by a token of pixel data."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def gif_header_only(w: int, h: int) -> bytes:
    """A GIF whose screen and first frame declare w×h, with almost no image data."""
    screen = struct.pack("<HHBBB", w, h, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"," + struct.pack("<HHHHB", 0, 0, w, h, 0) + b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + screen + frame + b";"


def webp_vp8x_header(w: int, h: int) -> bytes:
    body = b"\x00\x00\x00\x00" + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def quadrants(w: int = 64, h: int = 32) -> Image.Image:
    """Top-left red, top-right green, bottom-left blue, bottom-right white."""
    im = Image.new("RGB", (w, h), WHITE)
    im.paste(RED, (0, 0, w // 2, h // 2))
    im.paste(GREEN, (w // 2, 0, w, h // 2))
    im.paste(BLUE, (0, h // 2, w // 2, h))
    return im


def corners(im: Image.Image) -> list[tuple[int, ...]]:
    w, h = im.size
    return [im.getpixel((x, y)) for y in (h // 4, 3 * h // 4) for x in (w // 4, 3 * w // 4)]


def close(px: tuple[int, ...], expected: tuple[int, ...], tol: int = 40) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(px, expected, strict=True))


def assert_valid(d: DecodedImage, limits: ImageLimits = DEFAULT_LIMITS) -> None:
    assert isinstance(d, DecodedImage)
    assert d.image.mode == "RGB"
    assert limits.min_side <= min(d.image.size) and max(d.image.size) <= limits.max_side
    assert d.alpha is None or (d.alpha.mode == "L" and d.alpha.size == d.image.size)
    assert d.source_format in {"PNG", "JPEG", "WEBP", "GIF", "BMP"}
    assert all(isinstance(n, str) for n in d.notes)


def rejected(data: bytes, **kwargs: object) -> str:
    with pytest.raises(ImageRejected) as info:
        decode(data, **kwargs)
    return str(info.value)


# ---- what is not an image --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"", "empty data"),
        (random.Random(7).randbytes(5000), "unrecognized data"),
        (b"<!DOCTYPE html><html><body>hi</body></html>", "an HTML page"),
        (b"\xef\xbb\xbf  <html lang='en'><head></head></html>", "an HTML page"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>', "an SVG drawing"),
        (b'<?xml version="1.0"?>\n<!-- x -->\n<svg width="10"></svg>', "an SVG drawing"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "a PDF"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 40, "a ZIP archive"),
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2mp41", "an MP4 video"),
        (b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00mif1heic", "a HEIC image"),
        (b"II*\x00\x08\x00\x00\x00" + b"\x00" * 32, "a TIFF image"),
        (b"just some words, typed by hand.\nsecond line", "text"),
        (b"BMW is a car maker", "text"),
    ],
)
def test_rejects_what_is_not_an_image(data: bytes, named: str) -> None:
    assert sniff_format(data) is None
    with pytest.raises(ImageRejected) as info:
        decode(data)
    assert f"I received {named}," in str(info.value)
    assert "PNG, JPEG, WebP, GIF or BMP" in str(info.value)
    # The same refusal for surfaces that speak for themselves (the CLI names the file).
    assert info.value.plain == f"is {named}, not a PNG, JPEG, WebP, GIF or BMP image"
    assert describe_bytes(data) == named


@pytest.mark.parametrize(
    ("data", "plain"),
    [
        (save(Image.new("L", (20_000, 8), 200), "PNG"), "is 20000×8 pixels; each side can be"),
        (save(Image.new("L", (4_000, 8), 200), "PNG"), "is too long and thin (4000×8 pixels): its"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 60, "is a damaged or incomplete PNG file"),
    ],
)
def test_plain_wording_has_no_chat_voice(data: bytes, plain: str) -> None:
    with pytest.raises(ImageRejected) as info:
        decode(data)
    assert info.value.plain.startswith(plain)
    assert not any(word in info.value.plain for word in ("I ", "me ", "Please", "That "))


def test_rejections_are_logged_for_the_operator_without_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="nstbot.images"):
        rejected(b"<html><body>my secret diary</body></html>")
        rejected(png_header_only(50_000, 10))
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert messages == ["image rejected: not an image (an HTML page)", ANY]
    assert "50000x10" in messages[1]
    assert "secret" not in caplog.text


def test_non_bytes_input_is_rejected_not_crashed() -> None:
    for bad in (None, "a string", 42, [1, 2, 3]):
        assert "empty data" in rejected(bad) or "unrecognized data" in rejected(bad)  # type: ignore[arg-type]


def test_sniffs_by_content_not_name() -> None:
    im = quadrants()
    for fmt in ("PNG", "JPEG", "GIF", "WEBP", "BMP"):
        assert sniff_format(save(im, fmt)) == fmt
        assert decode(save(im, fmt)).source_format == fmt


# ---- limits, checked before pixels -----------------------------------------------------------


def test_byte_limit() -> None:
    data = save(quadrants(), "PNG")
    message = rejected(data, limits=ImageLimits(max_bytes=len(data) - 1))
    assert "the limit is" in message and "MB" in message


@pytest.mark.parametrize("limits", [ImageLimits(), PERMISSIVE], ids=["ours", "pillow-guard"])
def test_huge_declared_png_is_refused_without_allocating(limits: ImageLimits) -> None:
    data = png_header_only(100_000, 100_000)
    assert sniff_format(data) == "PNG"
    blocks_before = Image.core.get_stats()["new_count"]
    tracemalloc.start()
    try:
        message = rejected(data, limits=limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000
    assert Image.core.get_stats()["new_count"] == blocks_before  # no image storage at all
    assert "pixels" in message


def test_webp_canvas_checked_before_pillow_opens_it() -> None:
    assert "each side can be at most 12000" in rejected(webp_vp8x_header(16_000, 100))
    assert "121 megapixels; the limit is 40 megapixels" in rejected(
        webp_vp8x_header(11_000, 11_000)
    )


def test_pillow_bomb_error_and_warning_become_rejections() -> None:
    blocks_before = Image.core.get_stats()["new_count"]
    assert "too many pixels" in rejected(gif_header_only(20_000, 20_000), limits=PERMISSIVE)
    # 100 MP is in Pillow's warning band (between MAX_IMAGE_PIXELS and twice that).
    warn_band = gif_header_only(10_000, 10_000)
    with pytest.warns(Image.DecompressionBombWarning):
        assert "megapixels" in rejected(warn_band, limits=PERMISSIVE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "too many pixels" in rejected(warn_band, limits=PERMISSIVE)
    assert Image.core.get_stats()["new_count"] == blocks_before


@pytest.mark.parametrize(
    ("size", "limits", "needle"),
    [
        ((12_001, 40), ImageLimits(), "each side can be at most 12000 pixels"),
        ((7_000, 7_000), ImageLimits(), "49 megapixels; the limit is 40 megapixels"),
    ],
)
def test_dimension_limits_from_header(
    size: tuple[int, int], limits: ImageLimits, needle: str
) -> None:
    assert needle in rejected(png_header_only(*size), limits=limits)


def test_too_small_is_rejected() -> None:
    assert "only 1×1 pixels" in rejected(save(Image.new("RGB", (1, 1)), "PNG"))
    assert "at least 8 pixels" in rejected(save(Image.new("RGB", (7, 100)), "PNG"))


def test_small_is_upscaled_keeping_aspect() -> None:
    d = decode(save(Image.new("RGB", (8, 8), RED), "PNG"))
    assert d.image.size == (32, 32) and d.original_size == (8, 8)
    assert d.image.getpixel((16, 16)) == RED
    assert any("scaled up from 8×8 to 32×32" in n for n in d.notes)
    d = decode(save(Image.new("RGB", (20, 40), BLUE), "BMP"))
    assert d.image.size == (32, 64)


@pytest.mark.parametrize(
    ("size", "working_size", "expected"),
    [
        ((20_000, 8), None, "each side can be at most 12000 pixels"),
        ((4_000, 8), None, "too long and thin (4000×8 pixels)"),
        ((600, 16), 512, "at most 16 times its short side"),
        ((2_000, 100), 512, "too long and thin"),
        ((400, 10), None, (1280, 32)),
        ((300, 20), 512, (480, 32)),
        ((10, 400), None, (32, 1280)),
    ],
)
def test_extreme_aspect_ratios(
    size: tuple[int, int], working_size: int | None, expected: str | tuple[int, int]
) -> None:
    data = save(Image.new("L", size, 200), "PNG")
    if isinstance(expected, str):
        assert expected in rejected(data, working_size=working_size)
    else:
        d = decode(data, working_size=working_size)
        assert d.image.size == expected
        assert d.image.getpixel((5, 5)) == (200, 200, 200)


def test_working_size_shrinks_only_and_keeps_aspect() -> None:
    d = decode(save(quadrants(400, 200), "PNG"), working_size=100)
    assert d.image.size == (100, 50) and d.original_size == (400, 200)
    for got, want in zip(corners(d.image), [RED, GREEN, BLUE, WHITE], strict=True):
        assert close(got, want, 2)
    assert decode(save(quadrants(400, 200), "PNG"), working_size=1000).image.size == (400, 200)


# ---- damaged files ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    with Image.open(DATA / "content-coffee.jpg") as im:
        return im.convert("RGB").resize((160, 107))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP"])
def test_truncated_files_are_rejected(photo: Image.Image, fmt: str) -> None:
    data = save(photo, fmt)
    assert decode(data).image.size == (160, 107)
    for cut in (0.5, 0.9):
        assert "damaged or incomplete" in rejected(data[: int(len(data) * cut)])


def test_truncated_rejected_even_if_pillow_was_told_to_load_them(
    photo: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = save(photo, "JPEG")
    assert "damaged or incomplete" in rejected(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_jpeg_scan_bomb_is_refused(photo: Image.Image) -> None:
    data = save(photo, "JPEG")
    comment = b"\xff\xda" * 300
    bomb = data[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + data[2:]
    assert "unusual structure" in rejected(bomb)


# ---- normalization ---------------------------------------------------------------------------


def test_real_photo_decodes_like_pillow() -> None:
    data = (DATA / "content-coffee.jpg").read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        reference = im.convert("RGB")
    d = decode(data)
    assert (d.image.size, d.source_format, d.alpha, d.notes) == ((512, 341), "JPEG", None, [])
    assert d.image.tobytes() == reference.tobytes()
    small = decode(data, working_size=256)
    assert small.image.size == (256, 170) and small.original_size == (512, 341)
    expected = reference.resize((256, 170), Image.Resampling.LANCZOS)
    diff = sum(abs(a - b) for a, b in zip(small.image.tobytes(), expected.tobytes(), strict=True))
    assert diff / (256 * 170 * 3) < 6  # libjpeg half-scale decode + Lanczos: visually the same


def test_cmyk_jpeg() -> None:
    im = Image.new("CMYK", (64, 64), (0, 255, 255, 0))
    im.paste((0, 0, 0, 255), (0, 32, 64, 64))
    data = save(im, "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "CMYK"
    d = decode(data)
    assert d.image.mode == "RGB" and d.image.size == (64, 64)
    assert close(d.image.getpixel((32, 10)), RED) and close(d.image.getpixel((32, 50)), (0, 0, 0))


def test_16_bit_greyscale_png_is_scaled_not_clipped() -> None:
    row = b"".join(struct.pack("<H", x * 1040) for x in range(64))
    im = Image.frombytes("I;16", (64, 40), row * 40)
    data = save(im, "PNG")
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "I;16"
    d = decode(data)
    assert d.image.mode == "RGB"
    values = [d.image.getpixel((x, 20))[0] for x in (0, 32, 63)]
    assert values == [0, round(32 * 1040 / 257), round(63 * 1040 / 257)]


def test_palette_png_with_transparency() -> None:
    im = Image.new("P", (64, 40), 0)
    im.putpalette([0, 255, 0, 255, 0, 0] + [0] * 762)
    im.paste(1, (32, 0, 64, 40))
    d = decode(save(im, "PNG", transparency=0))
    assert d.image.mode == "RGB" and d.alpha is not None
    assert d.image.getpixel((10, 10)) == WHITE  # the hidden green is not shown
    assert d.image.getpixel((50, 10)) == RED
    assert (d.alpha.getpixel((10, 10)), d.alpha.getpixel((50, 10))) == (0, 255)


def test_semi_transparent_rgba_and_la() -> None:
    d = decode(save(Image.new("RGBA", (40, 40), (0, 0, 0, 128)), "PNG"))
    assert d.image.getpixel((5, 5)) == (127, 127, 127) and d.alpha.getpixel((5, 5)) == 128
    d = decode(save(Image.new("LA", (40, 40), (0, 64)), "PNG"), working_size=20)
    assert d.image.size == (32, 32)  # a working size under min_side is raised to min_side
    assert d.image.getpixel((5, 5)) == (191, 191, 191) and d.alpha.getpixel((5, 5)) == 64


def test_alpha_is_resized_with_the_image() -> None:
    im = Image.new("RGBA", (200, 100), (255, 0, 0, 255))
    im.paste((0, 0, 255, 0), (100, 0, 200, 100))
    d = decode(save(im, "WEBP", lossless=True), working_size=64)
    assert d.image.size == d.alpha.size == (64, 32)
    assert (d.alpha.getpixel((5, 16)), d.alpha.getpixel((58, 16))) == (255, 0)
    assert d.image.getpixel((5, 16)) == RED and d.image.getpixel((58, 16)) == WHITE


def test_opaque_rgba_has_no_alpha() -> None:
    assert decode(save(Image.new("RGBA", (40, 40), (1, 2, 3, 255)), "PNG")).alpha is None


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = save(quadrants(), "JPEG", quality=95, exif=exif.tobytes())
    with Image.open(io.BytesIO(data)) as im:
        reference = ImageOps.exif_transpose(im)
    d = decode(data)
    assert d.image.size == reference.size == d.original_size
    for got, want in zip(corners(d.image), corners(reference), strict=True):
        assert close(got, want, 10)


def test_exif_rotate_90_by_pixel_colours() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: show it turned 90° clockwise
    d = decode(save(quadrants(), "JPEG", quality=95, exif=exif.tobytes()))
    assert d.image.size == (32, 64)
    top_left, top_right, bottom_left, bottom_right = corners(d.image)
    assert close(top_left, BLUE) and close(top_right, RED)
    assert close(bottom_left, WHITE) and close(bottom_right, GREEN)
    d = decode(save(quadrants(400, 200), "JPEG", exif=exif.tobytes()), working_size=100)
    assert d.image.size == (50, 100) and d.original_size == (200, 400)
    assert "scaled down from 200×400 to 50×100 pixels" in d.notes
    assert close(corners(d.image)[0], BLUE)


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (48, 48), c) for c in (RED, BLUE, GREEN)]
    data = save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    d = decode(data)
    assert d.image.getpixel((10, 10)) == RED
    assert "used the first frame of an animated GIF" in d.notes
    assert decode(save(frames[1], "GIF")).notes == []


def test_animated_webp_uses_first_frame() -> None:
    frames = [Image.new("RGB", (48, 48), c) for c in (BLUE, RED)]
    data = save(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    d = decode(data)
    assert d.image.getpixel((10, 10)) == BLUE
    assert "used the first frame of an animated WebP" in d.notes


def swapped_primaries_profile() -> bytes:
    """sRGB with its red and blue colorants swapped: red pixels really mean blue."""
    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack(">I", icc[128:132])
    where = {bytes(icc[132 + 12 * i : 136 + 12 * i]): 136 + 12 * i for i in range(count)}
    r, b = where[b"rXYZ"], where[b"bXYZ"]
    icc[r : r + 8], icc[b : b + 8] = icc[b : b + 8], icc[r : r + 8]
    return bytes(icc)


def test_icc_profile_is_converted_to_srgb() -> None:
    red = Image.new("RGB", (48, 48), RED)
    plain = decode(save(red, "PNG"))
    assert plain.image.getpixel((5, 5)) == RED and plain.notes == []
    tagged = decode(save(red, "PNG", icc_profile=swapped_primaries_profile()))
    r, g, b = tagged.image.getpixel((5, 5))
    assert b > 200 and r < 60, (r, g, b)
    assert any("colour profile to sRGB" in n for n in tagged.notes)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert close(decode(save(red, "JPEG", icc_profile=srgb)).image.getpixel((5, 5)), RED)


def test_broken_icc_profile_keeps_pixels_with_a_note() -> None:
    d = decode(save(Image.new("RGB", (48, 48), RED), "PNG", icc_profile=b"not a profile" * 20))
    assert d.image.getpixel((5, 5)) == RED
    assert any("could not use its embedded colour profile" in n for n in d.notes)
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    d = decode(save(Image.new("RGB", (48, 48), GREEN), "PNG", icc_profile=lab))
    assert d.image.getpixel((5, 5)) == GREEN and d.image.mode == "RGB"


# ---- fuzzing ---------------------------------------------------------------------------------


def _seeds() -> dict[str, bytes]:
    im = Image.new("RGB", (40, 36))
    im.putdata(
        [((x * 6) % 256, (y * 7) % 256, (x * y) % 256) for y in range(36) for x in range(40)]
    )
    p = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    frames = [im, im.rotate(90)]
    return {
        "PNG": save(im, "PNG"),
        "PNG-P": save(p, "PNG", transparency=3),
        "JPEG": save(im, "JPEG", quality=80),
        "JPEG-prog": save(im, "JPEG", progressive=True),
        "GIF": save(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "WEBP": save(im, "WEBP", quality=80),
        "WEBP-L": save(im.convert("RGBA"), "WEBP", lossless=True),
        "BMP": save(im, "BMP"),
    }


SEEDS = _seeds()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        # Headers hold the interesting fields, so half the positions fall in the first 64 bytes.
        pos = draw(st.one_of(st.integers(0, 63), st.integers(0, max(0, len(data) - 1))))
        pos = min(pos, max(0, len(data) - 1))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        else:
            del data[pos:]
    return bytes(data)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated(), working_size=st.sampled_from([None, 64]))
def test_mutated_images_decode_or_are_rejected(data: bytes, working_size: int | None) -> None:
    try:
        d = decode(data, working_size=working_size)
    except ImageRejected as exc:
        assert str(exc)
        return
    assert_valid(d)
    if working_size:
        assert max(d.image.size) <= working_size


# ---- declared metadata -----------------------------------------------------------------------


def test_check_declared() -> None:
    limits = ImageLimits()
    check_declared(size=None, content_type=None, width=None, height=None, limits=limits)
    check_declared(size=1000, content_type="image/png", width=640, height=480, limits=limits)
    check_declared(
        size=1000, content_type="application/octet-stream", width=None, height=None, limits=limits
    )
    check_declared(size=10, content_type="image/x-unusual", width=0, height=0, limits=limits)
    cases = [
        ({"size": 26_000_000}, "26 MB; the limit is 25 MB"),
        ({"content_type": "text/html; charset=utf-8"}, "an HTML page"),
        ({"content_type": "image/svg+xml"}, "an SVG drawing"),
        ({"content_type": "video/mp4"}, "an MP4 video"),
        ({"content_type": "video/quicktime"}, "a video"),
        ({"content_type": "text/plain"}, "text"),
        ({"content_type": "application/x-msdownload"}, "not an image"),
        ({"width": 13_000, "height": 10}, "at most 12000 pixels"),
        ({"width": 13_000}, "at most 12000 pixels"),
        ({"width": 8_000, "height": 8_000}, "64 megapixels"),
    ]
    for kwargs, needle in cases:
        full = {"size": None, "content_type": None, "width": None, "height": None, **kwargs}
        with pytest.raises(ImageRejected, match=needle):
            check_declared(limits=limits, **full)


def test_limits_from_config() -> None:
    assert ImageLimits is ImagesConfig  # one definition for the config and the checks
    section = ImagesConfig(max_bytes=1, max_pixels=2, max_side=3, min_side=4, reject_below=5)
    expected = ImageLimits(max_bytes=1, max_pixels=2, max_side=3, min_side=4, reject_below=5)
    assert ImageLimits.from_config(section) == expected
    assert ImageLimits.from_config(Config(images=section)) == expected
    assert ImageLimits.from_config(ImagesConfig()) == ImageLimits()


# ---- encoding --------------------------------------------------------------------------------


def noise(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.frombytes("RGB", (w, h), random.Random(seed).randbytes(w * h * 3))


def test_noisy_4096_fits_one_megabyte() -> None:
    data, name = encode(noise(4096, 4096), max_bytes=1_000_000)
    assert len(data) <= 1_000_000
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        ext = {"PNG": "png", "WEBP": "webp", "JPEG": "jpg"}[im.format]
        assert name == f"nstbot.{ext}"
        assert im.width == im.height and 256 <= im.width < 4096


def test_small_image_stays_png_with_metadata() -> None:
    meta = {"seed": "42", "style_weight": "1e6", "prompt": "Ünïcødé ✓"}
    data, name = encode(quadrants(), max_bytes=8_000_000, metadata=meta, basename="job-1")
    assert name == "job-1.png" and data.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (64, 32) and im.text == meta
        assert corners(im.convert("RGB")) == [RED, GREEN, BLUE, WHITE]


def test_lossy_fallback_carries_metadata_in_exif() -> None:
    meta = {"seed": "7", "steps": "300"}
    data, name = encode(noise(256, 256), max_bytes=60_000, metadata=meta)
    assert len(data) <= 60_000 and not name.endswith(".png")
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (256, 256)
        assert json.loads(im.getexif()[0x010E]) == meta


def test_alpha_round_trips() -> None:
    alpha = Image.linear_gradient("L").resize((64, 64))
    data, name = encode(Image.new("RGB", (64, 64), RED), max_bytes=1_000_000, alpha=alpha)
    assert name.endswith(".png")
    d = decode(data)
    assert d.alpha is not None and d.alpha.tobytes() == alpha.tobytes()
    # A half-size alpha is stretched to the image; lossy WebP keeps alpha too.
    data, name = encode(noise(128, 128), max_bytes=30_000, alpha=alpha)
    assert name.endswith(".webp") and len(data) <= 30_000
    d = decode(data)
    assert d.alpha is not None and abs(d.alpha.getpixel((64, 4)) - 8) < 6


@pytest.mark.parametrize("budget", [2_500, 20_000, 150_000])
def test_never_over_budget(budget: int) -> None:
    data, name = encode(noise(512, 384, seed=budget), max_bytes=budget, basename="../../etc/x y")
    assert len(data) <= budget and name.startswith("etc_x_y.")
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        assert abs(im.width / im.height - 512 / 384) < 0.05


def test_impossible_budgets() -> None:
    with pytest.raises(ImageRejected):
        encode(noise(64, 64), max_bytes=10)
    with pytest.raises(ValueError):
        encode(noise(64, 64), max_bytes=0)


def test_encode_accepts_other_modes() -> None:
    data, _ = encode(Image.new("RGBA", (40, 40), (0, 0, 255, 100)), max_bytes=100_000)
    d = decode(data)
    assert d.alpha is not None and d.alpha.getpixel((3, 3)) == 100
    data, _ = encode(Image.new("L", (40, 40), 77), max_bytes=100_000)
    assert decode(data).image.getpixel((3, 3)) == (77, 77, 77)


def test_preview() -> None:
    preview = encode_preview(noise(1024, 768))
    assert preview.startswith(b"\xff\xd8") and len(preview) <= 100_000
    with Image.open(io.BytesIO(preview)) as im:
        assert im.size == (256, 192)
    tiny = encode_preview(noise(300, 300), max_bytes=2_000, max_side=128)
    assert len(tiny) <= 2_000
    assert encode_preview(Image.new("RGBA", (50, 50), (0, 0, 0, 0))).startswith(b"\xff\xd8")
    with pytest.raises(ImageRejected):
        encode_preview(noise(64, 64), max_bytes=50)
