"""Shared helpers of the op wrappers: choosing fused vs reference, reductions."""

from __future__ import annotations

from typing import Literal, Union

import torch

from .._ext import cuda_kernels_available, extension_available, require_extension


FUSED_MODES = ("auto", "on", "off")
Fused = Union[bool, None, Literal["auto", "on", "off"]]  # the one `fused` switch: ops, model, trainer, upscaler, CLI
_FUSED_BOOLS = {None: "auto", True: "on", False: "off"}


def fused_mode(fused: Fused) -> str:
    """The `fused` vocabulary: 'auto' | 'on' | 'off', also spelt None | True | False."""
    if fused is None or isinstance(fused, bool):
        return _FUSED_BOOLS[fused]
    if isinstance(fused, str) and fused.lower() in FUSED_MODES:
        return fused.lower()
    raise ValueError(f"fused must be one of {FUSED_MODES} (or None/True/False), got {fused!r}")


def fused_available(device: torch.device) -> bool:
    """Whether the compiled ops can run on `device` (cpu always when `_C` is built; cuda when it holds
    CUDA kernels): what 'auto' resolves to."""
    if device.type == "cpu":
        return extension_available()
    return device.type == "cuda" and extension_available() and cuda_kernels_available()


def resolve_fused(fused: Fused, device: torch.device | str) -> bool:
    """The one resolver of the `fused` switch for a device: 'off' -> the pure-PyTorch reference;
    'auto' -> the compiled kernels where built for the device; 'on' -> the compiled kernels, or a
    RuntimeError saying what is missing (never a silent fallback)."""
    mode, device = fused_mode(fused), torch.device(device)
    if mode == "off":
        return False
    if device.type not in ("cpu", "cuda"):
        if mode == "on":
            raise RuntimeError(f"gansr_ext fused ops run on cpu and cuda, not {device.type}")
        return False
    if mode == "auto":
        return fused_available(device)
    require_extension()
    if device.type == "cuda" and not cuda_kernels_available():
        raise RuntimeError("gansr_ext._C was built without CUDA kernels; rebuild with nvcc and a CUDA torch, "
                           "or pass fused=False")
    return True


def use_fused(fused: Fused, *tensors: torch.Tensor) -> bool:
    """`resolve_fused` for the device of the op's tensors."""
    return resolve_fused(fused, tensors[0].device)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The kernels' arithmetic type: fp64 stays fp64, every other floating type runs in fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def reduce(per_item: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_item.mean()
    if reduction == "sum":
        return per_item.sum()
    if reduction == "none":
        return per_item
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
