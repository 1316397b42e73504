"""Fused RRDB (ESRGAN's residual-in-residual dense block) and the RRDBNet trunk built from it.

Spec (what `rrdb_reference` computes and the kernels must equal)::

    dense block D(x; conv1..conv5), all convs 3x3, stride 1, padding 1, with bias:
        x_k = leaky_relu(conv_k(cat(x, x_1, ..., x_{k-1})), 0.2)      k = 1..4   (gc channels each)
        D(x) = conv_5(cat(x, x_1, ..., x_4)) * 0.2 + x                           (nf channels)
    RRDB(x) = D_3(D_2(D_1(x))) * 0.2 + x

`params` of one RRDB is the list of its 30 tensors in BasicSR order: rdb1.conv1.weight,
rdb1.conv1.bias, ..., rdb1.conv5.bias, rdb2..., rdb3.conv5.bias; conv_k.weight is
(gc, nf + (k-1) gc, 3, 3) for k < 5 and (nf, nf + 4 gc, 3, 3) for conv5.

The op (`torch.ops.gansr.rrdb_fwd` / `rrdb_bwd`, csrc/rrdb/) keeps one channels_last buffer
(N, nf + 4 gc, H, W) per dense block: convs read channel prefixes and write their slices (bias +
LeakyReLU, and conv5's residual scaling straight into the next block's buffer, fused), so no
concatenation is ever materialised. Only the three block buffers are saved for backward; the
LeakyReLU derivative comes from the sign of the saved outputs. One algorithm (rrdb_sliced.cpp) on two
backends, CPU (loops over pixel rows) and CUDA (kernels): ATen (cuDNN) convolutions on prefix views,
an epilogue after each; backward keeps each conv's data gradient and one gather per slice sums them,
applies the LeakyReLU derivative and reduces the bias gradient (no add kernels, no separate
reductions; CUDA: float atomics, or per-block partial rows summed in a fixed order under
torch.use_deterministic_algorithms; CPU: fixed pixel chunks summed in a fixed order).
  `cutlass` (off | fwd | bwd | all; False/True = off/all): "fwd" runs convs 1..4 of the forward
    through the fused conv + bias + LeakyReLU argument block writing the slice directly, "bwd" the
    backward through dgrad (accumulating in place into one gradient buffer per dense block) and wgrad
    (reading the activation prefixes). CUDA: CUTLASS implicit-GEMM kernels for bf16/fp16 (other dtypes
    keep cuDNN); a conv CUTLASS declines at run time runs through ATen (cuDNN) and is counted
    (`cutlass_fallbacks`). CPU: the same argument blocks emulated with ATen, for every dtype.
Parameters are cast to the activation dtype (autocast-style: bf16/fp16 activations -> bf16/fp16
GEMMs with fp32 accumulation); their gradients come back in each parameter's own dtype. `rrdb_trunk`
casts the parameters of all its RRDBs in one differentiable cast (`_cast_params`), not 30 per RRDB.
fp32 master parameters with bf16/fp16 activations and the CUTLASS backward ("bwd"/"all"): the cast
runs under no_grad and the op gets the master parameters too (`rrdb_fwd(..., master)`, only saved
for backward); its backward (`rrdb_bwd(fp32_param_grads=True)`) writes fp32 weight gradients straight
from the wgrad's fp32 accumulation (CUTLASS: deterministic serial split-K) and returns the fp32 bias
accumulator, as the master parameters' gradients: no rounding to bf16/fp16, no cast kernels.
The backward computes parameter gradients only when some parameter needs one; double backward
(create_graph=True through the op) is a clear error.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._ext import ops_loaded, require_extension
from ._common import Fused, use_fused

N_BLOCKS, N_CONVS = 3, 5
N_PARAMS = 2 * N_CONVS * N_BLOCKS
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
CUTLASS_MODES = ("off", "fwd", "bwd", "all")
_CUTLASS_BOOLS = {False: "off", True: "all"}


def weight(params, b: int, k: int) -> torch.Tensor:
    """rdb{b+1}.conv{k}.weight of an RRDB's params (b = 0..2, k = 1..5; csrc/rrdb/rrdb.h's `weight`)."""
    return params[2 * (N_CONVS * b + k - 1)]


def bias(params, b: int, k: int) -> torch.Tensor:
    """rdb{b+1}.conv{k}.bias of an RRDB's params."""
    return params[2 * (N_CONVS * b + k - 1) + 1]


