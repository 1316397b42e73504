"""FFT loss of the seed: `||F(SR) - F(HR)|| / max(||F(SR)||, ||F(HR)||)` per image.

Spec (what `fft_loss_reference` computes and the kernels must equal)::

    X = fft2(sr_b, norm="ortho"), Y = fft2(hr_b, norm="ortho")            # full spectrum (C, H, W)
    d = X - Y  (mode="complex": the seed's formula, amplitude and phase)
        |X| - |Y|  (mode="magnitude": amplitude only, blind to phase, e.g. to a circular shift)
    loss_b = ||d||_p / max(|| |X| ||_p, || |Y| ||_p),  p in {1, 2}, norms over (C, H, W)
    loss = mean_b loss_b  (reduction "mean"; "sum"; "none" -> (B,))

Computed on the rfft2 half spectrum (C, H, W//2+1): columns 1..ceil(W/2)-1 also stand for their
dropped mirror image (conjugate: same |X|, |Y|, |X - Y|) and count twice; column 0 and, for even W,
column W/2 count once. The norms are then exactly the full spectrum's (Parseval for p = 2). So for p = 2
mode "complex" equals the pixel-space ||sr - hr|| / max(||sr||, ||hr||): only "magnitude" and p = 1 add
something a pixel loss does not.

Inputs (B, C, H, W), H, W >= 2, fp32/fp64/fp16/bf16 (computed in fp32, fp64 stays fp64), any
memory format. The loss is returned in the compute dtype. Both images all zeros -> loss 0 and
gradient 0; at d = 0 the gradient of ||d|| is taken as 0 (the subgradient torch uses). A NaN in
sr_b or hr_b makes loss_b (and so any reduction over it) NaN, never 0.
"""

from __future__ import annotations

import torch

from .._ext import ops_loaded
from ._common import compute_dtype, reduce, use_fused

_MODES = ("magnitude", "complex")


def _check(p: int, mode: str) -> None:
    """The Python-level arguments; the tensors are checked by the op (C++, see gansr_ext/ops/__init__.py)."""
    if mode not in _MODES:
        raise ValueError(f"fft_loss: mode must be one of {_MODES}, got {mode!r}")
    if p not in (1, 2):
        raise ValueError(f"fft_loss: p must be 1 or 2, got {p!r}")


def half_spectrum_weights(W: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(W//2+1,) weights of the rfft2 columns that turn half-spectrum sums into full-spectrum sums."""
    w = torch.full((W // 2 + 1,), 2.0, dtype=dtype, device=device)
    w[0] = 1.0
    if W % 2 == 0:
        w[-1] = 1.0  # the Nyquist column is its own mirror
    return w


def fft_loss_reference(sr: torch.Tensor, hr: torch.Tensor, p: int = 2, mode: str = "magnitude",
                       reduction: str = "mean") -> torch.Tensor:
    """Pure-PyTorch FFT loss (the spec; see the module docstring)."""
    _check(p, mode)
    ct = compute_dtype(sr.dtype)
    X = torch.fft.rfft2(sr.to(ct), norm="ortho")
    Y = torch.fft.rfft2(hr.to(ct), norm="ortho")
    d = X - Y if mode == "complex" else X.abs() - Y.abs()
    # sum_c w_c |v_c|^p = ||w^(1/p) v||_p^p: vector_norm keeps torch's 0 subgradient at v = 0
    root_w = half_spectrum_weights(sr.shape[-1], ct, sr.device) ** (1.0 / p)

    def norm(v: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(v * root_w, ord=p, dim=(1, 2, 3))

    nd, m = norm(d), torch.maximum(norm(X.abs()), norm(Y.abs()))  # maximum propagates NaN
    # m == 0 only for two all-zero images (then nd == 0): loss 0, and divide by 1 there so the unused
    # branch's gradient stays finite; a NaN m or nd stays NaN
    zero = m == 0
    per_image = torch.where(zero, torch.zeros_like(m), nd / torch.where(zero, torch.ones_like(m), m))
    return reduce(per_image, reduction)


def _setup_context(ctx, inputs, output):
    sr, hr, p, complex_mode = inputs
    _, norms, spec = output
    # norms and spec are saved state for the backward, not differentiable results
    ctx.mark_non_differentiable(norms, spec)
    ctx.save_for_backward(spec, norms)
    ctx.p, ctx.complex_mode, ctx.W = p, complex_mode, sr.shape[-1]
    ctx.sr_dtype, ctx.hr_dtype = sr.dtype, hr.dtype


def _backward(ctx, grad_loss, _grad_norms, _grad_spec):
    spec, norms = ctx.saved_tensors
    need_sr, need_hr = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    if grad_loss is None or not (need_sr or need_hr):
        return None, None, None, None
    grads = torch.ops.gansr.fft_loss_bwd(grad_loss, spec, norms, ctx.p, ctx.complex_mode, ctx.W, need_hr)
    return (grads[0].to(ctx.sr_dtype) if need_sr else None, grads[1].to(ctx.hr_dtype) if need_hr else None, None, None)


def _fake_fwd(sr, hr, p, complex_mode):
    B, C, H, W = sr.shape
    ct = compute_dtype(sr.dtype)
    cplx = torch.complex128 if ct == torch.float64 else torch.complex64
    return (sr.new_empty((B,), dtype=ct), sr.new_empty((B, 3), dtype=ct),
            sr.new_empty((2, B, C, H, W // 2 + 1), dtype=cplx))


def _fake_bwd(grad_loss, spec, norms, p, complex_mode, W, need_hr):
    _, B, C, H, _ = spec.shape
    return norms.new_empty((2 if need_hr else 1, B, C, H, W))


if ops_loaded():
    torch.library.register_fake("gansr::fft_loss_fwd")(_fake_fwd)
    torch.library.register_fake("gansr::fft_loss_bwd")(_fake_bwd)
    torch.library.register_autograd("gansr::fft_loss_fwd", _backward, setup_context=_setup_context)


def fft_loss(sr: torch.Tensor, hr: torch.Tensor, p: int = 2, mode: str = "magnitude", reduction: str = "mean",
             fused: bool | None = None) -> torch.Tensor:
    """FFT loss (see module docstring; mode "complex" is the seed's literal formula). `fused`: True = compiled kernel, False = reference,
    None = kernel when built for the device. Differentiable with respect to sr and hr."""
    _check(p, mode)
    if not use_fused(fused, sr):
        return fft_loss_reference(sr, hr, p, mode, reduction)
    per_image, _, _ = torch.ops.gansr.fft_loss_fwd(sr, hr, p, mode == "complex")
    return reduce(per_image, reduction)
