"""Pixel and adversarial losses: hand-computed values (numpy), symmetries, gradients, errors."""

import numpy as np
import pytest
import torch

from gansr_ext.losses import (GAN_LOSS_NAMES, CharbonnierLoss, L1Loss, MSELoss, make_gan_loss)
from gansr_ext.losses import penalty as penalty_module

# ---------------------------------------------------------------- pixel

PRED = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]], dtype=torch.float64)
TARGET = torch.tensor([[[[1.0, 1.0], [0.0, 5.0]]]], dtype=torch.float64)
D = np.array([-1.0, 0.0, 2.0, -2.0])  # PRED - TARGET


def test_l1_mse_known_values():
    assert L1Loss()(PRED, TARGET).item() == pytest.approx(np.abs(D).mean())
    assert L1Loss(reduction="sum")(PRED, TARGET).item() == pytest.approx(5.0)
    assert MSELoss()(PRED, TARGET).item() == pytest.approx((D ** 2).mean())
    assert MSELoss(loss_weight=3.0, reduction="sum")(PRED, TARGET).item() == pytest.approx(3 * 9.0)


def test_charbonnier_known_value_and_identity():
    eps = 0.5
    expect = np.sqrt(D ** 2 + eps ** 2).mean()
    assert CharbonnierLoss(eps=eps)(PRED, TARGET).item() == pytest.approx(expect)
    # identical inputs: the floor eps (default 1e-6, BasicSR's sqrt(d^2 + 1e-12))
    assert CharbonnierLoss()(TARGET, TARGET).item() == pytest.approx(1e-6)


@pytest.mark.parametrize("cls", [L1Loss, MSELoss, CharbonnierLoss])
def test_pixel_none_reduction_shape_dtype_and_identity(cls):
    x = torch.rand(2, 3, 5, 4)
    out = cls(reduction="none")(x, x + 0.1)
    assert out.shape == x.shape and out.dtype == torch.float32
    if cls is not CharbonnierLoss:
        assert cls()(x, x).item() == 0.0


def test_l1_gradient_is_sign_over_n():
    pred = PRED.clone().requires_grad_(True)
    L1Loss()(pred, TARGET).backward()
    np.testing.assert_allclose(pred.grad.flatten().numpy(), np.sign(D) / 4)


def test_pixel_errors():
    x = torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError, match="same shape"):
        L1Loss()(x, torch.rand(1, 3, 4, 5))
    with pytest.raises(ValueError, match="reduction"):
        L1Loss(reduction="avg")
    with pytest.raises(TypeError, match="floating point"):
        MSELoss()(x.long(), x.long())
    with pytest.raises(TypeError, match="tensors"):
        L1Loss()(x, 1.0)
    with pytest.raises(ValueError, match="eps"):
        CharbonnierLoss(eps=0)


# ---------------------------------------------------------------- adversarial

def sig(x):
    return 1 / (1 + np.exp(-x))


def relu(x):
    return np.maximum(x, 0)


# name -> (L_D(r, f), L_G(r, f)) written from the papers' formulas with numpy
NUMPY_GAN = {
    "vanilla": (lambda r, f: -np.log(sig(r)).mean() - np.log(1 - sig(f)).mean(),
                lambda r, f: -np.log(sig(f)).mean()),
    "lsgan": (lambda r, f: ((r - 1) ** 2).mean() + (f ** 2).mean(), lambda r, f: ((f - 1) ** 2).mean()),
    "hinge": (lambda r, f: relu(1 - r).mean() + relu(1 + f).mean(), lambda r, f: -f.mean()),
    "wgan": (lambda r, f: f.mean() - r.mean(), lambda r, f: -f.mean()),
    # ESRGAN: D_Ra(a, b) = sigma(C(a) - E[C(b)])
    "ragan": (lambda r, f: -0.5 * (np.log(sig(r - f.mean())).mean() + np.log(1 - sig(f - r.mean())).mean()),
              lambda r, f: -0.5 * (np.log(sig(f - r.mean())).mean() + np.log(1 - sig(r - f.mean())).mean())),
    "rals": (lambda r, f: 0.5 * (((r - f.mean() - 1) ** 2).mean() + ((f - r.mean() + 1) ** 2).mean()),
             lambda r, f: 0.5 * (((f - r.mean() - 1) ** 2).mean() + ((r - f.mean() + 1) ** 2).mean())),
    "rahinge": (lambda r, f: 0.5 * (relu(1 - (r - f.mean())).mean() + relu(1 + (f - r.mean())).mean()),
                lambda r, f: 0.5 * (relu(1 - (f - r.mean())).mean() + relu(1 + (r - f.mean())).mean())),
    "rcgan": (lambda r, f: -np.log(sig(r - f)).mean(), lambda r, f: -np.log(sig(f - r)).mean()),
    "rcls": (lambda r, f: ((r - f - 1) ** 2).mean(), lambda r, f: ((f - r - 1) ** 2).mean()),
    "rchinge": (lambda r, f: relu(1 - (r - f)).mean(), lambda r, f: relu(1 - (f - r)).mean()),
}
NUMPY_GAN["wgan-gp"], NUMPY_GAN["ragp"], NUMPY_GAN["r1"] = NUMPY_GAN["wgan"], NUMPY_GAN["ragan"], NUMPY_GAN["vanilla"]
RELATIVISTIC = ("ragan", "rals", "rahinge", "rcgan", "rcls", "rchinge")


