"""Natural-scene statistics shared by NIQE and BRISQUE (the LIVE MATLAB reference code).

MSCN coefficients::

    mu = w * I,   sigma = sqrt(|w * I^2 - mu^2|),   MSCN = (I - mu) / (sigma + 1)

with w the 7x7 Gaussian (sigma 7/6) on [0, 255] intensities. Where the 7x7 neighbourhood (padding
included) is constant, mu = I exactly and MSCN = 0: floating-point filtering would leave +-1e-14
there, and the sign of that noise decides on which side of the AGGD fit the value falls (NIQE of a
photo with flat areas moved by 4e-4 from MATLAB's published value). Shape parameters are fitted by moment
matching against a table over alpha = 0.2:0.001:10 (MATLAB's grid):

- GGD: rho = E[x^2] / E[|x|]^2, alpha = argmin |rho - G(1/a) G(3/a) / G(2/a)^2|, sigma = sqrt(E[x^2]).
- AGGD: sl, sr = RMS of the negative / positive values, g = sl / sr, r = E[|x|]^2 / E[x^2],
  R = r (g^3 + 1)(g + 1) / (g^2 + 1)^2, alpha = argmin (G(2/a)^2 / (G(1/a) G(3/a)) - R)^2.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.special import gamma

PARAMS_DIR = Path(__file__).resolve().parent / "params"

# pairwise products of neighbours (circshift offsets); NIQE and BRISQUE use different diagonals
NIQE_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))
BRISQUE_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))


@lru_cache(maxsize=None)
def load_params(name: str) -> dict:
    """Arrays of params/<name>.npz (read once)."""
    with np.load(PARAMS_DIR / f"{name}.npz") as f:
        return {k: f[k] for k in f.files}


@lru_cache(maxsize=1)
def _tables():
    alpha = np.arange(0.2, 10.001, 0.001)
    r_aggd = gamma(2 / alpha) ** 2 / (gamma(1 / alpha) * gamma(3 / alpha))
    return alpha, r_aggd, 1.0 / r_aggd


def gaussian_window_7() -> np.ndarray:
    return load_params("niqe_pristine_params")["gaussian_window"]


def mscn(img: np.ndarray, mode: str) -> np.ndarray:
    """MSCN map of a 2-D float image in [0, 255].

    mode 'nearest' = MATLAB imfilter(..., 'replicate') (NIQE); 'constant' = filter2(..., 'same'),
    zero padding (BRISQUE).
    """
    w = gaussian_window_7()
    mu = ndimage.correlate(img, w, mode=mode, cval=0.0)
    sigma = np.sqrt(np.abs(ndimage.correlate(img * img, w, mode=mode, cval=0.0) - mu * mu))
    out = (img - mu) / (sigma + 1.0)
    out[_flat_neighbourhood(img, w.shape, mode)] = 0.0
    return out


def _flat_neighbourhood(img: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """True where every pixel of the window (with the same padding as the filter) equals the centre."""
    hi = ndimage.maximum_filter(img, size=size, mode=mode, cval=0.0)
    lo = ndimage.minimum_filter(img, size=size, mode=mode, cval=0.0)
    return hi == lo


def fit_ggd(x: np.ndarray) -> tuple[float, float]:
    """(alpha, sigma) of a zero-mean generalized Gaussian."""
    alpha, _, r_ggd = _tables()
    x = x.ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma_sq = np.mean(x ** 2)
        rho = sigma_sq / np.mean(np.abs(x)) ** 2
        a = alpha[np.argmin(np.abs(rho - r_ggd))]
    return float(a), float(np.sqrt(sigma_sq))


def fit_aggd(x: np.ndarray) -> tuple[float, float, float]:
    """(alpha, left std, right std) of an asymmetric generalized Gaussian (NaN where undefined)."""
    alpha, r_aggd, _ = _tables()
    x = x.ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        neg, pos = x[x < 0], x[x > 0]
        left = np.sqrt(np.mean(neg ** 2)) if neg.size else np.nan
        right = np.sqrt(np.mean(pos ** 2)) if pos.size else np.nan
        g = left / right
        r = np.mean(np.abs(x)) ** 2 / np.mean(x ** 2)
        r_norm = r * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2
        a = alpha[np.argmin((r_aggd - r_norm) ** 2)]  # all-NaN -> index 0, as MATLAB's min
    return float(a), float(left), float(right)


def gamma_ratio(a: float, num: float, den: float) -> float:
    return float(gamma(num / a) / gamma(den / a))
