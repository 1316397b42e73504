import numpy as np
import pytest
import torch
from conftest import requires_cuda

from gansr_ext.data import imresize, make_lr, modcrop
from gansr_ext.data.color import matlab_round
from gansr_ext.data.imresize import resize_weights

# Cubic kernel (a = -0.5) values worked out by hand, in 1/128:
# k(0.25) = 111, k(0.75) = 29, k(1.25) = -9, k(1.75) = -3, k(0.5) = 72, k(1.5) = -8.
#
# 4 -> 2 with antialiasing (scale 1/2): centres u = 1.5, 3.5, kernel 0.5 * k(0.5 * d), taps
# j = -2..5 with weights (-3, -9, 29, 111, 111, 29, -9, -3) / 256; mirroring j = 0, -1, -2 -> 1, 2, 3
# and j = 5 -> 4 folds them into pixel weights (29 + 111, 111 - 9, 29 - 3, -9 - 3) / 256.
AA_4_TO_2 = np.array([[140, 102, 26, -12], [-12, 26, 102, 140]]) / 256
# Without antialiasing: taps j = 0..3 at distances 1.5, 0.5, -0.5, -1.5 -> (-8, 72, 72, -8) / 128;
# j = 0 mirrors onto pixel 1.
NOAA_4_TO_2 = np.array([[64, 72, -8, 0], [0, -8, 72, 64]]) / 128


def test_known_weights_downscale_4_to_2():
    np.testing.assert_allclose(resize_weights(4, 2, 0.5, antialiasing=True), AA_4_TO_2, atol=1e-15)
    np.testing.assert_allclose(resize_weights(4, 2, 0.5, antialiasing=False), NOAA_4_TO_2, atol=1e-15)
    col = np.array([[0.1], [0.7], [0.3], [0.9]])
    np.testing.assert_allclose(imresize(col, 0.5), AA_4_TO_2 @ col, atol=1e-12)
    np.testing.assert_allclose(imresize(col.T, 0.5), (AA_4_TO_2 @ col).T, atol=1e-12)
    np.testing.assert_allclose(imresize(col, 0.5, antialiasing=False), NOAA_4_TO_2 @ col, atol=1e-12)


def test_known_weights_upscale_2_to_4():
    # x2: centres u = i / 2 + 1/4 = 0.75, 1.25, 1.75, 2.25; first row: taps j = -1..2 at distances
    # 1.75, 0.75, -0.25, -1.25 -> (-3, 29, 111, -9) / 128, j = -1, 0 mirror onto pixels 2, 1
    # (MATLAB's [1, 2, 2, 1] periodic index) and j = 2 is pixel 2.
    expected_row0 = np.array([29 + 111, -3 - 9]) / 128
    w = resize_weights(2, 4, 2.0)
    np.testing.assert_allclose(w[0], expected_row0, atol=1e-15)
    np.testing.assert_allclose(w[3], expected_row0[::-1], atol=1e-15)


def test_integer_ties_round_half_away_from_zero_as_matlab():
    # x2 from 4 pixels, rows of the weights in 1/128 (from the kernel values above, mirrored at the
    # ends): (140, -12, 0, 0), (102, 29, -3, 0), (26, 111, -9, 0), (-9, 111, 29, -3), (-3, 29, 111, -9),
    # (0, -9, 111, 26), (0, -3, 29, 102), (0, 0, -12, 140). On 100 + (0, 0, 0, 64) they give
    # 100 + (0, 0, 0, -1.5, -4.5, 13, 51, 70): two exact ties, 98.5 and 95.5, that MATLAB rounds up.
    col = np.array([100, 100, 100, 164])
    want = np.array([100, 100, 100, 99, 96, 113, 151, 170])
    np.testing.assert_array_equal(imresize(col[:, None].astype(np.uint8), (2, 1))[:, 0], want)
    np.testing.assert_array_equal(imresize(col[:, None].astype(np.uint16), (2, 1))[:, 0], want)
    np.testing.assert_array_equal(imresize(torch.tensor(col, dtype=torch.uint8)[:, None], (2, 1))[:, 0], want)
    neg = imresize(torch.tensor(-col, dtype=torch.int16)[:, None], (2, 1))[:, 0]  # away from zero: down
    np.testing.assert_array_equal(neg.numpy(), -want)


@pytest.mark.parametrize("scale", [0.25, 0.5, 1 / 3, 0.75, 2.0, 4.0, 1.5])
def test_constant_image_stays_constant(scale):
    img = np.full((13, 17, 3), 0.37)
    out = imresize(img, scale)
    np.testing.assert_allclose(out, 0.37, atol=1e-12)
    u8 = np.full((13, 17), 200, np.uint8)
    assert (imresize(u8, scale) == 200).all()
    t = torch.full((2, 3, 13, 17), -1.5, dtype=torch.float64)
    torch.testing.assert_close(imresize(t, scale), torch.full_like(imresize(t, scale), -1.5))
    # images smaller than the kernel: taps mirror around the image more than once
    tiny = np.full((2, 3), 0.25)
    np.testing.assert_allclose(imresize(tiny, scale), 0.25, atol=1e-12)


def test_output_size_is_ceil_of_scaled_size():
    img = np.zeros((10, 7, 3))
    assert imresize(img, 0.25).shape == (3, 2, 3)
    assert imresize(img, 1 / 3).shape == (4, 3, 3)
    assert imresize(np.zeros((30, 9)), 0.1).shape == (3, 1)  # 30 * 0.1 is 3.0000000000000004
    assert imresize(img, 2).shape == (20, 14, 3)
    assert imresize(img, output_shape=(5, 11)).shape == (5, 11, 3)
    assert imresize(torch.zeros(3, 10, 7), (0.5, 2.0)).shape == (3, 5, 14)


