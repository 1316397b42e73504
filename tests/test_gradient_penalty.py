"""Gradient penalty: the reference against closed forms, the public wrapper against the reference."""

import pytest
import torch
from torch import nn

from conftest import CUDA

from gansr_ext.losses.penalty import (draw_eps, gradient_penalty, gradient_penalty_reference,
                                      r1_penalty_from_logits)


class LinearD(nn.Module):
    """D(x)_b = <w, x_b> + c: its input gradient is w for every sample, a closed form to test against."""

    def __init__(self, shape, scale):
        super().__init__()
        self.w = nn.Parameter(torch.randn(shape, dtype=torch.float64) * scale)
        self.c = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1) + self.c


class QuadD(nn.Module):
    """D(x)_b = 0.5 a ||x_b||^2: input gradient a x_b, per-sample norms differ."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.7, dtype=torch.float64))

    def forward(self, x):
        return 0.5 * self.a * x.flatten(1).square().sum(1)


def _imgs(B=3, shape=(2, 4, 4)):
    return torch.randn(B, *shape, dtype=torch.float64), torch.randn(B, *shape, dtype=torch.float64)


@pytest.mark.parametrize("scale", [0.05, 0.5])
def test_reference_closed_form_linear_d(scale):
    torch.manual_seed(0)
    real, fake = _imgs()
    D = LinearD(real.shape[1:], scale)
    n = D.w.detach().norm()
    for kind, expect in [("wgan-gp", 10 * (n - 1) ** 2), ("one-sided", 10 * torch.clamp(n - 1, min=0) ** 2),
                         ("r1", 5 * n ** 2)]:
        gp = gradient_penalty_reference(D, real, fake, lam=10.0, kind=kind)
        torch.testing.assert_close(gp, expect)
        # d/dw of lam (||w|| - 1)^2 = 2 lam (||w|| - 1) w / ||w||
        (gw,) = torch.autograd.grad(gp, D.w)
        dexp = {"wgan-gp": 20 * (n - 1), "one-sided": 20 * torch.clamp(n - 1, min=0), "r1": 10 * n}[kind]
        torch.testing.assert_close(gw, dexp * D.w.detach() / n)


def test_reference_closed_form_quadratic_d_uses_eps():
    torch.manual_seed(1)
    real, fake = _imgs(B=4)
    D = QuadD()
    eps = torch.rand(4, dtype=torch.float64)
    xhat = eps.view(-1, 1, 1, 1) * real + (1 - eps.view(-1, 1, 1, 1)) * fake
    n = 0.7 * xhat.flatten(1).norm(dim=1)
    gp = gradient_penalty_reference(D, real, fake, lam=3.0, eps=eps)
    torch.testing.assert_close(gp, 3.0 * ((n - 1) ** 2).mean())


def test_seeded_generator_reproduces_eps_and_penalty():
    torch.manual_seed(2)
    real, fake = _imgs(B=5)
    D = QuadD()
    e1 = draw_eps(5, real, torch.Generator().manual_seed(7))
    e2 = draw_eps(5, real, torch.Generator().manual_seed(7))
    e3 = draw_eps(5, real, torch.Generator().manual_seed(8))
    assert torch.equal(e1, e2) and not torch.equal(e1, e3)
    assert ((e1 >= 0) & (e1 < 1)).all()
    a = gradient_penalty_reference(D, real, fake, generator=torch.Generator().manual_seed(7))
    b = gradient_penalty_reference(D, real, fake, eps=e1)
    c = gradient_penalty(D, real, fake, generator=torch.Generator().manual_seed(7), fused=False)
    assert a.item() == b.item() == c.item()


def test_real_and_fake_receive_no_gradient():
    real, fake = _imgs()
    real.requires_grad_(True)
    fake.requires_grad_(True)
    gp = gradient_penalty_reference(QuadD(), real, fake)
    assert gp.requires_grad
    assert torch.autograd.grad(gp, [real, fake], allow_unused=True) == (None, None)


# ---- gradient_penalty (fused path and options) against the reference ----------------------------------

import copy  # noqa: E402
import functools  # noqa: E402

import torch.nn.functional as F  # noqa: E402

from torch.nn.utils import spectral_norm  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from gansr_ext.models import UNetDiscriminatorSN, VGGDiscriminator128  # noqa: E402

KINDS = ["wgan-gp", "one-sided", "r1"]


def _bn_d():
    return nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), nn.BatchNorm2d(4), nn.LeakyReLU(0.2), nn.Conv2d(4, 4, 4, 2, 1),
                         nn.BatchNorm2d(4), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(4 * 4 * 4, 1))


def _sn_d():
    return nn.Sequential(spectral_norm(nn.Conv2d(3, 4, 3, 1, 1)), nn.LeakyReLU(0.2),
                         spectral_norm(nn.Conv2d(4, 4, 4, 2, 1)), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3, 1, 1))


def _plain_d():
    return nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), nn.Softplus(), nn.Conv2d(4, 1, 4, 2, 1))


def _d_step(D, fn, **kw):
    """Penalty value, D parameter gradients and D buffers (BN running stats, SN u/v) after one penalty."""
    D = copy.deepcopy(D)
    D.zero_grad(set_to_none=True)
    gp = fn(D, **kw)
    gp.backward()
    grads = [p.grad.clone() if p.grad is not None else None for p in D.parameters()]
    return gp.detach(), grads, [b.clone() for b in D.buffers()]


def _assert_grads_aligned(grads, ref_grads, rel=0.05):
    # low-precision runs: each parameter gradient within rel of the size of the whole fp32 gradient
    # (per-parameter cosines are meaningless for the ~0 gradients of conv biases followed by BatchNorm)
    scale = torch.cat([b.flatten() for b in ref_grads if b is not None]).norm()
    for a, b in zip(grads, ref_grads):
        assert (a is None) == (b is None)
        if a is not None:
            assert (a - b).norm() <= rel * scale


def _assert_same_step(a, b, rtol=1e-9, atol=1e-11):
    torch.testing.assert_close(a[0], b[0], rtol=rtol, atol=atol)
    assert len(a[1]) == len(b[1])
    for ga, gb in zip(a[1], b[1]):
        assert (ga is None) == (gb is None)
        if ga is not None:
            assert torch.isfinite(ga).all()
            torch.testing.assert_close(ga, gb, rtol=rtol, atol=atol)
    for ba, bb in zip(a[2], b[2]):
        torch.testing.assert_close(ba, bb, rtol=rtol, atol=atol)


# the discriminators of the exact-mode test: (constructor, image size)
EXACT_DS = {"bn": (_bn_d, 8), "sn": (_sn_d, 8),
            "vgg128": (lambda: VGGDiscriminator128(nf=2), 128), "unet_sn": (lambda: UNetDiscriminatorSN(nf=2), 16),
            "vgg128_nf8": (lambda: VGGDiscriminator128(nf=8), 128),
            "unet_sn_nf8": (lambda: UNetDiscriminatorSN(nf=8), 32)}
# (device, dtype) -> (rtol, atol) of the exact mode against the reference (CUDA: cuDNN deterministic, no
# TF32), and the discriminators run there (the wider ones on the GPU only: seconds each in fp64 on a CPU)
EXACT = {("cpu", torch.float64): ((1e-9, 1e-11), ["bn", "sn", "vgg128", "unet_sn"]),
         ("cuda", torch.float32): ((1e-4, 1e-5), ["bn", "sn", "vgg128_nf8", "unet_sn_nf8"])}
EXACT_CASES = [pytest.param(device, dtype, *EXACT_DS[name], marks=CUDA if device == "cuda" else (),
                            id=f"{name}-{device}-{str(dtype)[6:]}")
               for (device, dtype), (_, names) in EXACT.items() for name in names]


@pytest.mark.parametrize("device,dtype,make_d,size", EXACT_CASES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fused", [True, False])
def test_exact_mode_equals_reference(device, dtype, make_d, size, kind, fused, poison):
    torch.manual_seed(11)
    D = make_d().to(device, dtype).train()
    real, fake = (torch.randn(3, 3, size, size, dtype=dtype, device=device) for _ in range(2))
    with torch.backends.cudnn.flags(enabled=True, deterministic=True, benchmark=False), _no_tf32():
        ref = _d_step(D, lambda d: gradient_penalty_reference(d, real, fake, 10.0, kind,
                                                              generator=torch.Generator().manual_seed(5)))
        out = _d_step(D, lambda d: gradient_penalty(d, real, fake, 10.0, kind, fused=fused,
                                                    generator=torch.Generator().manual_seed(5)))
    assert ref[0] > 0 or kind == "one-sided"
    rtol, atol = EXACT[device, dtype][0]
    _assert_same_step(out, ref, rtol=rtol, atol=atol)


def test_first_order_pass_skips_weight_gradients():
    """autograd.grad(inputs=[xhat]) masks the weight (and bias) gradients of every convolution_backward
    and batch-norm backward: torch already does what StyleGAN2-ADA's no_weight_gradients does."""
    masked_ops = (torch.ops.aten.convolution_backward.default, torch.ops.aten.native_batch_norm_backward.default)

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.masks = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in masked_ops:
                self.masks.append((func.__name__.split(".")[0], tuple(args[-1])))
            return func(*args, **(kwargs or {}))

    D = _bn_d().double()
    real, fake = torch.randn(2, 3, 8, 8, dtype=torch.float64), torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with Record() as rec:
        gradient_penalty(D, real, fake, fused=True)
    assert sorted(rec.masks) == [("convolution_backward", (True, False, False))] * 2 + \
        [("native_batch_norm_backward", (True, False, False))] * 2
    with Record() as rec_all:  # contrast: asking for the parameters too computes weight gradients
        x = real.clone().requires_grad_(True)
        torch.autograd.grad(D(x).sum(), [x, *D.parameters()], create_graph=True)
    assert len(rec_all.masks) == 4 and all(m[1][1] for m in rec_all.masks)


