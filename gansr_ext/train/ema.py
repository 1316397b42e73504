"""Exponential moving average of the generator's weights, with a warm-up: after every optimizer step
`ema = d * ema + (1 - d) * w` with `d = min(decay, (1 + n) / (10 + n))`, n the number of earlier
updates (TensorFlow's `ExponentialMovingAverage(num_updates=...)`, timm's `ModelEmaV2` warm-up).
Without the warm-up a 0.999 EMA still holds 0.999^n of the random initialisation after n steps
(37% after 1000); with it, the first updates follow the weights closely. Buffers are copied.
The EMA copy is what validation and export use."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.updates = 0  # n: part of the training state (a resume restores it)
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next update uses."""
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_p = [p for p in self.module.parameters()]
        src_p = [p.detach() for p in model.parameters()]
        if len(ema_p) != len(src_p):
            raise ValueError("EMA.update: the model's parameters do not match the EMA copy's")
        torch._foreach_lerp_(ema_p, src_p, 1.0 - self.current_decay())
        for eb, b in zip(self.module.buffers(), model.buffers()):
            eb.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict:
        """The averaged weights (a generator state dict; `updates` is saved beside it)."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict, updates: int) -> None:
        self.module.load_state_dict(state)
        self.updates = int(updates)
