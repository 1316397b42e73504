"""Upscaler: tiling (plan, blending weights, tiled == untiled), input kinds, channels, dtypes, outscale."""

import copy
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import requires_cuda
from gansr_ext.data import imresize
from gansr_ext.infer import Upscaler
from gansr_ext.infer import tiling
from gansr_ext.models import RRDBNet, save_generator

# Receptive-field radius of RRDBNet(nb=1) x4 in input pixels: 17 LR 3x3 convs (conv_first, 3 dense
# blocks x 5 convs, conv_body) -> 17; then conv_up1 at 2x (1/2 px) and conv_up2, conv_hr, conv_last
# at 4x (1/4 px each) -> 1.25, plus up to one pixel for where nearest upsampling puts an output pixel.
RRDB_NB1_RADIUS = 17 + 1 + 1


def tiny_rrdbnet(seed=0, strong=True, **kw):
    """nb=1 nf=8 gc=4. strong: full-strength Kaiming weights (instead of ESRGAN's x0.1) so that far
    pixels really influence the output and too little overlap shows."""
    torch.manual_seed(seed)
    model = RRDBNet(nf=8, nb=1, gc=4, **kw)
    if strong:
        for p in model.parameters():
            if p.dim() == 4:
                nn.init.kaiming_normal_(p)
    return model.eval()


class TwoConvX2(nn.Module):
    """Two 3x3 convs then pixel shuffle: receptive-field radius exactly 2 input pixels, x2."""

    scale = 2

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Tanh(), nn.Conv2d(16, 12, 3, padding=1),
                                  nn.PixelShuffle(2))

    def forward(self, x):
        return self.body(x)


# ---- tile planning ---------------------------------------------------------------------------------

@pytest.mark.parametrize("length,tile,context,multiple", [
    (100, 24, 5, 1), (100, 24, 0, 1), (37, 10, 3, 1), (64, 16, 9, 4), (20, 64, 4, 1), (96, 30, 40, 2)])
