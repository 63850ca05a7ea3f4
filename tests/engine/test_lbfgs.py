"""The sync-free L-BFGS against torch.optim.LBFGS on the same problems."""

from __future__ import annotations

import torch

from nstbot.engine.lbfgs import DeviceLBFGS


def quadratic(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 0.5 * x @ (a @ x) - b @ x


def run_both(loss_fn, x0: torch.Tensor, iterations: int, history: int = 5):
    ours = x0.clone().requires_grad_(True)
    ref = x0.clone().requires_grad_(True)
    opt = DeviceLBFGS(ours, lr=1.0, history_size=history)
    ref_opt = torch.optim.LBFGS(
        [ref], lr=1.0, max_iter=1, history_size=history, tolerance_grad=0.0, tolerance_change=0.0
    )
    for x, o in ((ours, opt), (ref, ref_opt)):
        for _ in range(iterations):

            def closure(x=x, o=o) -> torch.Tensor:
                o.zero_grad()
                loss = loss_fn(x)
                loss.backward()
                return loss

            o.step(closure)
    return ours.detach(), ref.detach()


def test_matches_torch_lbfgs_on_a_quadratic() -> None:
    torch.manual_seed(0)
    m = torch.randn(12, 12, dtype=torch.float64)
    a = m @ m.T + 12 * torch.eye(12, dtype=torch.float64)
    b = torch.randn(12, dtype=torch.float64)
    x0 = torch.randn(12, dtype=torch.float64)
    for iterations in (1, 2, 7, 15):  # past the history size, so the ring buffer turns over
        ours, ref = run_both(lambda x: quadratic(x, a, b), x0, iterations)
        assert torch.allclose(ours, ref, atol=1e-10), iterations
    solution = torch.linalg.solve(a, b)
    ours, _ = run_both(lambda x: quadratic(x, a, b), x0, 40)
    assert torch.allclose(ours, solution, atol=1e-6)


def test_matches_torch_lbfgs_on_rosenbrock() -> None:
    def rosenbrock(x: torch.Tensor) -> torch.Tensor:
        return ((1 - x[:-1]) ** 2 + 100 * (x[1:] - x[:-1] ** 2) ** 2).sum()

    x0 = torch.tensor([-1.2, 1.0, -0.5, 0.8], dtype=torch.float64)
    ours, ref = run_both(rosenbrock, x0, 12, history=10)
    assert torch.allclose(ours, ref, atol=1e-10)
    # Later, a step that is not a descent direction appears: torch then records a step it never
    # took as curvature, this version records the zero step it took, so the paths part; both keep
    # descending.
    ours, ref = run_both(rosenbrock, x0, 25, history=10)
    assert rosenbrock(ours) < 3.3 and rosenbrock(ref) < 3.3


def test_works_on_image_shaped_parameters_and_bounds_history() -> None:
    target = torch.rand(1, 3, 8, 8)
    image = torch.zeros(1, 3, 8, 8, requires_grad=True)
    opt = DeviceLBFGS(image, history_size=3)
    for _ in range(10):

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = (image - target).pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
    assert torch.allclose(image.detach(), target, atol=1e-4)
    assert opt.state_bytes() == 2 * 3 * image.numel() * 4
