"""VGG19 or VGG16 as a feature extractor returning named layers, stopping at the last one used."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from nstbot.params import MODEL_LAYERS

# torchvision's weights expect RGB in [0, 1] normalized with the ImageNet statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def layer_index(name: str, model: str = "vgg19") -> int:
    """Position of a paper-named layer (`relu4_2`) in torchvision's `features` of `model`."""
    try:
        return MODEL_LAYERS[model].index(name)
    except ValueError:
        raise ValueError(f"unknown {model.upper()} layer {name!r}") from None


class FeatureExtractor(nn.Module):
    """VGG features cut after the deepest requested layer, frozen, in eval mode.

    `forward(x)` takes RGB in [0, 1] (N, 3, H, W) and returns {layer name: activation} for the
    layers given at construction.
    """

    def __init__(
        self, features: nn.Sequential, layers: Iterable[str], model: str = "vgg19"
    ) -> None:
        super().__init__()
        self.layers = tuple(dict.fromkeys(layers))
        if not self.layers:
            raise ValueError("at least one layer is needed")
        indices = {layer_index(name, model): name for name in self.layers}
        last = max(indices)
        kept = [features[i] for i in range(last + 1)]
        for i, module in enumerate(kept):
            if isinstance(module, nn.ReLU):
                # An in-place ReLU would overwrite a captured conv output; only keep it in-place
                # when the conv before it is not captured (in-place saves one activation).
                kept[i] = nn.ReLU(inplace=(i - 1) not in indices)
        self.net = nn.Sequential(*kept)
        self._capture = indices
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> FeatureExtractor:
        # Always eval: VGG has no dropout or batch norm in `features`, but stay explicit.
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (x - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        for i, module in enumerate(self.net):
            x = module(x)
            name = self._capture.get(i)
            if name is not None:
                out[name] = x
        return out
