"""Azimuthally averaged power spectra and the spectral discrepancy between image sets.

GAN upsamplers leave characteristic traces at high spatial frequencies (Durall et al. 2020, "Watch
your up-convolution"); these functions measure them.

1-D power spectrum of an image (grey = MATLAB rgb2gray weights on [0, 1] intensities)::

    P(u, v) = |fftshift(fft2(gray))|^2 / (H W)
    S(r)    = mean of P over the pixels whose distance to the centre (H//2, W//2) rounds to r,
              r = 0 .. min(H, W) // 2   (up to Nyquist along the shorter side)

S is indexed by the normalised frequency f = r / (2 (len(S) - 1)) in [0, 0.5] cycles/pixel; to
average images of different sizes, spectra are linearly interpolated onto a common grid of n_bins
frequencies.

Spectral discrepancy of a fake set against a real set, on the log scale used by the plots::

    D_abs = mean_f |log10(mean_real S(f) + eps) - log10(mean_fake S(f) + eps)|      (kind="abs")
    D_sq  = mean_f (log10(mean_real S(f) + eps) - log10(mean_fake S(f) + eps))^2    (kind="squared")

eps = 1e-10 keeps flat images finite. 0 for identical sets; larger when high frequencies are
missing (blur) or added (checkerboard artefacts, noise).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ._image import MATLAB_GRAY, to_batch255

__all__ = ["power_spectrum_1d", "mean_power_spectrum", "spectral_discrepancy", "discrepancy_of_spectra",
           "resample_spectrum", "EPS"]

EPS = 1e-10
_KINDS = ("abs", "squared")


def _radial_mean(power: np.ndarray) -> np.ndarray:
    h, w = power.shape[-2:]
    yy, xx = np.indices((h, w))
    r = np.rint(np.hypot(yy - h // 2, xx - w // 2)).astype(np.int64).ravel()
    n_r = min(h, w) // 2 + 1
    keep = r < n_r
    counts = np.bincount(r[keep], minlength=n_r)
    flat = power.reshape(-1, h * w)[:, keep]
    sums = np.stack([np.bincount(r[keep], weights=p, minlength=n_r) for p in flat])
    return sums / counts


def resample_spectrum(spec: np.ndarray, n_bins: int) -> np.ndarray:
    """Spectra (..., R) over [0, 0.5] cycles/pixel -> (..., n_bins) by linear interpolation."""
    spec = np.asarray(spec)
    if spec.shape[-1] == n_bins:
        return spec
    src = np.linspace(0.0, 0.5, spec.shape[-1])
    dst = np.linspace(0.0, 0.5, n_bins)
    out = np.stack([np.interp(dst, src, s) for s in np.atleast_2d(spec)])
    return out[0] if spec.ndim == 1 else out


def power_spectrum_1d(img, n_bins: int | None = None) -> np.ndarray:
    """S(r) of an image (1-D array) or a batch ((N, R) array); see the module docstring.

    n_bins: resample onto that many frequencies in [0, 0.5] (default: the native min(H, W)//2 + 1).
    """
    x, single = to_batch255(img, "power_spectrum_1d")
    if min(x.shape[1:3]) < 2:
        raise ValueError(f"power_spectrum_1d: image must be at least 2x2, got {x.shape[1]}x{x.shape[2]}")
    gray = (x @ MATLAB_GRAY if x.shape[-1] == 3 else x[..., 0]) / 255.0
    h, w = gray.shape[1:]
    f = np.fft.fftshift(np.fft.fft2(gray), axes=(-2, -1))
    spec = _radial_mean(np.abs(f) ** 2 / (h * w))
    if n_bins is not None:
        if int(n_bins) < 2:
            raise ValueError(f"power_spectrum_1d: n_bins must be >= 2, got {n_bins!r}")
        spec = resample_spectrum(spec, int(n_bins))
    return spec[0] if single else spec


def _as_list(images, fn: str, what: str) -> list:
    if isinstance(images, Iterable) and not hasattr(images, "shape"):  # list, tuple, generator
        items = list(images)
    else:
        items = [images]  # one batch tensor / array
    if not items:
        raise ValueError(f"{fn}: {what} is empty")
    return items


def _native_len(img) -> int:
    x, _ = to_batch255(img, "spectral_discrepancy")
    return min(x.shape[1:3]) // 2 + 1


def mean_power_spectrum(images, n_bins: int) -> np.ndarray:
    """Set average of S resampled to n_bins; images: a batch or a list of images/batches."""
    specs = [np.atleast_2d(power_spectrum_1d(im, n_bins)) for im in _as_list(images, "mean_power_spectrum", "images")]
    return np.concatenate(specs).mean(axis=0)


def spectral_discrepancy(real_images, fake_images, kind: str = "abs", n_bins: int | None = None) -> float:
    """D_abs / D_sq between the set-averaged log spectra (see the module docstring).

    real_images, fake_images: a batch or a list of images (sizes may differ); n_bins defaults to
    the shortest native spectrum among all images.
    """
    _check_kind(kind)
    real = _as_list(real_images, "spectral_discrepancy", "real_images")
    fake = _as_list(fake_images, "spectral_discrepancy", "fake_images")
    if n_bins is None:
        n_bins = min(_native_len(im) for im in real + fake)
    return discrepancy_of_spectra(mean_power_spectrum(real, n_bins), mean_power_spectrum(fake, n_bins), kind)


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise ValueError(f"spectral_discrepancy: kind must be one of {_KINDS}, got {kind!r}")


def discrepancy_of_spectra(real_mean: np.ndarray, fake_mean: np.ndarray, kind: str = "abs") -> float:
    """D_abs / D_sq from already averaged spectra of equal length (streaming evaluation)."""
    _check_kind(kind)
    real_mean, fake_mean = np.asarray(real_mean), np.asarray(fake_mean)
    if real_mean.shape != fake_mean.shape or real_mean.ndim != 1:
        raise ValueError(f"spectral_discrepancy: spectra must be 1-D of equal length, got {real_mean.shape} "
                         f"and {fake_mean.shape}")
    d = np.log10(real_mean + EPS) - np.log10(fake_mean + EPS)
    return float(np.mean(np.abs(d)) if kind == "abs" else np.mean(d ** 2))
