"""Gradient-penalty arithmetic as fused ops: the interpolation and the per-sample-norm penalty.

Spec (the `*_reference` functions compute it; the kernels must equal it)::

    gp_interpolate(real, fake, eps)[b] = eps_b * real_b + (1 - eps_b) * fake_b          (B, ...) -> (B, ...)
    gp_penalty(g, kind, weight) = weight * mean_b f(n_b),   n_b = ||g_b||_2 over the non-batch dims
        f(n) = (n - 1)^2 ("wgan-gp"),  max(0, n - 1)^2 ("one-sided"),  n^2 ("r1")
    d gp_penalty / d g_b = weight / B * f'(n_b) / n_b * g_b
        (0 at n_b = 0 for "wgan-gp"/"one-sided": torch's subgradient of the norm; 2 weight / B * g_b for "r1")
    NaN in g gives a NaN penalty and a NaN derivative (never 0), as torch's ops give, on every path:
    a NaN n_b counts as "above" every branch bound (n_b > 1 for "one-sided" included).

eps is drawn outside the kernel (`gansr_ext.losses.penalty.draw_eps`: torch.rand from the caller's
generator), so the fused path and the reference see the same eps and reproducibility is torch's.
Inputs fp32/fp64/fp16/bf16, computed in fp32 (fp64 stays fp64); the interpolation returns the
input dtype (contiguous, or channels_last when asked), the penalty a 0-dim tensor in the compute dtype.

Ops (C++ schemas in csrc/gradient_penalty/gradient_penalty_cpu.cpp):
    gp_interpolate(real, fake, eps, channels_last) -> xhat
    gp_penalty_fwd(grad, kind, weight) -> (loss, norms[B])               one two-stage reduction
    gp_penalty_bwd(grad_loss, grad_norms?, grad, norms, kind, weight) -> d_grad    one elementwise pass
The backward op has its own autograd formula (torch ops below), so the penalty is differentiable
to any order: the D step backpropagates through gp_penalty_bwd's output into D's double backward.
"""

from __future__ import annotations

import torch

from .._ext import ops_loaded
from ._common import compute_dtype, use_fused

KIND_CODES = {"wgan-gp": 0, "one-sided": 1, "r1": 2}


def _check_penalty(kind, weight) -> None:
    """The Python-level arguments; the tensors are checked by the ops (C++, see gansr_ext/ops/__init__.py)."""
    if kind not in KIND_CODES:
        raise ValueError(f"gp_penalty: kind must be one of {tuple(KIND_CODES)}, got {kind!r}")
    if not isinstance(weight, (int, float)):
        raise TypeError(f"gp_penalty: weight must be a number, got {type(weight).__name__}")


def gp_interpolate_reference(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor,
                             channels_last: bool = False) -> torch.Tensor:
    """eps_b * real_b + (1 - eps_b) * fake_b, in real's dtype (contiguous or channels_last)."""
    ct = compute_dtype(real.dtype)
    e = eps.to(ct).view(-1, *([1] * (real.dim() - 1)))
    x = (e * real.to(ct) + (1 - e) * fake.to(ct)).to(real.dtype)
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _f_and_h(n: torch.Tensor, kind: str):
    """f(n) and h(n) = f'(n) / n (0 where the norm's subgradient is taken as 0; NaN for a NaN n)."""
    pos = _above(n, 0)
    safe = torch.where(pos, n, torch.ones_like(n))
    if kind == "r1":
        return n.square(), torch.full_like(n, 2.0)
    if kind == "wgan-gp":
        return (n - 1).square(), torch.where(pos, 2 - 2 / safe, torch.zeros_like(n))
    return (n - 1).clamp_min(0).square(), torch.where(_above(n, 1), 2 - 2 / safe, torch.zeros_like(n))


def _above(n: torch.Tensor, bound: float) -> torch.Tensor:
    """n > bound, and True for NaN, so NaN reaches the formula and comes out NaN (as in gradient_penalty_math.h)."""
    return ~(n <= bound)


def gp_penalty_reference(g: torch.Tensor, kind: str = "wgan-gp", weight: float = 1.0) -> torch.Tensor:
    """weight * mean_b f(||g_b||_2) (see the module docstring), 0-dim in the compute dtype."""
    _check_penalty(kind, weight)
    n = torch.linalg.vector_norm(g.flatten(1).to(compute_dtype(g.dtype)), dim=1)
    if kind == "r1":
        return weight * g.flatten(1).to(n.dtype).square().sum(1).mean()  # n^2 without the sqrt at 0
    f = (n - 1).square() if kind == "wgan-gp" else (n - 1).clamp_min(0).square()
    return weight * f.mean()


# ---- autograd of the compiled ops ------------------------------------------------------------------

def _interp_setup(ctx, inputs, output):
    real, fake, eps, _ = inputs
    ctx.save_for_backward(real, fake, eps)


def _interp_backward(ctx, go):
    real, fake, eps = ctx.saved_tensors
    ct = compute_dtype(real.dtype)
    e = eps.to(ct).view(-1, *([1] * (real.dim() - 1)))
    gc = go.to(ct)
    g_real = (e * gc).to(real.dtype) if ctx.needs_input_grad[0] else None
    g_fake = ((1 - e) * gc).to(fake.dtype) if ctx.needs_input_grad[1] else None
    g_eps = None
    if ctx.needs_input_grad[2]:
        g_eps = (gc * (real.to(ct) - fake.to(ct))).flatten(1).sum(1).to(eps.dtype)
    return g_real, g_fake, g_eps, None


