"""Fused gradient-penalty ops (gansr::gp_*): C++ CPU kernels (and CUDA on a GPU) against the reference."""

import pytest
import torch

from conftest import DEVICES, device_dtype_params
from gansr_ext.ops.gradient_penalty import (KIND_CODES, gp_interpolate, gp_interpolate_reference, gp_penalty,
                                            gp_penalty_reference)

KINDS = list(KIND_CODES)
SHAPES = [(3, 2, 4, 5), (1, 3, 2, 2), (4, 7), (2, 1, 3, 1, 2), (16, 3, 64, 64)]
f64, f32, bf16, f16 = torch.float64, torch.float32, torch.bfloat16, torch.float16

# (device, dtype) -> kernel vs reference: the penalty against the fp64 reference, its gradient against the
# reference in the input dtype; (rtol, atol) each
TOL = {("cpu", f64): dict(penalty=(1e-12, 1e-12), grad=(1e-10, 1e-12)),
       ("cpu", f32): dict(penalty=(1e-5, 1e-5), grad=(1e-5, 1e-6)),
       ("cuda", f32): dict(penalty=(1e-5, 1e-5), grad=(1e-5, 1e-6))}
# low-precision inputs (the penalty computes in fp32): rtol = atol for the penalty, its gradient, the interpolation
LOW_TOL = {("cpu", f32): dict(penalty=1e-5, grad=1e-6, interp=1e-6),
           ("cpu", bf16): dict(penalty=1e-5, grad=1e-2, interp=1e-2),
           ("cpu", f16): dict(penalty=1e-5, grad=1e-3, interp=1e-3),
           ("cuda", bf16): dict(penalty=1e-4, grad=1e-2, interp=1e-2),
           ("cuda", f16): dict(penalty=1e-4, grad=1e-2, interp=1e-2)}
INTERP_TOL = {("cpu", f64): 1e-15, ("cpu", f32): 1e-6, ("cuda", f64): 1e-15, ("cuda", f32): 1e-6}



def _grad_like(shape, dtype=torch.float64, device="cpu"):
    # per-sample norms spread around 1 so every branch of f (n < 1, n > 1) is exercised
    g = torch.randn(shape, dtype=dtype, device=device)
    g = g / torch.linalg.vector_norm(g.flatten(1).double(), dim=1).to(dtype).view(-1, *([1] * (g.dim() - 1)))
    scales = torch.linspace(0.3, 2.5, shape[0], dtype=dtype, device=device)
    return (g * scales.view(-1, *([1] * (g.dim() - 1)))).requires_grad_(True)


@pytest.mark.parametrize("device,dtype", device_dtype_params(TOL))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
def test_penalty_equals_reference(device, dtype, shape, kind, fresh_seed, poison):
    tol = TOL[device, dtype]
    g = _grad_like(shape, dtype=dtype, device=device)
    a = gp_penalty(g, kind, 2.5, fused=True)
    assert a.shape == () and a.dtype == dtype
    exact = gp_penalty_reference(g.detach().double(), kind, 2.5)
    torch.testing.assert_close(a.double(), exact, rtol=tol["penalty"][0], atol=tol["penalty"][1])
    (ga,) = torch.autograd.grad(a, g)
    (gb,) = torch.autograd.grad(gp_penalty_reference(g, kind, 2.5), g)
    assert torch.isfinite(ga).all()
    torch.testing.assert_close(ga, gb, rtol=tol["grad"][0], atol=tol["grad"][1])


@pytest.mark.parametrize("kind", KINDS)
def test_penalty_closed_form(kind):
    # independent of both implementations: one sample per norm value
    g = torch.zeros(3, 2, 2, dtype=torch.float64)
    g[0, 0, 0], g[1, 1, 1], g[2, 0, 1] = 0.5, 2.0, 3.0
    f = {"wgan-gp": [0.25, 1.0, 4.0], "one-sided": [0.0, 1.0, 4.0], "r1": [0.25, 4.0, 9.0]}[kind]
    expect = torch.tensor(3.0 * sum(f) / 3, dtype=torch.float64)
    torch.testing.assert_close(gp_penalty(g, kind, 3.0, fused=True), expect)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_and_gradgradcheck(device, kind):
    g = _grad_like((3, 2, 3, 2), device=device)
    fn = lambda x: gp_penalty(x, kind, 1.7, fused=True)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (g,))
    assert torch.autograd.gradgradcheck(fn, (g,))
    # both outputs of the raw op (norms feed the double backward through the saved output)
    raw = lambda x: torch.ops.gansr.gp_penalty_fwd(x, KIND_CODES[kind], 1.7)  # noqa: E731
    assert torch.autograd.gradcheck(raw, (g,))
    assert torch.autograd.gradgradcheck(raw, (g,))


def test_gradcheck_backward_op_directly():
    g = _grad_like((3, 4))
    n = torch.linalg.vector_norm(g.detach(), dim=1).requires_grad_(True)
    gl = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    gn = torch.randn(3, dtype=torch.float64, requires_grad=True)
    for kind in KIND_CODES.values():
        fn = lambda a, b, c, d: torch.ops.gansr.gp_penalty_bwd(a, b, c, d, kind, 2.0)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (gl, gn, g, n))


