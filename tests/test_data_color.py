from fractions import Fraction

import numpy as np
import pytest
import skimage.color
import torch
from conftest import requires_cuda

from gansr_ext.data import rgb2ycbcr, rgb_to_y, ycbcr2rgb
from gansr_ext.data.color import matlab_round

# MATLAB rgb2ycbcr on uint8, in exact rationals: value = offset + (row . rgb) / 255 (row in thousandths)
ROWS = [(16, (65481, 128553, 24966)), (128, (-37797, -74203, 112000)), (128, (112000, -93786, -18214))]


def _exact_level(offset, row, rgb) -> int:
    v = offset + Fraction(sum(c * int(x) for c, x in zip(row, rgb)), 255000)
    return int(v + Fraction(1, 2)) if v >= 0 else -int(-v + Fraction(1, 2))  # half away from zero


def _tie_pixels(channel: int) -> np.ndarray:
    """Every uint8 RGB whose exact value of `channel` is k + 0.5."""
    offset, (cr, cg, cb) = ROWS[channel]
    g, b = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    found = []
    for r in range(256):  # one red value at a time: 65536 sums each, little memory
        num = cr * r + cg * g + cb * b + offset * 255000
        found += [(r, gg, bb) for gg, bb in zip(g[num % 255000 == 127500], b[num % 255000 == 127500])]
    return np.array(found, dtype=np.uint8)


def test_primaries_match_bt601_definition():
    rgb = np.array([[[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 0, 1]]], dtype=np.float64)
    out = rgb2ycbcr(rgb) * 255
    np.testing.assert_allclose(out[0, 0], [16, 128, 128], atol=1e-9)
    np.testing.assert_allclose(out[0, 1], [235, 128, 128], atol=1e-3)  # coefficients sum to 219
    np.testing.assert_allclose(out[0, 2], [16 + 65.481, 128 - 37.797, 128 + 112.0], atol=1e-9)
    np.testing.assert_allclose(out[0, 3], [16 + 24.966, 128 + 112.0, 128 - 18.214], atol=1e-9)


def test_matches_scikit_image():
    rgb = np.random.default_rng(0).random((5, 7, 3))
    np.testing.assert_allclose(rgb2ycbcr(rgb), skimage.color.rgb2ycbcr(rgb) / 255, atol=1e-12)
    ycc = rgb2ycbcr(rgb)
    np.testing.assert_allclose(ycbcr2rgb(ycc), skimage.color.ycbcr2rgb(ycc * 255), atol=1e-10)


def test_float_roundtrip_and_dtype_kept():
    rgb = np.random.default_rng(1).random((6, 4, 3)).astype(np.float32)
    ycc = rgb2ycbcr(rgb)
    assert ycc.dtype == np.float32
    assert ycc[..., 0].min() >= 16 / 255 - 1e-6 and ycc[..., 0].max() <= 235 / 255 + 1e-6
    np.testing.assert_allclose(ycbcr2rgb(ycc), rgb, atol=1e-5)


def test_uint8_is_rounded():
    rgb = np.array([[[255, 0, 0], [255, 255, 255], [10, 200, 30]]], np.uint8)
    y = rgb2ycbcr(rgb, y_only=True)
    assert y.dtype == np.uint8 and y.shape == (1, 3)
    expected = np.round(16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255)
    np.testing.assert_array_equal(y, expected)
    back = ycbcr2rgb(rgb2ycbcr(rgb))
    assert back.dtype == np.uint8
    assert np.abs(back.astype(int) - rgb.astype(int)).max() <= 2  # two 8-bit roundings


def test_matlab_round_is_half_away_from_zero():
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 2.4999999999999996, 0.49999999999999994, -0.0, 3.0, np.nan])
    want = np.array([1.0, 2.0, 3.0, -1.0, -3.0, 2.0, 0.0, 0.0, 3.0, np.nan])
    np.testing.assert_array_equal(matlab_round(x), want)
    np.testing.assert_array_equal(matlab_round(torch.from_numpy(x)).numpy(), want)


@pytest.mark.parametrize("channel", [0, 2])  # Y: 194 ties, Cr: 12 ties, Cb: none
def test_uint8_ties_round_up_on_every_layout(channel):
    rgb = _tie_pixels(channel)
    assert len(rgb) > 10
    want = np.array([_exact_level(*ROWS[channel], p) for p in rgb])
    hwc = rgb[None]  # (1, K, 3)
    chw = torch.from_numpy(hwc).permute(2, 0, 1).contiguous()
    np.testing.assert_array_equal(rgb2ycbcr(hwc)[0, :, channel], want)
    np.testing.assert_array_equal(rgb2ycbcr(chw)[channel, 0].numpy(), want)
    np.testing.assert_array_equal(rgb2ycbcr(chw[None])[0, channel, 0].numpy(), want)
    if channel == 0:
        np.testing.assert_array_equal(rgb_to_y(hwc)[0], want)
        np.testing.assert_array_equal(rgb_to_y(chw)[0, 0].numpy(), want)


def test_uint8_matches_exact_matlab_levels_on_random_pixels():
    rgb = np.random.default_rng(4).integers(0, 256, (400, 3)).astype(np.uint8)
    want = np.array([[_exact_level(o, row, p) for o, row in ROWS] for p in rgb])
    np.testing.assert_array_equal(rgb2ycbcr(rgb), want)


def test_torch_matches_numpy_and_rgb_to_y_shapes():
    rgb = np.random.default_rng(2).random((9, 8, 3))
    t = torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None].repeat(2, 1, 1, 1)
    ycc = rgb2ycbcr(t)
    assert ycc.shape == (2, 3, 9, 8)
    np.testing.assert_allclose(ycc[1].numpy().transpose(1, 2, 0), rgb2ycbcr(rgb), atol=1e-12)
    y = rgb_to_y(t)
    assert y.shape == (2, 1, 9, 8)
    np.testing.assert_allclose(y[0, 0].numpy(), rgb_to_y(rgb), atol=1e-12)
    assert rgb_to_y(rgb).shape == (9, 8)
    torch.testing.assert_close(ycbcr2rgb(ycc), t)
    assert rgb_to_y(t.float()).dtype == torch.float32
    assert rgb_to_y(t[0]).shape == (1, 9, 8)


def test_torch_is_differentiable():
    x = torch.rand(1, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    rgb_to_y(x).sum().backward()
    # dY/dR summed over pixels = 65.481 / 255 per pixel
    torch.testing.assert_close(x.grad[0, 0], torch.full((3, 2), 65.481 / 255, dtype=torch.float64))


def test_bad_inputs():
    with pytest.raises(ValueError, match="3"):
        rgb2ycbcr(np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match="3, H, W"):
        rgb_to_y(torch.zeros(1, 1, 4, 4))
    with pytest.raises(TypeError, match="dtype"):
        rgb2ycbcr(np.zeros((2, 2, 3), np.int32))
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        rgb2ycbcr([[0, 0, 0]])


@requires_cuda
def test_cuda_matches_cpu():
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(rgb2ycbcr(x.cuda()).cpu(), rgb2ycbcr(x))
    torch.testing.assert_close(rgb_to_y(x.cuda()).cpu(), rgb_to_y(x))
