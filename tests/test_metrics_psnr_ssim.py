"""PSNR / SSIM: known-MSE noise, scikit-image SSIM parity, input conventions, errors."""

import math

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.metrics import structural_similarity

from gansr_ext.data.color import rgb_to_y
from gansr_ext.metrics import psnr, ssim


def _sign_noise(shape, d, rng, grey=False):
    """+-d with random signs: every pixel error is exactly d, so the MSE is d^2."""
    s = shape[:-1] + (1,) if grey else shape
    return np.broadcast_to(rng.choice([-d, d], size=s), shape)


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return rng.integers(20, 236, size=(40, 48, 3)).astype(np.uint8)  # room for +-20 without clipping


@pytest.mark.parametrize("d", [1, 5, 20])
def test_psnr_rgb_known_mse(image, d):
    noisy = (image.astype(np.int16) + _sign_noise(image.shape, d, np.random.default_rng(d))).astype(np.uint8)
    assert psnr(noisy, image, crop_border=0, y_channel=False) == pytest.approx(10 * math.log10(255 ** 2 / d ** 2))


@pytest.mark.parametrize("d", [2, 10])
def test_psnr_y_channel_known_mse(image, d):
    # grey noise (same on R, G, B) moves Y by (65.481 + 128.553 + 24.966) / 255 * d = 219/255 * d
    noisy = (image.astype(np.int16) + _sign_noise(image.shape, d, np.random.default_rng(d), grey=True)).astype(np.uint8)
    expected = 10 * math.log10(255 ** 2 / (219 / 255 * d) ** 2)
    assert psnr(noisy, image, crop_border=4) == pytest.approx(expected, rel=1e-9)


def test_psnr_border_crop_ignores_border(image):
    damaged = image.copy()
    damaged[:3] = 0
    damaged[:, -3:] = 255
    assert psnr(damaged, image, crop_border=3) == math.inf
    assert psnr(damaged, image, crop_border=2) < 30


def test_psnr_tensor_numpy_batch_agree(image):
    rng = np.random.default_rng(1)
    other = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    t = lambda a: torch.from_numpy(a).permute(2, 0, 1).double() / 255  # noqa: E731
    ref = psnr(other, image)
    assert psnr(t(other), t(image)) == pytest.approx(ref, rel=1e-12)
    assert psnr(other.astype(np.float64) / 255, image.astype(np.float64) / 255) == pytest.approx(ref, rel=1e-12)
    batch = psnr(torch.stack([t(other), t(image)]), torch.stack([t(image), t(image)]))
    assert batch.shape == (2,) and batch[0] == pytest.approx(ref, rel=1e-12) and batch[1] == math.inf


def _skimage_ssim_y(a, b, border):
    ya = rgb_to_y(a.astype(np.float64) / 255) * 255
    yb = rgb_to_y(b.astype(np.float64) / 255) * 255
    sl = (slice(border, -border), slice(border, -border))
    # same window (11x11, sigma 1.5), population moments; skimage averages only the interior,
    # i.e. the 'valid' positions, so the numbers agree exactly
    return structural_similarity(ya[sl], yb[sl], gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=255)


@pytest.mark.parametrize("noise", [3.0, 25.0])
def test_ssim_matches_skimage(noise):
    hr = skdata.astronaut()[100:200, 150:270]
    sr = np.clip(hr + np.random.default_rng(2).normal(0, noise, hr.shape), 0, 255).astype(np.uint8)
    assert ssim(sr, hr, crop_border=4) == pytest.approx(_skimage_ssim_y(sr, hr, 4), abs=1e-10)
    rgb_ref = structural_similarity(sr.astype(np.float64), hr.astype(np.float64), gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=255, channel_axis=2)
    assert ssim(sr, hr, crop_border=0, y_channel=False) == pytest.approx(rgb_ref, abs=1e-10)


def test_ssim_identity_symmetry_and_order():
    hr = skdata.chelsea()[:96, :96]
    rng = np.random.default_rng(3)
    mild = np.clip(hr + rng.normal(0, 5, hr.shape), 0, 255).astype(np.uint8)
    strong = np.clip(hr + rng.normal(0, 30, hr.shape), 0, 255).astype(np.uint8)
    assert ssim(hr, hr) == pytest.approx(1.0, abs=1e-12)
    assert ssim(mild, hr) == pytest.approx(ssim(hr, mild), abs=1e-12)
    assert 1.0 > ssim(mild, hr) > ssim(strong, hr) > 0.0


def test_ssim_batch_is_per_image():
    hr = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    sr = (hr + 0.05 * torch.randn_like(hr)).clamp(0, 1)
    batch = ssim(sr, hr)
    assert batch.shape == (3,)
    for i in range(3):
        assert batch[i] == pytest.approx(ssim(sr[i], hr[i]), abs=1e-12)


def test_errors():
    a = torch.rand(3, 32, 32)
    with pytest.raises(ValueError, match="same shape"):
        psnr(a, torch.rand(3, 32, 31))
    with pytest.raises(ValueError, match="same shape"):
        ssim(a, torch.rand(1, 3, 32, 31))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        psnr(torch.rand(2, 16, 16), torch.rand(2, 16, 16))
    with pytest.raises(TypeError, match="uint8 or float"):
        psnr(np.zeros((16, 16, 3), np.int32), np.zeros((16, 16, 3), np.int32))
    with pytest.raises(TypeError, match="tensor or numpy"):
        psnr([[0.0]], [[0.0]])
    with pytest.raises(ValueError, match="too small for crop_border"):
        psnr(torch.rand(3, 8, 8), torch.rand(3, 8, 8), crop_border=4)
    with pytest.raises(ValueError, match="crop_border"):
        psnr(a, a, crop_border=-1)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(3, 16, 16), torch.rand(3, 16, 16), crop_border=4)
