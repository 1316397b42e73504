"""NIQE / BRISQUE: distribution fits, MATLAB block conventions, quality ordering on real photos."""

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage, stats
from PIL import Image
from skimage import data as skdata

from gansr_ext.metrics import brisque, niqe
from gansr_ext.metrics.nss import fit_aggd, fit_ggd, mscn

REFERENCE = Path(__file__).parent / "data" / "niqe_reference"


def _blur(img, sigma):
    return ndimage.gaussian_filter(img.astype(np.float64), (sigma, sigma, 0)).round().astype(np.uint8)


def _noise(img, std, seed=0):
    return np.clip(img + np.random.default_rng(seed).normal(0, std, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("alpha", [0.6, 1.0, 2.0, 3.5])
def test_fit_ggd_recovers_shape_and_scale(alpha):
    x = stats.gennorm.rvs(alpha, scale=0.7, size=200_000, random_state=np.random.default_rng(1))
    a, sigma = fit_ggd(x)
    assert a == pytest.approx(alpha, rel=0.05)
    assert sigma == pytest.approx(stats.gennorm.std(alpha, scale=0.7), rel=0.02)


@pytest.mark.parametrize("alpha", [0.8, 2.0])
def test_fit_aggd_recovers_shape_and_sides(alpha):
    rng = np.random.default_rng(2)
    mag = np.abs(stats.gennorm.rvs(alpha, size=200_000, random_state=rng))
    left_scale, right_scale = 0.5, 1.5
    x = np.where(rng.random(mag.size) < left_scale / (left_scale + right_scale), -left_scale * mag, right_scale * mag)
    a, left, right = fit_aggd(x)
    assert a == pytest.approx(alpha, rel=0.05)
    assert right / left == pytest.approx(right_scale / left_scale, rel=0.05)


def test_fits_on_degenerate_input_give_nan_not_errors():
    a, left, right = fit_aggd(np.zeros(100))
    assert np.isnan(left) and np.isnan(right) and a == pytest.approx(0.2)


@pytest.mark.parametrize("name", ["astronaut", "chelsea"])
def test_niqe_worse_with_blur_and_noise(name):
    img = getattr(skdata, name)()
    clean = niqe(img)
    assert 1.0 < clean < 6.0  # natural photos sit in the low single digits
    assert niqe(_blur(img, 2.0)) > clean + 1.0
    assert niqe(_noise(img, 15)) > clean + 1.0


def test_niqe_uses_whole_96_blocks_only():
    img = skdata.camera()[:200, :290]  # grey 200x290 -> 2x3 blocks of 96 (192x288) used
    changed = img.copy()
    changed[192:, :] = 0
    changed[:, 288:] = 255
    assert niqe(changed, crop_border=0) == pytest.approx(niqe(img, crop_border=0), abs=1e-12)
    changed[100, 100] = 255 - changed[100, 100]
    assert niqe(changed, crop_border=0) != pytest.approx(niqe(img, crop_border=0), abs=1e-9)


def test_niqe_input_forms_agree():
    img = skdata.astronaut()[:200, :200]
    ref = niqe(img)
    t = torch.from_numpy(img).permute(2, 0, 1).double() / 255
    assert niqe(t) == pytest.approx(ref, abs=1e-12)
    batch = niqe(torch.stack([t, t.flip(-1)]))
    assert batch.shape == (2,) and batch[0] == pytest.approx(ref, abs=1e-12)


def test_niqe_matches_published_matlab_value():
    # MATLAB R2021a `niqe` of this file, as published with BasicSR (see data/niqe_reference/README.md)
    img = np.asarray(Image.open(REFERENCE / "baboon.png").convert("RGB"))
    assert niqe(img, crop_border=0) == pytest.approx(5.72957338, abs=1e-6)


@pytest.mark.parametrize("mode", ["nearest", "constant"])
def test_mscn_is_exactly_zero_in_flat_neighbourhoods(mode):
    img = np.random.default_rng(3).integers(0, 256, (40, 40)).astype(np.float64)
    img[2:14, :] = np.repeat([17.0, 99.0, 137.0, 211.0, 254.0], 8)  # five flat 12x8 bands
    m = mscn(img, mode=mode)
    centres = m[5:11][:, [8 * k + d for k in range(5) for d in (3, 4)]]  # whose 7x7 window is flat
    assert np.all(centres == 0.0), centres
    assert np.all(m[20:, 20:] != 0.0)  # random pixels keep their (non-zero) MSCN


def test_niqe_same_for_every_layout_of_the_same_pixels_with_ties_rounded_up():
    # pixels whose exact MATLAB Y is k + 0.5 (65481 R + 128553 G + 24966 B = 127500 mod 255000)
    ties = np.array([(0, 204, 68), (1, 173, 225), (2, 44, 141), (4, 194, 109), (5, 65, 25)], np.uint8)
    img = skdata.astronaut()[:200, :200].copy()
    img.reshape(-1, 3)[::3] = np.resize(ties, (len(img.reshape(-1, 3)[::3]), 3))
    y = np.array([[int(16 + Fraction(65481 * int(r) + 128553 * int(g) + 24966 * int(b), 255000) + Fraction(1, 2))
                   for r, g, b in row] for row in img], np.uint8)  # MATLAB's rounding: ties go up
    want = niqe(y)
    chw = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    for form in (img, chw, chw.float() / 255, img.astype(np.float32) / 255, chw[None].double() / 255):
        assert float(np.atleast_1d(niqe(form))[0]) == want


def test_niqe_too_small_or_flat():
    with pytest.raises(ValueError, match="two 96x96 blocks"):
        niqe(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ValueError, match="flat image"):
        niqe(np.full((200, 200, 3), 128, np.uint8))


@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_brisque_worse_with_blur_and_noise(name):
    img = getattr(skdata, name)()
    clean = brisque(img)
    assert clean < 40
    assert brisque(_blur(img, 2.0)) > clean + 10
    assert brisque(_noise(img, 15)) > clean + 10


def test_brisque_more_distortion_is_worse():
    img = skdata.astronaut()
    scores = [brisque(_blur(img, s)) for s in (0.8, 1.5, 3.0)]
    assert scores[0] < scores[1] < scores[2]


def test_brisque_input_forms_agree():
    img = skdata.chelsea()[:120, :150]
    ref = brisque(img)
    t = torch.from_numpy(img).permute(2, 0, 1)
    assert brisque(t) == pytest.approx(ref, abs=1e-12)  # uint8 tensor
    assert brisque(img.astype(np.float32) / 255) == pytest.approx(ref, abs=1e-12)  # rounded back to 8-bit levels
    assert brisque(t[None].expand(2, -1, -1, -1)).shape == (2,)


def test_brisque_errors():
    with pytest.raises(ValueError, match="at least 8x8"):
        brisque(np.zeros((6, 30), np.uint8))
    with pytest.raises(ValueError, match="flat image"):
        brisque(np.full((40, 40), 0.5))
    with pytest.raises(TypeError):
        brisque("image.png")
