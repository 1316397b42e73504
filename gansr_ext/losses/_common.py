"""Input checks shared by the losses (the reduction itself is `gansr_ext.ops._common.reduce`)."""

from __future__ import annotations

import torch

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str, who: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{who}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def check_pair(pred: torch.Tensor, target: torch.Tensor, who: str, ndim: int | None = None,
               channels: int | None = None) -> None:
    """Same-shape floating tensors on one device (optionally `ndim`-D with `channels` channels)."""
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(f"{who}: inputs must be tensors, got {type(pred).__name__} and {type(target).__name__}")
    if not pred.is_floating_point() or not target.is_floating_point():
        raise TypeError(f"{who}: inputs must be floating point, got {pred.dtype} and {target.dtype}")
    if pred.shape != target.shape:
        raise ValueError(f"{who}: inputs must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.device != target.device:
        raise ValueError(f"{who}: inputs must be on the same device, got {pred.device} and {target.device}")
    if pred.numel() == 0:
        raise ValueError(f"{who}: empty input of shape {tuple(pred.shape)}")
    if ndim is not None and pred.dim() != ndim:
        raise ValueError(f"{who}: inputs must be {ndim}-D (B, C, H, W), got shape {tuple(pred.shape)}")
    if channels is not None and pred.shape[1] != channels:
        raise ValueError(f"{who}: inputs must have {channels} channels, got shape {tuple(pred.shape)}")


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """No parameter gradients, eval mode (gradients still flow to the inputs)."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()
