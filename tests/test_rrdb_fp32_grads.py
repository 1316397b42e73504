"""fp32 master parameters through the fused RRDB with bf16/fp16 activations and the CUTLASS backward
(issue 14: wgrad straight into the fp32 gradient): the op gets the fp32 masters (`rrdb_fwd(...,
master)`) and returns their gradients in fp32 itself (`rrdb_bwd(fp32_param_grads=True)`: the wgrad's
fp32 accumulation written as is, the fp32 bias accumulator returned as is), instead of bf16 gradients
cast back by autograd. On the CPU the CUTLASS argument blocks are emulated with ATen (csrc/rrdb/
rrdb_cpu.cpp: dw_fp32 sums the upcast operands in fp32)."""

import pytest
import torch
from test_rrdb import make_params
from torch.profiler import ProfilerActivity, profile

from gansr_ext._ext import require_extension
from gansr_ext.models.rrdbnet import RRDB
from gansr_ext.ops import rrdb as R

NF, GC, SHAPE = 16, 8, (2, 5, 6)  # H, W != 3: activations never look like 3x3 weights below
# bf16 tolerance of a parameter gradient, as ||grad - fp64 grad|| / ||fp64 grad||: the activations
# and activation gradients are bf16 (eps 2^-8) through 15 convs and the small bias gradients of the
# deep convs suffer most; measured 0.05-0.18 over seeds 0-5, the same with the previous bf16 gradients
BF16_GRAD_TOL = 0.25


@pytest.fixture(autouse=True)
def _loaded_ops():
    require_extension()


def _case(seed=0):
    torch.manual_seed(seed)
    p64 = make_params(NF, GC, scale=0.1)
    x64 = torch.randn(SHAPE[0], NF, *SHAPE[1:], dtype=torch.float64, requires_grad=True)
    g64 = torch.randn(x64.shape, dtype=torch.float64)
    return x64, p64, g64


def _grads(x, params, g, master: bool):
    """(out, grads of x and params) of one RRDB with cutlass='all': `master`: the new path (R.rrdb
    with fp32 params), else the previous one (a differentiable cast, bf16 gradients cast back)."""
    if master:
        out = R.rrdb(x, params, fused=True, cutlass="all")
    else:
        out = R._rrdb_op(x, R._cast_params([params], x.dtype)[0], (True, True))
    return out, torch.autograd.grad(out, [x, *params], g.to(x.dtype))


def _rel_err(a, ref):
    return ((a.double() - ref).norm() / ref.norm()).item()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_master_param_grads_are_fp32_and_not_rounded_to_the_activation_dtype(dtype):
    x64, p64, g64 = _case()
    params = [p.detach().float().requires_grad_() for p in p64]
    _, grads = _grads(x64.detach().to(dtype).requires_grad_(), params, g64, master=True)
    assert all(g.dtype == torch.float32 for g in grads[1:])
    # the previous path rounded every weight and bias gradient to `dtype` (all representable); fp32
    # accumulation written as is keeps bits below dtype's mantissa in almost every element
    for g in grads[1:]:
        exact = (g.to(dtype).float() == g).float().mean().item()
        assert exact < 0.1, f"{exact:.0%} of a gradient is exactly {dtype}-representable"


def test_master_grads_match_fp64_better_and_x_grad_is_unchanged():
    x64, p64, g64 = _case(1)
    ref = torch.autograd.grad(R.rrdb_reference(x64, p64), [x64, *p64], g64)
    params = [p.detach().float().requires_grad_() for p in p64]
    x = x64.detach().bfloat16().requires_grad_()
    out_new, new = _grads(x, params, g64, master=True)
    out_old, old = _grads(x, params, g64, master=False)
    assert torch.equal(out_new, out_old) and torch.equal(new[0], old[0])  # forward and x grad untouched
    err_new = [_rel_err(a, b) for a, b in zip(new[1:], ref[1:])]
    err_old = [_rel_err(a, b) for a, b in zip(old[1:], ref[1:])]
    assert max(err_new) < BF16_GRAD_TOL
    # the gradients themselves are no longer rounded to bf16: closer overall (strictly, in every seed
    # tried; per parameter the bf16 forward's error dominates, so some come out a hair farther)
    assert sum(err_new) < sum(err_old)


def _in_emulated_kernel(e) -> bool:
    """Whether e runs inside a CPU emulation of a fused conv ("rrdb::cutlass_*" scope: one CUDA
    kernel on the GPU, whatever ATen does inside, e.g. oneDNN's weight conversions)."""
    while e is not None:
        if e.name.startswith("rrdb::cutlass"):
            return True
        e = e.cpu_parent
    return False


def _param_casts(prof) -> int:
    """aten::_to_copy (dtype casts) of parameter-shaped tensors: 1-D (biases, the flat parameter
    cat) or (O, I, 3, 3) weights; activations are 4-D with H, W != 3."""
    n = 0
    for e in prof.events():
        if e.name == "aten::_to_copy" and e.input_shapes and e.input_shapes[0] and not _in_emulated_kernel(e):
            shape = e.input_shapes[0]
            n += len(shape) == 1 or (len(shape) == 4 and shape[2:] == [3, 3])
    return n


def test_backward_casts_no_parameter_gradient():
    x64, p64, g64 = _case(2)
    params = [p.detach().float().requires_grad_() for p in p64]
    x = x64.detach().bfloat16().requires_grad_()
    casts = {}
    for master in (True, False):
        out = R.rrdb(x, params, fused=True, cutlass="all") if master else R._rrdb_op(
            x, R._cast_params([params], x.dtype)[0], (True, True))
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            grads = torch.autograd.grad(out, params, g64.bfloat16())
        assert all(g.dtype == torch.float32 for g in grads)
        casts[master] = _param_casts(prof)
    # the previous path: the op's bias gradients cast to bf16, autograd's cast of the flat gradient back
    assert casts == {True: 0, False: 2}


def test_trunk_uses_fp32_master_grads_only_with_the_cutlass_backward():
    torch.manual_seed(3)
    body = torch.nn.Sequential(RRDB(NF, GC), RRDB(NF, GC))
    x = torch.randn(SHAPE[0], NF, *SHAPE[1:]).bfloat16()
    g = torch.randn(x.shape).bfloat16()
    grads = {}
    for cutlass in ("fwd", "all"):
        out = R.rrdb_trunk(x, body, fused=True, cutlass=cutlass)
        grads[cutlass] = torch.autograd.grad(out, list(body.parameters()), g)
        assert all(gr.dtype == torch.float32 for gr in grads[cutlass])
    w = grads["fwd"][0]
    assert torch.equal(w.bfloat16().float(), w)  # cuDNN-shaped backward: bf16 gradients cast back
    w = grads["all"][0]
    assert not torch.equal(w.bfloat16().float(), w)
    torch.testing.assert_close(grads["all"][0], grads["fwd"][0], atol=0.05 * w.abs().max().item(), rtol=0)
