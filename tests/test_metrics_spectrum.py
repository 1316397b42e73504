"""1-D power spectrum and spectral discrepancy."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage import data as skdata

from gansr_ext.metrics import power_spectrum_1d, spectral_discrepancy


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


def test_errors():
    with pytest.raises(ValueError, match="kind"):
        spectral_discrepancy([torch.rand(3, 8, 8)], [torch.rand(3, 8, 8)], kind="rel")
    with pytest.raises(ValueError, match="empty"):
        spectral_discrepancy([], [torch.rand(3, 8, 8)])
    with pytest.raises(ValueError, match="n_bins"):
        power_spectrum_1d(torch.rand(3, 8, 8), n_bins=1)
