"""Bytes to safe RGB images and back: intake (sniffing, limits, decoding) and output (encoding).

Every upload is checked and normalized by `intake`, every result encoded by `output`; both refuse
with ImageRejected, whose str() can be shown to a chat user as is and whose `plain` suits surfaces
that speak for themselves. Pillow only: the bot process must never import torch.

Policies worth knowing:
- Images under `min_side` on the short side are upscaled to it; a side under `reject_below` is
  refused. When the short side cannot reach `min_side` while the long side stays within the
  working size (or `max_side`, or `max_pixels`), the image is refused as too long and thin: with a
  working size of 512 and min_side 32 the sides may differ by a factor of at most 16.
- Transparent images are composited on white; the alpha channel comes back as `DecodedImage.alpha`.
- encode() writes `metadata` as PNG text chunks; for WebP and JPEG it goes, as JSON, into the EXIF
  ImageDescription tag. JPEG cannot carry alpha, so it is dropped there (the pixels are on white).
"""

from nstbot.images.intake import (
    DEFAULT_LIMITS,
    DecodedImage,
    ImageLimits,
    check_declared,
    decode,
    describe_bytes,
    sniff_format,
)
from nstbot.images.output import encode, encode_preview
from nstbot.images.refusals import ACCEPTED, ImageRejected

__all__ = [
    "ACCEPTED",
    "DEFAULT_LIMITS",
    "DecodedImage",
    "ImageLimits",
    "ImageRejected",
    "check_declared",
    "decode",
    "describe_bytes",
    "encode",
    "encode_preview",
    "sniff_format",
]
