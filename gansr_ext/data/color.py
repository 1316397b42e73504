"""MATLAB-compatible BT.601 RGB <-> YCbCr (`rgb2ycbcr` / `ycbcr2rgb`), numpy and torch.

For RGB in [0, 1] (studio swing, as MATLAB and BasicSR)::

    Y  = 16  +  65.481 R + 128.553 G +  24.966 B      in [16, 235]
    Cb = 128 -  37.797 R -  74.203 G + 112.0   B      in [16, 240]
    Cr = 128 + 112.0   R -  93.786 G -  18.214 B      in [16, 240]

Range convention (BasicSR's): float input is RGB in [0, 1] and the output is the above / 255
(Y in [16/255, 235/255]), in the same float dtype; uint8 input is RGB in [0, 255] and the output
is the above rounded to uint8. `ycbcr2rgb` is the exact inverse (float outputs are not clipped;
uint8 outputs are rounded and clipped to [0, 255]).

Layouts: numpy arrays are channels-last (..., 3); torch tensors are channels at dim -3
((3, H, W) or (N, 3, H, W)). Y-only results keep a channel dim of size 1 for torch and drop it for
numpy (HW), matching how metrics use them.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["rgb2ycbcr", "ycbcr2rgb", "rgb_to_y"]

# rows: Y, Cb, Cr; columns: R, G, B (RGB in [0, 1] -> YCbCr in [0, 255])
_RGB2YCBCR = np.array([[65.481, 128.553, 24.966],
                       [-37.797, -74.203, 112.0],
                       [112.0, -93.786, -18.214]])
_OFFSET = np.array([16.0, 128.0, 128.0])
_YCBCR2RGB = np.linalg.inv(_RGB2YCBCR)


def _check_channels(img, fn: str) -> None:
    if isinstance(img, torch.Tensor):
        if img.dim() < 3 or img.shape[-3] != 3:
            raise ValueError(f"{fn}: tensor must be (..., 3, H, W), got shape {tuple(img.shape)}")
    elif isinstance(img, np.ndarray):
        if img.ndim < 1 or img.shape[-1] != 3:
            raise ValueError(f"{fn}: array must be channels-last (..., 3), got shape {img.shape}")
    else:
        raise TypeError(f"{fn}: expected a numpy array or torch tensor, got {type(img).__name__}")


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
            return x.round().clamp(0, 255).to(torch.uint8)
        return (x / 255.0).to(dtype)
    if dtype == np.uint8:
        return np.clip(np.round(x), 0, 255).astype(np.uint8)
    return (x / 255.0).astype(dtype)


def _apply(mat: np.ndarray, offset: np.ndarray, x):
    """out_c = sum_k mat[c, k] x_k + offset_c over the channel dim (-3 torch, -1 numpy)."""
    if isinstance(x, torch.Tensor):
        m = torch.as_tensor(mat, dtype=x.dtype, device=x.device)
        o = torch.as_tensor(offset, dtype=x.dtype, device=x.device)
        return torch.einsum("ck,...khw->...chw", m, x) + o.view(-1, 1, 1)
    return x @ mat.T + offset


def rgb2ycbcr(img, y_only: bool = False):
    """BT.601 RGB -> YCbCr exactly as MATLAB's `rgb2ycbcr` (see the module docstring for ranges)."""
    _check_channels(img, "rgb2ycbcr")
    x, dtype = _to_unit_float(img, "rgb2ycbcr")
    if y_only:
        out = _apply(_RGB2YCBCR[:1], _OFFSET[:1], x)
        if isinstance(out, np.ndarray):
            out = out[..., 0]
    else:
        out = _apply(_RGB2YCBCR, _OFFSET, x)
    return _from_255(out, dtype)


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