def test_every_name_has_a_reference():
    assert set(GAN_LOSS_NAMES) == set(NUMPY_GAN)


@pytest.mark.parametrize("name", sorted(NUMPY_GAN))
def test_gan_known_values(name):
    r = np.array([[1.5], [-0.3], [0.2], [2.0]])
    f = np.array([[-1.0], [0.4], [-2.2], [0.1]])
    loss = make_gan_loss(name)
    rt, ft = torch.tensor(r), torch.tensor(f)
    d_ref, g_ref = NUMPY_GAN[name]
    assert loss.d_loss(rt, ft).item() == pytest.approx(d_ref(r, f), rel=1e-12)
    assert loss.g_loss(rt, ft).item() == pytest.approx(g_ref(r, f), rel=1e-12)
    assert loss(rt, ft).item() == pytest.approx(g_ref(r, f), rel=1e-12)  # calling it = the generator term


@pytest.mark.parametrize("name", ["ragan", "rals", "rahinge"])
def test_relativistic_average_per_pixel_logits_of_different_batch(name):
    # a U-Net discriminator gives (B, 1, H, W); E[.] is over every element
    r = np.random.default_rng(0).normal(size=(2, 1, 3, 3))
    f = np.random.default_rng(1).normal(size=(3, 1, 3, 3))
    out = make_gan_loss(name).d_loss(torch.tensor(r), torch.tensor(f))
    assert out.item() == pytest.approx(NUMPY_GAN[name][0](r, f))


@pytest.mark.parametrize("name", RELATIVISTIC)
def test_relativistic_symmetries(name):
    loss = make_gan_loss(name)
    r, f = torch.randn(6, 1, dtype=torch.float64), torch.randn(6, 1, dtype=torch.float64)
    # the generator's loss is the discriminator's with the roles swapped
    torch.testing.assert_close(loss.g_loss(r, f), loss.d_loss(f, r))
    # only differences of logits matter
    torch.testing.assert_close(loss.d_loss(r + 3.0, f + 3.0), loss.d_loss(r, f))
    torch.testing.assert_close(loss.g_loss(r - 2.0, f - 2.0), loss.g_loss(r, f))


@pytest.mark.parametrize("name", ["vanilla", "lsgan", "hinge", "wgan"])
def test_standard_g_loss_ignores_real_logits(name):
    f = torch.randn(4, 1)
    loss = make_gan_loss(name)
    torch.testing.assert_close(loss.g_loss(None, f), loss.g_loss(torch.randn(4, 1), f))


@pytest.mark.parametrize("name", sorted(NUMPY_GAN))
def test_gan_gradients_flow(name):
    # small seeded logits keep every hinge margin active (unseeded unit-variance ones left the hinge
    # losses without a gradient about once in 70 runs)
    g = torch.Generator().manual_seed(0)
    r = (0.1 * torch.randn(4, 1, generator=g)).requires_grad_()
    f = (0.1 * torch.randn(4, 1, generator=g)).requires_grad_()
    loss = make_gan_loss(name)
    gr, gf = torch.autograd.grad(loss.d_loss(r, f), (r, f))
    assert gr.abs().sum() > 0 and gf.abs().sum() > 0
    (gf,) = torch.autograd.grad(loss.g_loss(r, f), (f,))
    assert gf.abs().sum() > 0


