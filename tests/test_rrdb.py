"""Fused RRDB op (`gansr::rrdb_fwd` / `rrdb_bwd`) against the pure-PyTorch reference.

The CPU op runs the same sliced algorithm as the CUDA op (csrc/rrdb/rrdb_sliced.cpp) with loop twins of
its kernels, so the CPU tests check the CUDA path's glue; `cutlass=True` runs the CUTLASS-shaped path
(fused-conv argument blocks, accumulating dgrad), emulated with ATen on the CPU. Properties that hold on
both devices are one test parametrised by `device`; the cuda ones carry requires_cuda and "cuda" in
their id (gpu_check.sh selects `-k cuda`)."""

import subprocess
import sys

import pytest
import torch
from conftest import requires_cuda

from gansr_ext._ext import require_extension
from gansr_ext.ops import rrdb as R

DEVICES = ["cpu", pytest.param("cuda", marks=requires_cuda)]


@pytest.fixture(autouse=True)
def _loaded_ops():
    require_extension()  # registers torch.ops.gansr.* (tests below also call the ops directly)


def make_params(nf, gc, dtype=torch.float64, device="cpu", scale=0.15):
    """Random parameters of one RRDB in the op's order (weights scaled so activations stay O(1))."""
    params = []
    for _ in range(R.N_BLOCKS):
        for k in range(1, R.N_CONVS + 1):
            cout = nf if k == R.N_CONVS else gc
            params.append((torch.randn(cout, nf + (k - 1) * gc, 3, 3, dtype=dtype, device=device) * scale))
            params.append(torch.randn(cout, dtype=dtype, device=device) * 0.1)
    return [p.requires_grad_() for p in params]


def fwd_bwd(fn, x, params, grad):
    out = fn(x, params)
    grads = torch.autograd.grad(out, [x, *params], grad)
    return out, grads


def assert_parity(x, params, atol, rtol, cutlass="off"):
    grad = torch.randn(x.shape, dtype=x.dtype, device=x.device)
    out_f, g_f = fwd_bwd(lambda a, p: R.rrdb(a, p, fused=True, cutlass=cutlass), x, params, grad)
    out_r, g_r = fwd_bwd(R.rrdb_reference, x, params, grad)
    torch.testing.assert_close(out_f, out_r, atol=atol, rtol=rtol)
    names = ["x"] + [f"rdb{b + 1}.conv{k + 1}.{n}" for b in range(3) for k in range(5) for n in ("weight", "bias")]
    for name, a, b in zip(names, g_f, g_r):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m, name=name: f"grad of {name}: {m}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cutlass", ["off", "all"])
@pytest.mark.parametrize("nf,gc,shape", [(16, 8, (2, 6, 5)), (32, 16, (1, 7, 9)), (8, 4, (3, 1, 4))])
def test_fp64_parity_outputs_and_all_grads(nf, gc, shape, cutlass, device, fresh_seed):
    n, h, w = shape
    x = torch.randn(n, nf, h, w, dtype=torch.float64, device=device, requires_grad=True)
    assert_parity(x, make_params(nf, gc, device=device), atol=1e-11, rtol=1e-10, cutlass=cutlass)


def test_gradcheck_all_inputs():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 3, 2, dtype=torch.float64, requires_grad=True)
    params = make_params(4, 2, scale=0.3)
    fn = lambda x, *p: R.rrdb(x, list(p), fused=True)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, *params), fast_mode=True)


@pytest.fixture
def no_tf32():
    """True fp32 GEMMs on CUDA (cuDNN would use TF32 otherwise); nothing changes on the CPU."""
    prev = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = prev


# device: (nf, gc, (n, h, w), parameter scale, atol) of the fp32 cases (rtol 1e-4)
FP32_CASES = {"cpu": (64, 32, (2, 6, 5), 0.05, 2e-4), "cuda": (32, 16, (2, 9, 7), 0.1, 1e-4)}


def _fp32_case(device, weights=torch.contiguous_format):
    nf, gc, (n, h, w), scale, atol = FP32_CASES[device]
    params = make_params(nf, gc, torch.float32, device=device, scale=scale)
    params = [p.detach().contiguous(memory_format=weights).requires_grad_() if p.dim() == 4 else p for p in params]
    return torch.randn(n, nf, h, w, device=device, requires_grad=True), params, atol


