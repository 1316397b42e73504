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
missing (blur) or added (checkerboard artefacts, noise). Typical values between SR outputs and HR
photos: 0.1 - 1 (abs).

kind="durall": the 1-D spectra of Durall, Keuper, Keuper, "Watch your up-convolution: CNN based
generative deep neural networks are failing to reproduce spectral distributions" (CVPR 2020), as
their published code (cc-hpc-itwm/UpConv) computes them, and the discrepancy on that scale (the
scale of figures such as 0.0003 - 0.008 quoted from it)::

    L(y, x) = 20 ln |fftshift(fft2(gray))(y, x) + 1e-8|
    A(k)    = mean of L over the pixels with floor(hypot(y - (H-1)/2, x - (W-1)/2)) = k,
              k = 1 .. K-1, K = the largest such k (their code drops the first and the last ring;
              the centre ((H-1)/2, (W-1)/2) is theirs, half a pixel off the DC term for even sizes)
    a(k)    = (A(k) - min A) / (max A - min A)      per image, in [0, 1]
    D_durall = mean_k (mean_real a(k) - mean_fake a(k))^2

The rings run out to the corners (k up to about sqrt(H^2 + W^2) / 2), not only to Nyquist along the
shorter side; curves of images of different sizes are linearly resampled onto a common number of
points, as the abs/squared spectra are. Being min-max normalised, a is blind to contrast (scaling an
image leaves it unchanged), which abs/squared are not. A flat image has no defined curve (ValueError).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ._image import MATLAB_GRAY, to_batch255

__all__ = ["power_spectrum_1d", "durall_spectrum_1d", "spectrum_1d", "mean_power_spectrum", "spectral_discrepancy",
           "discrepancy_of_spectra", "resample_spectrum", "EPS", "KINDS"]

EPS = 1e-10
DURALL_EPS = 1e-8  # added to the shifted spectrum before the log, as Durall et al.'s code
KINDS = ("abs", "squared", "durall")


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


def _durall_rings(h: int, w: int) -> tuple[np.ndarray, int]:
    """(ring index floor(r) of each pixel, number of rings K + 1) about ((H-1)/2, (W-1)/2)."""
    yy, xx = np.indices((h, w))
    r = np.floor(np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)).astype(np.int64).ravel()
    return r, int(r.max()) + 1


