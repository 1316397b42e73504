"""PSNR and SSIM as reported in SR papers (MATLAB conventions, as BasicSR).

Both are computed on [0, 255] intensities, by default on the Y channel of MATLAB `rgb2ycbcr`
(BT.601, Y in [16, 235], not rounded) after shaving `crop_border` pixels (= the SR scale) off every
side. With `y_channel=False` the RGB channels are used (PSNR: MSE over all channels; SSIM: mean of
the per-channel SSIMs).

    PSNR = 10 log10(255^2 / MSE)                               (inf when MSE = 0)
    SSIM = mean over the valid window positions of
           (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))

SSIM is Wang et al. 2004 (`ssim_index.m`): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03,
L = 255, C1 = (K1 L)^2, C2 = (K2 L)^2, 'valid' filtering (no padding), population moments.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ._image import crop_border as _crop, pair, result, y_channel

__all__ = ["psnr", "ssim", "gaussian_window"]


def _prepare(sr, hr, crop_border: int, y: bool, fn: str):
    a, b, single = pair(sr, hr, fn)
    if y:
        a, b = y_channel(a), y_channel(b)
    return _crop(a, crop_border, fn), _crop(b, crop_border, fn), single


def psnr(sr, hr, crop_border: int = 4, y_channel: bool = True):
    """PSNR in dB (see the module docstring); float for one image, (N,) array for a batch."""
    a, b, single = _prepare(sr, hr, crop_border, y_channel, "psnr")
    mse = np.mean((a - b) ** 2, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(255.0 ** 2 / mse)
    return result(values, single)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """MATLAB fspecial('gaussian', size, sigma): normalised (size, size) float64 window."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    w = g[:, None] * g[None, :]
    return w / w.sum()


def _ssim_per_channel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, C) mean SSIM of each channel."""
    n, h, w, c = a.shape
    x = torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).reshape(n * c, 1, h, w)
    y = torch.from_numpy(np.ascontiguousarray(b.transpose(0, 3, 1, 2))).reshape(n * c, 1, h, w)
    win = gaussian_window()[None, None]
    filt = lambda t: F.conv2d(t, win)  # noqa: E731  'valid': no padding
    mu_x, mu_y = filt(x), filt(y)
    s_xx = filt(x * x) - mu_x ** 2
    s_yy = filt(y * y) - mu_y ** 2
    s_xy = filt(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    smap = ((2 * mu_x * mu_y + c1) * (2 * s_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (s_xx + s_yy + c2))
    return smap.mean(dim=(1, 2, 3)).reshape(n, c).numpy()


def ssim(sr, hr, crop_border: int = 4, y_channel: bool = True):
    """SSIM (see the module docstring); float for one image, (N,) array for a batch."""
    a, b, single = _prepare(sr, hr, crop_border, y_channel, "ssim")
    if a.shape[1] < 11 or a.shape[2] < 11:
        raise ValueError(f"ssim: images must be at least 11x11 after the border crop, got {a.shape[1]}x{a.shape[2]}")
    return result(_ssim_per_channel(a, b).mean(axis=1), single)
