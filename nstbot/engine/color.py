"""Colour handling: YCbCr conversion and luminance-only transfer (preserve the content's colours).

The matrices are ITU-R BT.601 full range, the same as JPEG and Pillow's "YCbCr" mode.
"""

from __future__ import annotations

import torch

_RGB_TO_YCBCR = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [-0.168736, -0.331264, 0.5],
        [0.5, -0.418688, -0.081312],
    ]
)
_OFFSET = torch.tensor([0.0, 0.5, 0.5])


def rgb_to_ycbcr(image: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] to YCbCr in [0, 1] (chroma centred on 0.5)."""
    matrix = _RGB_TO_YCBCR.to(image.device, image.dtype)
    out = torch.einsum("ij,njhw->nihw", matrix, image)
    return out + _OFFSET.to(image.device, image.dtype).view(1, 3, 1, 1)


def ycbcr_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """Inverse of rgb_to_ycbcr."""
    matrix = torch.linalg.inv(_RGB_TO_YCBCR.double()).to(image.device, image.dtype)
    centred = image - _OFFSET.to(image.device, image.dtype).view(1, 3, 1, 1)
    return torch.einsum("ij,njhw->nihw", matrix, centred)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """The Y channel repeated to three channels: what the network sees in colour-preserving mode."""
    y = rgb_to_ycbcr(image)[:, :1]
    return y.expand(-1, 3, -1, -1).contiguous()


def match_luminance(style_y: torch.Tensor, content_y: torch.Tensor) -> torch.Tensor:
    """Match the style's luminance mean and spread to the content's (Gatys et al. 2016)."""
    s_mean, s_std = style_y.mean(), style_y.std().clamp_min(1e-5)
    c_mean, c_std = content_y.mean(), content_y.std()
    return ((style_y - s_mean) * (c_std / s_std) + c_mean).clamp(0, 1)


def combine_luminance(luma: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """RGB image with the Y of `luma` and the Cb, Cr of `content` (same size)."""
    y = rgb_to_ycbcr(luma)[:, :1]
    chroma = rgb_to_ycbcr(content)[:, 1:]
    return ycbcr_to_rgb(torch.cat([y, chroma], dim=1)).clamp(0, 1)
