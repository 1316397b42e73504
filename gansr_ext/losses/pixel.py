"""Pixel losses between SR and HR images: L1, L2 (MSE), Charbonnier.

With d = pred - target elementwise::

    L1:          l = |d|
    L2 (MSE):    l = d^2
    Charbonnier: l = sqrt(d^2 + eps^2)        (eps = 1e-6: BasicSR's sqrt(d^2 + 1e-12))

    loss = loss_weight * reduce(l),  reduce in {"mean", "sum", "none" (elementwise map)}
"""

from __future__ import annotations

import torch
from torch import nn

from ..ops._common import reduce
from ._common import check_pair, check_reduction


class _PixelLoss(nn.Module):
    name = "pixel"

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean"):
        super().__init__()
        self.loss_weight = float(loss_weight)
        self.reduction = check_reduction(reduction, type(self).__name__)

    def elementwise(self, d: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair(pred, target, type(self).__name__)
        return self.loss_weight * reduce(self.elementwise(pred - target), self.reduction)

    def extra_repr(self) -> str:
        return f"loss_weight={self.loss_weight}, reduction={self.reduction!r}"


class L1Loss(_PixelLoss):
    """loss = loss_weight * reduce(|pred - target|)."""

    def elementwise(self, d):
        return d.abs()


class MSELoss(_PixelLoss):
    """loss = loss_weight * reduce((pred - target)^2)."""

    def elementwise(self, d):
        return d * d


L2Loss = MSELoss


class CharbonnierLoss(_PixelLoss):
    """loss = loss_weight * reduce(sqrt((pred - target)^2 + eps^2)); a smooth L1 (eps = 1e-6)."""

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean", eps: float = 1e-6):
        super().__init__(loss_weight, reduction)
        if not eps > 0:
            raise ValueError(f"CharbonnierLoss: eps must be > 0, got {eps!r}")
        self.eps = float(eps)

    def elementwise(self, d):
        return torch.sqrt(d * d + self.eps ** 2)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", eps={self.eps}"
