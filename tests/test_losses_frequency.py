"""Frequency losses: FFT (fused == reference), DCT (vs scipy), spectral profile, focal frequency
(vs numpy transcriptions of the papers' formulas)."""

import numpy as np
import pytest
import scipy.fft
import torch

from conftest import requires_cuda
from gansr_ext.losses import DCTLoss, FFTLoss, FocalFrequencyLoss, SpectralLoss, dct2
from gansr_ext.losses.frequency import dct_matrix

# ---------------------------------------------------------------- FFT


def test_fft_loss_constant_images_by_hand():
    # rfft2 (ortho) of a constant c on 4x4 has only the DC term 4c: loss = |c1 - c2| / max(|c1|, |c2|)
    sr, hr = torch.full((1, 1, 4, 4), 1.0), torch.full((1, 1, 4, 4), 3.0)
    assert FFTLoss(fused=False)(sr, hr).item() == pytest.approx(2 / 3)
    assert FFTLoss(loss_weight=2.0, fused=False)(sr, hr).item() == pytest.approx(4 / 3)


@pytest.mark.parametrize("p,mode", [(1, "magnitude"), (2, "magnitude"), (2, "complex")])
def test_fft_loss_fused_equals_reference_cpu(p, mode):
    sr = torch.rand(2, 3, 8, 6, dtype=torch.float64, requires_grad=True)
    hr = torch.rand(2, 3, 8, 6, dtype=torch.float64)
    ref = FFTLoss(p, mode, fused=False)(sr, hr)
    (g_ref,) = torch.autograd.grad(ref, sr)
    out = FFTLoss(p, mode, fused=True)(sr, hr)
    (g,) = torch.autograd.grad(out, sr)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(g, g_ref)


@requires_cuda
def test_fft_loss_fused_equals_reference_cuda():
    sr = torch.rand(2, 3, 8, 6, device="cuda", requires_grad=True)
    hr = torch.rand(2, 3, 8, 6, device="cuda")
    ref, out = FFTLoss(fused=False)(sr, hr), FFTLoss(fused=True)(sr, hr)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(torch.autograd.grad(out, sr)[0], torch.autograd.grad(ref, sr)[0])


def test_fft_loss_errors():
    with pytest.raises(ValueError, match="p must be"):
        FFTLoss(p=3)
    with pytest.raises(ValueError, match="mode"):
        FFTLoss(mode="phase")
    with pytest.raises(ValueError, match="same shape"):
        FFTLoss()(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 6))


# ---------------------------------------------------------------- DCT


def test_dct_matrix_orthonormal_and_cached():
    m = dct_matrix(7, torch.float64)
    torch.testing.assert_close(m @ m.T, torch.eye(7, dtype=torch.float64))
    assert dct_matrix(7, torch.float64) is m


def test_dct2_equals_scipy():
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 8))
    np.testing.assert_allclose(dct2(torch.tensor(x)).numpy(), scipy.fft.dctn(x, type=2, norm="ortho", axes=(-2, -1)),
                               atol=1e-12)


@pytest.mark.parametrize("p,mode", [(2, "signed"), (1, "signed"), (2, "magnitude")])
def test_dct_loss_vs_scipy(p, mode):
    rng = np.random.default_rng(1)
    a, b = rng.random((2, 3, 6, 6)), rng.random((2, 3, 6, 6))
    X, Y = (scipy.fft.dctn(v, norm="ortho", axes=(-2, -1)).reshape(2, -1) for v in (a, b))
    d = X - Y if mode == "signed" else np.abs(X) - np.abs(Y)
    norm = lambda v: np.linalg.norm(v, ord=p, axis=1)  # noqa: E731
    expect = norm(d) / np.maximum(norm(X), norm(Y))
    out = DCTLoss(p=p, mode=mode, reduction="none")(torch.tensor(a), torch.tensor(b))
    np.testing.assert_allclose(out.numpy(), expect, rtol=1e-10)
    assert DCTLoss(p=p, mode=mode)(torch.tensor(a), torch.tensor(b)).item() == pytest.approx(expect.mean())


def test_dct_loss_identity_zeros_and_gradient():
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    assert DCTLoss()(x, x.detach()).item() == 0.0
    z = torch.zeros(1, 1, 4, 4, requires_grad=True)
    out = DCTLoss()(z, torch.zeros(1, 1, 4, 4))
    out.backward()
    assert out.item() == 0.0 and torch.isfinite(z.grad).all()
    y = torch.rand(2, 3, 8, 8)
    DCTLoss()(x, y).backward()
    assert x.grad.abs().sum() > 0


def test_dct_loss_errors():
    with pytest.raises(ValueError, match="4-D"):
        DCTLoss()(torch.rand(3, 4, 4), torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match="mode"):
        DCTLoss(mode="complex")


def test_dct_loss_works_after_inference_mode_built_the_cache():
    with torch.inference_mode():
        DCTLoss()(torch.rand(1, 1, 9, 11), torch.rand(1, 1, 9, 11))
    x = torch.rand(1, 1, 9, 11, requires_grad=True)
    DCTLoss()(x, torch.rand(1, 1, 9, 11)).backward()
    assert x.grad is not None


# ---------------------------------------------------------------- spectral (Durall et al.)


def numpy_spectral(pred, target, eps=1e-8, delta=1e-4):
    """Durall et al.'s loss written with loops: gray, fft2, fftshift, log power, ring means, min-max, BCE."""

    def profile(img):
        gray = 0.2989 * img[0] + 0.5870 * img[1] + 0.1140 * img[2] if img.shape[0] == 3 else img[0]
        H, W = gray.shape
        s = np.fft.fftshift(np.log(np.abs(np.fft.fft2(gray, norm="ortho")) ** 2 + eps))
        rings = {}
        for y in range(H):
            for x in range(W):
                rings.setdefault(int(np.floor(np.hypot(y - H // 2, x - W // 2))), []).append(s[y, x])
        p = np.array([np.mean(rings[k]) for k in sorted(rings)])
        q = (p - p.min()) / (p.max() - p.min())
        return delta + (1 - 2 * delta) * q

    out = []
    for a, b in zip(pred, target):
        q, t = profile(a), profile(b)
        out.append(np.mean(-(t * np.log(q) + (1 - t) * np.log(1 - q))))
    return np.array(out)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 3, 7, 10), (2, 1, 6, 5)])
def test_spectral_loss_vs_numpy(shape):
    rng = np.random.default_rng(2)
    a, b = rng.random(shape), rng.random(shape)
    out = SpectralLoss(reduction="none")(torch.tensor(a), torch.tensor(b))
    np.testing.assert_allclose(out.numpy(), numpy_spectral(a, b), rtol=1e-9)


def test_spectral_loss_passes_gradients_to_the_generator():
    sr = torch.rand(2, 3, 16, 16, requires_grad=True)
    hr = torch.rand(2, 3, 16, 16)
    SpectralLoss()(sr, hr).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0 and torch.isfinite(sr.grad).all()


def test_spectral_loss_minimal_at_identity():
    hr = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    x = hr.clone().requires_grad_(True)
    at_identity = SpectralLoss()(x, hr)
    (g,) = torch.autograd.grad(at_identity, x)
    assert g.abs().max() < 1e-8  # dBCE/dq = (q - t) / (q (1 - q)) = 0 at q = t
    assert SpectralLoss()(hr + 0.1 * torch.randn_like(hr), hr) > at_identity


def test_spectral_loss_errors():
    with pytest.raises(ValueError, match="1 or 3 channels"):
        SpectralLoss()(torch.rand(1, 2, 8, 8), torch.rand(1, 2, 8, 8))
    with pytest.raises(ValueError, match="delta"):
        SpectralLoss(delta=0.5)


# ---------------------------------------------------------------- focal frequency (Jiang et al.)


def numpy_ffl(pred, target, alpha=1.0, pf=1, ave_spectrum=False, log_matrix=False, batch_matrix=False):
    """The authors' formulation with numpy, patches cut with explicit loops."""

    def freq(x):
        B, C, H, W = x.shape
        ph, pw = H // pf, W // pf
        patches = [x[:, :, i * ph:(i + 1) * ph, j * pw:(j + 1) * pw] for i in range(pf) for j in range(pf)]
        return np.fft.fft2(np.stack(patches, 1), norm="ortho")

    fp, ft = freq(pred), freq(target)
    if ave_spectrum:
        fp, ft = fp.mean(0, keepdims=True), ft.mean(0, keepdims=True)
    dist = np.abs(fp - ft) ** 2
    w = np.sqrt(dist) ** alpha
    if log_matrix:
        w = np.log(w + 1)
    w = w / (w.max() if batch_matrix else w.max(axis=(-2, -1), keepdims=True))
    return np.mean(np.clip(np.nan_to_num(w), 0, 1) * dist)


@pytest.mark.parametrize("kw", [{}, {"pf": 2}, {"alpha": 2.0, "log_matrix": True}, {"batch_matrix": True},
                                {"ave_spectrum": True, "pf": 2}])
def test_focal_frequency_vs_numpy(kw):
    rng = np.random.default_rng(3)
    a, b = rng.random((2, 3, 8, 8)), rng.random((2, 3, 8, 8))
    m = FocalFrequencyLoss(alpha=kw.get("alpha", 1.0), patch_factor=kw.get("pf", 1),
                           ave_spectrum=kw.get("ave_spectrum", False), log_matrix=kw.get("log_matrix", False),
                           batch_matrix=kw.get("batch_matrix", False), loss_weight=2.0)
    assert m(torch.tensor(a), torch.tensor(b)).item() == pytest.approx(2.0 * numpy_ffl(a, b, **kw), rel=1e-10)


def test_focal_frequency_weight_matrix_is_detached():
    pred = torch.rand(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    m = FocalFrequencyLoss()
    (g,) = torch.autograd.grad(m(pred, target), pred)
    # the same loss with the weight matrix handed in as a constant has the same gradient
    diff = m.tensor2freq(pred.detach()) - m.tensor2freq(target)
    w = diff.abs() / diff.abs().amax(dim=(-2, -1), keepdim=True)
    (g_const,) = torch.autograd.grad(m(pred, target, matrix=w), pred)
    torch.testing.assert_close(g, g_const)
    assert g.abs().sum() > 0


def test_focal_frequency_identity_and_errors():
    x = torch.rand(1, 3, 8, 8)
    assert FocalFrequencyLoss()(x, x).item() == 0.0  # 0/0 weights become 0
    with pytest.raises(ValueError, match="divisible"):
        FocalFrequencyLoss(patch_factor=3)(x, x)
    with pytest.raises(ValueError, match="patch_factor"):
        FocalFrequencyLoss(patch_factor=0)


@pytest.mark.parametrize("cls", [DCTLoss, SpectralLoss, FocalFrequencyLoss])
def test_frequency_losses_keep_float64_and_compute_float16_in_float32(cls):
    a, b = torch.rand(1, 3, 8, 8, dtype=torch.float64), torch.rand(1, 3, 8, 8, dtype=torch.float64)
    assert cls()(a, b).dtype == torch.float64
    out16 = cls()(a.half(), b.half())
    assert out16.dtype == torch.float32
    assert out16.item() == pytest.approx(cls()(a.half().double(), b.half().double()).item(), rel=1e-4)


# ---------------------------------------------------------------- NaN in -> NaN out, 0/0 stays 0

NAN_CASES = [pytest.param(lambda: FFTLoss(fused=False), id="fft-reference"),
             pytest.param(lambda: FFTLoss(fused=True), id="fft-fused"),
             pytest.param(lambda: FFTLoss(mode="complex", reduction="sum"), id="fft-complex-sum"),
             pytest.param(lambda: DCTLoss(), id="dct"), pytest.param(lambda: DCTLoss(p=1, mode="magnitude"), id="dct-l1"),
             pytest.param(lambda: DCTLoss(reduction="none"), id="dct-none"),
             pytest.param(lambda: SpectralLoss(), id="spectral"),
             pytest.param(lambda: SpectralLoss(reduction="sum"), id="spectral-sum"),
             pytest.param(lambda: FocalFrequencyLoss(), id="focal"),
             pytest.param(lambda: FocalFrequencyLoss(batch_matrix=True, patch_factor=2), id="focal-batch"),
             pytest.param(lambda: FocalFrequencyLoss(ave_spectrum=True, log_matrix=True), id="focal-ave-log")]


@pytest.mark.parametrize("make", NAN_CASES)
@pytest.mark.parametrize("which", ["pred", "target"])
def test_frequency_losses_nan_input_gives_nan(make, which):
    pred, target = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    (pred if which == "pred" else target)[0, 0, 3, 4] = float("nan")
    pred.requires_grad_(True)
    out = make()(pred, target)
    assert torch.isnan(out).any(), f"NaN in {which} gave {out}"


@pytest.mark.parametrize("make", NAN_CASES)
def test_frequency_losses_identical_and_zero_images_stay_finite(make):
    # 0/0 cases (identical images, all-zero images) are defined values, not NaN
    for a in (torch.rand(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)):
        pred = a.clone().requires_grad_(True)
        out = make()(pred, a)
        (g,) = torch.autograd.grad(out.sum(), pred)
        assert torch.isfinite(out).all() and torch.isfinite(g).all()


@requires_cuda
@pytest.mark.parametrize("cls", [DCTLoss, SpectralLoss, FocalFrequencyLoss])
def test_frequency_losses_cuda_equal_cpu(cls):
    a, b = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(cls()(a.cuda(), b.cuda()).cpu(), cls()(a, b), rtol=1e-4, atol=1e-6)
