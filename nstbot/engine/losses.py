"""Loss modules holding their targets: content, Gram-matrix style, total variation.

Content and style losses are relative squared errors (the squared error divided by the target's
squared norm), so no term depends on its layer's activation scale, the image size or the precision.
A style term's start value still depends on the pair of images (0.8 to 13 seen on real features);
`StyleLoss.normalize_at` divides it by its value on the content, so every style term starts at 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

EPS = 1e-8
# A style image whose statistics nearly equal the content's would make its start-normalized term
# huge; below this start value the term is no longer scaled up.
START_FLOOR = 0.01


class _Gram(torch.autograd.Function):
    """F Fᵀ / n with a one-product backward: dF = (dG + dGᵀ) F / n.

    Autograd's generic matmul backward would compute two products; on CPU the Gram matrices are a
    visible share of each step, so the saved product matters.
    """

    @staticmethod
    def forward(ctx: Any, flat: torch.Tensor, norm: float) -> torch.Tensor:
        ctx.save_for_backward(flat)
        ctx.norm = norm
        return torch.mm(flat, flat.t()).div_(norm)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (flat,) = ctx.saved_tensors
        return torch.mm(grad + grad.t(), flat).div_(ctx.norm), None


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix of (N, C, H, W) activations, normalized by C*H*W, computed in fp32."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    if flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    if n == 1:
        return _Gram.apply(flat[0], float(c * h * w)).unsqueeze(0)
    return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def blend_grams(grams: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """Weighted mix of several style images' Gram matrices (weights already sum to 1)."""
    if len(grams) != len(weights):
        raise ValueError("one weight per Gram matrix is needed")
    total = torch.zeros_like(grams[0])
    for gram, weight in zip(grams, weights, strict=True):
        total = total + weight * gram
    return total


class ContentLoss(nn.Module):
    """||F - T||² / ||T||² against fixed target activations."""

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        target = target.detach().float()
        self.register_buffer("target", target)
        self.register_buffer("scale", 1.0 / (target.pow(2).sum() + EPS))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features.float() - self.target).pow(2).sum() * self.scale


class StyleLoss(nn.Module):
    """||G(F) - T||² / ||T||² against a fixed target Gram matrix."""

    def __init__(self, target_gram: torch.Tensor) -> None:
        super().__init__()
        target_gram = target_gram.detach().float()
        self.register_buffer("target", target_gram)
        self.register_buffer("scale", 1.0 / (target_gram.pow(2).sum() + EPS))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (gram_matrix(features) - self.target).pow(2).sum() * self.scale

    @torch.no_grad()
    def normalize_at(self, features: torch.Tensor, floor: float = START_FLOOR) -> None:
        """Rescale so this term is 1 on `features` (the content image's), at most 1/floor more."""
        start = float(self(features))
        self.scale.mul_(1.0 / max(start, floor))


class TVLoss(nn.Module):
    """Total variation: mean squared difference of neighbouring pixels, both directions."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        dx = image[..., :, 1:] - image[..., :, :-1]
        dy = image[..., 1:, :] - image[..., :-1, :]
        return dx.pow(2).mean() + dy.pow(2).mean()
