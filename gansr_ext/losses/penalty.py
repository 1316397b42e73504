"""Gradient penalties on the discriminator: WGAN-GP, one-sided GP, R1.

Spec (what `gradient_penalty_reference` computes; `gradient_penalty` must equal it in exact mode)::

    eps_b ~ U(0, 1), one per sample: torch.rand(B, generator=generator) (on the generator's device)
    xhat  = eps * real + (1 - eps) * fake            kinds "wgan-gp", "one-sided"
    xhat  = real                                     kind  "r1"
    m_b   = mean of D(xhat)_b over its non-batch dims    (one logit: the logit; per-pixel: their mean)
    g     = autograd.grad(sum_b m_b, xhat, create_graph=True)      g_b = d m_b / d xhat_b
    n_b   = ||g_b||_2 over every non-batch dim (C, H, W)
    "wgan-gp":   lam * mean_b (n_b - 1)^2                      (Gulrajani et al. 2017)
    "one-sided": lam * mean_b max(0, n_b - 1)^2                (same paper, appendix)
    "r1":        lam / 2 * mean_b n_b^2                        (Mescheder et al. 2018, StyleGAN2:
                                                                lam is their gamma, hence the 1/2)

The gradient is of each sample's MEAN output, the quantity the relativistic losses compare (they
average D's output map): a one-logit D (VGG) is penalised exactly as in the papers, and a per-pixel
D (U-Net) gets the same unit-norm target on what its loss sees. Differentiating the SUM instead
would scale n_b by the number of output pixels (4096 at crop 64), and D would meet the penalty by
cancelling per-pixel gradients, keeping its real/fake gap near zero; with the mean the penalty does
not change when D's output map is upsampled (tests/test_gradient_penalty.py checks it).

real and fake are detached: the penalty trains D only. The penalty runs its own D forward on
xhat, so a BatchNorm D in train mode normalises xhat with xhat's batch statistics (the per-sample
gradient then depends on the other samples, as in every BN+GP recipe) and updates its running
statistics once more; a spectral-norm D does one more power iteration. The reference and the
fused path run exactly one D forward each, so they agree on all of this.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Callable

import torch

from ..ops._common import Fused, compute_dtype, fused_mode

KINDS = ("wgan-gp", "one-sided", "r1")
_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _check(D, real, fake, lam, kind) -> None:
    if not callable(D):
        raise TypeError(f"gradient_penalty: D must be callable (a discriminator), got {type(D).__name__}")
    if kind not in KINDS:
        raise ValueError(f"gradient_penalty: kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(real, torch.Tensor):
        raise TypeError(f"gradient_penalty: real must be a tensor, got {type(real).__name__}")
    if real.dtype not in _FLOATS:
        raise TypeError(f"gradient_penalty: real must be float32/float64/float16/bfloat16, got {real.dtype}")
    if real.dim() < 2:
        raise ValueError(f"gradient_penalty: real must be (B, ...) with a batch dim, got shape {tuple(real.shape)}")
    if real.numel() == 0:
        raise ValueError(f"gradient_penalty: empty input of shape {tuple(real.shape)}")
    if kind != "r1":
        if fake is None:
            raise ValueError(f"gradient_penalty: kind {kind!r} interpolates real and fake; fake is None")
        if not isinstance(fake, torch.Tensor):
            raise TypeError(f"gradient_penalty: fake must be a tensor, got {type(fake).__name__}")
        if fake.shape != real.shape:
            raise ValueError(f"gradient_penalty: real and fake must have the same shape, got {tuple(real.shape)} "
                             f"and {tuple(fake.shape)}")
        if fake.dtype != real.dtype:
            raise TypeError(f"gradient_penalty: real and fake must have the same dtype, got {real.dtype} and {fake.dtype}")
        if fake.device != real.device:
            raise ValueError(f"gradient_penalty: real and fake must be on one device, got {real.device} and {fake.device}")
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
        raise ValueError(f"gradient_penalty: lam must be a finite number >= 0, got {lam!r}")


def draw_eps(batch: int, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample eps ~ U(0, 1), shape (batch,), in the compute dtype on `like`'s device.

    Drawn on the generator's own device and moved, so one CPU generator gives the same eps on CPU
    and CUDA (and a seeded generator gives the same eps to the reference and the fused path)."""
    dt = compute_dtype(like.dtype)
    dev = generator.device if generator is not None else like.device
    return torch.rand(batch, generator=generator, device=dev, dtype=dt).to(like.device)


def _check_eps(eps: torch.Tensor, batch: int) -> None:
    if not isinstance(eps, torch.Tensor) or eps.shape != (batch,) or not eps.is_floating_point():
        got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(f"gradient_penalty: eps must be a floating tensor of shape ({batch},), got {got}")