def test_lazy_regularisation_scales_and_skips():
    torch.manual_seed(4)
    D = _plain_d().double()
    real, fake = torch.randn(2, 3, 8, 8, dtype=torch.float64), torch.randn(2, 3, 8, 8, dtype=torch.float64)
    calls = []
    D.register_forward_hook(lambda *a: calls.append(1))
    exact = gradient_penalty(D, real, fake, generator=torch.Generator().manual_seed(1), fused=True)
    calls.clear()
    for step in (1, 2, 3, 5):
        skipped = gradient_penalty(D, real, fake, step=step, lazy_interval=4, fused=True)
        assert skipped.shape == () and skipped.item() == 0.0 and not skipped.requires_grad
    assert calls == []  # nothing computed on skipped steps
    for step in (0, 8):
        lazy = gradient_penalty(D, real, fake, generator=torch.Generator().manual_seed(1), step=step, lazy_interval=4,
                                fused=True)
        torch.testing.assert_close(lazy, 4 * exact)
    with pytest.raises(ValueError, match="step"):
        gradient_penalty(D, real, fake, lazy_interval=4)
    with pytest.raises(ValueError, match="lazy_interval"):
        gradient_penalty(D, real, fake, lazy_interval=0)


@pytest.mark.parametrize("subset,n", [(2, 2), (0.5, 2), (1.0, 4)])
def test_subset_penalises_first_samples(subset, n):
    torch.manual_seed(6)
    D = _sn_d().double()
    real, fake = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randn(4, 3, 8, 8, dtype=torch.float64)
    ref = _d_step(D, lambda d: gradient_penalty_reference(d, real[:n], fake[:n],
                                                          generator=torch.Generator().manual_seed(2)))
    for fused in (True, False):
        out = _d_step(D, lambda d: gradient_penalty(d, real, fake, subset=subset, fused=fused,
                                                    generator=torch.Generator().manual_seed(2)))
        _assert_same_step(out, ref)


