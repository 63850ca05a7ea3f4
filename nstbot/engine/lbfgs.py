"""L-BFGS without host synchronization, for one image tensor.

torch.optim.LBFGS turns device scalars into Python numbers dozens of times per iteration (every
`alpha=` in its two-loop recursion, every `if ys > ...`). On a GPU each of those waits for the
device to drain, so the GPU idles while the CPU queues the next step's kernels. This version keeps
every scalar on the device and expresses the branches as arithmetic, so a step is one uninterrupted
stream of kernels.

The algorithm is torch's (no line search, step length 1 after a first step of min(1, 1/|g|₁)),
one iteration per `step()`; a curvature pair with yᵀs ≤ 1e-10 is stored with ρ = 0, which makes it
a no-op in the recursion exactly as skipping it would.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class DeviceLBFGS:
    """Limited-memory BFGS on a single tensor, with the same interface as a torch optimizer."""

    def __init__(self, param: torch.Tensor, *, lr: float = 1.0, history_size: int = 20) -> None:
        self.param = param
        self.lr = lr
        self.history_size = history_size
        self._dirs: list[torch.Tensor] = []  # y: gradient differences
        self._steps: list[torch.Tensor] = []  # s: parameter differences
        self._rho: list[torch.Tensor] = []
        self._h_diag: torch.Tensor | None = None
        self._prev_grad: torch.Tensor | None = None
        self._prev_step: torch.Tensor | None = None  # d * t of the last iteration

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the parameter's gradient."""
        self.param.grad = None

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        """One iteration: evaluate `closure` (which must call backward), then move the parameter."""
        with torch.enable_grad():
            loss = closure()
        if self.param.grad is None:
            raise RuntimeError("the closure did not compute a gradient")
        grad = self.param.grad.reshape(-1).clone()
        if self._prev_grad is None:
            direction = grad.neg()
            step_len = (1.0 / grad.abs().sum().clamp_min(1e-30)).clamp(max=1.0) * self.lr
            self._h_diag = torch.ones((), device=grad.device, dtype=grad.dtype)
        else:
            assert self._prev_step is not None and self._h_diag is not None
            y = grad - self._prev_grad
            s = self._prev_step
            ys = torch.dot(y, s)
            useful = ys > 1e-10
            rho = torch.where(useful, 1.0 / ys.clamp_min(1e-10), torch.zeros_like(ys))
            self._h_diag = torch.where(useful, ys / torch.dot(y, y).clamp_min(1e-30), self._h_diag)
            if len(self._dirs) == self.history_size:
                self._dirs.pop(0)
                self._steps.pop(0)
                self._rho.pop(0)
            self._dirs.append(y)
            self._steps.append(s)
            self._rho.append(rho)
            direction = self._two_loop(grad)
            step_len = torch.full((), self.lr, device=grad.device, dtype=grad.dtype)
        # Not a descent direction (torch's LBFGS stops there): take no step this iteration.
        descent = torch.dot(grad, direction) < 0
        step_len = torch.where(descent, step_len, torch.zeros_like(step_len))
        update = direction * step_len
        self.param.add_(update.view_as(self.param))
        self._prev_grad = grad
        self._prev_step = update
        return loss

    def _two_loop(self, grad: torch.Tensor) -> torch.Tensor:
        assert self._h_diag is not None
        q = grad.neg()
        alphas: list[torch.Tensor] = []
        for y, s, rho in zip(
            reversed(self._dirs), reversed(self._steps), reversed(self._rho), strict=True
        ):
            alpha = torch.dot(s, q) * rho
            q.addcmul_(y, alpha, value=-1.0)
            alphas.append(alpha)
        r = q * self._h_diag
        for y, s, rho, alpha in zip(
            self._dirs, self._steps, self._rho, reversed(alphas), strict=True
        ):
            beta = torch.dot(y, r) * rho
            r.addcmul_(s, alpha - beta)
        return r

    def state_bytes(self) -> int:
        """Memory held by the curvature history."""
        tensors = [*self._dirs, *self._steps]
        return sum(t.numel() * t.element_size() for t in tensors)
