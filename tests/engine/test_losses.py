"""Gram matrices and losses against hand computation."""

from __future__ import annotations

import pytest
import torch

from nstbot.engine.losses import (
    START_FLOOR,
    ContentLoss,
    StyleLoss,
    TVLoss,
    blend_grams,
    gram_matrix,
)


def test_gram_matrix_by_hand() -> None:
    # Two channels, 1x2 pixels: F = [[1, 2], [3, 4]]; F F^T = [[5, 11], [11, 25]]; / (C*H*W = 4)
    feats = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    gram = gram_matrix(feats)
    assert gram.shape == (1, 2, 2)
    assert torch.allclose(gram[0], torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / 4)


def test_gram_matrix_is_fp32_for_half_inputs() -> None:
    feats = torch.randn(1, 4, 3, 3).half()
    assert gram_matrix(feats).dtype == torch.float32


def test_content_loss_is_relative_squared_error() -> None:
    target = torch.tensor([[[[1.0, 2.0], [2.0, 0.0]]]])  # ||T||^2 = 9
    x = torch.tensor([[[[1.0, 0.0], [2.0, 3.0]]]])  # ||X - T||^2 = 4 + 9 = 13
    assert ContentLoss(target)(x).item() == pytest.approx(13 / 9, rel=1e-6)
    assert ContentLoss(target)(target).item() == 0.0


def test_style_loss_by_hand() -> None:
    style = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    target = gram_matrix(style)  # [[1.25, 2.75], [2.75, 6.25]]
    x = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # gram = [[0.25, 0], [0, 0.25]]
    diff = (1.25 - 0.25) ** 2 + 2 * 2.75**2 + (6.25 - 0.25) ** 2
    norm = 1.25**2 + 2 * 2.75**2 + 6.25**2
    assert StyleLoss(target)(x).item() == pytest.approx(diff / norm, rel=1e-6)
    assert StyleLoss(target)(style).item() == pytest.approx(0.0, abs=1e-9)


def test_tv_loss_by_hand() -> None:
    img = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])
    # dx: [1, 0] -> mean of squares 0.5; dy: [1, 0] -> 0.5
    assert TVLoss()(img).item() == pytest.approx(1.0)
    assert TVLoss()(torch.full((1, 3, 4, 4), 0.3)).item() == 0.0


def test_blend_grams_weighted_sum() -> None:
    a, b = torch.ones(1, 2, 2), torch.zeros(1, 2, 2)
    assert torch.allclose(blend_grams([a, b], [0.25, 0.75]), torch.full((1, 2, 2), 0.25))
    with pytest.raises(ValueError):
        blend_grams([a, b], [1.0])


def test_gram_gradient_matches_autograd_reference() -> None:
    feats = torch.randn(1, 5, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda f: gram_matrix(f).sum() * 3 + gram_matrix(f)[0, 1, 2], (feats,)
    )
    ref = feats.detach().clone().requires_grad_(True)
    flat = ref.reshape(1, 5, 12)
    weights = torch.randn(1, 5, 5, dtype=torch.float64)
    ((torch.bmm(flat, flat.transpose(1, 2)) / 60) * weights).sum().backward()
    (gram_matrix(feats) * weights).sum().backward()
    assert torch.allclose(feats.grad, ref.grad)


def test_start_normalization_makes_the_term_one_on_the_content() -> None:
    torch.manual_seed(4)
    style, content, other = torch.rand(3, 1, 8, 5, 5).unbind(0)
    loss = StyleLoss(gram_matrix(style))
    raw_start, raw_other = float(loss(content)), float(loss(other))
    loss.normalize_at(content)
    assert float(loss(content)) == pytest.approx(1.0, rel=1e-5)
    assert float(loss(other)) == pytest.approx(raw_other / raw_start, rel=1e-5)
    # A content whose statistics already match the style is not scaled up without bound.
    same = StyleLoss(gram_matrix(style))
    same.normalize_at(style)
    assert float(same(other)) == pytest.approx(
        float(StyleLoss(gram_matrix(style))(other)) / START_FLOOR, rel=1e-5
    )