def test_linear_ramp_reproduced_in_interior():
    # the cubic kernel reproduces linear functions exactly, so away from the borders the output
    # equals the ramp sampled at MATLAB's input positions u = i / s + (1 - 1 / s) / 2 (1-based)
    w = 40
    ramp = np.tile(0.5 + 0.25 * np.arange(1, w + 1, dtype=np.float64), (3, 1))
    for s in (2.0, 0.5, 0.25):
        out = imresize(ramp, (1.0, s))
        u = np.arange(1, out.shape[1] + 1) / s + 0.5 * (1 - 1 / s)
        margin = int(np.ceil(2 / min(s, 1))) + 1
        inner = (u > margin) & (u < w + 1 - margin)
        assert inner.sum() >= 4
        np.testing.assert_allclose(out[1, inner], 0.5 + 0.25 * u[inner], atol=1e-12)


def test_numpy_matches_torch():
    rng = np.random.default_rng(0)
    img = rng.random((15, 22, 3))
    t = torch.from_numpy(img.transpose(2, 0, 1).copy())
    # the numpy path applies banded taps, the torch path dense matrices: two implementations
    for s in (0.25, 0.5, 3.0, 1 / 3, 0.1):
        for aa in (True, False):
            a = imresize(img, s, antialiasing=aa)
            b = imresize(t, s, antialiasing=aa).numpy().transpose(1, 2, 0)
            np.testing.assert_allclose(a, b, atol=1e-12)
    t32 = imresize(t.float(), 0.25)
    assert t32.dtype == torch.float32
    np.testing.assert_allclose(t32.numpy().transpose(1, 2, 0), imresize(img, 0.25), atol=1e-5)


def test_uint8_rounds_and_clips_like_float_path():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (16, 12, 3), dtype=np.uint8)
    img[:4] = 255  # saturated area: bicubic overshoot must clip, not wrap
    img[4:6] = 0
    out = imresize(img, 0.5)
    assert out.dtype == np.uint8
    ref = np.clip(matlab_round(imresize(img.astype(np.float64), 0.5)), 0, 255)
    np.testing.assert_array_equal(out, ref)
    up = imresize(img, 3.0)
    assert up.dtype == np.uint8 and up.shape == (48, 36, 3)
    float_up = imresize(img.astype(np.float64), 3.0)
    assert float_up.max() > 255 or float_up.min() < 0  # overshoot exists, so clipping was exercised
    np.testing.assert_array_equal(up, np.clip(matlab_round(float_up), 0, 255))
    tu8 = imresize(torch.from_numpy(img.transpose(2, 0, 1).copy()), 0.5)
    assert tu8.dtype == torch.uint8
    np.testing.assert_array_equal(tu8.numpy().transpose(1, 2, 0), out)


def test_float32_numpy_stays_float32():
    out = imresize(np.random.default_rng(2).random((8, 8, 3)).astype(np.float32), 0.5)
    assert out.dtype == np.float32


def test_upscale_then_downscale_is_near_identity():
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    img = np.stack([np.sin(2 * np.pi * xx), np.cos(2 * np.pi * yy), xx * yy], -1) * 0.4 + 0.5
    back = imresize(imresize(img, 4.0), 0.25)
    assert back.shape == img.shape
    assert np.abs(back - img).max() < 0.01
    assert np.abs(back - img).mean() < 0.002


def test_batched_equals_per_image_and_differentiable():
    torch.manual_seed(0)
    x = torch.rand(3, 2, 12, 10, dtype=torch.float64)
    out = imresize(x, 0.5)
    for i in range(3):
        torch.testing.assert_close(out[i], imresize(x[i], 0.5))
    xs = torch.rand(1, 1, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: imresize(t, 0.5), (xs,))
    assert torch.autograd.gradcheck(lambda t: imresize(t, output_shape=(9, 7)), (xs,))


def test_modcrop_and_make_lr():
    img = np.random.default_rng(3).random((21, 18, 3))
    assert modcrop(img, 4).shape == (20, 16, 3)
    np.testing.assert_array_equal(modcrop(img, 4), img[:20, :16])
    assert modcrop(torch.zeros(2, 3, 21, 18), 4).shape == (2, 3, 20, 16)
    lr = make_lr(img, 4)
    np.testing.assert_allclose(lr, imresize(img[:20, :16], 0.25))
    assert make_lr(torch.zeros(3, 21, 18), 4).shape == (3, 5, 4)


def test_bad_inputs_raise_clear_errors():
    img = np.zeros((8, 8, 3))
    with pytest.raises(ValueError, match="scale or output_shape"):
        imresize(img)
    with pytest.raises(ValueError, match="positive"):
        imresize(img, -0.5)
    with pytest.raises(ValueError, match="output_shape"):
        imresize(img, output_shape=(0, 4))
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        imresize([[1.0]], 2)
    with pytest.raises(TypeError, match="dtype"):
        imresize(np.zeros((4, 4), bool), 2)
    with pytest.raises(ValueError, match="HW or HWC"):
        imresize(np.zeros((2, 4, 4, 3)), 2)
    with pytest.raises(ValueError, match="positive integer"):
        modcrop(img, 0)
    with pytest.raises(ValueError, match="smaller than the scale"):
        make_lr(np.zeros((3, 3)), 4)


@requires_cuda
def test_cuda_matches_cpu():
    x = torch.rand(2, 3, 33, 27)
    for s in (0.25, 4.0):
        torch.testing.assert_close(imresize(x.cuda(), s).cpu(), imresize(x, s), atol=1e-5, rtol=1e-5)
