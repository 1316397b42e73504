"""Shared helpers of the op wrappers: choosing fused vs reference, reductions."""

from __future__ import annotations

import torch

from .._ext import cuda_kernels_available, extension_available, require_extension


def fused_available(device: torch.device) -> bool:
    """Whether the compiled ops can run on `device` (cpu always when `_C` is built; cuda when it holds
    CUDA kernels). The one availability rule behind `fused=None` / `train.fused=auto`."""
    if device.type == "cpu":
        return extension_available()
    return device.type == "cuda" and extension_available() and cuda_kernels_available()


def use_fused(fused: bool | None, *tensors: torch.Tensor) -> bool:
    """Resolve the `fused` switch for tensors on one device.

    True: the compiled kernel (clear error when `_C` or its CUDA kernels are missing);
    False: the pure-PyTorch reference; None: the kernel when available for the device.
    """
    device = tensors[0].device
    if device.type not in ("cpu", "cuda"):
        if fused:
            raise RuntimeError(f"gansr_ext fused ops run on cpu and cuda, not {device.type}")
        return False
    if fused is False:
        return False
    if fused is None:
        return fused_available(device)
    require_extension()
    if device.type == "cuda" and not cuda_kernels_available():
        raise RuntimeError("gansr_ext._C was built without CUDA kernels; rebuild with nvcc and a CUDA torch, "
                           "or pass fused=False")
    return True


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
