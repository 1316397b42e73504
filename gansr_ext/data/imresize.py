"""MATLAB-compatible bicubic `imresize` for numpy arrays and torch tensors.

Per dimension (length n -> m, scale s = m / n), output pixel i (1-based) samples the input at
``u_i = i / s + 0.5 * (1 - 1 / s)``. With the cubic kernel (a = -0.5)::

    k(x) = 1.5|x|^3 - 2.5|x|^2 + 1             |x| <= 1
           -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2     1 < |x| <= 2
           0                                   otherwise

taps j = floor(u_i - w/2) + 0 .. ceil(w) + 1 get weights ``k(u_i - j)`` (width w = 4), or when
downscaling with antialiasing ``s * k(s * (u_i - j))`` (width w = 4 / s); each row is normalised
to sum 1. Taps outside [1, n] are mirrored symmetrically (MATLAB's ``[1:n, n:-1:1]`` indexing).
The taps are folded into a dense (m, n) matrix W, so resizing is ``W_h @ X @ W_w^T`` (batched,
differentiable, one matmul per dimension). Output size is ``ceil(s * n)`` as in MATLAB.

Like the well-known Python ports (BasicSR ``matlab_functions.imresize``) the computation is in
floating point throughout and integer inputs are rounded and clipped once at the end (MATLAB's
mex rounds integer images after each dimension, which can differ by 1 level). Rounding is MATLAB's,
half away from zero (numpy and torch round half to even: 98.5 -> 98 instead of 99).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from .color import matlab_round

__all__ = ["imresize", "modcrop", "make_lr", "resize_weights", "cubic"]


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax ** 2, ax ** 3
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


@lru_cache(maxsize=64)
def _weights_cached(in_len: int, out_len: int, scale: float, antialiasing: bool) -> np.ndarray:
    kernel_width = 4.0
    shrink = scale < 1 and antialiasing
    if shrink:
        kernel_width /= scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based input positions, may be outside [1, n]
    dist = u[:, None] - idx
    w = scale * cubic(dist * scale) if shrink else cubic(dist)
    w = w / w.sum(axis=1, keepdims=True)
    # symmetric mirroring: position p -> aux[(p - 1) mod 2n] with aux = [0..n-1, n-1..0]
    aux = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    src = aux[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(mat, (np.repeat(np.arange(out_len), taps), src.ravel()), w.ravel())
    mat.setflags(write=False)
    return mat


def resize_weights(in_len: int, out_len: int, scale: float | None = None,
                   antialiasing: bool = True) -> np.ndarray:
    """The (out_len, in_len) float64 matrix that resizes one dimension (read-only, cached).

    `scale` defaults to out_len / in_len (MATLAB uses the requested scale when one is given).
    """
    if scale is None:
        scale = out_len / in_len
    return _weights_cached(int(in_len), int(out_len), float(scale), bool(antialiasing))


@lru_cache(maxsize=64)
def _band(in_len: int, out_len: int, scale: float, antialiasing: bool):
    """The dense matrix as a band: (out, p) column indices and weights (0 past the last column)."""
    mat = _weights_cached(in_len, out_len, scale, antialiasing)
    nz = mat != 0
    lo = np.where(nz.any(axis=1), nz.argmax(axis=1), 0)
    hi = in_len - 1 - np.argmax(nz[:, ::-1], axis=1)
    p = int((hi - lo).max()) + 1
    cols = lo[:, None] + np.arange(p)[None, :]
    valid = cols < in_len
    cols = np.minimum(cols, in_len - 1)
    weights = np.where(valid, np.take_along_axis(mat, cols, axis=1), 0.0)
    return cols, weights


@lru_cache(maxsize=64)
def _torch_weights(in_len: int, out_len: int, scale: float, antialiasing: bool,
                   device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(_weights_cached(in_len, out_len, scale, antialiasing), device=device, dtype=dtype)


def _plan(in_hw, scale, output_shape):
    """Per-dimension (out_len, scale) for H and W, following MATLAB's size/scale rules."""
    if scale is None and output_shape is None:
        raise ValueError("imresize: give scale or output_shape")
    if output_shape is not None:
        if len(output_shape) != 2:
            raise ValueError(f"imresize: output_shape must be (H, W), got {output_shape!r}")
        out = tuple(int(v) for v in output_shape)
        if any(v <= 0 for v in out) or any(int(v) != v for v in output_shape):
            raise ValueError(f"imresize: output_shape must be positive integers, got {output_shape!r}")
        if scale is None:
            return [(o, o / i) for o, i in zip(out, in_hw)]
    if isinstance(scale, (tuple, list)):
        if len(scale) != 2:
            raise ValueError(f"imresize: scale must be a number or (sh, sw), got {scale!r}")
        scales = tuple(float(s) for s in scale)
    elif isinstance(scale, (int, float)) and not isinstance(scale, bool):
        scales = (float(scale), float(scale))
    else:
        raise TypeError(f"imresize: scale must be a number or a pair, got {type(scale).__name__}")
    if any(not math.isfinite(s) or s <= 0 for s in scales):
        raise ValueError(f"imresize: scale must be positive and finite, got {scale!r}")
    if output_shape is not None:  # both given: MATLAB uses the scale for the kernel, size for output
        return list(zip(out, scales))
    # round before ceil so that e.g. 0.1 * 30 = 3.0000000000000004 still gives 3
    return [(max(1, math.ceil(round(s * i, 9))), s) for s, i in zip(scales, in_hw)]