def cutlass_flags(cutlass: str | bool = "off") -> tuple[bool, bool]:
    """(forward, backward) of the `cutlass` option: 'off' | 'fwd' | 'bwd' | 'all', or False / True."""
    mode = _CUTLASS_BOOLS.get(cutlass, cutlass) if isinstance(cutlass, bool) else cutlass
    if mode not in CUTLASS_MODES:
        raise ValueError(f"rrdb: cutlass must be one of {CUTLASS_MODES} (or False/True), got {cutlass!r}")
    return mode in ("fwd", "all"), mode in ("bwd", "all")


def _check_tensors(x: torch.Tensor, params) -> None:
    """What the Python side relies on before calling the op (it casts the parameters first): tensors,
    floating dtypes, one device, 30 parameters. The shapes are checked by the op itself (C++,
    check_fwd_inputs: the same messages), on the fused path only there."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"rrdb: x must be a tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"rrdb: x must be 4-D (N, nf, H, W), got shape {tuple(x.shape)}")
    if x.dtype not in _DTYPES:
        raise TypeError(f"rrdb: x must be float32/float64/float16/bfloat16, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"rrdb: empty input of shape {tuple(x.shape)}")
    params = list(params)
    if len(params) != N_PARAMS:
        raise ValueError(f"rrdb: params must hold the {N_PARAMS} weights and biases of one RRDB, got {len(params)}")
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"rrdb: params[{i}] must be a tensor, got {type(p).__name__}")
        if p.device != x.device:
            raise ValueError(f"rrdb: params[{i}] is on {p.device} but x is on {x.device}")
        if p.dtype not in _DTYPES:
            raise TypeError(f"rrdb: params[{i}] must be floating point, got {p.dtype}")


def _check(x: torch.Tensor, params) -> tuple[int, int]:
    """Validate the inputs of one RRDB for the reference (the op checks its own); returns (nf, gc)."""
    _check_tensors(x, params)
    params = list(params)
    nf = x.shape[1]
    w1 = weight(params, 0, 1)
    if w1.dim() != 4:
        raise ValueError(f"rrdb: rdb1.conv1.weight must be (gc, nf, 3, 3), got {tuple(w1.shape)}")
    gc = w1.shape[0]
    for b in range(N_BLOCKS):
        for k in range(1, N_CONVS + 1):
            cout, cin = (nf if k == N_CONVS else gc), nf + (k - 1) * gc
            w, bs = weight(params, b, k), bias(params, b, k)
            if tuple(w.shape) != (cout, cin, 3, 3):
                raise ValueError(f"rrdb: rdb{b + 1}.conv{k}.weight must be {(cout, cin, 3, 3)} for nf={nf}, gc={gc}, "
                                 f"got {tuple(w.shape)}")
            if tuple(bs.shape) != (cout,):
                raise ValueError(f"rrdb: rdb{b + 1}.conv{k}.bias must be ({cout},), got {tuple(bs.shape)}")
    return nf, gc


def dense_block_reference(x: torch.Tensor, params) -> torch.Tensor:
    """One dense block from its 10 tensors (conv1.weight, conv1.bias, ..., conv5.bias), with torch.cat."""
    feats = [x]
    for k in range(N_CONVS):
        y = F.conv2d(torch.cat(feats, 1), params[2 * k], params[2 * k + 1], padding=1)
        if k < N_CONVS - 1:
            feats.append(F.leaky_relu(y, 0.2))
    return y * 0.2 + x


def rrdb_reference(x: torch.Tensor, params) -> torch.Tensor:
    """Pure-PyTorch RRDB (the spec; see the module docstring)."""
    _check(x, params)
    params = [p.to(x.dtype) for p in params]
    h = x
    for b in range(N_BLOCKS):
        h = dense_block_reference(h, params[2 * N_CONVS * b:2 * N_CONVS * (b + 1)])
    return h * 0.2 + x


def rrdb_params(block: nn.Module) -> list[torch.Tensor]:
    """The 30 parameters of an RRDB module (rdb{1,2,3}.conv{1..5}.{weight,bias}) in the op's order."""
    try:  # plain attribute access: this runs once per RRDB per step
        out = []
        for rdb in (block.rdb1, block.rdb2, block.rdb3):
            for conv in (rdb.conv1, rdb.conv2, rdb.conv3, rdb.conv4, rdb.conv5):
                out += (conv.weight, conv.bias)
        return out
    except AttributeError as e:
        raise TypeError(f"rrdb_params: expected an RRDB module with rdb1..rdb3.conv1..conv5, got "
                        f"{type(block).__name__} ({e})") from None