def test_ragan_discriminator_loss_decreases_when_separating():
    loss = make_gan_loss("ragan")
    r, f = torch.zeros(4, 1), torch.zeros(4, 1)
    assert loss.d_loss(r, f).item() == pytest.approx(np.log(2))  # sigma(0) = 1/2 in both terms
    assert loss.d_loss(r + 2, f - 2) < loss.d_loss(r, f) < loss.d_loss(r - 2, f + 2)


def test_gan_errors():
    with pytest.raises(ValueError, match="unknown GAN loss 'foo'"):
        make_gan_loss("foo")
    with pytest.raises(TypeError, match="takes no options"):
        make_gan_loss("ragan", lam=1.0)
    with pytest.raises(ValueError, match="same shape"):
        make_gan_loss("rcgan").d_loss(torch.randn(4, 1), torch.randn(3, 1))
    with pytest.raises(TypeError, match="real_logits"):
        make_gan_loss("ragan").g_loss(None, torch.randn(4, 1))
    with pytest.raises(TypeError, match="floating point"):
        make_gan_loss("vanilla").d_loss(torch.ones(2, dtype=torch.long), torch.ones(2))
    with pytest.raises(ValueError, match="empty"):
        make_gan_loss("hinge").d_loss(torch.ones(0), torch.ones(2))
    with pytest.raises(ValueError, match="lam"):
        make_gan_loss("wgan-gp", lam=-1.0)
    with pytest.raises(ValueError, match="plain loss"):
        make_gan_loss("r1", base="wgan-gp")


def test_aliases_and_case():
    assert make_gan_loss("RaGAN").name == "ragan"
    assert make_gan_loss("gan").name == "vanilla"


@pytest.mark.parametrize("name,kind,base", [("wgan-gp", "wgan-gp", "wgan"), ("ragp", "wgan-gp", "ragan"),
                                            ("r1", "r1", "vanilla")])
def test_penalty_variants_forward_to_gradient_penalty(monkeypatch, name, kind, base):
    calls = []

    def spy(D, real, fake, lam=10.0, kind="wgan-gp", **kw):
        calls.append((D, real, fake, lam, kind, kw))
        return torch.tensor(1.25)

    monkeypatch.setattr(penalty_module, "gradient_penalty", spy)
    loss = make_gan_loss(name, lam=3.0, fused=False)
    assert loss.needs_penalty and loss.base.name == base
    D, real, fake = object(), torch.zeros(1), torch.ones(1)
    assert loss.penalty(D, real, fake, step=7).item() == 1.25
    assert calls == [(D, real, fake, 3.0, kind, {"fused": False, "step": 7})]
    assert make_gan_loss(name).lam == 10.0


def test_gradient_penalty_is_exported_lazily():
    import gansr_ext.losses

    assert gansr_ext.losses.gradient_penalty is penalty_module.gradient_penalty
    with pytest.raises(AttributeError):
        gansr_ext.losses.no_such_loss


def test_plain_losses_need_no_penalty():
    for name in GAN_LOSS_NAMES:
        assert make_gan_loss(name).needs_penalty == (name in ("wgan-gp", "ragp", "r1"))
    assert make_gan_loss("r1", base="ragan").base.name == "ragan"


class LinearCritic(torch.nn.Module):
    """C(x) = <w, x>: its input gradient is w everywhere, ||grad|| = ||w||."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.full((1, 2, 3, 3), 0.5, dtype=torch.float64))

    def forward(self, x):
        return (x * self.w).sum((1, 2, 3))


def test_wgan_gp_penalty_value_on_linear_critic():
    D = LinearCritic()
    real, fake = torch.rand(4, 2, 3, 3, dtype=torch.float64), torch.rand(4, 2, 3, 3, dtype=torch.float64)
    norm = 0.5 * np.sqrt(18)  # ||w||_2
    gp = make_gan_loss("ragp", lam=2.0, fused=False).penalty(D, real, fake)
    assert gp.item() == pytest.approx(2.0 * (norm - 1) ** 2)
    (gw,) = torch.autograd.grad(gp, D.w)  # the penalty trains D
    assert gw.abs().sum() > 0