def _imresize_numpy(img: np.ndarray, plan, antialiasing: bool) -> np.ndarray:
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize: numpy input must be HW or HWC, got shape {img.shape}")
    dtype = img.dtype
    if dtype == np.bool_ or not (np.issubdtype(dtype, np.floating) or dtype in (np.uint8, np.uint16)):
        raise TypeError(f"imresize: numpy dtype must be uint8, uint16 or float, got {dtype}")
    x = img.astype(np.float64)
    h, w = img.shape[:2]
    (oh, sh), (ow, sw) = plan
    # banded taps (a few per output pixel) instead of the dense matrix: O(taps) per output pixel
    cols, wts = _band(h, oh, float(sh), bool(antialiasing))
    wts = wts.reshape(wts.shape + (1,) * (x.ndim - 1))
    x = sum(wts[:, k] * x[cols[:, k]] for k in range(cols.shape[1]))
    cols, wts = _band(w, ow, float(sw), bool(antialiasing))
    wts = wts.reshape(wts.shape + (1,) * (x.ndim - 2))
    x = sum(wts[:, k] * x[:, cols[:, k]] for k in range(cols.shape[1]))
    if dtype in (np.uint8, np.uint16):
        info = np.iinfo(dtype)
        return np.clip(matlab_round(x), info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _imresize_torch(img: torch.Tensor, plan, antialiasing: bool) -> torch.Tensor:
    if img.dim() < 2:
        raise ValueError(f"imresize: tensor input must be (..., H, W), got shape {tuple(img.shape)}")
    dtype = img.dtype
    if dtype == torch.float64:
        ct = torch.float64
    elif dtype.is_floating_point or dtype in (torch.uint8, torch.int16, torch.int32):
        ct = torch.float32
    else:
        raise TypeError(f"imresize: tensor dtype must be float, uint8, int16 or int32, got {dtype}")
    h, w = img.shape[-2:]
    (oh, sh), (ow, sw) = plan
    wh = _torch_weights(h, oh, float(sh), bool(antialiasing), img.device, ct)
    ww = _torch_weights(w, ow, float(sw), bool(antialiasing), img.device, ct)
    out = wh @ img.to(ct) @ ww.T
    if dtype == torch.uint8:
        return matlab_round(out).clamp(0, 255).to(dtype)
    if not dtype.is_floating_point:
        return matlab_round(out).to(dtype)
    return out.to(dtype)


def imresize(img, scale=None, output_shape=None, antialiasing: bool = True):
    """MATLAB `imresize(img, scale, 'bicubic')` (see the module docstring).

    img: numpy HW / HWC (uint8 or uint16 -> rounded, clipped, same dtype; float -> same float dtype)
    or torch (..., H, W), e.g. (C, H, W) or (N, C, H, W), any device, differentiable for floats.
    scale: a number or (sh, sw); output_shape: (H, W). Exactly one is usually given; with only
    output_shape, each dimension's scale is out / in.
    """
    if isinstance(img, torch.Tensor):
        return _imresize_torch(img, _plan(tuple(img.shape[-2:]), scale, output_shape), antialiasing)
    if isinstance(img, np.ndarray):
        return _imresize_numpy(img, _plan(img.shape[:2], scale, output_shape), antialiasing)
    raise TypeError(f"imresize: expected a numpy array or torch tensor, got {type(img).__name__}")


def _check_scale(scale) -> int:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    return int(scale)


def modcrop(img, scale: int):
    """Crop H and W down to multiples of `scale` (numpy HW/HWC or torch (..., H, W)), top-left kept."""
    scale = _check_scale(scale)
    if isinstance(img, torch.Tensor):
        h, w = img.shape[-2:]
        return img[..., : h - h % scale, : w - w % scale]
    if isinstance(img, np.ndarray):
        if img.ndim not in (2, 3):
            raise ValueError(f"modcrop: numpy input must be HW or HWC, got shape {img.shape}")
        h, w = img.shape[:2]
        return img[: h - h % scale, : w - w % scale]
    raise TypeError(f"modcrop: expected a numpy array or torch tensor, got {type(img).__name__}")


def make_lr(hr, scale: int = 4):
    """The standard SR degradation `LR = imresize(modcrop(HR, scale), 1 / scale)` (bicubic)."""
    scale = _check_scale(scale)
    hr = modcrop(hr, scale)
    h, w = (hr.shape[-2:] if isinstance(hr, torch.Tensor) else hr.shape[:2])
    if h == 0 or w == 0:
        raise ValueError(f"make_lr: image smaller than the scale {scale}")
    return imresize(hr, 1.0 / scale)