def _setup_context(ctx, inputs, keyword_only_inputs, output):
    x, params, _, master = inputs[:4]
    master = master or []
    _, buf1, buf2, buf3 = output
    # the buffers are saved state for the backward, not differentiable results
    ctx.mark_non_differentiable(buf1, buf2, buf3)
    ctx.save_for_backward(buf1, buf2, buf3, *params, *master)
    ctx.n_master = len(master)
    ctx.x_dtype = x.dtype
    ctx.cutlass = keyword_only_inputs.get("cutlass_bwd", False)  # the backward's `cutlass`


def _bias_sizes(nf: int, gc: int) -> list[int]:
    return [nf if k == N_CONVS else gc for _ in range(N_BLOCKS) for k in range(1, N_CONVS + 1)]


def _backward(ctx, grad_out, _g1, _g2, _g3):
    buf1, buf2, buf3, *saved = ctx.saved_tensors
    params, master = saved[:N_PARAMS], saved[N_PARAMS:]
    # one gradient per input the op was called with (master=None may have been left out)
    n_inputs = len(ctx.needs_input_grad)
    grad_master = [None] * len(master) if master else None
    if grad_out is None:
        return (None, None, None, grad_master)[:n_inputs]
    if torch.is_grad_enabled() and (grad_out.requires_grad or any(p.requires_grad for p in saved)):
        # the backward op has no derivative of its own: its results would silently lack a graph
        raise RuntimeError("rrdb: double backward (create_graph=True through the fused RRDB op) is not supported; "
                           "use fused=False for higher-order gradients")
    need_x, need_params = ctx.needs_input_grad[:2]
    need_params = any(need_params) or (bool(master) and any(ctx.needs_input_grad[3]))
    grad_x, grad_w, grad_b = torch.ops.gansr.rrdb_bwd(grad_out.to(buf1.dtype), buf1, buf2, buf3, params, need_params,
                                                      ctx.cutlass, bool(master))
    grad_x = grad_x.to(ctx.x_dtype) if need_x else None
    if not need_params:
        return (grad_x, [None] * len(params), None, grad_master)[:n_inputs]
    gc = weight(params, 0, 1).shape[0]
    grad_bs = grad_b.split(_bias_sizes(buf1.shape[1] - 4 * gc, gc))
    grads = [g for pair in zip(grad_w, grad_bs) for g in pair]
    if master:  # fp32 gradients of the master parameters; the low-precision copies get none
        return grad_x, [None] * len(params), None, grads
    return (grad_x, grads, None, None)[:n_inputs]


def _nhwc(like: torch.Tensor, c: int) -> torch.Tensor:
    n, _, h, w = like.shape
    return torch.empty((n, c, h, w), dtype=like.dtype, device=like.device, memory_format=torch.channels_last)


def _fake_fwd(x, params, cutlass=False, master=None, *, cutlass_bwd=False):
    nf, gc = x.shape[1], weight(params, 0, 1).shape[0]
    return _nhwc(x, nf), _nhwc(x, nf + 4 * gc), _nhwc(x, nf + 4 * gc), _nhwc(x, nf + 4 * gc)


def _weight_grad_like(w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # the C++ rule (weight_grad_like in csrc/rrdb/rrdb.h): channels_last exactly when the weight is
    cl = w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    return torch.empty(w.shape, dtype=dtype, device=w.device,
                       memory_format=torch.channels_last if cl else torch.contiguous_format)


def _fake_bwd(grad_out, buf1, buf2, buf3, params, need_param_grads=True, cutlass=False, fp32_param_grads=False):
    nf, gc = grad_out.shape[1], weight(params, 0, 1).shape[0]
    dtype = torch.float32 if fp32_param_grads else grad_out.dtype
    if not need_param_grads:
        return _nhwc(grad_out, nf), [], grad_out.new_empty((0,), dtype=dtype)
    grad_w = [_weight_grad_like(w, dtype) for w in params[0::2]]
    return _nhwc(grad_out, nf), grad_w, grad_out.new_empty((N_BLOCKS * (nf + 4 * gc),), dtype=dtype)


if ops_loaded():
    torch.library.register_fake("gansr::rrdb_fwd")(_fake_fwd)
    torch.library.register_fake("gansr::rrdb_bwd")(_fake_bwd)
    torch.library.register_autograd("gansr::rrdb_fwd", _backward, setup_context=_setup_context)


def _flat(p: torch.Tensor) -> torch.Tensor:
    """p's elements in memory order as a 1-D view (channels_last weights included; others copied)."""
    if p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last):
        return p.permute(0, 2, 3, 1).reshape(-1)
    return p.reshape(-1)