def test_zero_gradient_sample_gets_zero_derivative():
    g = _grad_like((2, 3, 2, 2)).detach()
    g[0] = 0
    g.requires_grad_(True)
    for kind in KINDS:
        a = gp_penalty(g, kind, 1.0, fused=True)
        (ga,) = torch.autograd.grad(a, g)
        (gb,) = torch.autograd.grad(gp_penalty_reference(g, kind, 1.0), g)
        assert torch.equal(ga[0], torch.zeros_like(ga[0]))
        torch.testing.assert_close(ga, gb)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("norm_scale", [0.3, 2.0], ids=["below1", "above1"])
def test_nan_in_gives_nan_out(kind, norm_scale):
    """A NaN gradient element makes the penalty NaN and its sample's derivative NaN on the kernel as on
    the reference (a `n > 1 ? ... : 0` branch once turned the one-sided penalty's NaN into 0)."""
    g = torch.randn(3, 2, 3, 2, dtype=torch.float64)
    g = (g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * norm_scale).detach()  # every norm = norm_scale
    g[1, 0, 2, 1] = float("nan")
    g.requires_grad_(True)
    a, b = gp_penalty(g, kind, 2.0, fused=True), gp_penalty_reference(g, kind, 2.0)
    assert torch.isnan(a) and torch.isnan(b)
    (ga,) = torch.autograd.grad(a, g)
    (gb,) = torch.autograd.grad(b, g)
    assert torch.isnan(ga[1, 0, 2, 1]) and torch.isfinite(ga[[0, 2]]).all()
    torch.testing.assert_close(ga, gb, equal_nan=True)


@pytest.mark.parametrize("device,dtype", device_dtype_params(INTERP_TOL))
@pytest.mark.parametrize("channels_last", [False, True])
def test_interpolate_equals_reference(device, dtype, channels_last, fresh_seed, poison):
    tol = INTERP_TOL[device, dtype]
    real, fake = (torch.randn(3, 2, 4, 5, dtype=dtype, device=device, requires_grad=True) for _ in range(2))
    eps = torch.rand(3, dtype=dtype, device=device, requires_grad=True)
    x = gp_interpolate(real, fake, eps, channels_last, fused=True)
    assert x.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    e = eps.detach().view(-1, 1, 1, 1)
    torch.testing.assert_close(x, e * real.detach() + (1 - e) * fake.detach(), rtol=tol, atol=tol)
    if dtype == torch.float64:  # gradcheck's finite differences need fp64
        fn = lambda a, b, c: gp_interpolate(a, b, c, channels_last, fused=True)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (real, fake, eps))
        assert torch.autograd.gradgradcheck(fn, (real, fake, eps))


@pytest.mark.parametrize("device,dtype", device_dtype_params(LOW_TOL))
@pytest.mark.parametrize("channels_last", [False, True])
def test_low_precision_inputs(device, dtype, channels_last, poison):
    tol = LOW_TOL[device, dtype]
    torch.manual_seed(3)
    real, fake = (torch.randn(4, 3, 8, 8, device=device).to(dtype) for _ in range(2))
    eps = torch.rand(4, device=device)
    x = gp_interpolate(real, fake, eps, channels_last, fused=True)
    assert x.dtype == dtype
    torch.testing.assert_close(x, gp_interpolate_reference(real, fake, eps, channels_last),
                               rtol=tol["interp"], atol=tol["interp"])
    g = _grad_like((4, 3, 32, 32), dtype=dtype, device=device)
    for kind in KINDS:
        a = gp_penalty(g, kind, 10.0, fused=True)
        b = gp_penalty_reference(g, kind, 10.0)
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=tol["penalty"], atol=tol["penalty"])
        (ga,) = torch.autograd.grad(a, g)
        (gb,) = torch.autograd.grad(b, g)
        assert ga.dtype == dtype
        torch.testing.assert_close(ga, gb, rtol=tol["grad"], atol=tol["grad"])