def test_channels_last_matches_exact():
    torch.manual_seed(8)
    D = _bn_d().double()
    real, fake = torch.randn(3, 3, 8, 8, dtype=torch.float64), torch.randn(3, 3, 8, 8, dtype=torch.float64)
    ref = _d_step(D, lambda d: gradient_penalty_reference(d, real, fake, generator=torch.Generator().manual_seed(3)))
    seen = []
    D.register_forward_pre_hook(lambda m, a: seen.append(a[0].is_contiguous(memory_format=torch.channels_last)))
    out = _d_step(D, lambda d: gradient_penalty(d, real, fake, channels_last=True, fused=True,
                                                generator=torch.Generator().manual_seed(3)))
    assert seen == [True]
    _assert_same_step(out, ref)


# bf16 autocast: CPU autocast rounds more than cuDNN's fp32-accumulating bf16 convolutions, so the VGG
# discriminator is held to these tolerances on CUDA only
BF16_CASES = [pytest.param(device, _bn_d, 8, kind, marks=marks, id=f"bn-{kind}-{device}")
              for device, marks in (("cpu", ()), ("cuda", CUDA)) for kind in ("wgan-gp", "r1")]
BF16_CASES.append(pytest.param("cuda", lambda: VGGDiscriminator128(nf=8), 128, "wgan-gp", marks=CUDA,
                               id="vgg128-wgan-gp-cuda"))


