"""A discriminator that does not learn: its loss sits at the chance value for a long stretch.

The chance value of a discriminator loss is the best it can do without telling real from fake, i.e.
with the same logit c on every image: min over c of `d_loss(c, c)`. For the relativistic losses
c does not matter (ragan/ragp/rcgan: ln 2; rals/rahinge/rcls/rchinge: 1); for the standard ones the
minimum sits at c = 0 (vanilla/r1: 2 ln 2), c = 1/2 (lsgan: 1/2) or anywhere in [-1, 1] (hinge: 2);
wgan/wgan-gp: 0. Such a D gives the generator a near-zero adversarial gradient, so the "GAN" stage
silently trains on the other losses only; the trainer logs a warning (no rollback: nothing diverged).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn


class TrainingDiverged(RuntimeError):
    """The divergence guard gave up: rollbacks exhausted, or nothing left to roll back to."""


# the constant logits searched for the minimum (step 0.01: holds 0 and 1/2, where the standard losses' minima lie)
_LEVELS = torch.linspace(-4.0, 4.0, 801, dtype=torch.float64)


@torch.no_grad()
def chance_d_loss(gan_loss) -> float:
    """min over constant logits c of gan_loss.d_loss(c, c) (see the module docstring)."""
    values = [float(gan_loss.d_loss(c.reshape(1, 1).expand(2, 1), c.reshape(1, 1).expand(2, 1))) for c in _LEVELS]
    return min(values)


class IdleDiscriminatorWatch:
    """Counts the iterations in a row whose D loss is within `epsilon` of the chance value; `update`
    returns a warning once the count reaches `window` (once per such stretch)."""

    def __init__(self, chance: float, epsilon: float, window: int):
        self.chance, self.epsilon, self.window = chance, epsilon, window
        self.run = 0

    def update(self, d_loss: float, iteration: int) -> str | None:
        if not (self.epsilon > 0 and math.isfinite(d_loss) and abs(d_loss - self.chance) <= self.epsilon):
            self.run = 0
            return None
        self.run += 1
        if self.run != self.window:
            return None
        return (f"WARNING iter {iteration}: the discriminator is not learning: its loss has stayed within "
                f"{self.epsilon:g} of its chance value {self.chance:.4f} (what a D that cannot tell real from "
                f"fake gets) for {self.run} iterations, so the adversarial term gives the generator almost no "
                "gradient (see d_input_grad in train_log.csv); check the discriminator, its learning rate and "
                "the gradient penalty")


def window_for(total_iters: int, fraction: float, minimum: int) -> int:
    """The watch's window: `fraction` of the run, at least `minimum` iterations."""
    return max(int(minimum), math.ceil(fraction * total_iters))


def input_gradient_norm(D, images: torch.Tensor) -> float:
    """Mean over the batch of || d mean(D(x_i)) / d x_i ||_2: the gradient of each image's mean logit
    with respect to the image (the quantity a gradient penalty on the mean output constrains, and the
    scale of what the adversarial term hands the generator). D runs in eval mode, so the probe leaves
    its spectral-norm power iterations and BatchNorm statistics, hence the training, unchanged."""
    was_training = D.training
    D.eval()
    try:
        x = images.detach().float().requires_grad_(True)
        with torch.enable_grad():
            per_image = D(x).float().flatten(1).mean(1)
            (grad,) = torch.autograd.grad(per_image.sum(), x)
    finally:
        D.train(was_training)
    return float(grad.flatten(1).norm(dim=1).mean())


class NaNLoss(nn.Module):
    """Wraps the generator loss (a CompositeLoss) so that its total is NaN whenever `when()` is true:
    how the guard is tested (`guard.inject_nan_at`, or a test's own condition), outside the step."""

    def __init__(self, losses: nn.Module, when: Callable[[], bool]):
        super().__init__()
        self.inner, self.when = losses, when

    def forward(self, *args):
        total, terms = self.inner(*args)
        return (total * float("nan") if self.when() else total), terms


def nan_at(iterations: Iterable[int], clock: Callable[[], int]) -> Callable[[], bool]:
    """A `NaNLoss` condition: true at each of `iterations` (read from `clock`), once each."""
    pending = {int(i) for i in iterations}

    def when() -> bool:
        it = clock()
        if it in pending:
            pending.discard(it)
            return True
        return False

    return when