def _durall_profile(log_mag: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N, K - 1): ring means for k = 1 .. K-1 (first and last ring dropped)."""
    h, w = log_mag.shape[-2:]
    r, n_rings = _durall_rings(h, w)
    counts = np.bincount(r, minlength=n_rings)
    sums = np.stack([np.bincount(r, weights=m, minlength=n_rings) for m in log_mag.reshape(-1, h * w)])
    return sums[:, 1:-1] / counts[1:-1]


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
    gray, single = _gray01(img, "power_spectrum_1d")
    h, w = gray.shape[1:]
    f = np.fft.fftshift(np.fft.fft2(gray), axes=(-2, -1))
    spec = _resampled(_radial_mean(np.abs(f) ** 2 / (h * w)), n_bins, "power_spectrum_1d")
    return spec[0] if single else spec


def _gray01(img, fn: str) -> tuple[np.ndarray, bool]:
    """(N, H, W) grey in [0, 1] (MATLAB rgb2gray weights), True if a single image; at least 2x2."""
    x, single = to_batch255(img, fn)
    if min(x.shape[1:3]) < 2:
        raise ValueError(f"{fn}: image must be at least 2x2, got {x.shape[1]}x{x.shape[2]}")
    return (x @ MATLAB_GRAY if x.shape[-1] == 3 else x[..., 0]) / 255.0, single


def durall_spectrum_1d(img, n_bins: int | None = None) -> np.ndarray:
    """Durall et al.'s normalised curve a(k) of an image (1-D) or a batch ((N, K-1)); see the module
    docstring. n_bins: resample onto that many points (default: the native K - 1)."""
    gray, single = _gray01(img, "durall_spectrum_1d")
    if min(gray.shape[1:]) < 4:  # fewer than two rings would be left after dropping the first and last
        raise ValueError(f"durall_spectrum_1d: image must be at least 4x4, got {gray.shape[1]}x{gray.shape[2]}")
    f = np.fft.fftshift(np.fft.fft2(gray), axes=(-2, -1)) + DURALL_EPS
    prof = _durall_profile(20.0 * np.log(np.abs(f)))
    lo, hi = prof.min(axis=1, keepdims=True), prof.max(axis=1, keepdims=True)
    if np.any(hi - lo < 1e-6):  # a flat image: rounding noise of ~1e-17 around the 1e-8 floor only
        raise ValueError("durall_spectrum_1d: the 1-D spectrum is constant (flat image?), min-max normalisation "
                         "is undefined")
    spec = _resampled((prof - lo) / (hi - lo), n_bins, "durall_spectrum_1d")
    return spec[0] if single else spec


def _resampled(spec: np.ndarray, n_bins, fn: str) -> np.ndarray:
    if n_bins is None:
        return spec
    if int(n_bins) < 2:
        raise ValueError(f"{fn}: n_bins must be >= 2, got {n_bins!r}")
    return resample_spectrum(spec, int(n_bins))


def spectrum_1d(img, kind: str = "abs", n_bins: int | None = None) -> np.ndarray:
    """The per-image curve that discrepancy `kind` averages: S (abs, squared) or a (durall)."""
    _check_kind(kind)
    return durall_spectrum_1d(img, n_bins) if kind == "durall" else power_spectrum_1d(img, n_bins)


def _as_list(images, fn: str, what: str) -> list:
    if isinstance(images, Iterable) and not hasattr(images, "shape"):  # list, tuple, generator
        items = list(images)
    else:
        items = [images]  # one batch tensor / array
    if not items:
        raise ValueError(f"{fn}: {what} is empty")
    return items


def _native_len(img, kind: str) -> int:
    x, _ = to_batch255(img, "spectral_discrepancy")
    h, w = x.shape[1:3]
    return _durall_rings(h, w)[1] - 2 if kind == "durall" else min(h, w) // 2 + 1


def mean_power_spectrum(images, n_bins: int, kind: str = "abs") -> np.ndarray:
    """Set average of the curves of `kind` (S, or a for durall) resampled to n_bins; images: a batch
    or a list of images/batches."""
    specs = [np.atleast_2d(spectrum_1d(im, kind, n_bins)) for im in _as_list(images, "mean_power_spectrum", "images")]
    return np.concatenate(specs).mean(axis=0)


def spectral_discrepancy(real_images, fake_images, kind: str = "abs", n_bins: int | None = None) -> float:
    """D_abs / D_sq / D_durall between the set-averaged spectra (see the module docstring).

    real_images, fake_images: a batch or a list of images (sizes may differ); n_bins defaults to
    the shortest native spectrum among all images.
    """
    _check_kind(kind)
    real = _as_list(real_images, "spectral_discrepancy", "real_images")
    fake = _as_list(fake_images, "spectral_discrepancy", "fake_images")
    if n_bins is None:
        n_bins = min(_native_len(im, kind) for im in real + fake)
    return discrepancy_of_spectra(mean_power_spectrum(real, n_bins, kind), mean_power_spectrum(fake, n_bins, kind),
                                  kind)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"spectral_discrepancy: kind must be one of {KINDS}, got {kind!r}")


def discrepancy_of_spectra(real_mean: np.ndarray, fake_mean: np.ndarray, kind: str = "abs") -> float:
    """D_abs / D_sq / D_durall from already averaged curves of `kind` of equal length (streaming
    evaluation): mean power spectra S for abs / squared, mean normalised curves a for durall."""
    _check_kind(kind)
    real_mean, fake_mean = np.asarray(real_mean), np.asarray(fake_mean)
    if real_mean.shape != fake_mean.shape or real_mean.ndim != 1:
        raise ValueError(f"spectral_discrepancy: spectra must be 1-D of equal length, got {real_mean.shape} "
                         f"and {fake_mean.shape}")
    if kind == "durall":
        return float(np.mean((real_mean - fake_mean) ** 2))
    d = np.log10(real_mean + EPS) - np.log10(fake_mean + EPS)
    return float(np.mean(np.abs(d)) if kind == "abs" else np.mean(d ** 2))
