"""1-D power spectrum and spectral discrepancy."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage import data as skdata

from gansr_ext.metrics import power_spectrum_1d, spectral_discrepancy
from gansr_ext.metrics.spectrum import durall_spectrum_1d


def _image_with_ring_spectrum(n: int, log_magnitude) -> tuple[np.ndarray, np.ndarray]:
    """A real n x n image (n odd) whose |fftshift(fft2)| is exp(log_magnitude(k)) on the ring
    k = floor(distance to the centre ((n-1)/2, (n-1)/2)), and the rings k (Durall et al.'s binning)."""
    yy, xx = np.indices((n, n))
    k = np.floor(np.hypot(yy - (n - 1) / 2, xx - (n - 1) / 2))
    spectrum = np.exp(log_magnitude(k))  # symmetric about the centre, real: the image is real
    img = np.fft.ifft2(np.fft.ifftshift(spectrum))
    assert np.abs(img.imag).max() < 1e-12
    return img.real, k


def test_sinusoid_peaks_at_its_frequency():
    h, w, k = 64, 80, 9
    x = np.arange(w)
    img = np.broadcast_to(0.5 + 0.25 * np.cos(2 * np.pi * k * x / w), (h, w)).copy()
    s = power_spectrum_1d(img)
    assert s.shape == (min(h, w) // 2 + 1,)
    assert int(np.argmax(s[1:])) + 1 == k


def test_white_noise_is_flat_at_its_variance():
    rng = np.random.default_rng(0)
    std = 0.05
    img = 0.5 + std * rng.standard_normal((256, 256))
    s = power_spectrum_1d(img)
    assert np.mean(s[10:]) == pytest.approx(std ** 2, rel=0.05)
    assert s[10:].max() / s[10:].min() < 2.0


def test_batch_and_resampling():
    imgs = torch.rand(3, 3, 40, 50)
    s = power_spectrum_1d(imgs)
    assert s.shape == (3, 21)
    np.testing.assert_allclose(s[1], power_spectrum_1d(imgs[1]), rtol=1e-12)
    r = power_spectrum_1d(imgs, n_bins=11)  # every other native frequency
    np.testing.assert_allclose(r, s[:, ::2], rtol=1e-12)


def test_discrepancy_zero_for_identical_and_grows_with_blur():
    imgs = [skdata.astronaut()[:256, :256], skdata.chelsea()[:200, :300]]
    blur = lambda im, s: ndimage.gaussian_filter(im.astype(float), (s, s, 0)).round().astype(np.uint8)  # noqa: E731
    assert spectral_discrepancy(imgs, imgs) == 0.0
    mild = spectral_discrepancy(imgs, [blur(im, 0.7) for im in imgs])
    strong = spectral_discrepancy(imgs, [blur(im, 2.0) for im in imgs])
    assert 0 < mild < strong
    assert 0 < spectral_discrepancy(imgs, [blur(im, 0.7) for im in imgs], kind="squared")


def test_discrepancy_accepts_batches_and_lists():
    a = torch.rand(2, 3, 32, 32)
    assert spectral_discrepancy(a, list(a)) == pytest.approx(0.0, abs=1e-12)
    assert spectral_discrepancy(a, torch.rand(2, 3, 32, 32)) > 0


def test_durall_curve_of_a_ring_spectrum_is_closed_form():
    # 20 ln|F| = -2 k on ring k: the ring means are -2 k; kept rings k = 1 .. K-1 (K = 22 for 33x33),
    # min-max normalised: (K - 1 - k) / (K - 2)
    img, k = _image_with_ring_spectrum(33, lambda k: -0.1 * k)
    big_k = int(k.max())
    assert big_k == 22
    rings = np.arange(1, big_k)
    np.testing.assert_allclose(durall_spectrum_1d(img), (big_k - 1 - rings) / (big_k - 2), atol=1e-6)


def test_durall_discrepancy_closed_form_and_blind_to_contrast():
    lin, k = _image_with_ring_spectrum(33, lambda k: -0.1 * k)
    quad, _ = _image_with_ring_spectrum(33, lambda k: -0.01 * k ** 2)
    rings = np.arange(1, int(k.max()))
    a_lin = (rings[-1] - rings) / (rings[-1] - 1)  # both decrease from 1 at k = 1 to 0 at k = K-1
    a_quad = (rings[-1] ** 2 - rings ** 2) / (rings[-1] ** 2 - 1)
    want = np.mean((a_lin - a_quad) ** 2)
    got = spectral_discrepancy([lin, lin], [quad], kind="durall")
    assert got == pytest.approx(want, abs=1e-7) and want > 0.01
    # set means: half lin, half quad on one side -> the curve is their average
    mixed = spectral_discrepancy([lin], [lin, quad], kind="durall")
    assert mixed == pytest.approx(np.mean((a_lin - (a_lin + a_quad) / 2) ** 2), abs=1e-7)
    assert spectral_discrepancy([lin], [3.0 * lin], kind="durall") == pytest.approx(0.0, abs=1e-12)


def test_abs_and_squared_closed_form_for_a_contrast_change():
    # scaling an image by c scales every power by c^2: D_abs = |log10 c^2|, D_sq = (log10 c^2)^2
    img = np.random.default_rng(5).random((40, 48))
    d = 2 * np.log10(2.0)  # up to eps = 1e-10 added to each power
    assert spectral_discrepancy([img], [2.0 * img], kind="abs") == pytest.approx(d, rel=1e-6)
    assert spectral_discrepancy([img], [2.0 * img], kind="squared") == pytest.approx(d ** 2, rel=1e-6)


def test_durall_curve_shape_and_sizes():
    # Durall et al.'s 128x128 faces give 88-point curves (their N = 88)
    assert durall_spectrum_1d(torch.rand(3, 128, 128)).shape == (88,)
    imgs = torch.rand(2, 3, 40, 64)
    batch = durall_spectrum_1d(imgs)
    assert np.all(batch.min(axis=1) == 0.0) and np.all(batch.max(axis=1) == 1.0)  # per image
    np.testing.assert_allclose(batch[1], durall_spectrum_1d(imgs[1]), rtol=1e-12)
    assert durall_spectrum_1d(imgs, n_bins=20).shape == (2, 20)
    a, b = torch.rand(3, 40, 64), torch.rand(3, 64, 40)  # different sizes are resampled to the shortest curve
    assert 0 < spectral_discrepancy([a], [b, a], kind="durall") < 0.05


def test_errors():
    with pytest.raises(ValueError, match="kind"):
        spectral_discrepancy([torch.rand(3, 8, 8)], [torch.rand(3, 8, 8)], kind="rel")
    with pytest.raises(ValueError, match="empty"):
        spectral_discrepancy([], [torch.rand(3, 8, 8)])
    with pytest.raises(ValueError, match="n_bins"):
        power_spectrum_1d(torch.rand(3, 8, 8), n_bins=1)
    with pytest.raises(ValueError, match="flat image"):
        durall_spectrum_1d(np.full((16, 16), 0.5))
    with pytest.raises(ValueError, match="at least 4x4"):
        durall_spectrum_1d(np.random.default_rng(0).random((3, 9)))