def test_plan_axis_covers_with_context(length, tile, context, multiple):
    spans = tiling.plan_axis(length, tile, context, multiple)
    cores = [s.core for s in spans]
    assert cores[0][0] == 0 and cores[-1][1] == length
    assert all(a[1] == b[0] for a, b in zip(cores, cores[1:]))  # a partition
    sizes = {s.window[1] - s.window[0] for s in spans}
    assert len(sizes) == 1  # equal windows: tiles can be batched
    for s in spans:
        (c0, c1), (w0, w1) = s.core, s.window
        assert c1 - c0 <= max(tile // multiple * multiple, multiple)
        assert 0 <= w0 <= max(c0 - context, 0) and min(c1 + context, length) <= w1 <= length
        assert w0 % multiple == 0 and w1 % multiple == 0 and c0 % multiple == 0


@pytest.mark.parametrize("feather", [0, 3, 6])
def test_blend_weights_partition_of_unity(feather):
    length, scale = 50, 4
    plan = tiling.plan_tiles(length, length, 12, 2, feather)
    shortest = min(s.core[1] - s.core[0] for s in plan.rows)  # 50 = 5 cores of 10
    assert plan.feather == min(feather, shortest // 2)
    total = torch.zeros(length * scale)
    for span in plan.rows:
        w = tiling.axis_weight(span, length, plan.feather, scale)
        assert w.min() >= 0 and w.max() <= 1
        total[span.window[0] * scale:span.window[1] * scale] += w
    torch.testing.assert_close(total, torch.ones_like(total))


def test_auto_tile_size_is_largest_fitting():
    free, bpp, batch, context = 8 * 2 ** 30, 1500.0, 4, 24
    tile = tiling.auto_tile_size(free, bpp, batch, context, multiple=2, max_tile=10 ** 6)
    assert tile % 2 == 0
    assert batch * (tile + 2 * context) ** 2 * bpp <= 0.5 * free
    assert batch * (tile + 2 + 2 * context) ** 2 * bpp > 0.5 * free
    assert tiling.auto_tile_size(10 ** 6, bpp, batch, context) == 32  # clamped to the minimum


# ---- tiled == untiled ------------------------------------------------------------------------------

@pytest.mark.parametrize("pre_pad", [0, 10])
def test_tiled_equals_untiled_when_overlap_covers_receptive_field(pre_pad):
    model = tiny_rrdbnet()
    x = torch.rand(1, 3, 12, 64)
    ref = Upscaler(model, device="cpu", tile=None, pre_pad=pre_pad).upscale_tensor(x)
    up = Upscaler(model, device="cpu", tile=16, overlap=RRDB_NB1_RADIUS, feather=4, batch_tiles=3, pre_pad=pre_pad)
    plan = tiling.plan_tiles(12 + 2 * pre_pad, 64 + 2 * pre_pad, 16, RRDB_NB1_RADIUS, 4)
    assert len(plan.cols) >= 4 and plan.tile_shape[1] < 64  # windows really crop the image
    out = up.upscale_tensor(x)
    assert out.shape == ref.shape == (1, 3, 48, 256)
    # stated tolerance: float32 rounding of the same convolutions on differently sized inputs
    torch.testing.assert_close(out, ref, atol=1e-5 * ref.abs().max().item(), rtol=1e-5)
    # the same grid with little overlap is clearly wrong: the equality above is not vacuous
    bad = Upscaler(model, device="cpu", tile=16, overlap=2, feather=0, pre_pad=pre_pad).upscale_tensor(x)
    assert (bad - ref).abs().max() > 1e-2


def test_tiled_exact_overlap_is_tight_for_known_radius():
    model = TwoConvX2()
    x = torch.rand(2, 3, 30, 41)
    ref = Upscaler(model, device="cpu").upscale_tensor(x)
    for feather in (0, 3):
        exact = Upscaler(model, device="cpu", tile=8, overlap=2, feather=feather).upscale_tensor(x)
        torch.testing.assert_close(exact, ref, atol=1e-5, rtol=1e-5)
        short = Upscaler(model, device="cpu", tile=8, overlap=1, feather=feather).upscale_tensor(x)
        assert (short - ref).abs().max() > 1e-4


def test_feathering_hides_seams_of_a_too_small_overlap():
    model = tiny_rrdbnet(seed=0)
    x = torch.rand(1, 3, 12, 64)
    opts = dict(device="cpu", pre_pad=0)  # no pre-padding: the tile cores start at image column 0
    ref = Upscaler(model, **opts).upscale_tensor(x)
    hard = Upscaler(model, tile=16, overlap=0, feather=0, **opts).upscale_tensor(x) - ref
    soft = Upscaler(model, tile=16, overlap=0, feather=4, **opts).upscale_tensor(x) - ref

    def column_steps(err):  # largest jump of the error between neighbouring output columns
        return (err[..., 1:] - err[..., :-1]).abs().amax(dim=(0, 1, 2))

    seams = [16 * 4 * k - 1 for k in (1, 2, 3)]  # hard cuts between output columns 64k-1 and 64k
    assert column_steps(soft).max() < 0.25 * column_steps(hard)[seams].min()
    assert soft.abs().max() < 0.2 * hard.abs().max()


def test_tile_batching_and_channels_last_do_not_change_the_result():
    model = tiny_rrdbnet(strong=False)
    x = torch.rand(1, 3, 20, 17)
    opts = dict(device="cpu", tile=8, overlap=4, feather=2)
    a = Upscaler(model, batch_tiles=1, channels_last=False, **opts).upscale_tensor(x)
    b = Upscaler(model, batch_tiles=5, channels_last=True, **opts).upscale_tensor(x)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_unshuffled_x2_model_pads_and_tiles_on_its_grid():
    model = tiny_rrdbnet(scale=2, strong=False)  # input H, W must be even
    x = torch.rand(1, 3, 21, 17)
    ref = Upscaler(model, device="cpu").upscale_tensor(x)
    out = Upscaler(model, device="cpu", tile=8, overlap=2 * RRDB_NB1_RADIUS, feather=2).upscale_tensor(x)
    assert ref.shape == (1, 3, 42, 34)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@requires_cuda
def test_tiled_equals_untiled_cuda_output_on_cpu():
    model = tiny_rrdbnet()
    x = torch.rand(1, 3, 12, 64)
    ref = Upscaler(model, device="cuda", dtype="fp32", tile=None, fused=False).upscale_tensor(x)
    out = Upscaler(model, device="cuda", dtype="fp32", tile=16, overlap=RRDB_NB1_RADIUS, fused=False).upscale_tensor(x)
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, ref, atol=1e-4 * ref.abs().max().item(), rtol=1e-4)
    auto = Upscaler(model, device="cuda", tile="auto")
    assert isinstance(auto.tile, int) and auto.tile >= 32


# ---- input kinds and channels ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def up():
    return Upscaler(tiny_rrdbnet(), device="cpu", tile=None)


def _expected_uint8(up, hwc_float):
    y = up.upscale_tensor(torch.from_numpy(hwc_float).permute(2, 0, 1)[None])
    return (y[0].permute(1, 2, 0).clamp(0, 1) * 255).round().numpy().astype(np.uint8)


def test_numpy_uint8_uint16_float_round_trip(up):
    rng = np.random.default_rng(0)
    img8 = rng.integers(0, 256, (20, 17, 3), dtype=np.uint8)
    out8 = up.upscale(img8)
    assert out8.dtype == np.uint8 and out8.shape == (80, 68, 3)
    np.testing.assert_array_equal(out8, _expected_uint8(up, img8.astype(np.float32) / 255))
    img16 = img8.astype(np.uint16) * 257
    out16 = up.upscale(img16)
    assert out16.dtype == np.uint16 and out16.shape == (80, 68, 3)
    assert np.abs(out16.astype(np.int64) // 257 - out8.astype(np.int64)).max() <= 1
    outf = up.upscale(img8.astype(np.float64) / 255)
    assert outf.dtype == np.float64 and outf.min() >= 0 and outf.max() <= 1


def test_gray_is_run_as_rgb_and_converted_back(up):
    gray = np.random.default_rng(1).random((20, 17), dtype=np.float32)
    out = up.upscale(gray)
    assert out.shape == (80, 68) and out.dtype == np.float32
    rgb = up.upscale_tensor(torch.from_numpy(gray)[None, None].expand(1, 3, -1, -1))
    luma = (rgb[0] * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0).clamp(0, 1)
    np.testing.assert_allclose(out, luma.numpy(), atol=1e-6)


def test_alpha_bicubic_and_model(up):
    rgba = np.random.default_rng(2).random((20, 17, 4), dtype=np.float32)
    rgb_only = up.upscale(rgba[:, :, :3])
    out = up.upscale(rgba)
    assert out.shape == (80, 68, 4)
    np.testing.assert_allclose(out[:, :, :3], rgb_only, atol=1e-6)
    np.testing.assert_allclose(out[:, :, 3], np.clip(imresize(rgba[:, :, 3], output_shape=(80, 68)), 0, 1), atol=1e-5)
    via_model = up.upscale(rgba, alpha="model")
    np.testing.assert_allclose(via_model[:, :, 3], up.upscale(rgba[:, :, 3]), atol=1e-6)


def test_pil_modes(up):
    rng = np.random.default_rng(3)
    rgb = Image.fromarray(rng.integers(0, 256, (17, 20, 3), dtype=np.uint8))
    cases = {"RGB": rgb, "RGBA": rgb.convert("RGBA"), "L": rgb.convert("L"), "LA": rgb.convert("LA"),
             "P": rgb.convert("P"), "1": rgb.convert("1"), "CMYK": rgb.convert("CMYK"),
             "I;16": Image.fromarray(rng.integers(0, 65536, (17, 20), dtype=np.uint16))}
    expected_mode = {"P": "RGB", "1": "L", "CMYK": "RGB"}
    for mode, img in cases.items():
        out = up.upscale(img)
        assert isinstance(out, Image.Image) and out.size == (80, 68), mode
        assert out.mode == expected_mode.get(mode, mode), mode
    np.testing.assert_array_equal(np.asarray(up.upscale(rgb)), up.upscale(np.asarray(rgb)))
    transparent = rgb.convert("P")
    transparent.info["transparency"] = 0
    assert up.upscale(transparent).mode == "RGBA"


def test_torch_inputs_keep_shape_kind_and_dtype(up):
    x = torch.rand(3, 20, 17, dtype=torch.float64)
    y = up.upscale(x)
    assert y.shape == (3, 80, 68) and y.dtype == torch.float64
    xb = torch.rand(2, 3, 20, 17)
    yb = up.upscale(xb)
    assert yb.shape == (2, 3, 80, 68)
    torch.testing.assert_close(yb[1], up.upscale(xb[1]))


def test_bad_inputs_are_refused(up):
    with pytest.raises(TypeError, match="numpy array, PIL image or torch tensor"):
        up.upscale([[0.5]])
    with pytest.raises(ValueError, match="channels"):
        up.upscale(np.zeros((5, 5, 5), np.uint8))
    with pytest.raises(TypeError, match="float"):
        up.upscale(torch.zeros(3, 5, 5, dtype=torch.uint8))
    with pytest.raises(TypeError, match="dtype"):
        up.upscale(np.zeros((5, 5, 3), np.int32))
    with pytest.raises(ValueError, match="outscale"):
        up.upscale(np.zeros((5, 5, 3), np.uint8), outscale=-1)
    with pytest.raises(ValueError, match="tile"):
        Upscaler(up.model, device="cpu", tile=-3)
    with pytest.raises(ValueError, match="alpha"):
        Upscaler(up.model, device="cpu", alpha="nearest")
    with pytest.raises(TypeError, match="nn.Module or a checkpoint path"):
        Upscaler(3)


# ---- outscale, dtypes, fused, model sources --------------------------------------------------------------

def test_outscale_resizes_the_model_output(up):
    x = torch.rand(1, 3, 20, 17)
    y4 = up.upscale_tensor(x)
    torch.testing.assert_close(up.upscale_tensor(x, outscale=4), y4)
    y2 = up.upscale_tensor(x, outscale=2)
    assert y2.shape == (1, 3, 40, 34)
    torch.testing.assert_close(y2, imresize(y4, output_shape=(40, 34)))
    assert up.upscale(np.zeros((20, 17, 3), np.uint8), outscale=3.5).shape == (70, 60, 3)


def test_fp16_on_cpu_falls_back_to_fp32_with_warning():
    model = tiny_rrdbnet(strong=False)
    with pytest.warns(UserWarning, match="fp16 is not supported .* CPU.*fp32"):
        up = Upscaler(model, device="cpu", dtype="fp16")
    assert up.dtype == torch.float32 and next(up.model.parameters()).dtype == torch.float32
    x = torch.rand(1, 3, 20, 17)
    ref = up.upscale_tensor(x)
    bf16 = Upscaler(tiny_rrdbnet(strong=False), device="cpu", dtype="bf16")
    assert bf16.dtype == torch.bfloat16
    torch.testing.assert_close(bf16.upscale_tensor(x), ref, atol=0.05 * ref.abs().max().item(), rtol=0.05)
    with pytest.raises(ValueError, match="dtype"):
        Upscaler(model, device="cpu", dtype="int8")


def test_fused_switch_is_passed_to_the_model():
    class Switchable(TwoConvX2):
        def set_fused(self, flag):
            self.calls = getattr(self, "calls", []) + [flag]

    m = Switchable()
    Upscaler(m, device="cpu", fused=False)
    Upscaler(m, device="cpu", fused=True)
    Upscaler(m, device="cpu", fused=None)  # auto leaves a CPU model alone
    assert m.calls == [False, True]
    with pytest.warns(UserWarning, match="no fused path"):
        Upscaler(TwoConvX2(), device="cpu", fused=True)


def test_checkpoint_path_and_scale_probe(tmp_path):
    model = tiny_rrdbnet(strong=False)
    path = save_generator(model, tmp_path / "g.pth")
    x = torch.rand(1, 3, 20, 17)
    torch.testing.assert_close(Upscaler(str(path), device="cpu").upscale_tensor(x),
                               Upscaler(model, device="cpu").upscale_tensor(x))

    class NoScaleAttr(nn.Module):
        def forward(self, x):
            return nn.functional.interpolate(x, scale_factor=3, mode="nearest")

    assert Upscaler(NoScaleAttr(), device="cpu").scale == 3


def test_out_of_memory_shrinks_batch_then_tile_and_stays_exact():
    class OomAbove(TwoConvX2):
        def forward(self, x):  # a pretend device that holds at most 400 input pixels per batch
            if x.shape[0] * x.shape[-2] * x.shape[-1] > 400:
                raise torch.cuda.OutOfMemoryError("fake: out of memory")
            return super().forward(x)

    model = OomAbove()
    x = torch.rand(1, 3, 30, 41)
    ref = TwoConvX2()(x).detach()  # the plain model: no pre-padding below
    with pytest.warns(UserWarning, match="out of GPU memory"):
        out = Upscaler(model, device="cpu", tile=64, overlap=2, feather=0, batch_tiles=4,
                       pre_pad=0).upscale_tensor(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(torch.cuda.OutOfMemoryError):  # gives up at tile 32, batch 1
        Upscaler(model, device="cpu", tile=32, batch_tiles=1, pre_pad=0).upscale_tensor(torch.rand(1, 3, 40, 40))


# ---- pre-padding (as the official ncnn tools) ------------------------------------------------------------

@pytest.mark.parametrize("size, mode", [((20, 23), "reflect"), ((5, 7), "replicate")])  # too small to reflect
def test_pre_pad_is_pad_then_crop(size, mode):
    """The spec: model(x padded by p on every side) with p * scale output pixels cropped from every side."""
    model, x = TwoConvX2(), torch.rand(1, 3, *size)
    out = Upscaler(model, device="cpu", pre_pad=10).upscale_tensor(x)
    with torch.no_grad():
        ref = model(torch.nn.functional.pad(x, (10,) * 4, mode=mode))[..., 20:-20, 20:-20]
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    assert Upscaler(model, device="cpu").pre_pad == 10  # the default: the official tools' value
    with pytest.raises(ValueError, match="pre_pad must be a non-negative int"):
        Upscaler(model, device="cpu", pre_pad=-1)


def test_pre_pad_changes_only_the_border_band():
    """Radius 2 (TwoConvX2): output pixels more than 2 input pixels from the border see no padding at all,
    so they are unchanged; the band within it differs (the convs' zeros vs reflected pixels)."""
    model, x = TwoConvX2(), torch.rand(1, 3, 20, 23)
    plain = Upscaler(model, device="cpu", pre_pad=0).upscale_tensor(x)
    padded = Upscaler(model, device="cpu", pre_pad=10).upscale_tensor(x)
    band = 2 * 2  # 2 input pixels at x2
    torch.testing.assert_close(padded[..., band:-band, band:-band], plain[..., band:-band, band:-band],
                               atol=1e-6, rtol=1e-6)
    for edge in (padded - plain)[..., :band, :], (padded - plain)[..., -band:, :], (padded - plain)[..., :band]:
        assert edge.abs().max() > 1e-3


# ---- dtype "auto" on the CPU ------------------------------------------------------------------------------

class ShiftedX1(nn.Module):
    """(x + 256) - 256 at scale 1: exact in fp32, all lost in bf16 (8 mantissa bits: 256 + x rounds to 256)."""

    scale = 1

    def forward(self, x):
        return (x + 256) - 256


class NanX1(nn.Module):
    scale = 1

    def forward(self, x):
        return x * float("nan")


def test_cpu_bf16_query_agrees_with_the_cpu_flags(monkeypatch):
    from gansr_ext.infer import precision

    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("no /proc/cpuinfo (not Linux): only torch's query is available")
    with_torch = precision.cpu_has_native_bf16()
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.delattr(torch.cpu, name, raising=False)
    assert precision.cpu_has_native_bf16() == with_torch  # the /proc/cpuinfo path


@pytest.mark.parametrize("native, model, expected", [
    (False, tiny_rrdbnet(strong=False), torch.float32),  # no native bf16: fp32, nothing probed
    (True, tiny_rrdbnet(strong=False), torch.bfloat16),  # bf16 output close to fp32's
    (True, ShiftedX1(), torch.float32),  # bf16 output far from fp32's
    (True, NanX1(), torch.float32),  # NaN output: no PSNR, no bf16
])
def test_auto_dtype_on_cpu(monkeypatch, native, model, expected):
    from gansr_ext.infer import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    fp32 = Upscaler(copy.deepcopy(model), device="cpu", dtype="fp32")
    up = Upscaler(model, device="cpu", dtype="auto")
    assert up.dtype == expected
    assert up.dtype_reason.startswith("auto: ") and up.dtype_reason.endswith(str(expected).split(".")[1])
    assert ("dB" in up.dtype_reason) == native
    if expected == torch.bfloat16:
        assert all(p.dtype == torch.bfloat16 for p in up.model.parameters())
        x = torch.rand(1, 3, 12, 12)
        assert precision.output_psnr(up.upscale_tensor(x), fp32.upscale_tensor(x)) >= precision.BF16_MIN_PSNR


def test_output_psnr_nan_gives_nan():
    from gansr_ext.infer.precision import output_psnr

    a = torch.rand(1, 3, 4, 4)
    b = a.clone()
    b[0, 0, 0, 0] = float("nan")
    assert math.isnan(output_psnr(a, b)) and output_psnr(a, a) == math.inf
