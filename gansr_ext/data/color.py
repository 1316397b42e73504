"""MATLAB-compatible BT.601 RGB <-> YCbCr (`rgb2ycbcr` / `ycbcr2rgb`), numpy and torch.

For RGB in [0, 1] (studio swing, as MATLAB and BasicSR)::

    Y  = 16  +  65.481 R + 128.553 G +  24.966 B      in [16, 235]
    Cb = 128 -  37.797 R -  74.203 G + 112.0   B      in [16, 240]
    Cr = 128 + 112.0   R -  93.786 G -  18.214 B      in [16, 240]

Range convention (BasicSR's): float input is RGB in [0, 1] and the output is the above / 255
(Y in [16/255, 235/255]), in the same float dtype; uint8 input is RGB in [0, 255] and the output
is the above rounded to uint8. `ycbcr2rgb` is the exact inverse (float outputs are not clipped;
uint8 outputs are rounded and clipped to [0, 255]).

Rounding is MATLAB's (half away from zero, `matlab_round`), not numpy's / torch's half to even.
uint8 `rgb2ycbcr` is computed in exact integer arithmetic (the coefficients are multiples of 1/1000),
so a pixel whose value is exactly x.5 rounds up on every path; float results are weighted sums
taken channel by channel in a fixed order (no matmul, whose summation order depends on the memory
layout), so the same pixels give the same values whatever the layout (HWC array, CHW tensor).

Layouts: numpy arrays are channels-last (..., 3); torch tensors are channels at dim -3
((3, H, W) or (N, 3, H, W)). Y-only results keep a channel dim of size 1 for torch and drop it for
numpy (HW), matching how metrics use them.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["rgb2ycbcr", "ycbcr2rgb", "rgb_to_y", "matlab_round"]

# rows: Y, Cb, Cr; columns: R, G, B (RGB in [0, 1] -> YCbCr in [0, 255])
_RGB2YCBCR = np.array([[65.481, 128.553, 24.966],
                       [-37.797, -74.203, 112.0],
                       [112.0, -93.786, -18.214]])
_OFFSET = np.array([16.0, 128.0, 128.0])
_YCBCR2RGB = np.linalg.inv(_RGB2YCBCR)
# the same in exact integers: YCbCr = (_RGB2YCBCR_1000 @ rgb_uint8 + _OFFSET_255000) / 255000
_RGB2YCBCR_1000 = np.rint(_RGB2YCBCR * 1000).astype(np.int64)
_OFFSET_255000 = np.rint(_OFFSET * 255000).astype(np.int64)


def matlab_round(x):
    """Round half away from zero, as MATLAB's `round` (numpy / torch round half to even); NaN stays NaN."""
    if isinstance(x, torch.Tensor):
        a = x.abs()
        f = a.floor()
        return x.sign() * (f + (a - f >= 0.5).to(x.dtype))
    a = np.abs(x)
    f = np.floor(a)
    # a - f is exact; floor(a + 0.5) would round 0.49999999999999994 + 0.5 up to 1
    return np.sign(x) * (f + (a - f >= 0.5))


def _check_channels(img, fn: str) -> None:
    if isinstance(img, torch.Tensor):
        if img.dim() < 3 or img.shape[-3] != 3:
            raise ValueError(f"{fn}: tensor must be (..., 3, H, W), got shape {tuple(img.shape)}")
    elif isinstance(img, np.ndarray):
        if img.ndim < 1 or img.shape[-1] != 3:
            raise ValueError(f"{fn}: array must be channels-last (..., 3), got shape {img.shape}")
    else:
        raise TypeError(f"{fn}: expected a numpy array or torch tensor, got {type(img).__name__}")


def _is_uint8(img) -> bool:
    return img.dtype == (torch.uint8 if isinstance(img, torch.Tensor) else np.uint8)


