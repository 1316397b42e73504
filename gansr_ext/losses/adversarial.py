"""Adversarial losses behind one interface: `make_gan_loss(name, **kw)`.

Every loss has `d_loss(real_logits, fake_logits)` (the discriminator's loss) and
`g_loss(real_logits, fake_logits)` (the generator's), on raw critic outputs C(x) (logits, any shape;
E[.] is the mean over all elements, so per-pixel discriminators work too). Standard losses ignore
`real_logits` in `g_loss` (it may be None). sigma is the logistic sigmoid; softplus(y) = -log sigma(-y).

Standard (C_r = C(x_r) on real images, C_f = C(x_f) on generated ones):

    vanilla  L_D = -E[log sigma(C_r)] - E[log(1 - sigma(C_f))]     L_G = -E[log sigma(C_f)]   (non-saturating)
    lsgan    L_D = E[(C_r - 1)^2] + E[C_f^2]                        L_G = E[(C_f - 1)^2]
    hinge    L_D = E[relu(1 - C_r)] + E[relu(1 + C_f)]              L_G = -E[C_f]
    wgan     L_D = E[C_f] - E[C_r]                                  L_G = -E[C_f]

Relativistic average (Jolicoeur-Martineau 2018; ESRGAN uses ragan). With the relativistic
discriminator D_Ra(x_r, x_f) = sigma(C(x_r) - E[C(x_f)]) and the pair of functions (f1, f2)::

    L_D = 1/2 (E_r[f1(C_r - E[C_f])] + E_f[f2(C_f - E[C_r])])
    L_G = 1/2 (E_f[f1(C_f - E[C_r])] + E_r[f2(C_r - E[C_f])])        (the roles swapped)

    ragan    f1(y) = -log sigma(y),  f2(y) = -log(1 - sigma(y))
             i.e. L_D = -1/2 (E[log D_Ra(x_r, x_f)] + E[log(1 - D_Ra(x_f, x_r))])
    rals     f1(y) = (y - 1)^2,      f2(y) = (y + 1)^2
    rahinge  f1(y) = relu(1 - y),    f2(y) = relu(1 + y)

The factor 1/2 is the one in ESRGAN's reference code (its weight 5e-3 was tuned with it).

Relativistic paired (RSGAN of the same paper; real and fake logits paired elementwise, so equal shapes;
with f2(y) = f1(-y) the two terms coincide)::

    rcgan    L_D = E[f1(C_r - C_f)],  L_G = E[f1(C_f - C_r)]   with f1 of ragan
    rcls     ... f1 of rals;  rchinge ... f1 of rahinge

In every relativistic loss g_loss(r, f) == d_loss(f, r).

Penalty variants (`needs_penalty = True`; add `.penalty(D, real, fake)` to the discriminator loss;
it calls `gansr_ext.losses.penalty.gradient_penalty`, lam = 10 by default)::

    wgan-gp  wgan  + lam E[(||grad_xhat C(xhat)||_2 - 1)^2],  xhat = eps x_r + (1 - eps) x_f
    ragp     ragan + the same two-sided penalty
    r1       vanilla + the R1 penalty on real images (kind="r1" of gradient_penalty)

`base=` picks another base loss for a penalty variant (e.g. make_gan_loss("r1", base="ragan")).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..ops._common import fused_mode

Fn = Callable[[torch.Tensor], torch.Tensor]


def _check_logits(x, who: str, arg: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who}: {arg} must be a tensor of discriminator logits, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{who}: {arg} must be floating point, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{who}: {arg} is empty (shape {tuple(x.shape)})")
    return x


class GANLoss(nn.Module):
    """Base: `d_loss`, `g_loss`, `needs_penalty` (False), `name`; calling it gives `g_loss` (the
    generator's term, as a CompositeLoss uses it)."""

    name = "gan"
    needs_penalty = False

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, real_logits: torch.Tensor | None, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, real_logits: torch.Tensor | None, fake_logits: torch.Tensor) -> torch.Tensor:
        return self.g_loss(real_logits, fake_logits)

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class StandardGANLoss(GANLoss):
    """L_D = E[d_real(C_r)] + E[d_fake(C_f)],  L_G = E[g_fake(C_f)]."""

    def __init__(self, name: str, d_real: Fn, d_fake: Fn, g_fake: Fn):
        super().__init__()
        self.name, self._d_real, self._d_fake, self._g_fake = name, d_real, d_fake, g_fake

    def d_loss(self, real_logits, fake_logits):
        r = _check_logits(real_logits, self.name, "real_logits")
        f = _check_logits(fake_logits, self.name, "fake_logits")
        return self._d_real(r).mean() + self._d_fake(f).mean()

    def g_loss(self, real_logits, fake_logits):
        return self._g_fake(_check_logits(fake_logits, self.name, "fake_logits")).mean()


