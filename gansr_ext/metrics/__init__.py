"""Image-quality metrics for super-resolution.

Full-reference: `psnr`, `ssim` (Y channel, border crop, MATLAB conventions), `LPIPSMetric`.
No-reference: `niqe`, `brisque` (MATLAB-compatible, LIVE parameters in `params/`).
Set-level: `FIDMetric` / `frechet_distance`, `spectral_discrepancy` / `power_spectrum_1d`.
Inputs: torch (C, H, W) / (N, C, H, W) in [0, 1] (or uint8), numpy HW / HWC / NHWC (uint8 or float
in [0, 1]). LPIPS and FID (torchvision models) load on first use.
"""

from __future__ import annotations

import importlib

# imported eagerly so that `metrics.niqe` / `metrics.brisque` are the functions, not the submodules
from .brisque import brisque
from .niqe import niqe
from .psnr_ssim import psnr, ssim
from .spectrum import mean_power_spectrum, power_spectrum_1d, spectral_discrepancy

_LAZY = {"LPIPSMetric": "lpips", "FIDMetric": "fid", "frechet_distance": "fid"}

__all__ = ["psnr", "ssim", "niqe", "brisque", "power_spectrum_1d", "mean_power_spectrum",
           "spectral_discrepancy", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