def _pen_setup(ctx, inputs, output):
    g, kind, weight = inputs
    _, norms = output
    ctx.save_for_backward(g, norms)
    ctx.kind, ctx.weight = kind, weight


def _pen_backward(ctx, grad_loss, grad_norms):
    g, norms = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None, None, None
    if grad_loss is None:
        grad_loss = torch.zeros((), dtype=norms.dtype, device=norms.device)
    d = torch.ops.gansr.gp_penalty_bwd(grad_loss, grad_norms, g, norms, ctx.kind, ctx.weight)
    return d, None, None


def _pen_bwd_setup(ctx, inputs, output):
    grad_loss, grad_norms, g, norms, kind, weight = inputs
    ctx.save_for_backward(grad_loss, grad_norms, g, norms)
    ctx.kind, ctx.weight, ctx.has_gn = kind, weight, grad_norms is not None


def _pen_bwd_backward(ctx, G):
    """Derivative of d_b = c_b * g_b, c_b = weight/B * grad_loss * h(n_b) + grad_norms_b / n_b."""
    grad_loss, grad_norms, g, norms = ctx.saved_tensors
    kind = {v: k for k, v in KIND_CODES.items()}[ctx.kind]
    ct, B = norms.dtype, g.shape[0]
    k = ctx.weight / B
    n = norms
    pos = _above(n, 0)
    inv = torch.where(pos, 1 / torch.where(pos, n, torch.ones_like(n)), torch.zeros_like(n))
    _, h = _f_and_h(n, kind)
    if kind == "r1":
        dh = torch.zeros_like(n)
    else:
        dh = torch.where(_above(n, 1 if kind == "one-sided" else 0), 2 * inv.square(), torch.zeros_like(n))
    gl = grad_loss.to(ct)
    gn = grad_norms.to(ct) if ctx.has_gn else torch.zeros_like(n)
    c = k * gl * h + gn * inv
    Gc = G.to(ct).flatten(1)
    s = (Gc * g.to(ct).flatten(1)).sum(1)
    shape = (B,) + (1,) * (g.dim() - 1)
    d_g = (c.view(shape) * G.to(ct)).to(g.dtype) if ctx.needs_input_grad[2] else None
    d_gl = (s * k * h).sum().to(grad_loss.dtype) if ctx.needs_input_grad[0] else None
    d_gn = (s * inv).to(grad_norms.dtype) if ctx.has_gn and ctx.needs_input_grad[1] else None
    d_n = (s * (k * gl * dh - gn * inv.square())).to(norms.dtype) if ctx.needs_input_grad[3] else None
    return d_gl, d_gn, d_g, d_n, None, None


# ---- fake (meta) kernels: same output layouts as the C++ ops ------------------------------------------

def _grad_format(g: torch.Tensor) -> torch.memory_format:
    cl = g.dim() == 4 and not g.is_contiguous() and g.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if cl else torch.contiguous_format


def _fake_interp(real, fake, eps, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty_like(real, memory_format=fmt)


def _fake_pen_fwd(g, kind, weight):
    ct = compute_dtype(g.dtype)
    return g.new_empty((), dtype=ct), g.new_empty((g.shape[0],), dtype=ct)


def _fake_pen_bwd(grad_loss, grad_norms, g, norms, kind, weight):
    return torch.empty_like(g, memory_format=_grad_format(g))


if ops_loaded():
    torch.library.register_fake("gansr::gp_interpolate")(_fake_interp)
    torch.library.register_fake("gansr::gp_penalty_fwd")(_fake_pen_fwd)
    torch.library.register_fake("gansr::gp_penalty_bwd")(_fake_pen_bwd)
    torch.library.register_autograd("gansr::gp_interpolate", _interp_backward, setup_context=_interp_setup)
    torch.library.register_autograd("gansr::gp_penalty_fwd", _pen_backward, setup_context=_pen_setup)
    torch.library.register_autograd("gansr::gp_penalty_bwd", _pen_bwd_backward, setup_context=_pen_bwd_setup)


def gp_interpolate(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor, channels_last: bool = False,
                   fused: bool | None = None) -> torch.Tensor:
    """eps_b * real_b + (1 - eps_b) * fake_b in one pass (see the module docstring)."""
    if not use_fused(fused, real):
        return gp_interpolate_reference(real, fake, eps, channels_last)
    return torch.ops.gansr.gp_interpolate(real, fake, eps, channels_last)


def gp_penalty(g: torch.Tensor, kind: str = "wgan-gp", weight: float = 1.0, fused: bool | None = None) -> torch.Tensor:
    """weight * mean_b f(||g_b||) in one reduction, differentiable to any order (module docstring)."""
    _check_penalty(kind, weight)
    if not use_fused(fused, g):
        return gp_penalty_reference(g, kind, weight)
    loss, _ = torch.ops.gansr.gp_penalty_fwd(g, KIND_CODES[kind], float(weight))
    return loss
