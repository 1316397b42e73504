"""NIQE (Mittal, Soundararajan, Bovik 2013), MATLAB-compatible (`computequality.m`), lower is better.

The image (Y channel of MATLAB rgb2ycbcr as uint8 levels, exact for 8-bit inputs whatever their layout,
float inputs rounded half away from zero; `crop_border` pixels shaved, as the PIRM 2018 SR protocol) is cut to whole 96x96 blocks. At two scales (the second a MATLAB bicubic
imresize by 0.5) the MSCN map (replicate padding) is split into blocks (96x96, then 48x48) and each
block gives 18 features: AGGD fit of the MSCN values (alpha, (beta_l + beta_r) / 2) and, for the
4 neighbour products (shifts (0,1), (1,0), (1,1), (1,-1)), the AGGD (alpha, mean, beta_l, beta_r)
with beta = std * sqrt(G(1/alpha) / G(3/alpha)) and mean = (beta_r - beta_l) G(2/alpha) / G(1/alpha).
All blocks are used (no sharpness selection at test time). With the pristine model (mu_p, S_p) and
the image's block features' mean mu_d (per feature, NaN values ignored) and covariance S_d (over the
blocks without NaN), as BasicSR::

    NIQE = sqrt((mu_p - mu_d)^T ((S_p + S_d) / 2)^+ (mu_p - mu_d))

Cross-checked offline against BasicSR 1.4.2's `niqe`: equal to 1e-12 when both use a float64
MATLAB imresize (BasicSR resizes in float32, which moves results by up to ~0.005).
"""

from __future__ import annotations

import numpy as np

from ._image import crop_border as _crop, result, to_batch255, y_levels
from .nss import NIQE_SHIFTS, fit_aggd, gamma_ratio, load_params, mscn

__all__ = ["niqe", "niqe_features"]

BLOCK = 96


def _block_features(block: np.ndarray) -> list[float]:
    a, sl, sr = fit_aggd(block)
    k = np.sqrt(gamma_ratio(a, 1, 3))
    feat = [a, (sl + sr) * k / 2]
    for shift in NIQE_SHIFTS:
        a, sl, sr = fit_aggd(block * np.roll(block, shift, axis=(0, 1)))
        k = np.sqrt(gamma_ratio(a, 1, 3))
        bl, br = sl * k, sr * k
        feat += [a, (br - bl) * gamma_ratio(a, 2, 1), bl, br]
    return feat


def niqe_features(gray: np.ndarray) -> np.ndarray:
    """(n_blocks, 36) features of a 2-D float image in [0, 255] (cut to whole 96x96 blocks)."""
    from gansr_ext.data.imresize import imresize

    nh, nw = gray.shape[0] // BLOCK, gray.shape[1] // BLOCK
    if nh * nw < 2:
        raise ValueError(f"niqe: needs at least two {BLOCK}x{BLOCK} blocks (after the border crop), "
                         f"got an image of {gray.shape[0]}x{gray.shape[1]}")
    img = gray[: nh * BLOCK, : nw * BLOCK].astype(np.float64)
    per_scale = []
    for scale in (1, 2):
        m = mscn(img, mode="nearest")
        b = BLOCK // scale
        per_scale.append([_block_features(m[i * b:(i + 1) * b, j * b:(j + 1) * b])
                          for j in range(nw) for i in range(nh)])
        if scale == 1:
            img = imresize(img, 0.5)
    return np.concatenate([np.asarray(f) for f in per_scale], axis=1)


def _niqe_gray(gray: np.ndarray) -> float:
    p = load_params("niqe_pristine_params")
    feat = niqe_features(gray)
    complete = feat[~np.isnan(feat).any(axis=1)]
    if len(complete) < 2:  # flat blocks have no MSCN statistics
        raise ValueError(f"niqe: features undefined in {len(feat) - len(complete)} of {len(feat)} blocks "
                         "(flat image?); need at least two complete blocks")
    mu_d = np.nanmean(feat, axis=0)
    cov_d = np.cov(complete, rowvar=False)
    d = p["mu_pris_param"][0] - mu_d
    return float(np.sqrt(d @ np.linalg.pinv((p["cov_pris_param"] + cov_d) / 2) @ d))


def niqe(img, crop_border: int = 4):
    """NIQE of an image or a batch (see the module docstring); float or (N,) array."""
    x, single = to_batch255(img, "niqe")
    y = y_levels(x)  # uint8 levels, as the reference reads 8-bit Y images
    y = _crop(y, crop_border, "niqe")
    return result(np.array([_niqe_gray(im[..., 0]) for im in y]), single)