@pytest.mark.parametrize("device", DEVICES)
def test_fp32_parity(device, no_tf32, fresh_seed):
    x, params, atol = _fp32_case(device)
    assert_parity(x, params, atol=atol, rtol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_channels_last_weights_parity(device, no_tf32, fresh_seed):
    # a model moved to channels_last; see also test_channels_last_weights_reach_the_convs_uncopied
    x, params, atol = _fp32_case(device, weights=torch.channels_last)
    assert_parity(x, params, atol=atol, rtol=1e-4)


def test_output_is_channels_last_and_input_layouts_do_not_matter():
    torch.manual_seed(1)
    params = make_params(8, 4)
    base = torch.randn(2, 8, 10, 6, dtype=torch.float64)
    ref = R.rrdb_reference(base, params)
    layouts = {
        "contiguous": base,
        "channels_last": base.contiguous(memory_format=torch.channels_last),
        "strided": torch.randn(2, 8, 10, 12, dtype=torch.float64).index_copy_(3, torch.arange(0, 12, 2), base)[..., ::2],
        "transposed-hw": base.transpose(2, 3).contiguous().transpose(2, 3),
    }
    for name, x in layouts.items():
        assert torch.equal(x, base), name
        out = R.rrdb(x, params, fused=True)
        assert out.is_contiguous(memory_format=torch.channels_last), name
        torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12, msg=name)
    # non-contiguous parameters are fine too
    nc = [p.detach().transpose(-1, -2).contiguous().transpose(-1, -2) if p.dim() == 4 else p.detach() for p in params]
    assert not nc[0].is_contiguous()
    torch.testing.assert_close(R.rrdb(base, nc, fused=True), ref, atol=1e-12, rtol=1e-12)


def test_poisoned_outputs_are_fully_written(poison):
    torch.manual_seed(2)
    x = torch.randn(2, 16, 5, 3, dtype=torch.float64, requires_grad=True)
    params = make_params(16, 8)
    out, b1, b2, b3 = torch.ops.gansr.rrdb_fwd(x.detach(), [p.detach() for p in params])
    for t in (out, b1, b2, b3):
        assert torch.isfinite(t).all()
    gx, gw, gb = torch.ops.gansr.rrdb_bwd(torch.randn_like(out), b1, b2, b3, [p.detach() for p in params])
    assert torch.isfinite(gx).all() and torch.isfinite(gb).all() and all(torch.isfinite(g).all() for g in gw)
    assert_parity(x, params, atol=1e-11, rtol=1e-10)


def test_saved_buffers_hold_block_inputs_and_activations():
    # buffer b = [input of dense block b | x_1 | x_2 | x_3 | x_4], i.e. exactly what the reference concatenates
    torch.manual_seed(3)
    nf, gc = 8, 4
    x = torch.randn(1, nf, 4, 5, dtype=torch.float64)
    params = [p.detach() for p in make_params(nf, gc)]
    _, *bufs = torch.ops.gansr.rrdb_fwd(x, params)
    for buf, ref in zip(bufs, reference_buffers(x, params), strict=True):
        torch.testing.assert_close(buf, ref)


def test_repeated_calls_are_bitwise_identical():
    # CPU sibling of the CUDA-graph test: the op keeps no state between calls
    torch.manual_seed(4)
    x = torch.randn(2, 16, 6, 6, requires_grad=True)
    params = make_params(16, 8, torch.float32)
    g = torch.randn(2, 16, 6, 6)
    o1, g1 = fwd_bwd(lambda a, p: R.rrdb(a, p, fused=True), x, params, g)
    o2, g2 = fwd_bwd(lambda a, p: R.rrdb(a, p, fused=True), x, params, g)
    assert torch.equal(o1, o2) and all(torch.equal(a, b) for a, b in zip(g1, g2))


def test_opcheck():
    torch.manual_seed(5)
    params = [p.detach().requires_grad_() for p in make_params(8, 4, torch.float32)]
    x = torch.randn(2, 8, 5, 4, requires_grad=True)
    torch.library.opcheck(torch.ops.gansr.rrdb_fwd.default, (x, params))
    torch.library.opcheck(torch.ops.gansr.rrdb_fwd.default, (x.detach(), [p.detach() for p in params]))
    torch.library.opcheck(torch.ops.gansr.rrdb_fwd.default, (x, params, True), {"cutlass_bwd": True})
    # fp32 master parameters (only saved for backward): their gradients, none for the bf16 copies
    low = [p.detach().bfloat16() for p in params]
    torch.library.opcheck(torch.ops.gansr.rrdb_fwd.default, (x.detach().bfloat16().requires_grad_(), low, True, params),
                          {"cutlass_bwd": True})
    _, *bufs = torch.ops.gansr.rrdb_fwd(x.detach(), [p.detach() for p in params])
    torch.library.opcheck(torch.ops.gansr.rrdb_bwd.default,
                          (torch.randn(2, 8, 5, 4), *bufs, [p.detach() for p in params]))
    torch.library.opcheck(torch.ops.gansr.rrdb_bwd.default,
                          (torch.randn(2, 8, 5, 4), *bufs, [p.detach() for p in params], False))
    torch.library.opcheck(torch.ops.gansr.rrdb_bwd.default,
                          (torch.randn(2, 8, 5, 4), *bufs, [p.detach() for p in params], True, True))
    _, *bufs16 = torch.ops.gansr.rrdb_fwd(x.detach().bfloat16(), low)
    for cutlass in (False, True):
        torch.library.opcheck(torch.ops.gansr.rrdb_bwd.default,
                              (torch.randn(2, 8, 5, 4).bfloat16(), *bufs16, low, True, cutlass, True))
    # channels_last weights (a model moved to channels_last) get channels_last weight gradients
    cl = [p.detach().contiguous(memory_format=torch.channels_last) if p.dim() == 4 else p.detach() for p in params]
    torch.library.opcheck(torch.ops.gansr.rrdb_bwd.default, (torch.randn(2, 8, 5, 4), *bufs, cl))
    _, grad_w, _ = torch.ops.gansr.rrdb_bwd(torch.randn(2, 8, 5, 4), *bufs, cl)
    assert all(g.is_contiguous(memory_format=torch.channels_last) and not g.is_contiguous() for g in grad_w)