class RelativisticAverageGANLoss(GANLoss):
    """L_D = 1/2 (E_r[f1(C_r - E C_f)] + E_f[f2(C_f - E C_r)]); L_G the same with roles swapped."""

    def __init__(self, name: str, f1: Fn, f2: Fn):
        super().__init__()
        self.name, self._f1, self._f2 = name, f1, f2

    def _loss(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        # pos plays "real" (pushed up relative to neg's mean), neg plays "fake"
        return 0.5 * (self._f1(pos - neg.mean()).mean() + self._f2(neg - pos.mean()).mean())

    def d_loss(self, real_logits, fake_logits):
        r = _check_logits(real_logits, self.name, "real_logits")
        f = _check_logits(fake_logits, self.name, "fake_logits")
        return self._loss(r, f)

    def g_loss(self, real_logits, fake_logits):
        r = _check_logits(real_logits, self.name, "real_logits (relativistic g_loss needs them)")
        f = _check_logits(fake_logits, self.name, "fake_logits")
        return self._loss(f, r)


class RelativisticPairedGANLoss(GANLoss):
    """L_D = E[f1(C_r - C_f)], L_G = E[f1(C_f - C_r)] over elementwise pairs."""

    def __init__(self, name: str, f1: Fn):
        super().__init__()
        self.name, self._f1 = name, f1

    def _pair(self, real_logits, fake_logits):
        r = _check_logits(real_logits, self.name, "real_logits")
        f = _check_logits(fake_logits, self.name, "fake_logits")
        if r.shape != f.shape:
            raise ValueError(f"{self.name}: paired relativistic loss needs real and fake logits of the same shape, "
                             f"got {tuple(r.shape)} and {tuple(f.shape)}")
        return r, f

    def d_loss(self, real_logits, fake_logits):
        r, f = self._pair(real_logits, fake_logits)
        return self._f1(r - f).mean()

    def g_loss(self, real_logits, fake_logits):
        r, f = self._pair(real_logits, fake_logits)
        return self._f1(f - r).mean()


class PenalizedGANLoss(GANLoss):
    """A base loss plus a gradient penalty the trainer adds to L_D: `penalty(D, real, fake)`."""

    needs_penalty = True

    def __init__(self, name: str, base: GANLoss, kind: str, lam: float = 10.0, **penalty_kw):
        if not lam >= 0:
            raise ValueError(f"{name}: lam must be >= 0, got {lam!r}")
        if "fused" in penalty_kw:  # the one vocabulary, checked here rather than at the first D step
            fused_mode(penalty_kw["fused"])
        super().__init__()
        self.name, self.base, self.kind, self.lam, self.penalty_kw = name, base, kind, float(lam), penalty_kw

    def d_loss(self, real_logits, fake_logits):
        return self.base.d_loss(real_logits, fake_logits)

    def g_loss(self, real_logits, fake_logits):
        return self.base.g_loss(real_logits, fake_logits)

    def penalty(self, D, real: torch.Tensor, fake: torch.Tensor | None = None, **kw) -> torch.Tensor:
        """lam-weighted gradient penalty of critic D (`gansr_ext.losses.penalty.gradient_penalty`);
        `kw` (e.g. step= for lazy regularisation) overrides the options given at construction."""
        from .penalty import gradient_penalty  # imported when first needed

        return gradient_penalty(D, real, fake, lam=self.lam, kind=self.kind, **{**self.penalty_kw, **kw})

    def extra_repr(self) -> str:
        return f"name={self.name!r}, kind={self.kind!r}, lam={self.lam}"


# f1, f2 of the relativistic losses; f2(y) = f1(-y) for all three
def _neg_log_sigmoid(y):
    return F.softplus(-y)


def _neg_log_one_minus_sigmoid(y):
    return F.softplus(y)


_RELATIVISTIC_FNS: dict[str, tuple[Fn, Fn]] = {
    "gan": (_neg_log_sigmoid, _neg_log_one_minus_sigmoid),
    "ls": (lambda y: (y - 1) ** 2, lambda y: (y + 1) ** 2),
    "hinge": (lambda y: F.relu(1 - y), lambda y: F.relu(1 + y)),
}


def _standard(name: str) -> StandardGANLoss:
    if name == "vanilla":
        return StandardGANLoss(name, _neg_log_sigmoid, _neg_log_one_minus_sigmoid, _neg_log_sigmoid)
    if name == "lsgan":
        return StandardGANLoss(name, lambda r: (r - 1) ** 2, lambda f: f ** 2, lambda f: (f - 1) ** 2)
    if name == "hinge":
        return StandardGANLoss(name, lambda r: F.relu(1 - r), lambda f: F.relu(1 + f), lambda f: -f)
    if name == "wgan":
        return StandardGANLoss(name, lambda r: -r, lambda f: f, lambda f: -f)
    raise KeyError(name)


_AVERAGE = {"ragan": "gan", "rals": "ls", "rahinge": "hinge"}
_PAIRED = {"rcgan": "gan", "rcls": "ls", "rchinge": "hinge"}
_PENALIZED = {"wgan-gp": ("wgan", "wgan-gp"), "ragp": ("ragan", "wgan-gp"), "r1": ("vanilla", "r1")}
_ALIASES = {"gan": "vanilla", "bce": "vanilla", "ls": "lsgan", "wgangp": "wgan-gp",
            "wgan_gp": "wgan-gp", "ragan-gp": "ragp", "rsgan": "rcgan"}

GAN_LOSS_NAMES = ("vanilla", "lsgan", "hinge", "wgan", *_AVERAGE, *_PAIRED, *_PENALIZED)


def make_gan_loss(name: str, **kw) -> GANLoss:
    """The adversarial loss `name` (one of GAN_LOSS_NAMES; see the module docstring).

    Penalty variants take `lam` (default 10), `base` (another loss name) and further keyword
    arguments passed on to `gradient_penalty` (`fused`: 'auto' | 'on' | 'off' or None | True | False,
    checked here); plain losses take none.
    """
    if not isinstance(name, str):
        raise TypeError(f"make_gan_loss: name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in _PENALIZED:
        base_name, kind = _PENALIZED[key]
        base_name = kw.pop("base", base_name)
        base = make_gan_loss(base_name)
        if base.needs_penalty:
            raise ValueError(f"make_gan_loss: base of {key!r} must be a plain loss, got {base_name!r}")
        return PenalizedGANLoss(key, base, kind, **kw)
    if key not in GAN_LOSS_NAMES:
        raise ValueError(f"make_gan_loss: unknown GAN loss {name!r}; choose one of {GAN_LOSS_NAMES}")
    if kw:
        raise TypeError(f"make_gan_loss: {key!r} takes no options, got {sorted(kw)}")
    if key in _AVERAGE:
        return RelativisticAverageGANLoss(key, *_RELATIVISTIC_FNS[_AVERAGE[key]])
    if key in _PAIRED:
        return RelativisticPairedGANLoss(key, _RELATIVISTIC_FNS[_PAIRED[key]][0])
    return _standard(key)