@pytest.mark.parametrize("device", DEVICES)
def test_layouts_channels_last_and_strided(device):
    base = _grad_like((2, 3, 4, 5), device=device).detach()
    n_ref = gp_penalty_reference(base, "wgan-gp")
    (d_ref,) = torch.autograd.grad(gp_penalty_reference(base.requires_grad_(True), "wgan-gp"), base)
    for g in (base.detach().contiguous(memory_format=torch.channels_last),
              base.detach().transpose(2, 3).contiguous().transpose(2, 3)):  # strided, neither format
        g.requires_grad_(True)
        a = gp_penalty(g, "wgan-gp", fused=True)
        torch.testing.assert_close(a, n_ref)
        (d,) = torch.autograd.grad(a, g)
        torch.testing.assert_close(d, d_ref)
        if g.is_contiguous(memory_format=torch.channels_last):
            assert d.is_contiguous(memory_format=torch.channels_last)
    cl = base.detach().contiguous(memory_format=torch.channels_last)
    n = torch.linalg.vector_norm(cl.flatten(1), dim=1)
    out = torch.ops.gansr.gp_penalty_bwd(torch.tensor(1.0, dtype=torch.float64, device=device), None, cl, n, 0, 1.0)
    assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    g = _grad_like((3, 2, 4, 5), device=device)
    for kind in KIND_CODES.values():
        torch.library.opcheck(torch.ops.gansr.gp_penalty_fwd.default, (g, kind, 2.5))
    n = torch.linalg.vector_norm(g.detach().flatten(1), dim=1).requires_grad_(True)
    gl = torch.tensor(1.5, dtype=torch.float64, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.gansr.gp_penalty_bwd.default,
                          (gl, torch.randn(3, dtype=torch.float64, device=device, requires_grad=True), g, n, 0, 2.5))
    torch.library.opcheck(torch.ops.gansr.gp_penalty_bwd.default,
                          (gl.detach(), None, g.detach().contiguous(memory_format=torch.channels_last), n.detach(), 1, 2.5))
    r, f, e = (torch.randn(3, 2, 4, 5, device=device, requires_grad=True), torch.randn(3, 2, 4, 5, device=device),
               torch.rand(3, device=device))
    torch.library.opcheck(torch.ops.gansr.gp_interpolate.default, (r, f, e, True))
    torch.library.opcheck(torch.ops.gansr.gp_interpolate.default, (r.detach().bfloat16(), f.bfloat16(), e, False))


def test_bad_inputs_give_clear_errors():
    g = torch.randn(2, 3)
    with pytest.raises(ValueError, match="kind"):
        gp_penalty(g, "hinge", fused=True)
    with pytest.raises(TypeError, match="float32"):
        gp_penalty(torch.ones(2, 3, dtype=torch.int64), fused=True)
    with pytest.raises(ValueError, match="non-empty"):
        gp_penalty(torch.randn(0, 3), fused=True)
    with pytest.raises(ValueError, match="non-empty"):
        gp_penalty(torch.randn(5), fused=True)
    r = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="same shape"):
        gp_interpolate(r, torch.randn(2, 3, 4, 5), torch.rand(2), fused=True)
    with pytest.raises(ValueError, match="eps"):
        gp_interpolate(r, r, torch.rand(3), fused=True)
    with pytest.raises(TypeError, match="dtype"):
        gp_interpolate(r, r.double(), torch.rand(2), fused=True)
    # the raw ops check too (ValueError / TypeError from TORCH_CHECK_VALUE / _TYPE, naming the problem)
    with pytest.raises(ValueError, match="kind must be"):
        torch.ops.gansr.gp_penalty_fwd(g, 5, 1.0)
    with pytest.raises(ValueError, match="same shape"):
        torch.ops.gansr.gp_interpolate(r, torch.randn(2, 3, 4, 5), torch.rand(2), False)
    with pytest.raises(ValueError, match="norms must be"):
        torch.ops.gansr.gp_penalty_bwd(torch.tensor(1.0), None, g, torch.ones(3), 0, 1.0)


@pytest.mark.parametrize("device", DEVICES)
def test_forward_is_deterministic(device):
    g = _grad_like((16, 3, 128, 128), dtype=torch.float32, device=device).detach()
    a = [gp_penalty(g, "wgan-gp", fused=True) for _ in range(3)]
    assert all(torch.equal(a[0], x) for x in a)


# ---- the CUDA kernels, executed on the CPU (tests/cuda_on_cpu) ------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_cuda_kernels_nan_in_gives_nan_out_emulated(kind):
    """gradient_penalty_kernels.cu, unmodified, run by the CPU emulator of tests/test_kernels_on_cpu.py: a NaN gradient
    element gives a NaN penalty and its sample a NaN derivative, as the reference does. Norms below 1,
    where the one-sided branch once turned NaN into 0."""
    from cuda_on_cpu.harness import Buffer, build

    k = build("gradient_penalty")
    g = torch.randn(3, 2, 3, 2) * 0.05
    g[1, 0, 2, 1] = float("nan")
    B, per, code, scale = 3, 12, KIND_CODES[kind], 10.0 / 3
    chunks = k.value("gp_penalty_chunks", per)
    partial, norms, loss = Buffer(shape=(B, chunks), dtype=torch.float32), Buffer(shape=(B,), dtype=torch.float32), \
        Buffer(shape=(1,), dtype=torch.float32)
    k.run("gp_launch_penalty_fwd", 0, g, B, per, code, scale, partial.t, chunks, norms.t, loss.t)
    ref_norms = torch.linalg.vector_norm(g.flatten(1), dim=1)
    torch.testing.assert_close(norms.t, ref_norms, equal_nan=True)  # written: NaN only for sample 1
    assert torch.isnan(loss.t[0])
    out = Buffer(shape=tuple(g.shape), dtype=torch.float32)
    k.run("gp_launch_penalty_bwd", 0, g, norms.t, torch.ones(1), None, B, per, code, scale, out.t)
    x = g.clone().requires_grad_(True)
    (expect,) = torch.autograd.grad(gp_penalty_reference(x, kind, 10.0), x)
    assert out.guards_intact()
    torch.testing.assert_close(out.t, expect, equal_nan=True)
