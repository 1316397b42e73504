"""Weighted sums of losses for the generator step, and building them from a config dict.

    total = sum_name weight_name * term_name(...)

Image terms are called as term(pred, target); the adversarial term (a GANLoss) as
term.g_loss(real_logits, fake_logits). The trainer uses `composite.gan_loss.d_loss` (and
`.penalty` when `needs_penalty`) for the discriminator step.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from . import adversarial, frequency, perceptual, pixel

# type name -> (category, constructor)
LOSS_TYPES: dict[str, tuple[str, Any]] = {
    "l1": ("pixel", pixel.L1Loss),
    "l2": ("pixel", pixel.MSELoss),
    "mse": ("pixel", pixel.MSELoss),
    "charbonnier": ("pixel", pixel.CharbonnierLoss),
    "vgg": ("perceptual", perceptual.VGGPerceptualLoss),
    "lpips": ("perceptual", perceptual.LPIPSLoss),
    "dists": ("perceptual", perceptual.DISTSLoss),
    "fft": ("frequency", frequency.FFTLoss),
    "dct": ("frequency", frequency.DCTLoss),
    "spectral": ("frequency", frequency.SpectralLoss),
    "focal_frequency": ("frequency", frequency.FocalFrequencyLoss),
    **{name: ("gan", name) for name in adversarial.GAN_LOSS_NAMES},
}

# ESRGAN (Wang et al. 2018): L_G = 1e-2 L1 + 1.0 VGG19 conv5_4 (before ReLU) + 5e-3 RaGAN
DEFAULT_WEIGHTS = {"pixel": 1e-2, "perceptual": 1.0, "gan": 5e-3}
DEFAULT_TYPES = {"pixel": "l1", "perceptual": "vgg", "gan": "ragan"}
ESRGAN_LOSSES = {name: {"type": DEFAULT_TYPES[name], "weight": DEFAULT_WEIGHTS[name]} for name in DEFAULT_TYPES}


class CompositeLoss(nn.Module):
    """`CompositeLoss({name: (module, weight)})(pred, target, real_logits=None, fake_logits=None)`
    -> (total, {name: weighted value, detached}). At most one adversarial (GANLoss) term."""

    def __init__(self, terms: Mapping[str, tuple[nn.Module, float]]):
        super().__init__()
        if not terms:
            raise ValueError("CompositeLoss: no loss terms given")
        self.terms = nn.ModuleDict()
        self.weights: dict[str, float] = {}
        for name, term in terms.items():
            if not (isinstance(term, (tuple, list)) and len(term) == 2 and isinstance(term[0], nn.Module)):
                raise TypeError(f"CompositeLoss: term {name!r} must be (module, weight), got {term!r}")
            self.terms[name] = term[0]
            self.weights[name] = _as_weight(term[1], name)
        gans = [n for n, m in self.terms.items() if isinstance(m, adversarial.GANLoss)]
        if len(gans) > 1:
            raise ValueError(f"CompositeLoss: at most one adversarial term, got {gans}")
        self.gan_name = gans[0] if gans else None

    @property
    def gan_loss(self) -> adversarial.GANLoss | None:
        """The adversarial term (its d_loss / penalty serve the discriminator step), or None."""
        return self.terms[self.gan_name] if self.gan_name else None

    def forward(self, pred: torch.Tensor, target: torch.Tensor, real_logits: torch.Tensor | None = None,
                fake_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total, logs = 0, {}
        for name, term in self.terms.items():
            if name == self.gan_name:
                if fake_logits is None:
                    raise ValueError(f"CompositeLoss: the adversarial term {name!r} needs fake_logits "
                                     "(the discriminator's output on pred)")
                value = term.g_loss(real_logits, fake_logits)
            else:
                value = term(pred, target)
            value = self.weights[name] * value
            logs[name] = value.detach()
            total = total + value
        return total, logs

    def extra_repr(self) -> str:
        return f"weights={self.weights}"


def _as_weight(w, name: str) -> float:
    # YAML 1.1 reads "1e-2" as a string
    try:
        return float(w)
    except (TypeError, ValueError):
        raise ValueError(f"loss {name!r}: weight must be a number, got {w!r}") from None


def build_loss(type_name: str, **kw) -> nn.Module:
    """One loss module by type name (a key of LOSS_TYPES), kw passed to its constructor."""
    key = str(type_name).lower()
    if key not in LOSS_TYPES:
        raise ValueError(f"unknown loss type {type_name!r}; known: {', '.join(sorted(LOSS_TYPES))}")
    category, ctor = LOSS_TYPES[key]
    return adversarial.make_gan_loss(ctor, **kw) if category == "gan" else ctor(**kw)


def build_losses(cfg: Mapping[str, Any] | None = None) -> CompositeLoss:
    """CompositeLoss from a plain dict (e.g. a YAML `losses:` section)::

        {name: {"type": "l1", "weight": 1e-2, **constructor kwargs}, ...}

    `type` defaults to the name for the names "pixel" (l1), "perceptual" (vgg), "gan" (ragan) and
    for type names; `weight` defaults to ESRGAN's 1e-2 / 1.0 / 5e-3 for pixel / perceptual / adversarial
    types and must be given for the others. A term set to None, or with weight 0, is left out.
    `cfg=None` gives ESRGAN's losses (VGG19 needs its ImageNet weights).
    """
    cfg = ESRGAN_LOSSES if cfg is None else cfg
    if not isinstance(cfg, Mapping):
        raise TypeError(f"build_losses: config must be a dict of loss terms, got {type(cfg).__name__}")
    terms = {}
    for name, spec in cfg.items():
        if spec is None:
            continue
        if not isinstance(spec, Mapping):
            raise TypeError(f"build_losses: term {name!r} must be a dict, got {spec!r}")
        kw = dict(spec)
        type_name = str(kw.pop("type", DEFAULT_TYPES.get(name, name))).lower()
        if type_name not in LOSS_TYPES:
            raise ValueError(f"build_losses: term {name!r} has unknown type {type_name!r}; "
                             f"known: {', '.join(sorted(LOSS_TYPES))}")
        category = LOSS_TYPES[type_name][0]
        if "weight" in kw:
            weight = _as_weight(kw.pop("weight"), name)
        elif category in DEFAULT_WEIGHTS:
            weight = DEFAULT_WEIGHTS[category]
        else:
            raise ValueError(f"build_losses: term {name!r} ({type_name}) needs a weight")
        if weight == 0:
            continue
        terms[name] = (build_loss(type_name, **kw), weight)
    return CompositeLoss(terms)