def low_precision_errors(x64, params64, dtype, fused):
    """Max errors (output, worst relative param/input grad) of a `dtype` run against the fp64 reference.
    Parameters stay fp32 (cast inside the op, like autocast)."""
    ref = R.rrdb_reference(x64, params64)
    ref_grads = torch.autograd.grad(ref.square().sum(), [x64, *params64])
    params = [p.detach().float().requires_grad_() for p in params64]
    x = x64.detach().to(dtype).requires_grad_()
    out = R.rrdb(x, params, fused=fused)
    assert out.dtype == dtype
    grads = torch.autograd.grad(out.double().square().sum(), [x, *params])
    assert grads[0].dtype == dtype and all(g.dtype == torch.float32 for g in grads[1:])
    out_err = (out.double() - ref).abs().max().item() / ref.abs().max().item()
    grad_err = max(((a.double() - b).abs().max() / b.abs().max()).item() for a, b in zip(grads, ref_grads))
    return out_err, grad_err


def assert_low_precision_like_eager(x64, params64, dtype):
    """The fused op in bf16/fp16 is as accurate as eager PyTorch in the same dtype (both vs fp64)."""
    fused = low_precision_errors(x64, params64, dtype, fused=True)
    eager = low_precision_errors(x64, params64, dtype, fused=False)
    assert fused[0] <= 1.5 * eager[0] + 1e-3, (fused, eager)
    assert fused[1] <= 1.5 * eager[1] + 1e-3, (fused, eager)
    assert fused[0] < 0.05 and fused[1] < 0.5, fused  # and both are sane (bf16 grads of small params are coarse)


# device: (nf, gc, (n, h, w), parameter scale, seed)
LOW_PRECISION_CASES = {"cpu": (16, 8, (2, 6, 5), 0.1, 6), "cuda": (64, 32, (3, 11, 13), 0.05, 8)}


@pytest.mark.parametrize("device,dtype", [("cpu", torch.bfloat16),
                                          pytest.param("cuda", torch.bfloat16, marks=requires_cuda),
                                          pytest.param("cuda", torch.float16, marks=requires_cuda)])
def test_low_precision_as_accurate_as_eager(device, dtype):
    nf, gc, (n, h, w), scale, seed = LOW_PRECISION_CASES[device]
    torch.manual_seed(seed)
    x = torch.randn(n, nf, h, w, dtype=torch.float64, device=device, requires_grad=True)
    assert_low_precision_like_eager(x, make_params(nf, gc, device=device, scale=scale), dtype)


def test_bad_inputs_raise_clear_errors():
    params = [p.detach() for p in make_params(8, 4, torch.float32)]
    x = torch.randn(1, 8, 4, 4)
    with pytest.raises(ValueError, match="30 weights"):
        R.rrdb(x, params[:-1], fused=True)
    with pytest.raises(ValueError, match="4-D"):
        R.rrdb(x[0], params, fused=True)
    with pytest.raises(TypeError, match="float32"):
        R.rrdb(x.long(), params, fused=True)
    with pytest.raises(ValueError, match="empty"):
        R.rrdb(x[:0], params, fused=True)
    with pytest.raises(ValueError, match=r"rdb1\.conv1\.weight must be \(4, 8, 3, 3\)"):
        R.rrdb(torch.randn(1, 8, 4, 4), [params[0][:, :7]] + params[1:], fused=True)
    with pytest.raises(ValueError, match=r"rdb2\.conv5\.bias"):
        bad = list(params)
        bad[19] = torch.zeros(5)
        R.rrdb(x, bad, fused=True)
    with pytest.raises(TypeError, match="params\\[3\\]"):
        R.rrdb(x, params[:3] + ["w"] + params[4:], fused=True)
    # the C++ op checks on its own (ValueError / TypeError from TORCH_CHECK_VALUE / _TYPE)
    with pytest.raises(ValueError, match="rrdb_fwd.*30"):
        torch.ops.gansr.rrdb_fwd(x, params[:10])
    with pytest.raises(TypeError, match="rrdb_fwd.*dtype"):
        torch.ops.gansr.rrdb_fwd(x.double(), params)
    with pytest.raises(ValueError, match="rrdb_bwd.*buffers"):
        torch.ops.gansr.rrdb_bwd(x, x, x, x, params)


def _run_ops(fwd, bwd, x, params, g):
    out = fwd(x, params)
    gx, gw, gb = bwd(g, *out[1:], params)
    return [*out, gx, *gw, gb]