def _penalty_from_norms(n: torch.Tensor, kind: str, lam: float) -> torch.Tensor:
    if kind == "wgan-gp":
        return lam * (n - 1).square().mean()
    if kind == "one-sided":
        return lam * (n - 1).clamp_min(0).square().mean()
    return 0.5 * lam * n.square().mean()


def _mean_output_gradient(out: torch.Tensor, x: torch.Tensor, op: str = "gradient_penalty") -> torch.Tensor:
    """d (sum_b mean D(x)_b) / d x, with the graph kept for the double backward (the spec's g)."""
    B = x.shape[0]
    if not isinstance(out, torch.Tensor) or out.dim() < 1 or out.shape[0] != B:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{op}: D must return a (B, ...) tensor with B = {B}, got {got}")
    # the mean in the compute dtype: a bf16 mean over thousands of logits would round the 1/M weights
    m = out.reshape(B, -1).to(compute_dtype(out.dtype)).mean(1)
    (g,) = torch.autograd.grad(m.sum(), inputs=[x], create_graph=True)
    return g


def gradient_penalty_reference(D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                               fake: torch.Tensor | None, lam: float = 10.0, kind: str = "wgan-gp",
                               eps: torch.Tensor | None = None,
                               generator: torch.Generator | None = None) -> torch.Tensor:
    """Pure-PyTorch gradient penalty (the spec: see the module docstring). Scalar in the compute dtype
    (fp64 for fp64 inputs, else fp32), differentiable with respect to D's parameters."""
    _check(D, real, fake, lam, kind)
    B = real.shape[0]
    if kind == "r1":
        xhat = real.detach().requires_grad_(True)
    else:
        if eps is None:
            eps = draw_eps(B, real, generator)
        _check_eps(eps, B)
        e = eps.to(device=real.device, dtype=real.dtype).view(B, *([1] * (real.dim() - 1)))
        xhat = (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(True)
    g = _mean_output_gradient(D(xhat), xhat)
    n = torch.linalg.vector_norm(g.flatten(1).to(compute_dtype(real.dtype)), dim=1)
    return _penalty_from_norms(n, kind, float(lam))


def lazy_due(step: int, lazy_interval: int) -> bool:
    """True on the steps where a lazily regularised penalty is computed (step % lazy_interval == 0)."""
    return step % lazy_interval == 0


def _subset_size(subset, B: int) -> int:
    if subset is None:
        return B
    if isinstance(subset, bool):
        raise TypeError("gradient_penalty: subset must be an int (samples) or a float (fraction), not bool")
    if isinstance(subset, int):
        if not 1 <= subset <= B:
            raise ValueError(f"gradient_penalty: subset={subset} samples must be in [1, batch={B}]")
        return subset
    if isinstance(subset, float):
        if not 0.0 < subset <= 1.0:
            raise ValueError(f"gradient_penalty: subset fraction must be in (0, 1], got {subset}")
        return max(1, int(round(subset * B)))
    raise TypeError(f"gradient_penalty: subset must be None, an int or a float, got {type(subset).__name__}")


def _check_lazy(lazy_interval, step) -> None:
    if isinstance(lazy_interval, bool) or not isinstance(lazy_interval, int) or lazy_interval < 1:
        raise ValueError(f"gradient_penalty: lazy_interval must be an int >= 1, got {lazy_interval!r}")
    if lazy_interval > 1 and step is None:
        raise ValueError("gradient_penalty: lazy_interval > 1 needs the training step (step=...)")


def _penalty_points(real, fake, kind, eps, generator, subset, channels_last, fused) -> torch.Tensor:
    """xhat, the (first n samples of the) points D's input gradient is taken at, requiring grad: the real
    images for R1, else eps real + (1 - eps) fake."""
    from ..ops.gradient_penalty import gp_interpolate

    n = _subset_size(subset, real.shape[0])
    real = real.detach()[:n]
    if kind == "r1":
        xhat = real.contiguous(memory_format=torch.channels_last) if channels_last else real
        return xhat.detach().requires_grad_(True)
    fake = fake.detach()[:n]
    if eps is None:
        eps = draw_eps(n, real, generator)
    elif subset is not None and eps.shape[:1] != (n,):
        eps = eps[:n]
    _check_eps(eps, n)
    eps = eps.to(real.device)
    return gp_interpolate(real, fake, eps, channels_last=channels_last, fused=fused).requires_grad_(True)


def gradient_penalty(D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor | None = None,
                     lam: float = 10.0, kind: str = "wgan-gp", *, eps: torch.Tensor | None = None,
                     generator: torch.Generator | None = None, fused: Fused = None, step: int | None = None,
                     lazy_interval: int = 1, subset: int | float | None = None,
                     autocast_dtype: torch.dtype | None = None, channels_last: bool = False) -> torch.Tensor:
    """Gradient penalty of D (formulas in the module docstring), the call the loss library uses.

    fused: the package's one switch, 'on' | 'off' | 'auto' (or True | False | None): the compiled
        interpolation and penalty ops (`torch.ops.gansr.gp_*`), torch ops, or the compiled ones when
        built for the device (`ops._common.resolve_fused`). Exact mode (defaults) equals
        `gradient_penalty_reference` given the same eps / seeded generator.
    lazy_interval=k > 1 (lazy regularisation, StyleGAN2): pass the training `step`; the penalty is
        computed on steps with step % k == 0 with its weight multiplied by k, and on the other steps a
        0-dim zero tensor (no graph, nothing computed) is returned, so `d_loss + gp` always works.
        `lazy_due(step, k)` says in advance whether a step is a penalty step.
    subset: penalise only the first n samples (int) or fraction (float) of the batch; the mean is over
        them (an unbiased estimate of the full-batch mean; eps is drawn for those n only).
    autocast_dtype: run D's forward under torch.autocast with this dtype (bf16 intended); the input
        gradient and the penalty arithmetic stay in fp32 (autograd.grad is taken outside autocast).
        float16 is accepted but unscaled here: without a GradScaler the input gradient may underflow.
    channels_last: give D xhat in channels_last memory format (4-D inputs).

    Only the input gradient is formed in the first-order pass: autograd.grad(..., inputs=[xhat]) makes
    torch's engine call every convolution_backward and batch-norm backward with the weight/bias outputs
    masked off (tests/test_gradient_penalty.py checks that), so StyleGAN2-ADA's `no_weight_gradients`
    (needed for its custom autograd.Function convolutions) is not needed with native ones. D's weight
    gradients are formed once, in the double backward of `penalty.backward()`.
    With a BatchNorm D, subset changes the batch the statistics are taken over (n samples, not B).
    """
    _check(D, real, fake, lam, kind)
    fused_mode(fused)  # checked on the lazy steps that compute nothing too
    _check_lazy(lazy_interval, step)
    if lazy_interval > 1 and not lazy_due(step, lazy_interval):
        return torch.zeros((), dtype=compute_dtype(real.dtype), device=real.device)
    if autocast_dtype is not None and autocast_dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"gradient_penalty: autocast_dtype must be None, torch.bfloat16 or torch.float16, "
                         f"got {autocast_dtype}")
    if channels_last and real.dim() != 4:
        raise ValueError(f"gradient_penalty: channels_last needs 4-D (B, C, H, W) inputs, got {tuple(real.shape)}")

    from ..ops.gradient_penalty import gp_penalty

    xhat = _penalty_points(real, fake, kind, eps, generator, subset, channels_last, fused)
    weight = float(lam) * lazy_interval * (0.5 if kind == "r1" else 1.0)
    ctx = torch.autocast(real.device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    with ctx:
        out = D(xhat)
    # backward outside any autocast (also a caller's): recorded double-backward ops keep their dtypes
    with torch.autocast(real.device.type, enabled=False):
        g = _mean_output_gradient(out, xhat)
        return gp_penalty(g, kind, weight, fused=fused)


def r1_penalty_from_logits(real_logits: torch.Tensor, real: torch.Tensor, lam: float = 10.0,
                           fused: Fused = None) -> torch.Tensor:
    """R1 = lam / 2 * mean_b ||d mean(D(real)_b) / d real_b||^2 from the D step's own forward on real.

    Saves the penalty's extra D forward (as StyleGAN2 does): set `real.requires_grad_(True)` before
    `real_logits = D(real)`, then call this. With a BatchNorm D this is exactly `gradient_penalty(...,
    kind="r1")` (same batch, same statistics) minus one running-statistics update. Lazy R1: decide with
    `lazy_due(step, k)` whether to set requires_grad and call this with lam * k."""
    if not isinstance(real_logits, torch.Tensor) or not isinstance(real, torch.Tensor):
        raise TypeError("r1_penalty_from_logits: real_logits and real must be tensors")
    if not real.requires_grad:
        raise ValueError("r1_penalty_from_logits: real must have requires_grad=True when D(real) was computed")
    if not real_logits.requires_grad:
        raise ValueError("r1_penalty_from_logits: real_logits carry no graph to real (computed under no_grad?)")
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
        raise ValueError(f"r1_penalty_from_logits: lam must be a finite number >= 0, got {lam!r}")
    from ..ops.gradient_penalty import gp_penalty

    with torch.autocast(real.device.type, enabled=False):
        g = _mean_output_gradient(real_logits, real, op="r1_penalty_from_logits")
        return gp_penalty(g, "r1", 0.5 * float(lam), fused=fused)
