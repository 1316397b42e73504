"""RRDBNet and discriminators: parameter names/counts, forward against functional re-statements of the
published architectures, scales, init, fused switch, memory formats, input errors."""

import math

import pytest
import torch
import torch.nn.functional as F

import gansr_ext.ops
from conftest import requires_cuda
from gansr_ext.models import RRDBNet, UNetDiscriminatorSN, VGGDiscriminator128, load_generator

SMALL = dict(nf=16, nb=2, gc=8)


def _lrelu(t):
    return F.leaky_relu(t, 0.2)


def _conv(sd, name, x, **kw):
    return F.conv2d(x, sd[f"{name}.weight"], sd.get(f"{name}.bias"), padding=kw.get("padding", 1),
                    stride=kw.get("stride", 1))


def _unshuffle_basicsr(x, s):
    # BasicSR's pixel_unshuffle written out with view/permute
    b, c, h, w = x.shape
    return x.view(b, c, h // s, s, w // s, s).permute(0, 1, 3, 5, 2, 4).reshape(b, c * s * s, h // s, w // s)


def _rrdbnet_functional(sd, x, scale, nb):
    """ESRGAN forward written from the paper/BasicSR with plain F.conv2d on the state dict."""
    if scale != 4:
        x = _unshuffle_basicsr(x, {2: 2, 1: 4}[scale])
    feat = _conv(sd, "conv_first", x)
    h = feat
    for n in range(nb):
        r = h
        for k in (1, 2, 3):
            p = f"body.{n}.rdb{k}"
            xs = [r]
            for j in range(1, 5):
                xs.append(_lrelu(_conv(sd, f"{p}.conv{j}", torch.cat(xs, 1))))
            r = _conv(sd, f"{p}.conv5", torch.cat(xs, 1)) * 0.2 + r
        h = r * 0.2 + h
    feat = feat + _conv(sd, "conv_body", h)
    feat = _lrelu(_conv(sd, "conv_up1", F.interpolate(feat, scale_factor=2, mode="nearest")))
    feat = _lrelu(_conv(sd, "conv_up2", F.interpolate(feat, scale_factor=2, mode="nearest")))
    return _conv(sd, "conv_last", _lrelu(_conv(sd, "conv_hr", feat)))


def test_rrdbnet_x4_default_parameter_count():
    with torch.device("meta"):  # shapes only, no init cost
        m = RRDBNet()
    assert sum(p.numel() for p in m.parameters()) == 16_697_987


def test_rrdbnet_parameter_names_are_basicsr():
    m = RRDBNet(**SMALL)
    expected = {f"{layer}.{t}" for layer in ("conv_first", "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last")
                for t in ("weight", "bias")}
    expected |= {f"body.{n}.rdb{k}.conv{j}.{t}" for n in range(2) for k in (1, 2, 3) for j in range(1, 6)
                 for t in ("weight", "bias")}
    assert set(m.state_dict()) == expected
    assert m.state_dict()["body.1.rdb3.conv5.weight"].shape == (16, 16 + 4 * 8, 3, 3)
    assert m.state_dict()["body.0.rdb2.conv3.weight"].shape == (8, 16 + 2 * 8, 3, 3)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_rrdbnet_forward_matches_functional_statement(scale):
    torch.manual_seed(0)
    m = RRDBNet(in_ch=3, out_ch=3, scale=scale, **SMALL).eval()
    assert m.conv_first.in_channels == 3 * {4: 1, 2: 4, 1: 16}[scale]
    x = torch.rand(2, 3, 8, 12)
    with torch.no_grad():
        y = m(x)
        ref = _rrdbnet_functional(m.state_dict(), x, scale, SMALL["nb"])
    assert y.shape == (2, 3, 8 * scale, 12 * scale)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


def test_rrdbnet_other_channel_counts():
    m = RRDBNet(in_ch=1, out_ch=4, scale=2, **SMALL)
    assert m(torch.rand(1, 1, 4, 6)).shape == (1, 4, 8, 12)


def test_dense_block_init_is_scaled_kaiming():
    torch.manual_seed(0)
    m = RRDBNet(nf=64, nb=1, gc=32)
    w = m.body[0].rdb1.conv5.weight  # fan_in = (64 + 4*32) * 9
    expected_std = 0.1 * math.sqrt(2.0 / ((64 + 4 * 32) * 9))
    assert abs(w.std().item() / expected_std - 1) < 0.05
    assert all(m.body[0].rdb2.get_submodule(f"conv{j}").bias.abs().max() == 0 for j in range(1, 6))
    # outside the dense blocks PyTorch's default init is kept (not scaled down)
    assert m.conv_first.weight.std() > 2 * 0.1 * math.sqrt(2.0 / (3 * 9))


def test_rrdbnet_backward_reaches_every_parameter():
    m = RRDBNet(**SMALL)
    m(torch.rand(1, 3, 6, 6)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


def test_rrdbnet_channels_last_and_autocast():
    torch.manual_seed(0)
    m = RRDBNet(**SMALL).eval()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        y = m(x)
        y_cl = m.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(y_cl, y, rtol=1e-4, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y_bf = m(x)
    assert y_bf.dtype == torch.bfloat16
    torch.testing.assert_close(y_bf.float(), y, rtol=0.1, atol=0.05)


@requires_cuda
def test_rrdbnet_cuda_channels_last_autocast_and_loading_match_cpu():
    # CPU siblings: test_rrdbnet_channels_last_and_autocast, test_models_checkpoint round trips
    torch.manual_seed(0)
    m = RRDBNet(**SMALL).eval()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        y = m(x)
        g = load_generator(m.state_dict(), device="cuda")
        assert all(p.is_cuda for p in g.parameters())
        g = g.to(memory_format=torch.channels_last)
        xc = x.cuda().to(memory_format=torch.channels_last)
        torch.testing.assert_close(g(xc).cpu(), y, rtol=1e-2, atol=2e-3)  # TF32 convs allowed
        with torch.autocast("cuda", dtype=torch.float16):
            y_half = g(xc)
    assert y_half.dtype == torch.float16
    torch.testing.assert_close(y_half.float().cpu(), y, rtol=0.05, atol=0.02)


def test_rrdbnet_fused_flag_without_op_is_a_clear_error(monkeypatch):
    monkeypatch.delattr(gansr_ext.ops, "rrdb_trunk", raising=False)
    with pytest.raises(RuntimeError, match="fused RRDB op"):
        RRDBNet(fused=True, **SMALL)
    m = RRDBNet(**SMALL)
    with pytest.raises(RuntimeError, match="fused RRDB op"):
        m.set_fused(True)
    assert m.fused is False


def test_rrdbnet_fused_flag_routes_trunk_and_keeps_state_dict(monkeypatch):
    calls = []

    def fake_trunk(feat, body, cutlass="off"):
        calls.append(feat.shape)
        return body(feat)

    monkeypatch.setattr(gansr_ext.ops, "rrdb_trunk", fake_trunk, raising=False)
    torch.manual_seed(0)
    m = RRDBNet(**SMALL).eval()
    keys = {k: v.clone() for k, v in m.state_dict().items()}
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        y = m(x)
        m.set_fused(True)
        y_fused = m(x)
    assert calls == [torch.Size([1, 16, 6, 6])]
    torch.testing.assert_close(y_fused, y)
    assert m.state_dict().keys() == keys.keys()
    assert all(torch.equal(m.state_dict()[k], v) for k, v in keys.items())


@pytest.mark.parametrize("kwargs", [dict(scale=3), dict(nb=0), dict(nf=2.0), dict(in_ch=True)])
def test_rrdbnet_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        RRDBNet(**{**SMALL, **kwargs})


def test_rrdbnet_bad_inputs():
    m = RRDBNet(scale=2, **SMALL)
    with pytest.raises(ValueError, match="divisible by 2"):
        m(torch.rand(1, 3, 5, 6))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        m(torch.rand(1, 4, 6, 6))
    with pytest.raises(TypeError):
        m([1, 2])


def test_vgg_discriminator_names_shapes_and_size_check():
    d = VGGDiscriminator128(in_ch=3, nf=8)
    names = {n.rsplit(".", 1)[0] for n in d.state_dict()}
    expected = {"conv0_0", "conv0_1", "bn0_1", "linear1", "linear2"}
    expected |= {f"{k}{i}_{j}" for i in range(1, 5) for j in (0, 1) for k in ("conv", "bn")}
    assert names == expected
    assert d.conv0_0.bias is not None and d.conv0_1.bias is None and d.conv3_0.bias is None
    assert [getattr(d, f"conv{i}_1").out_channels for i in range(5)] == [8, 16, 32, 64, 64]
    assert d.conv2_1.stride == (2, 2) and d.conv2_1.kernel_size == (4, 4)
    assert d.linear1.in_features == 64 * 4 * 4 and d.linear2.out_features == 1
    out = d(torch.rand(2, 3, 128, 128))
    assert out.shape == (2, 1)
    with pytest.raises(ValueError, match="128x128"):
        d(torch.rand(1, 3, 96, 96))
    with pytest.raises(ValueError):
        d(torch.rand(1, 1, 128, 128))


def _unet_functional(d, x):
    # Real-ESRGAN forward with scale_factor=2 upsampling (valid when H, W divide by 8)
    up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
    x0 = _lrelu(d.conv0(x))
    x1 = _lrelu(d.conv1(x0))
    x2 = _lrelu(d.conv2(x1))
    x3 = _lrelu(d.conv3(x2))
    x4 = _lrelu(d.conv4(up(x3))) + x2
    x5 = _lrelu(d.conv5(up(x4))) + x1
    x6 = _lrelu(d.conv6(up(x5))) + x0
    return d.conv9(_lrelu(d.conv8(_lrelu(d.conv7(x6)))))


def test_unet_discriminator_matches_real_esrgan_and_takes_any_size():
    torch.manual_seed(0)
    d = UNetDiscriminatorSN(in_ch=3, nf=8)
    sd = d.state_dict()
    for i in range(1, 9):
        assert {f"conv{i}.weight_orig", f"conv{i}.weight_u", f"conv{i}.weight_v"} <= set(sd)
    assert "conv0.weight" in sd and "conv9.bias" in sd and "conv1.bias" not in sd
    d.eval()  # spectral norm: no power iteration, so both forwards see the same weights
    x = torch.rand(2, 3, 32, 24)
    with torch.no_grad():
        torch.testing.assert_close(d(x), _unet_functional(d, x))
        assert d(torch.rand(1, 3, 37, 50)).shape == (1, 1, 37, 50)
    with pytest.raises(ValueError, match=">= 8"):
        d(torch.rand(1, 3, 4, 16))
    d_noskip = UNetDiscriminatorSN(nf=8, skip_connection=False)
    assert d_noskip(torch.rand(1, 3, 16, 16)).shape == (1, 1, 16, 16)


def test_vgg_discriminator_without_batch_norm_scores_each_sample_alone():
    # A gradient penalty is per sample; BatchNorm (train mode) makes one sample's logit depend on the others
    torch.manual_seed(0)
    x = torch.rand(4, 3, 128, 128)
    for batch_norm, coupled in ((True, True), (False, False)):
        d = VGGDiscriminator128(nf=8, batch_norm=batch_norm).train()
        alone = d(x[:2])
        with_others = d(torch.cat([x[:2], x[2:] * 0.1]))[:2]
        assert (not torch.allclose(alone, with_others, atol=1e-6)) == coupled, batch_norm
    names = set(VGGDiscriminator128(nf=8, batch_norm=False).state_dict())
    assert not any(n.startswith("bn") for n in names) and "conv1_0.bias" in names