def _cpu_ops(cutlass):
    """(fwd, bwd) of the CPU op with the ATen convs (False) or the CUTLASS-shaped path (True)."""
    return (lambda x, p: torch.ops.gansr.rrdb_fwd(x, p, cutlass),
            lambda *a: torch.ops.gansr.rrdb_bwd(*a, cutlass=cutlass))


def reference_buffers(x, params):
    """The three saved buffers of the op, from the reference: [block input | x_1 | x_2 | x_3 | x_4]."""
    bufs, h = [], x
    for b in range(R.N_BLOCKS):
        p = params[2 * R.N_CONVS * b:2 * R.N_CONVS * (b + 1)]
        feats = [h]
        for k in range(1, R.N_CONVS):
            feats.append(torch.nn.functional.leaky_relu(
                torch.nn.functional.conv2d(torch.cat(feats, 1), R.weight(p, 0, k), R.bias(p, 0, k), padding=1), 0.2))
        bufs.append(torch.cat(feats, 1))
        h = R.dense_block_reference(h, p)
    return bufs


def _reference_ops(x, params, g):
    """What _run_ops returns, from the pure-PyTorch reference and autograd."""
    xr, pr = x.detach().requires_grad_(), [p.detach().requires_grad_() for p in params]
    out = R.rrdb_reference(xr, pr)
    gx, *gp = torch.autograd.grad(out, [xr, *pr], g)
    gb = torch.cat([R.bias(gp, b, k) for b in range(R.N_BLOCKS) for k in range(1, R.N_CONVS + 1)])
    return [out.detach(), *reference_buffers(x, params), gx, *gp[0::2], gb]


@pytest.mark.parametrize("cutlass", [False, True], ids=["aten-convs", "cutlass-shaped"])
@pytest.mark.parametrize("nf,gc,shape", [(16, 8, (2, 5, 3)), (3, 1, (2, 1, 4))])
def test_cpu_op_with_either_conv_path_equals_the_reference(nf, gc, shape, cutlass, poison):
    """The CUDA path's algorithm (rrdb_sliced.cpp: convs on prefix views, gathers instead of in-place
    adds) with C++ loop twins of its kernels. cutlass: convs 1..4 through the argument block of the
    CUTLASS conv (raw pointers, pixel strides, KRSC weights), and the backward through the CUTLASS
    dgrad (accumulating into one gradient buffer) and wgrad argument blocks, emulated with ATen. Every
    output (out, buffers, grad x, weight and bias gradients) equals the reference, with the same
    layouts either way."""
    torch.manual_seed(9)
    n, h, w = shape
    params = [p.detach() for p in make_params(nf, gc, scale=0.1)]
    x = torch.randn(n, nf, h, w, dtype=torch.float64)
    g = torch.randn(n, nf, h, w, dtype=torch.float64)
    got = _run_ops(*_cpu_ops(cutlass), x, params, g)
    other = _run_ops(*_cpu_ops(not cutlass), x, params, g)
    for i, (a, b, r) in enumerate(zip(got, other, _reference_ops(x, params, g), strict=True)):
        assert a.stride() == b.stride(), i
        torch.testing.assert_close(a, r, atol=1e-12, rtol=1e-12, msg=lambda m, i=i: f"output {i}: {m}")


def test_cutlass_shaped_path_in_bf16_is_as_accurate_as_the_aten_convs():
    torch.manual_seed(10)
    nf, gc = 32, 16
    params = [p.detach() for p in make_params(nf, gc, scale=0.1)]
    x, g = torch.randn(2, 2, nf, 4, 5, dtype=torch.float64)
    ref = _run_ops(torch.ops.gansr.rrdb_fwd, torch.ops.gansr.rrdb_bwd, x, params, g)

    def errors(cutlass):
        low = _run_ops(*_cpu_ops(cutlass), x.bfloat16(), [p.bfloat16() for p in params], g.bfloat16())
        assert all(t.dtype == torch.bfloat16 for t in low)
        return [((a.double() - b).abs().max() / b.abs().max()).item() for a, b in zip(low, ref)]

    aten, shaped = errors(False), errors(True)
    # both round to bf16 at different points (exactness is the fp64 test's job); the weight gradients of
    # this tiny image (40 pixels) are cancellation-heavy sums, so compare the error class on average
    for errs in (aten, shaped):
        assert max(errs[:4]) < 0.02, errs[:4]  # forward: output and buffers
    assert sum(shaped) / len(shaped) <= 1.5 * sum(aten) / len(aten) + 0.02, (shaped, aten)


