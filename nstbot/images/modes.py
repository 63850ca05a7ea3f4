"""Pillow modes to the few the rest of nstbot.images works in: L, RGB or CMYK, plus alpha."""

from __future__ import annotations

from PIL import Image


def to_8bit(im: Image.Image) -> Image.Image:
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


def split_alpha(im: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """Base in L, RGB or CMYK (what colour profiles describe), and the alpha channel if any."""
    if im.mode.startswith(("I", "F")):
        return to_8bit(im), None
    if im.mode == "LA":
        return im.getchannel("L"), im.getchannel("A")
    if im.mode in ("RGBA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        return rgba.convert("RGB"), rgba.getchannel("A")
    if im.mode in ("L", "RGB", "CMYK"):
        return im, None
    return im.convert("L" if im.mode == "1" else "RGB"), None


def on_white(base: Image.Image, alpha: Image.Image) -> Image.Image:
    """`base` composited on a white background through `alpha`."""
    out = Image.new(base.mode, base.size, "white")
    out.paste(base, mask=alpha)
    return out
