"""An exponential moving average of the image iterates, the output when `average` > 0.

L-BFGS (and Adam) leave pixel-level speckle that changes from one iterate to the next; averaging
the recent iterates cancels it while the slow, real changes pass (crowsonkb/style-transfer-pytorch
outputs such an average).
"""

from __future__ import annotations

import torch


class IterateAverage:
    """Bias-corrected EMA of an image, starting from (and weighting) its first value.

    After updates x₁ … xₜ from the start x₀ it holds Σᵢ dᵗ⁻ⁱ xᵢ / Σᵢ dᵗ⁻ⁱ (i = 0 … t), so early on
    it is a plain mean rather than a blend with zeros; each update is one in-place lerp on the
    image's device, with no host synchronization.
    """

    def __init__(self, start: torch.Tensor, decay: float) -> None:
        if not 0 <= decay < 1:
            raise ValueError("decay must be in [0, 1)")
        self.decay = decay
        self.value = start.detach().clone()
        self._mass = 1.0  # Σ dᵗ⁻ⁱ over the samples so far

    def update(self, image: torch.Tensor) -> None:
        """Take in the next iterate."""
        self._mass = self.decay * self._mass + 1.0
        self.value.lerp_(image.detach(), 1.0 / self._mass)