def _to_unit_float(img, fn: str):
    """-> (float image in [0, 1] nominal, original dtype); float64 for numpy and float64 tensors, else float32."""
    if isinstance(img, torch.Tensor):
        if img.dtype == torch.uint8:
            return img.to(torch.float32) / 255.0, img.dtype
        if not img.dtype.is_floating_point:
            raise TypeError(f"{fn}: tensor dtype must be float or uint8, got {img.dtype}")
        ct = torch.float64 if img.dtype == torch.float64 else torch.float32
        return img.to(ct), img.dtype
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0, img.dtype
    if not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"{fn}: array dtype must be float or uint8, got {img.dtype}")
    return img.astype(np.float64), img.dtype


def _from_255(x, dtype):
    """Values in [0, 255] -> dtype's convention (uint8 rounded/clipped, float / 255)."""
    if isinstance(x, torch.Tensor):
        if dtype == torch.uint8:
            return matlab_round(x).clamp(0, 255).to(torch.uint8)
        return (x / 255.0).to(dtype)
    if dtype == np.uint8:
        return np.clip(matlab_round(x), 0, 255).astype(np.uint8)
    return (x / 255.0).astype(dtype)


def _apply(mat: np.ndarray, offset: np.ndarray, x):
    """out_c = ((mat[c, 0] x_0 + mat[c, 1] x_1) + mat[c, 2] x_2) + offset_c over the channel dim
    (-3 torch, -1 numpy), element by element in this order whatever the memory layout."""
    torch_in = isinstance(x, torch.Tensor)
    ch = [x[..., k, :, :] if torch_in else x[..., k] for k in range(3)]
    out = [float(m[0]) * ch[0] + float(m[1]) * ch[1] + float(m[2]) * ch[2] + float(o) for m, o in zip(mat, offset)]
    return torch.stack(out, dim=-3) if torch_in else np.stack(out, axis=-1)


def _rgb2ycbcr_uint8(img, rows: slice):
    """uint8 RGB -> uint8 YCbCr rows, exact: integer numerator, ties (x.5) rounded up (all values are > 0)."""
    mat, off, den = _RGB2YCBCR_1000[rows], _OFFSET_255000[rows], 255000
    if isinstance(img, torch.Tensor):
        x = img.to(torch.int64)
        ch = [x[..., k, :, :] for k in range(3)]
        num = torch.stack([int(m[0]) * ch[0] + int(m[1]) * ch[1] + int(m[2]) * ch[2] + int(o)
                           for m, o in zip(mat, off)], dim=-3)
        return torch.div(2 * num + den, 2 * den, rounding_mode="floor").to(torch.uint8)
    num = img.astype(np.int64) @ mat.T + off  # integers: exact in any summation order
    return ((2 * num + den) // (2 * den)).astype(np.uint8)


def rgb2ycbcr(img, y_only: bool = False):
    """BT.601 RGB -> YCbCr exactly as MATLAB's `rgb2ycbcr` (see the module docstring for ranges)."""
    _check_channels(img, "rgb2ycbcr")
    rows = slice(0, 1 if y_only else 3)
    if _is_uint8(img):
        out = _rgb2ycbcr_uint8(img, rows)
    else:
        x, dtype = _to_unit_float(img, "rgb2ycbcr")
        out = _from_255(_apply(_RGB2YCBCR[rows], _OFFSET[rows], x), dtype)
    return out[..., 0] if y_only and isinstance(out, np.ndarray) else out


def ycbcr2rgb(img):
    """BT.601 YCbCr -> RGB, the exact inverse of `rgb2ycbcr` (MATLAB's `ycbcr2rgb`)."""
    _check_channels(img, "ycbcr2rgb")
    x, dtype = _to_unit_float(img, "ycbcr2rgb")
    # x * 255 are YCbCr in [0, 255]; RGB in [0, 1] = M^-1 (x * 255 - offset); report in [0, 255]
    rgb01 = _apply(_YCBCR2RGB * 255.0, -_YCBCR2RGB @ _OFFSET, x)
    return _from_255(rgb01 * 255.0, dtype)


def rgb_to_y(img):
    """The Y channel of `rgb2ycbcr` (torch (N, 3, H, W) -> (N, 1, H, W); numpy HWC -> HW).

    Float in [0, 1] -> float in [16/255, 235/255]; uint8 -> uint8 in [16, 235].
    """
    return rgb2ycbcr(img, y_only=True)
