"""Gradient penalty: the reference against closed forms, the public wrapper against the reference."""

import pytest
import torch
from torch import nn

from gansr_ext.losses.penalty import draw_eps, gradient_penalty, gradient_penalty_reference


class LinearD(nn.Module):
    """D(x)_b = <w, x_b> + c: its input gradient is w for every sample, a closed form to test against."""

    def __init__(self, shape, scale):
        super().__init__()
        self.w = nn.Parameter(torch.randn(shape, dtype=torch.float64) * scale)
        self.c = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1) + self.c


class QuadD(nn.Module):
    """D(x)_b = 0.5 a ||x_b||^2: input gradient a x_b, per-sample norms differ."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.7, dtype=torch.float64))

    def forward(self, x):
        return 0.5 * self.a * x.flatten(1).square().sum(1)


def _imgs(B=3, shape=(2, 4, 4)):
    return torch.randn(B, *shape, dtype=torch.float64), torch.randn(B, *shape, dtype=torch.float64)


@pytest.mark.parametrize("scale", [0.05, 0.5])
def test_reference_closed_form_linear_d(scale):
    torch.manual_seed(0)
    real, fake = _imgs()
    D = LinearD(real.shape[1:], scale)
    n = D.w.detach().norm()
    for kind, expect in [("wgan-gp", 10 * (n - 1) ** 2), ("one-sided", 10 * torch.clamp(n - 1, min=0) ** 2),
                         ("r1", 5 * n ** 2)]:
        gp = gradient_penalty_reference(D, real, fake, lam=10.0, kind=kind)
        torch.testing.assert_close(gp, expect)
        # d/dw of lam (||w|| - 1)^2 = 2 lam (||w|| - 1) w / ||w||
        (gw,) = torch.autograd.grad(gp, D.w)
        dexp = {"wgan-gp": 20 * (n - 1), "one-sided": 20 * torch.clamp(n - 1, min=0), "r1": 10 * n}[kind]
        torch.testing.assert_close(gw, dexp * D.w.detach() / n)


def test_reference_closed_form_quadratic_d_uses_eps():
    torch.manual_seed(1)
    real, fake = _imgs(B=4)
    D = QuadD()
    eps = torch.rand(4, dtype=torch.float64)
    xhat = eps.view(-1, 1, 1, 1) * real + (1 - eps.view(-1, 1, 1, 1)) * fake
    n = 0.7 * xhat.flatten(1).norm(dim=1)
    gp = gradient_penalty_reference(D, real, fake, lam=3.0, eps=eps)
    torch.testing.assert_close(gp, 3.0 * ((n - 1) ** 2).mean())


def test_seeded_generator_reproduces_eps_and_penalty():
    torch.manual_seed(2)
    real, fake = _imgs(B=5)
    D = QuadD()
    e1 = draw_eps(5, real, torch.Generator().manual_seed(7))
    e2 = draw_eps(5, real, torch.Generator().manual_seed(7))
    e3 = draw_eps(5, real, torch.Generator().manual_seed(8))
    assert torch.equal(e1, e2) and not torch.equal(e1, e3)
    assert ((e1 >= 0) & (e1 < 1)).all()
    a = gradient_penalty_reference(D, real, fake, generator=torch.Generator().manual_seed(7))
    b = gradient_penalty_reference(D, real, fake, eps=e1)
    c = gradient_penalty(D, real, fake, generator=torch.Generator().manual_seed(7), fused=False)
    assert a.item() == b.item() == c.item()


def test_real_and_fake_receive_no_gradient():
    real, fake = _imgs()
    real.requires_grad_(True)
    fake.requires_grad_(True)
    gp = gradient_penalty_reference(QuadD(), real, fake)
    assert gp.requires_grad
    assert torch.autograd.grad(gp, [real, fake], allow_unused=True) == (None, None)