def _unflat(flat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of `_flat`: flat viewed with the shape and layout of `like`."""
    if like.dim() == 4 and not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last):
        o, i, h, w = like.shape
        return flat.view(o, h, w, i).permute(0, 3, 1, 2)
    return flat.view(like.shape)


def _cast_params(groups: list[list[torch.Tensor]], dtype: torch.dtype) -> list[list[torch.Tensor]]:
    """Every tensor of `groups` cast to `dtype`, differentiably (gradients come back in each tensor's
    own dtype), keeping each weight's layout. When they share one dtype this is one cat + one cast
    (and one of each in backward) for all groups, instead of one cast kernel per tensor: under
    autocast that was 30 per RRDB and pass, ~1,400 small kernels per step for a 23-RRDB generator."""
    flat = [p for group in groups for p in group]
    if all(p.dtype == dtype for p in flat):
        return groups
    if len({p.dtype for p in flat}) > 1:
        return [[p.to(dtype) for p in group] for group in groups]
    pieces = torch.cat([_flat(p) for p in flat]).to(dtype).split([p.numel() for p in flat])
    cast = iter(_unflat(piece, p) for piece, p in zip(pieces, flat))
    return [[next(cast) for _ in group] for group in groups]


def _rrdb_op(x: torch.Tensor, params, cutlass: tuple[bool, bool], master=None) -> torch.Tensor:
    fwd, bwd = cutlass
    if master:
        return torch.ops.gansr.rrdb_fwd(x, params, fwd, master, cutlass_bwd=bwd)[0]
    return torch.ops.gansr.rrdb_fwd(x, params, fwd, cutlass_bwd=bwd)[0]


def _fp32_master(x: torch.Tensor, groups, cutlass: tuple[bool, bool]) -> bool:
    """Whether the op returns the parameters' gradients in fp32 itself (module docstring): the CUTLASS
    backward, bf16/fp16 activations, every parameter fp32."""
    return cutlass[1] and x.dtype in (torch.bfloat16, torch.float16) and all(
        p.dtype == torch.float32 for group in groups for p in group)


def _run_rrdbs(x: torch.Tensor, groups, flags: tuple[bool, bool]) -> torch.Tensor:
    """The RRDBs of `groups` (one params list each) in turn through the op, on parameters cast to x's
    dtype at once: differentiably, or under no_grad with the fp32 masters given to the op."""
    if not _fp32_master(x, groups, flags):
        for params in _cast_params(groups, x.dtype):
            x = _rrdb_op(x, params, flags)
        return x
    with torch.no_grad():
        low = _cast_params(groups, x.dtype)
    for params, master in zip(low, groups):
        x = _rrdb_op(x, params, flags, master=list(master))
    return x


def rrdb(x: torch.Tensor, params, fused: Fused = None, cutlass: str | bool = "off") -> torch.Tensor:
    """One RRDB (see module docstring) from its 30 parameters. `fused`: 'on'/True = compiled kernel,
    'off'/False = reference, 'auto'/None = kernel when built for the device; `cutlass`: which passes
    use the fused-conv argument blocks (module docstring; ignored by the reference). Differentiable
    in x and params; the result is channels_last when fused."""
    flags = cutlass_flags(cutlass)
    if not use_fused(fused, x):
        return rrdb_reference(x, params)  # checks its inputs
    _check_tensors(x, params)
    return _run_rrdbs(x, [list(params)], flags)


def cutlass_fallbacks(reset: bool = False) -> int:
    """How many fused (CUTLASS) convs fell back to the cuDNN path since the last reset: their problem
    failed the alignment rules or CUTLASS's can_implement. `reset`: return the count and zero it."""
    require_extension()
    return torch.ops.gansr.rrdb_cutlass_fallbacks(reset)


def rrdb_trunk(feat: torch.Tensor, body: nn.Module, fused: Fused = True, cutlass: str | bool = "off") -> torch.Tensor:
    """RRDBNet's trunk: the RRDB modules of `body` (an nn.Sequential) applied in turn through the op,
    with the parameters of all of them cast to the activation dtype at once (fp32 parameters with
    bf16/fp16 activations and the CUTLASS backward: their gradients straight from the op in fp32, see
    the module docstring); `fused`, `cutlass`: as for `rrdb`."""
    groups = [rrdb_params(block) for block in body]
    flags = cutlass_flags(cutlass)
    if not groups or not use_fused(fused, feat):
        for params in groups:
            feat = rrdb_reference(feat, params)  # checks its inputs
        return feat
    for params in groups:  # every RRDB maps (N, nf, H, W) to the same shape: the op checks each one's
        _check_tensors(feat, params)
    return _run_rrdbs(feat, groups, flags)