@pytest.mark.parametrize("device,make_d,size,kind", BF16_CASES)
def test_bf16_autocast_close_to_fp32(device, make_d, size, kind):
    torch.manual_seed(9)
    D = make_d().to(device)
    real, fake = torch.randn(4, 3, size, size, device=device), torch.randn(4, 3, size, size, device=device)
    with _no_tf32():
        ref = _d_step(D, lambda d: gradient_penalty_reference(d, real, fake, kind=kind,
                                                              generator=torch.Generator().manual_seed(3)))
    out = _d_step(D, lambda d: gradient_penalty(d, real, fake, kind=kind, autocast_dtype=torch.bfloat16,
                                                channels_last=True, fused=True,
                                                generator=torch.Generator().manual_seed(3)))
    assert out[0].dtype == torch.float32
    torch.testing.assert_close(out[0], ref[0], rtol=5e-2, atol=1e-3)
    _assert_grads_aligned(out[1], ref[1])


def test_r1_needs_no_fake_and_fused_eps_matches_reference_eps():
    torch.manual_seed(10)
    D = _plain_d().double()
    real, fake = torch.randn(3, 3, 8, 8, dtype=torch.float64), torch.randn(3, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(gradient_penalty(D, real, None, kind="r1", fused=True),
                               gradient_penalty_reference(D, real, None, kind="r1"))
    eps = torch.rand(3, dtype=torch.float64)
    torch.testing.assert_close(gradient_penalty(D, real, fake, eps=eps, fused=True),
                               gradient_penalty_reference(D, real, fake, eps=eps))


@pytest.mark.parametrize("make_d", [_bn_d, _sn_d], ids=["bn", "sn"])
def test_r1_from_logits_equals_r1_penalty(make_d):
    torch.manual_seed(14)
    D = make_d().double()
    real = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    ref = _d_step(D, lambda d: gradient_penalty_reference(d, real, None, lam=4.0, kind="r1"))

    def from_logits(d):
        x = real.clone().requires_grad_(True)
        return r1_penalty_from_logits(d(x), x, lam=4.0, fused=True)

    out = _d_step(D, from_logits)
    _assert_same_step(out, ref)
    x = real.clone()
    with pytest.raises(ValueError, match="requires_grad"):
        r1_penalty_from_logits(D(x), x)


class PixelLinearD(nn.Module):
    """Per-pixel logits D(x)_{b,h,w} = <w, x_b[:, h, w]> (a 1x1 conv): the gradient of each sample's mean
    logit is w / (H W) at every pixel, so n_b = ||w|| / sqrt(H W) (the sum's gradient would give ||w|| sqrt(H W))."""

    def __init__(self, ch):
        super().__init__()
        self.w = nn.Parameter(torch.randn(ch, dtype=torch.float64))

    def forward(self, x):
        return torch.einsum("bchw,c->bhw", x, self.w).unsqueeze(1)


class Upsampled(nn.Module):
    """D's output map repeated x2 (nearest): the same discriminator, four times as many logits."""

    def __init__(self, d):
        super().__init__()
        self.d = d

    def forward(self, x):
        return F.interpolate(self.d(x), scale_factor=2, mode="nearest")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fused", [True, False, "reference"])
def test_per_pixel_d_closed_form(kind, fused):
    torch.manual_seed(15)
    real, fake = _imgs(B=2, shape=(3, 4, 4))
    D = PixelLinearD(3)
    with torch.no_grad():
        D.w.mul_(8.0 / D.w.norm())  # n = 8 / sqrt(16) = 2: every branch of every kind is active
    fn = gradient_penalty_reference if fused == "reference" else functools.partial(gradient_penalty, fused=fused)
    expect = {"wgan-gp": 10.0, "one-sided": 10.0, "r1": 5.0 * 4.0}[kind]
    torch.testing.assert_close(fn(D, real, fake, lam=10.0, kind=kind).item(), expect)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fused", [True, False, "reference"])
def test_penalty_invariant_to_upsampled_output_map(kind, fused):
    """The penalty is on each sample's MEAN logit, the quantity the relativistic losses use: repeating
    D's output map x2 changes neither the penalty nor D's gradient (on the sum it grew 13.15 -> 575.3)."""
    torch.manual_seed(16)
    D = _plain_d().double()
    with torch.no_grad():
        D[2].weight.mul_(40.0)  # per-sample norms ~1.5, so the one-sided penalty is not 0
    real, fake = torch.randn(3, 3, 8, 8, dtype=torch.float64), torch.randn(3, 3, 8, 8, dtype=torch.float64)
    if fused == "reference":
        fn = lambda d: gradient_penalty_reference(d, real, fake, 10.0, kind,  # noqa: E731
                                                  generator=torch.Generator().manual_seed(4))
    else:
        fn = lambda d: gradient_penalty(d, real, fake, 10.0, kind, fused=fused,  # noqa: E731
                                        generator=torch.Generator().manual_seed(4))
    base = _d_step(D, fn)
    up = _d_step(Upsampled(D), fn)
    assert base[0] > 0
    _assert_same_step(up, base)


def test_r1_from_logits_invariant_to_upsampled_output_map():
    torch.manual_seed(17)
    D = _plain_d().double()
    real = torch.randn(3, 3, 8, 8, dtype=torch.float64)

    def from_logits(d):
        x = real.clone().requires_grad_(True)
        return r1_penalty_from_logits(d(x), x, lam=4.0, fused=True)

    _assert_same_step(_d_step(Upsampled(D), from_logits), _d_step(D, from_logits))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fused", [True, False, "reference"])
def test_nan_input_gives_nan_penalty(kind, fused):
    """NaN in gives NaN out on every path (the fused one-sided penalty once returned 0.0 here)."""
    torch.manual_seed(18)
    D = _plain_d().double()
    real, fake = torch.randn(2, 3, 8, 8, dtype=torch.float64), torch.randn(2, 3, 8, 8, dtype=torch.float64)
    real[1, 0, 3, 3] = fake[1, 0, 3, 3] = float("nan")
    fn = gradient_penalty_reference if fused == "reference" else functools.partial(gradient_penalty, fused=fused)
    assert torch.isnan(fn(D, real, fake, lam=10.0, kind=kind))
    x = real.clone().requires_grad_(True)
    if kind == "r1" and fused is True:
        assert torch.isnan(r1_penalty_from_logits(D(x), x, fused=True))


def test_d_output_without_batch_dim_is_a_clear_error():
    D = lambda x: _plain_d().double()(x).mean()  # noqa: E731  (one scalar for the whole batch)
    real = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    for fn in (gradient_penalty_reference, gradient_penalty):
        with pytest.raises(ValueError, match=r"D must return a \(B, \.\.\.\) tensor with B = 2"):
            fn(D, real, real.clone())


def test_bad_inputs_give_clear_errors():
    D = _plain_d()
    r = torch.randn(2, 3, 8, 8)
    cases = [
        (dict(real=r, fake=torch.randn(2, 3, 8, 9)), ValueError, "same shape"),
        (dict(real=r.long(), fake=r.long()), TypeError, "float32"),
        (dict(real=torch.randn(0, 3, 8, 8), fake=torch.randn(0, 3, 8, 8)), ValueError, "empty"),
        (dict(real=r, fake=r, kind="hinge"), ValueError, "kind"),
        (dict(real=r, fake=None), ValueError, "fake is None"),
        (dict(real=r, fake=r.double()), TypeError, "dtype"),
        (dict(real=r, fake=r, lam=-1.0), ValueError, "lam"),
        (dict(real=r, fake=r, subset=3), ValueError, "subset"),
        (dict(real=r, fake=r, subset=0.0), ValueError, "subset"),
        (dict(real=r, fake=r, eps=torch.rand(3)), ValueError, "eps"),
        (dict(real=r, fake=r, autocast_dtype=torch.float64), ValueError, "autocast_dtype"),
        (dict(real=r.flatten(1), fake=r.flatten(1), channels_last=True), ValueError, "channels_last"),
    ]
    for kw, exc, msg in cases:
        for fn in (gradient_penalty, gradient_penalty_reference):
            extra = {k: kw[k] for k in ("subset", "autocast_dtype", "channels_last") if k in kw}
            if extra and fn is gradient_penalty_reference:
                continue
            with pytest.raises(exc, match=msg):
                fn(D, **kw)
    with pytest.raises(TypeError, match="callable"):
        gradient_penalty("D", r, r)


class _no_tf32:
    """fp32 parity on Ampere+: TF32 convolutions/matmuls would differ from the reference by ~1e-3."""

    def __enter__(self):
        self.saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved
