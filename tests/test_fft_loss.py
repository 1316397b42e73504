"""FFT loss: C++ CPU kernel (and CUDA kernel on a GPU) against the pure-PyTorch reference."""

import subprocess
import sys

import pytest
import torch

from conftest import CUDA, DEVICES, device_dtype_params, requires_cuda
from gansr_ext.ops import fft_loss, fft_loss_reference

SHAPES = [(2, 3, 8, 8), (1, 3, 7, 5), (3, 1, 6, 9), (2, 2, 5, 2), (1, 1, 2, 3)]
VARIANTS = [(p, mode) for p in (1, 2) for mode in ("magnitude", "complex")]
f64, f32, bf16, f16 = torch.float64, torch.float32, torch.bfloat16, torch.float16

# (device, dtype) -> tolerances of kernel vs reference: loss (rtol, atol); gradients (rtol, atol, atol
# relative to the largest reference gradient). fp32: FFTs of different libraries + float reductions.
# bf16/fp16 inputs compute in fp32: the loss at fp32 tolerance, gradients rounded to the input dtype.
TOL = {
    ("cpu", f64): dict(loss=(1e-12, 1e-12), grad=(1e-10, 1e-12, 0)),
    ("cpu", f32): dict(loss=(1e-4, 1e-6), grad=(1e-3, 0, 1e-4)),
    ("cuda", f32): dict(loss=(1e-4, 1e-6), grad=(1e-3, 0, 1e-4)),
}
LOW_TOL = {  # low-precision inputs: loss (rtol, atol), gradients (rtol, atol)
    ("cpu", f32): dict(loss=(1e-5, 1e-6), grad=(1e-5, 1e-7)),
    ("cpu", bf16): dict(loss=(1e-5, 1e-6), grad=(1e-2, 1e-4)),
    ("cpu", f16): dict(loss=(1e-5, 1e-6), grad=(2e-3, 2e-5)),
    ("cuda", bf16): dict(loss=(1e-4, 1e-5), grad=(2e-2, 1e-4)),
}



def _pair(shape, dtype=torch.float64, device="cpu", grad=True):
    sr = torch.randn(shape, dtype=dtype, device=device).requires_grad_(grad)
    hr = torch.randn(shape, dtype=dtype, device=device).requires_grad_(grad)
    return sr, hr


def _loss_and_grads(fn, sr, hr, **kw):
    loss = fn(sr, hr, **kw)
    g = torch.autograd.grad(loss.sum(), [t for t in (sr, hr) if t.requires_grad])
    return loss, g


@pytest.mark.parametrize("device,dtype", device_dtype_params(TOL))
@pytest.mark.parametrize("shape", SHAPES + [(16, 3, 128, 128)])
@pytest.mark.parametrize("p,mode", VARIANTS)
def test_kernel_equals_reference(device, dtype, shape, p, mode, fresh_seed, poison):
    tol = TOL[device, dtype]
    sr, hr = _pair(shape, dtype=dtype, device=device)
    lf, gf = _loss_and_grads(lambda a, b: fft_loss(a, b, p, mode, "none", fused=True), sr, hr)
    lr, gr = _loss_and_grads(lambda a, b: fft_loss_reference(a, b, p, mode, "none"), sr, hr)
    assert lf.shape == (shape[0],) and lf.dtype == dtype
    torch.testing.assert_close(lf, lr, rtol=tol["loss"][0], atol=tol["loss"][1])
    rtol, atol, atol_of_max = tol["grad"]
    for a, b in zip(gf, gr):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol + atol_of_max * (b.abs().max().item() + 1e-12))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("p,mode", VARIANTS)
@pytest.mark.parametrize("shape", [(2, 2, 5, 6), (1, 1, 4, 7), (2, 3, 8, 8), (1, 3, 7, 5)])
def test_gradcheck(device, shape, p, mode):
    sr, hr = _pair(shape, device=device)
    assert torch.autograd.gradcheck(lambda a, b: fft_loss(a, b, p, mode, "none", fused=True), (sr, hr))


def test_gradient_only_for_sr():
    sr, hr = _pair((2, 3, 6, 6))
    hr.requires_grad_(False)
    g = torch.autograd.grad(fft_loss(sr, hr, fused=True), sr)[0]
    gr = torch.autograd.grad(fft_loss_reference(sr, hr), sr)[0]
    torch.testing.assert_close(g, gr)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reductions(reduction):
    sr, hr = _pair((3, 2, 6, 5), grad=False)
    per = fft_loss_reference(sr, hr, reduction="none")
    out = fft_loss(sr, hr, reduction=reduction, fused=True)
    expect = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    torch.testing.assert_close(out, expect)


def test_value_against_numpy_definition():
    # an independent spelling of the seed's formula with numpy's full 2-D FFT (magnitude mode)
    np = pytest.importorskip("numpy")
    sr, hr = _pair((2, 3, 6, 7), grad=False)
    X = np.abs(np.fft.fft2(sr.numpy(), norm="ortho"))
    Y = np.abs(np.fft.fft2(hr.numpy(), norm="ortho"))
    norm = lambda v: np.sqrt((v**2).sum(axis=(1, 2, 3)))  # noqa: E731
    expect = torch.from_numpy(norm(X - Y) / np.maximum(norm(X), norm(Y)))
    torch.testing.assert_close(fft_loss(sr, hr, reduction="none", fused=True), expect)


def full_spectrum_loss(sr, hr, p, mode):
    """The seed's formula on the full fft2 (no half-spectrum bookkeeping), per image."""
    X, Y = torch.fft.fft2(sr, norm="ortho"), torch.fft.fft2(hr, norm="ortho")
    d = X - Y if mode == "complex" else X.abs() - Y.abs()

    def norm(v):
        return v.abs().pow(p).sum(dim=(1, 2, 3)).pow(1.0 / p)

    return norm(d) / torch.maximum(norm(X), norm(Y))


# odd and even H and W, including W = 2 and 3 (only self-mirrored or only one mirrored column)
PARSEVAL_SHAPES = [(2, 3, 6, 8), (2, 2, 7, 9), (1, 3, 5, 6), (2, 1, 8, 7), (1, 2, 3, 2), (1, 1, 4, 3)]


@pytest.mark.parametrize("shape", PARSEVAL_SHAPES)
@pytest.mark.parametrize("p,mode", VARIANTS)
@pytest.mark.parametrize("fused", [False, True])
def test_equals_full_spectrum_formula_fp64(shape, p, mode, fused, fresh_seed):
    # the half spectrum is weighted so every norm is the full DFT's (Parseval): values and gradients
    sr, hr = _pair(shape)
    lf, gf = _loss_and_grads(lambda a, b: fft_loss(a, b, p, mode, "none", fused=fused), sr, hr)
    le, ge = _loss_and_grads(lambda a, b: full_spectrum_loss(a, b, p, mode), sr, hr)
    torch.testing.assert_close(lf, le, rtol=1e-12, atol=1e-12)
    for a, b in zip(gf, ge):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("p,mode", VARIANTS)
@pytest.mark.parametrize("shape", [(1, 1, 3, 4), (1, 1, 4, 3)])
def test_reference_gradcheck(shape, p, mode):
    sr, hr = _pair(shape)
    assert torch.autograd.gradcheck(lambda a, b: fft_loss_reference(a, b, p, mode, "none"), (sr, hr))


@pytest.mark.parametrize("fused", [False, True])
def test_complex_l2_equals_relative_pixel_distance(fused):
    # Parseval: with the full-spectrum norms, p = 2 complex mode is ||sr - hr|| / max(||sr||, ||hr||)
    sr, hr = _pair((3, 2, 7, 6), grad=False)
    n = lambda v: torch.linalg.vector_norm(v, dim=(1, 2, 3))  # noqa: E731
    torch.testing.assert_close(fft_loss(sr, hr, 2, "complex", "none", fused=fused),
                               n(sr - hr) / torch.maximum(n(sr), n(hr)), rtol=1e-12, atol=1e-12)


def test_complex_mode_sees_phase_magnitude_mode_does_not():
    # a circular shift changes only the phase of the spectrum
    sr = torch.rand(1, 3, 8, 7, dtype=torch.float64)
    hr = torch.roll(sr, shifts=(2, 3), dims=(2, 3))
    for fused in (False, True):
        assert fft_loss(sr, hr, mode="magnitude", fused=fused).item() < 1e-12
        assert fft_loss(sr, hr, mode="complex", fused=fused).item() > 0.1


def _with_nan(shape, which, dtype=torch.float64, device="cpu"):
    sr, hr = _pair(shape, dtype=dtype, device=device, grad=False)
    clean = (sr.clone(), hr.clone())
    (sr if which == "sr" else hr)[0, -1, 2, 3] = float("nan")  # one pixel of image 0
    return sr.requires_grad_(True), hr.requires_grad_(True), clean


PATHS = [pytest.param("cpu", False, id="reference-cpu"), pytest.param("cpu", True, id="fused-cpu"),
         pytest.param("cuda", False, marks=CUDA, id="reference-cuda"),
         pytest.param("cuda", True, marks=CUDA, id="fused-cuda")]


@pytest.mark.parametrize("device,fused", PATHS)
@pytest.mark.parametrize("which", ["sr", "hr"])
@pytest.mark.parametrize("p,mode", VARIANTS)
def test_nan_input_gives_nan_loss_for_that_image(device, fused, which, p, mode):
    sr, hr, (sr0, hr0) = _with_nan((2, 3, 6, 7), which, device=device)
    per = fft_loss(sr, hr, p, mode, "none", fused=fused)
    assert torch.isnan(per[0]), f"NaN in {which} gave loss {per[0].item()}"
    # the other image is untouched
    torch.testing.assert_close(per[1], fft_loss_reference(sr0, hr0, p, mode, "none")[1])
    gs, gh = torch.autograd.grad(per[0], (sr, hr))
    assert torch.isnan(gs[0]).all() and torch.isnan(gh[0]).all()


@pytest.mark.parametrize("device,fused", PATHS)
@pytest.mark.parametrize("which", ["sr", "hr"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nan_input_gives_nan_for_every_reduction(device, fused, which, reduction):
    sr, hr, _ = _with_nan((2, 1, 4, 4), which, dtype=torch.float32, device=device)
    out = fft_loss(sr, hr, reduction=reduction, fused=fused)
    assert torch.isnan(out).any() if reduction == "none" else torch.isnan(out)


@pytest.mark.parametrize("fused", [False, True])
def test_infinite_input_gives_non_finite_loss(fused):
    sr, hr = _pair((1, 1, 4, 6), grad=False)
    hr[0, 0, 1, 1] = float("inf")
    assert not torch.isfinite(fft_loss(sr, hr, fused=fused))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [f32, f64])
@pytest.mark.parametrize("fused", [False, True])
def test_zero_images_give_zero_loss_and_gradient(device, dtype, fused):
    sr = torch.zeros(2, 3, 8, 8, dtype=dtype, device=device, requires_grad=True)
    hr = torch.zeros(2, 3, 8, 8, dtype=dtype, device=device, requires_grad=True)
    loss = fft_loss(sr, hr, fused=fused)
    gs, gh = torch.autograd.grad(loss, (sr, hr))
    assert loss.item() == 0.0
    assert gs.abs().max().item() == 0.0 and gh.abs().max().item() == 0.0


def test_identical_images_give_zero_loss_and_finite_gradient():
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    sr = x.clone().requires_grad_(True)
    loss = fft_loss(sr, x, fused=True)
    (g,) = torch.autograd.grad(loss, sr)
    assert loss.item() == 0.0
    assert torch.isfinite(g).all()


@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced"])
def test_non_contiguous_inputs(layout):
    base_sr, base_hr = _pair((2, 3, 9, 10), grad=False)
    if layout == "channels_last":
        sr, hr = base_sr.to(memory_format=torch.channels_last), base_hr.to(memory_format=torch.channels_last)
    elif layout == "transposed":
        sr, hr = base_sr.transpose(2, 3), base_hr.transpose(2, 3)
    else:
        sr, hr = base_sr[:, :, 1:, ::2], base_hr[:, :, 1:, ::2]
    assert not sr.is_contiguous()
    sr.requires_grad_(True)
    lf, (gf,) = _loss_and_grads(lambda a, b: fft_loss(a, b, reduction="none", fused=True), sr, hr)
    lr, (gr,) = _loss_and_grads(lambda a, b: fft_loss_reference(a, b, reduction="none"), sr, hr)
    torch.testing.assert_close(lf, lr)
    torch.testing.assert_close(gf, gr)


@pytest.mark.parametrize("device,dtype", device_dtype_params(LOW_TOL))
@pytest.mark.parametrize("channels_last", [False, True])
def test_low_precision_inputs_compute_in_fp32(device, dtype, channels_last, fresh_seed):
    tol = LOW_TOL[device, dtype]
    sr, hr = _pair((4, 3, 32, 24), dtype=dtype, device=device)
    if channels_last:
        sr = sr.detach().to(memory_format=torch.channels_last).requires_grad_(True)
    lf, gf = _loss_and_grads(lambda a, b: fft_loss(a, b, reduction="none", fused=True), sr, hr)
    lr, gr = _loss_and_grads(lambda a, b: fft_loss_reference(a, b, reduction="none"), sr, hr)
    assert lf.dtype == torch.float32 and gf[0].dtype == dtype
    torch.testing.assert_close(lf, lr, rtol=tol["loss"][0], atol=tol["loss"][1])
    for a, b in zip(gf, gr):
        torch.testing.assert_close(a.float(), b.float(), rtol=tol["grad"][0], atol=tol["grad"][1])


def test_bad_inputs_raise_clear_errors():
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="same shape"):
        fft_loss(x, torch.rand(1, 3, 8, 9))
    with pytest.raises(TypeError, match="same dtype"):
        fft_loss(x, x.double())
    with pytest.raises(TypeError, match="float32/float64"):
        fft_loss(x.long(), x.long())
    with pytest.raises(ValueError, match="4-D"):
        fft_loss(x[0], x[0])
    with pytest.raises(ValueError, match="empty"):
        fft_loss(x[:0], x[:0])
    with pytest.raises(ValueError, match=">= 2"):
        fft_loss(x[..., :1], x[..., :1])
    with pytest.raises(ValueError, match="p must be"):
        fft_loss(x, x, p=3)
    with pytest.raises(ValueError, match="mode"):
        fft_loss(x, x, mode="phase")
    with pytest.raises(ValueError, match="reduction"):
        fft_loss(x, x, reduction="max")


def test_kernel_checks_inputs_itself():
    # the C++ op must not trust its Python wrapper; its errors are Python's ValueError / TypeError
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="same shape"):
        torch.ops.gansr.fft_loss_fwd(x, torch.rand(1, 3, 8, 6), 2, False)
    with pytest.raises(TypeError, match="float32"):
        torch.ops.gansr.fft_loss_fwd(x.int(), x.int(), 2, False)
    with pytest.raises(ValueError, match="empty"):
        torch.ops.gansr.fft_loss_fwd(x[:0], x[:0], 2, False)
    # norms of another dtype than spec: the CUDA kernel would read spec out of bounds
    _, norms, spec = torch.ops.gansr.fft_loss_fwd(x, x, 2, False)
    with pytest.raises(TypeError, match="real dtype of spec"):
        torch.ops.gansr.fft_loss_bwd(torch.ones(1), spec, norms.double(), 2, False, 8, True)


def test_fake_and_autograd_kernels_registered_at_import():
    # a fresh interpreter that only imports the package: the raw op is differentiable and traceable
    code = """
import torch, gansr_ext.ops
from torch._subclasses.fake_tensor import FakeTensorMode
sr = torch.rand(2, 3, 8, 6, requires_grad=True)
loss, _, _ = torch.ops.gansr.fft_loss_fwd(sr, torch.rand(2, 3, 8, 6), 2, False)
loss.sum().backward()
g = torch.rand(2, 5, requires_grad=True)
pen, _ = torch.ops.gansr.gp_penalty_fwd(g, 0, 1.0)
pen.backward()
assert sr.grad is not None and g.grad is not None
with FakeTensorMode():
    spec = torch.ops.gansr.fft_loss_fwd(torch.empty(2, 3, 8, 6), torch.empty(2, 3, 8, 6), 2, False)[2]
    assert spec.shape == (2, 2, 3, 8, 4)
    assert torch.ops.gansr.gp_interpolate(torch.empty(2, 3), torch.empty(2, 3), torch.empty(2), False).shape == (2, 3)
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("complex_mode", [False, True])
def test_opcheck(complex_mode):
    sr, hr = _pair((2, 3, 6, 5), dtype=torch.float32)
    torch.library.opcheck(torch.ops.gansr.fft_loss_fwd.default, (sr, hr, 2, complex_mode))
    _, norms, spec = torch.ops.gansr.fft_loss_fwd(sr.detach(), hr.detach(), 1, complex_mode)
    g = torch.rand(2)
    torch.library.opcheck(torch.ops.gansr.fft_loss_bwd.default, (g, spec, norms, 1, complex_mode, 5, True))


def test_torch_compile_fullgraph():
    sr, hr = _pair((2, 3, 8, 8), dtype=torch.float32)

    def step(a, b):
        return fft_loss(a * 2.0, b, fused=True) + (a - b).abs().mean()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    lc, gc = _loss_and_grads(compiled, sr, hr)
    le, ge = _loss_and_grads(step, sr, hr)
    torch.testing.assert_close(lc, le)
    for a, b in zip(gc, ge):
        torch.testing.assert_close(a, b)


def test_auto_switch_uses_kernel_when_built():
    from gansr_ext.ops._common import use_fused

    x = torch.rand(1, 1, 4, 4)
    assert use_fused(None, x) is True
    assert use_fused(False, x) is False


@pytest.mark.parametrize("device", DEVICES)
def test_batch_beyond_the_cuda_grid_y_limit(device):
    # 70000 images: on CUDA the batch must not be a grid y dimension (at most 65535 blocks)
    sr, hr = _pair((70000, 1, 2, 2), dtype=torch.float32, device=device)
    lf, gf = _loss_and_grads(lambda a, b: fft_loss(a, b, reduction="none", fused=True), sr, hr)
    lr, gr = _loss_and_grads(lambda a, b: fft_loss_reference(a, b, reduction="none"), sr, hr)
    torch.testing.assert_close(lf, lr, rtol=1e-4, atol=1e-6)
    for a, b in zip(gf, gr):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


# ---------------------------------------------------------------- CUDA only (run by python/gpu_check.sh)

@requires_cuda
def test_cuda_inputs_on_two_devices_raise():
    z = torch.zeros(2, 3, 8, 8, device="cuda", requires_grad=True)
    with pytest.raises(ValueError, match="same device"):
        fft_loss(z, torch.zeros(2, 3, 8, 8))


@requires_cuda
def test_cuda_graph_capture_equals_eager():
    sr, hr = _pair((4, 3, 32, 32), dtype=torch.float32, device="cuda")
    static_sr = sr.detach().clone().requires_grad_(True)

    def step():
        loss = fft_loss(static_sr, hr, fused=True)
        (g,) = torch.autograd.grad(loss, static_sr)
        return loss, g

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            step()  # warm-up creates the cuFFT plans outside the capture
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out_loss, out_g = step()
    new = torch.randn_like(sr)
    with torch.no_grad():
        static_sr.copy_(new)
    graph.replay()
    torch.cuda.synchronize()
    ref_sr = new.clone().requires_grad_(True)
    ref_loss = fft_loss(ref_sr, hr, fused=True)
    (ref_g,) = torch.autograd.grad(ref_loss, ref_sr)
    torch.testing.assert_close(out_loss, ref_loss)
    torch.testing.assert_close(out_g, ref_g)


@requires_cuda
def test_cuda_graph_capture_without_warm_up_is_a_clear_error():
    # CPU sibling: tests/test_fft_plan_cache.py::test_capture_never_creates_a_plan. The shape is used by
    # no other test, so no cuFFT plan exists for it yet.
    warm = torch.randn(1, 1, 8, 8, device="cuda")
    fft_loss(warm, warm, fused=True)  # registers the op outside the capture
    sr, hr = _pair((1, 1, 24, 40), dtype=torch.float32, device="cuda", grad=False)
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="warm-up"):
        with torch.cuda.graph(graph):
            fft_loss(sr, hr, fused=True)
    # eager use afterwards creates the plan, and a capture then succeeds
    expected = fft_loss(sr, hr, fused=True)
    with torch.cuda.graph(graph):
        captured = fft_loss(sr, hr, fused=True)
    graph.replay()
    torch.testing.assert_close(captured, expected)