def _profile(fn):
    """fn()'s result and its profiler events (CPU, with input shapes)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        out = fn()
    return out, prof.events()


def _copies(events):
    """The aten::copy_ calls of `events` as {(what, made_by): count}: what is 'weight' for (O, I, 3, 3)
    tensors and 'activation' for other 4-D ones; made_by 'conv' when inside an ATen convolution op
    (forward or backward), else 'glue' (the op's own code)."""
    counts = {}
    for e in events:
        if e.name != "aten::copy_" or not e.input_shapes or len(e.input_shapes[0]) != 4:
            continue
        what = "weight" if e.input_shapes[0][2:] == [3, 3] else "activation"
        made_by = "conv" if _inside_op(e, "aten::convolution") else "glue"
        counts[what, made_by] = counts.get((what, made_by), 0) + 1
    return counts


def _inside_op(event, prefix="gansr::"):
    p = event.cpu_parent
    while p is not None:
        if p.name.startswith(prefix):
            return True
        p = p.cpu_parent
    return False


def _cpu_case(nf=16, gc=8, shape=(2, 5, 6), weights=torch.channels_last, dtype=torch.float64):
    torch.manual_seed(13)
    n, h, w = shape  # h, w != 3: activations and weights are told apart by shape
    params = [p.detach().to(dtype) for p in make_params(nf, gc, scale=0.1)]
    params = [p.contiguous(memory_format=weights) if p.dim() == 4 else p for p in params]
    x = torch.randn(n, nf, h, w, dtype=dtype)
    g = torch.randn(n, nf, h, w, dtype=dtype).contiguous(memory_format=torch.channels_last)  # as autograd passes it
    return x, params, g


def test_channels_last_weights_reach_the_convs_uncopied():
    """A channels_last model's weights reach the convolutions as they are: no weight copy anywhere
    in the CUDA path's glue, forward or backward (it used to copy each one to OIHW, and ATen back);
    the results equal those of contiguous weights. (cutlass=True: the CPU's ATen emulation of the
    KRSC argument blocks copies, the CUTLASS kernels read them in place.)"""
    fwd_op, bwd_op = _cpu_ops(False)
    x, params, g = _cpu_case(weights=torch.channels_last)
    (out, *bufs), fwd = _profile(lambda: fwd_op(x, params))
    (_, grad_w, _), bwd = _profile(lambda: bwd_op(g, *bufs, params))
    for name, events in (("forward", fwd), ("backward", bwd)):
        weight_copies = {k: v for k, v in _copies(events).items() if k[0] == "weight"}
        assert weight_copies == {}, (name, weight_copies)
    assert all(gw.is_contiguous(memory_format=torch.channels_last) and not gw.is_contiguous() for gw in grad_w)
    cl = _run_ops(fwd_op, bwd_op, x, params, g)
    contiguous = _run_ops(fwd_op, bwd_op, x, [p.contiguous() for p in params], g)
    for a, b in zip(cl, contiguous, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_activation_copies_per_rrdb():
    """Baseline the performance work drives to zero: ATen's convolution makes every strided
    channel-prefix view contiguous before the GEMM (`input.contiguous()` in `_convolution` /
    `convolution_backward`), one copy per conv 1..4 of each dense block: 12 per RRDB forward and 12
    backward (conv5 reads its whole buffer: no copy). Counted on the CPU path of the same glue (ATen
    CPU makes the same copies). Only the CUTLASS forward (GPU, opt-in) reads prefixes through their
    pixel stride; avoiding the backward copies needs strided cuDNN descriptors, i.e. direct cuDNN
    calls instead of ATen's."""
    x, params, g = _cpu_case(weights=torch.channels_last)
    (out, *bufs), fwd = _profile(lambda: torch.ops.gansr.rrdb_fwd(x, params))
    _, bwd = _profile(lambda: torch.ops.gansr.rrdb_bwd(g, *bufs, params))
    assert _copies(fwd).get(("activation", "conv"), 0) == 12, _copies(fwd)
    assert _copies(bwd).get(("activation", "conv"), 0) == 12, _copies(bwd)
    # the glue's own copies: x into the first buffer, nothing in backward
    assert _copies(fwd).get(("activation", "glue"), 0) == 1 and _copies(bwd).get(("activation", "glue"), 0) == 0


def _op_calls(fn, op):
    """fn()'s result and the (args, kwargs) of every call of `op` it made (backward included)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    calls = []

    class Log(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is op:
                calls.append((args, kwargs or {}))
            return func(*args, **(kwargs or {}))

    with Log():
        out = fn()
    return out, calls


def _named_args(op, call):
    """A logged call of `op` as {argument name: value}, defaults filled in (the log omits them)."""
    args, kwargs = call
    named = {a.name: a.default_value for a in op._schema.arguments if a.has_default_value()}
    named.update(zip([a.name for a in op._schema.arguments], args))
    return {**named, **kwargs}


@pytest.mark.parametrize("cutlass", [False, True], ids=["aten-convs", "cutlass-shaped"])
def test_bwd_without_param_grads_computes_only_grad_x(cutlass, poison):
    x, params, g = _cpu_case(weights=torch.contiguous_format)
    fwd, bwd = _cpu_ops(cutlass)
    _, *bufs = fwd(x, params)
    gx_all, _, _ = bwd(g, *bufs, params)
    gx, gw, gb = bwd(g, *bufs, params, False)
    assert gw == [] and gb.numel() == 0
    torch.testing.assert_close(gx, gx_all, atol=0, rtol=0)


def test_frozen_params_skip_the_parameter_gradients():
    """The autograd formula honours needs_input_grad: a frozen RRDB (only the input needs a gradient)
    asks the op for no weight / bias gradients, and grad x is unchanged."""
    torch.manual_seed(14)
    params = [p.detach() for p in make_params(8, 4)]
    x = torch.randn(2, 8, 4, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 8, 4, 5, dtype=torch.float64)
    (gx,), calls = _op_calls(lambda: torch.autograd.grad(R.rrdb(x, params, fused=True), x, g),
                             torch.ops.gansr.rrdb_bwd.default)
    assert len(calls) == 1 and _named_args(torch.ops.gansr.rrdb_bwd.default, calls[0])["need_param_grads"] is False
    (gx_ref,) = torch.autograd.grad(R.rrdb_reference(x, params), x, g)
    torch.testing.assert_close(gx, gx_ref, atol=1e-12, rtol=1e-12)
    # and with trainable parameters they are computed
    trainable = [p.clone().requires_grad_() for p in params]
    _, calls = _op_calls(lambda: torch.autograd.grad(R.rrdb(x, trainable, fused=True), [x, *trainable], g),
                         torch.ops.gansr.rrdb_bwd.default)
    assert _named_args(torch.ops.gansr.rrdb_bwd.default, calls[0])["need_param_grads"] is True


def test_double_backward_is_a_clear_error():
    torch.manual_seed(15)
    params = make_params(4, 2)
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"double backward.*fused=False"):
        (gx,) = torch.autograd.grad(R.rrdb(x, params, fused=True).square().sum(), x, create_graph=True)
        torch.autograd.grad(gx.sum(), params)
    # first-order gradients without create_graph are unaffected
    torch.autograd.grad(R.rrdb(x, params, fused=True).sum(), x)


@pytest.fixture
def deterministic():
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(prev, warn_only=prev_warn)


def _bias_reductions(events):
    return sum(e.name == "aten::sum" for e in events)


def test_bias_grads_without_atomics_when_deterministic(deterministic, poison):
    """torch.use_deterministic_algorithms(True): each gather writes one partial row per CUDA block
    (gather_grid_x(M) rows; here M = 60 pixels: 8 rows, the last one partly filled) and the glue sums
    the rows (ATen, fixed order): 15 row sums per backward, one per bias gradient; the result equals
    the reference's. Without it, atomics (CPU: chunk sums inside the gather) and no sums (checked below)."""
    x, params, g = _cpu_case(weights=torch.contiguous_format)
    out, *bufs = torch.ops.gansr.rrdb_fwd(x, params)
    (gx, gw, gb), events = _profile(lambda: torch.ops.gansr.rrdb_bwd(g, *bufs, params))
    assert _bias_reductions(events) == 15
    gb_ref = _reference_ops(x, params, g)[-1]
    torch.testing.assert_close(gb, gb_ref, atol=1e-12, rtol=1e-12)
    torch.use_deterministic_algorithms(False)
    (_, _, gb_atomic), events = _profile(lambda: torch.ops.gansr.rrdb_bwd(g, *bufs, params))
    assert _bias_reductions(events) == 0
    torch.testing.assert_close(gb_atomic, gb_ref, atol=1e-12, rtol=1e-12)


def test_trunk_casts_all_parameters_at_once_under_autocast():
    """Under autocast the fp32 parameters are cast to bf16 once per trunk forward (one cat + one cast,
    one cast back in backward), not 30 casts per RRDB and pass: the count does not grow with nb."""
    from gansr_ext.models.rrdbnet import RRDB

    def param_casts(nb):
        torch.manual_seed(16)
        body = torch.nn.Sequential(*(RRDB(8, 4) for _ in range(nb))).to(memory_format=torch.channels_last)
        feat = torch.randn(1, 8, 4, 5, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, events = _profile(lambda: R.rrdb_trunk(feat.bfloat16(), body).float().sum().backward())
        assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in body.parameters())
        # casts made by the wrapper (not by ATen inside the ops), other than of the (1, 8, 4, 5) activation
        return sum(e.name == "aten::_to_copy" and e.input_shapes[0] != [1, 8, 4, 5] and not _inside_op(e)
                   for e in events)

    # before: 30 per RRDB forward + 30 backward (60, 180)
    assert (param_casts(1), param_casts(3)) == (2, 2)


def test_cast_params_keeps_values_layouts_and_grad_dtypes():
    torch.manual_seed(17)
    params = [p.detach().float() for p in make_params(8, 4)]
    params = [(p.contiguous(memory_format=torch.channels_last) if i % 4 == 0 else p).requires_grad_()
              for i, p in enumerate(params)]
    (cast,) = R._cast_params([params], torch.bfloat16)
    for p, c in zip(params, cast):
        assert c.dtype == torch.bfloat16 and c.stride() == p.stride()
        assert torch.equal(c, p.to(torch.bfloat16))
    weights = [torch.randn(p.shape) for p in params]
    grads = torch.autograd.grad(sum((c.float() * w).sum() for c, w in zip(cast, weights)), params)
    for p, gr, w in zip(params, grads, weights):
        assert gr.dtype == torch.float32
        torch.testing.assert_close(gr, w.bfloat16().float(), atol=0, rtol=0)


# ---------------------------------------------------------------- CUDA only (each with a CPU sibling above)

def _cuda_case(dtype, nf=32, gc=16, shape=(2, 9, 7)):
    torch.manual_seed(7)
    n, h, w = shape
    params = make_params(nf, gc, torch.float32, device="cuda", scale=0.1)
    x = torch.randn(n, nf, h, w, device="cuda")
    return x, params


@requires_cuda
def test_cuda_graph_capture_replays_eager_result():
    x, params = _cuda_case(torch.bfloat16, nf=32, gc=16, shape=(2, 8, 8))
    x = x.bfloat16()
    params = [p.detach().bfloat16() for p in params]
    g = torch.randn(2, 32, 8, 8, device="cuda", dtype=torch.bfloat16)

    def step():
        out, *bufs = torch.ops.gansr.rrdb_fwd(x, params)
        gx, gw, gb = torch.ops.gansr.rrdb_bwd(g, *bufs, params)
        return [out, gx, *gw, gb]

    eager = step()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static = step()
    graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(static, eager):
        # bias gradients use float atomics: equal up to summation order
        torch.testing.assert_close(a.float(), b.float(), atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(static[0], eager[0], atol=0, rtol=0)


def _cutlass_launches(fn):
    """fn()'s result and how many CUTLASS implicit-GEMM conv kernels (rrdb_cutlass.cu) it launched."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        out = fn()
        torch.cuda.synchronize()
    ours = ("cutlass::conv::kernel::ImplicitGemmConvolution", "N7cutlass6KernelINS_4conv6kernel23ImplicitGemm",
            "N7cutlassL6KernelINS_4conv6kernel23ImplicitGemm")  # demangled (as the profiler names them), mangled
    return out, sum(any(k in e.name for k in ours) for e in prof.events())


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_cutlass_convs_match_the_cudnn_path(dtype):
    # CPU siblings: test_cpu_op_with_either_conv_path_equals_the_reference[cutlass-shaped], test_rrdb_cutlass.py
    torch.manual_seed(12)
    params = [p.detach().to(dtype) for p in make_params(64, 32, torch.float32, device="cuda", scale=0.05)]
    x = torch.randn(2, 64, 9, 7, device="cuda").to(dtype)
    cudnn, n_off = _cutlass_launches(lambda: torch.ops.gansr.rrdb_fwd(x, params))
    R.cutlass_fallbacks(reset=True)
    cutlass, n_on = _cutlass_launches(lambda: torch.ops.gansr.rrdb_fwd(x, params, True))
    # without this the test would compare cuDNN with cuDNN whenever the CUTLASS path falls back
    assert n_on - n_off >= 12, (f"rrdb_fwd(cutlass=True) ran {n_on - n_off} CUTLASS convs, expected 4 per dense block: "
                                f"built without nvidia-cutlass (build_info) or can_implement refused the problem "
                                f"({R.cutlass_fallbacks()} fallbacks counted)")
    assert R.cutlass_fallbacks() == 0
    for i, (a, b) in enumerate(zip(cutlass, cudnn)):
        scale = b.float().abs().max().item()
        torch.testing.assert_close(a.float(), b.float(), atol=0.02 * scale, rtol=0, msg=lambda m, i=i: f"output {i}: {m}")


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_cutlass_backward_matches_the_cudnn_path(dtype):
    # CPU siblings: test_rrdb_cutlass.py::test_cutlass_backward_through_the_sliced_algorithm_in_fp64,
    # test_cpu_op_with_either_conv_path_equals_the_reference[cutlass-shaped]
    torch.manual_seed(15)
    params = [p.detach().to(dtype) for p in make_params(64, 32, torch.float32, device="cuda", scale=0.05)]
    params = [p.contiguous(memory_format=torch.channels_last) if p.dim() == 4 else p for p in params]
    x = torch.randn(2, 64, 9, 7, device="cuda").to(dtype)
    out, *bufs = torch.ops.gansr.rrdb_fwd(x, params)
    g = torch.randn_like(out)
    cudnn, n_off = _cutlass_launches(lambda: torch.ops.gansr.rrdb_bwd(g, *bufs, params))
    R.cutlass_fallbacks(reset=True)
    cutlass, n_on = _cutlass_launches(lambda: torch.ops.gansr.rrdb_bwd(g, *bufs, params, cutlass=True))
    assert (n_on - n_off, R.cutlass_fallbacks()) == (30, 0), "15 dgrad + 15 wgrad per RRDB, none declined"
    (gx_c, gw_c, gb_c), (gx_d, gw_d, gb_d) = cutlass, cudnn
    for name, a, b in [("grad_x", gx_c, gx_d), ("grad_biases", gb_c, gb_d)] + [
            (f"grad_w{i}", a, b) for i, (a, b) in enumerate(zip(gw_c, gw_d))]:
        scale = b.float().abs().max().item()
        torch.testing.assert_close(a.float(), b.float(), atol=0.03 * scale, rtol=0, msg=lambda m, n=name: f"{n}: {m}")
        assert a.stride() == b.stride(), name


@requires_cuda
def test_cuda_cutlass_declined_convs_fall_back_and_are_counted():
    # CPU sibling: test_rrdb_cutlass.py::test_declined_problems_fall_back_to_the_aten_conv_and_are_counted
    torch.manual_seed(14)
    params = [p.detach().half() for p in make_params(12, 4, torch.float32, device="cuda", scale=0.1)]
    x = torch.randn(2, 12, 5, 4, device="cuda").half()  # 12 / 4 channels: not multiples of 8
    cudnn = torch.ops.gansr.rrdb_fwd(x, params)
    R.cutlass_fallbacks(reset=True)
    declined, n_on = _cutlass_launches(lambda: torch.ops.gansr.rrdb_fwd(x, params, True))
    assert (n_on, R.cutlass_fallbacks()) == (0, 12)
    for a, b in zip(declined, cudnn):
        torch.testing.assert_close(a, b)  # the same cuDNN path


@requires_cuda
def test_cuda_deterministic_bias_grads_are_bitwise_repeatable(deterministic):
    # CPU sibling: test_bias_grads_without_atomics_when_deterministic
    x, params = _cuda_case(torch.float32, shape=(2, 64, 72))  # 9216 pixels: the gather grid is clamped (1024)
    params = [p.detach() for p in params]
    out, *bufs = torch.ops.gansr.rrdb_fwd(x, params)
    g = torch.randn_like(out)
    runs = [torch.ops.gansr.rrdb_bwd(g, *bufs, params)[2] for _ in range(3)]
    assert all(torch.equal(r, runs[0]) for r in runs[1:])
    torch.use_deterministic_algorithms(False)
    torch.testing.assert_close(torch.ops.gansr.rrdb_bwd(g, *bufs, params)[2], runs[0], atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- the `cutlass` option and registration

@pytest.mark.parametrize("cutlass,flags", [("off", (False, False)), ("fwd", (True, False)), ("bwd", (False, True)),
                                           ("all", (True, True)), (False, (False, False)), (True, (True, True))])
def test_cutlass_option_reaches_both_ops(cutlass, flags):
    """`rrdb(..., cutlass=)` passes the forward flag to rrdb_fwd and, through the autograd ctx, the
    backward flag to rrdb_bwd; every mode equals the reference."""
    torch.manual_seed(18)
    x = torch.randn(2, 8, 4, 5, dtype=torch.float64, requires_grad=True)
    params = make_params(8, 4)
    g = torch.randn(2, 8, 4, 5, dtype=torch.float64)
    log = {}
    (out, grads), log["fwd"] = _op_calls(lambda: fwd_bwd(lambda a, p: R.rrdb(a, p, fused=True, cutlass=cutlass),
                                                         x, params, g), torch.ops.gansr.rrdb_fwd.default)
    _, log["bwd"] = _op_calls(lambda: fwd_bwd(lambda a, p: R.rrdb(a, p, fused=True, cutlass=cutlass), x, params, g),
                              torch.ops.gansr.rrdb_bwd.default)
    fwd, bwd = torch.ops.gansr.rrdb_fwd.default, torch.ops.gansr.rrdb_bwd.default
    assert len(log["fwd"]) == 1 and len(log["bwd"]) == 1
    assert (_named_args(fwd, log["fwd"][0])["cutlass"], _named_args(fwd, log["fwd"][0])["cutlass_bwd"]) == flags
    assert _named_args(bwd, log["bwd"][0])["cutlass"] is flags[1]
    out_r, grads_r = fwd_bwd(R.rrdb_reference, x, params, g)
    for a, b in zip([out, *grads], [out_r, *grads_r], strict=True):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-10)


def test_bad_cutlass_option_is_a_clear_error():
    params = [p.detach() for p in make_params(8, 4, torch.float32)]
    with pytest.raises(ValueError, match="cutlass must be one of"):
        R.rrdb(torch.randn(1, 8, 4, 4), params, fused=True, cutlass="on")


def test_fake_and_autograd_kernels_registered_at_import():
    # a fresh interpreter that only imports the package: the raw op is differentiable and traceable
    code = """
import torch, gansr_ext.ops
from torch._subclasses.fake_tensor import FakeTensorMode
from gansr_ext.ops.rrdb import N_BLOCKS, N_CONVS
params = []
for _ in range(N_BLOCKS):
    for k in range(1, N_CONVS + 1):
        cout = 4 if k == N_CONVS else 2
        params += [(torch.randn(cout, 4 + (k - 1) * 2, 3, 3) * 0.1).requires_grad_(), torch.zeros(cout, requires_grad=True)]
x = torch.randn(1, 4, 3, 5, requires_grad=True)
torch.ops.gansr.rrdb_fwd(x, params)[0].sum().backward()
assert x.grad is not None and all(p.grad is not None for p in params)
with FakeTensorMode():
    out, *bufs = torch.ops.gansr.rrdb_fwd(torch.empty(1, 4, 3, 5), [torch.empty(p.shape) for p in params])
    assert out.shape == (1, 4, 3, 5) and all(b.shape == (1, 12, 3, 5) for b in bufs)
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
