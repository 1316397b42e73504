"""Frequency-domain losses: FFT, DCT, spectral profile (Durall et al.), focal frequency (Jiang et al.).

All take (B, C, H, W) images `pred` (SR) and `target` (HR) and return `loss_weight * loss`.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import fft_loss
from ..ops._common import Fused, compute_dtype, fused_mode, reduce
from ._common import check_pair, check_reduction


class FFTLoss(nn.Module):
    """Normalised FFT loss of the seed (`gansr_ext.ops.fft_loss`)::

        X = fft2(pred, "ortho"), Y = fft2(target, "ortho")  (full spectrum; computed on the weighted rfft2 half)
        d = X - Y (mode "complex": the seed's formula) or |X| - |Y| (mode "magnitude": amplitudes only)
        loss_b = ||d||_p / max(||X||_p, ||Y||_p);   loss = loss_weight * reduce_b(loss_b)

    `fused`: the package's one switch, 'on' | 'off' | 'auto' (or True | False | None): compiled kernel,
    pure PyTorch, or the kernel when built for the device (`ops._common.resolve_fused`, per call).
    """

    def __init__(self, p: int = 2, mode: str = "magnitude", reduction: str = "mean", fused: Fused = None,
                 loss_weight: float = 1.0):
        super().__init__()
        fused_mode(fused)  # a misspelt switch fails here, not at the first call
        if p not in (1, 2):
            raise ValueError(f"FFTLoss: p must be 1 or 2, got {p!r}")
        if mode not in ("magnitude", "complex"):
            raise ValueError(f"FFTLoss: mode must be 'magnitude' or 'complex', got {mode!r}")
        self.p, self.mode, self.fused, self.loss_weight = p, mode, fused, float(loss_weight)
        self.reduction = check_reduction(reduction, "FFTLoss")

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * fft_loss(pred, target, self.p, self.mode, self.reduction, fused=self.fused)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode!r}, reduction={self.reduction!r}, fused={self.fused}"


@functools.lru_cache(maxsize=32)
def dct_matrix(n: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """Orthonormal DCT-II basis M (n, n): (M x)_k = s_k sum_i x_i cos(pi (2i + 1) k / (2n)),
    s_0 = sqrt(1/n), s_k = sqrt(2/n). Cached per (n, dtype, device); do not modify in place."""
    # a normal tensor even when first asked for under inference_mode: autograd may save it later
    with torch.inference_mode(False):
        i = torch.arange(n, dtype=torch.float64)
        m = torch.cos(math.pi * (2 * i[None, :] + 1) * i[:, None] / (2 * n)) * math.sqrt(2.0 / n)
        m[0] /= math.sqrt(2.0)
        return m.to(dtype=dtype, device=device)


def dct2(x: torch.Tensor) -> torch.Tensor:
    """2-D orthonormal DCT-II over the last two dims: M_H x M_W^T (scipy.fft.dctn(x, norm="ortho"))."""
    mh = dct_matrix(x.shape[-2], x.dtype, x.device)
    mw = dct_matrix(x.shape[-1], x.dtype, x.device)
    return mh @ x @ mw.T


class DCTLoss(nn.Module):
    """Normalised DCT loss, the FFTLoss form on the 2-D orthonormal DCT-II::

        X = DCT2(pred), Y = DCT2(target), d = X - Y (mode "signed") or |X| - |Y| ("magnitude")
        loss_b = ||d||_p / max(||X||_p, ||Y||_p)  (0 when both are 0);  loss = loss_weight * reduce_b(loss_b)

    A NaN in pred_b or target_b gives loss_b NaN.
    """

    def __init__(self, p: int = 2, mode: str = "signed", reduction: str = "mean", loss_weight: float = 1.0):
        super().__init__()
        if p not in (1, 2):
            raise ValueError(f"DCTLoss: p must be 1 or 2, got {p!r}")
        if mode not in ("signed", "magnitude"):
            raise ValueError(f"DCTLoss: mode must be 'signed' or 'magnitude', got {mode!r}")
        self.p, self.mode, self.loss_weight = p, mode, float(loss_weight)
        self.reduction = check_reduction(reduction, "DCTLoss")

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair(pred, target, "DCTLoss", ndim=4)
        ct = compute_dtype(pred.dtype)
        X, Y = dct2(pred.to(ct)), dct2(target.to(ct))
        d = X - Y if self.mode == "signed" else X.abs() - Y.abs()
        dims = (1, 2, 3)
        nd = torch.linalg.vector_norm(d, ord=self.p, dim=dims)
        m = torch.maximum(torch.linalg.vector_norm(X, ord=self.p, dim=dims),  # maximum propagates NaN
                          torch.linalg.vector_norm(Y, ord=self.p, dim=dims))
        # m == 0 only for two all-zero images: loss 0, dividing by 1 there so the unused branch's gradient
        # stays finite; a NaN m stays NaN (a `m > 0` test would read it as the 0/0 case)
        zero = m == 0
        per_image = torch.where(zero, torch.zeros_like(m), nd / torch.where(zero, torch.ones_like(m), m))
        return self.loss_weight * reduce(per_image, self.reduction)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode!r}, reduction={self.reduction!r}"


_GRAY = (0.2989, 0.5870, 0.1140)  # the weights of Durall et al.'s RGB2gray


@functools.lru_cache(maxsize=32)
def _radial_bins(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer radius index per pixel around the fftshift centre (h//2, w//2), compacted to
    non-empty bins, and the pixel count of each bin."""
    with torch.inference_mode(False):  # cached: must stay usable by autograd (see dct_matrix)
        y = torch.arange(h, dtype=torch.float64)[:, None] - h // 2
        x = torch.arange(w, dtype=torch.float64)[None, :] - w // 2
        r = torch.sqrt(y * y + x * x).floor().long().flatten()
        _, idx, counts = torch.unique(r, return_inverse=True, return_counts=True)
        return idx.to(device), counts.to(device)


def azimuthal_profile(spectrum: torch.Tensor) -> torch.Tensor:
    """(B, H, W) centred spectrum -> (B, R) mean over each ring floor(radius) = k (non-empty rings)."""
    B, H, W = spectrum.shape
    idx, counts = _radial_bins(H, W, spectrum.device)
    sums = spectrum.new_zeros(B, counts.numel()).index_add_(1, idx, spectrum.reshape(B, H * W))
    return sums / counts.to(spectrum.dtype)


class SpectralLoss(nn.Module):
    """1-D power-spectrum profile loss of Durall et al. 2020 ("Watch your up-convolution"), differentiable.

        g = 0.2989 R + 0.5870 G + 0.1140 B  (1-channel inputs used as they are)
        S = fftshift(log(|fft2(g, "ortho")|^2 + eps))
        p[k] = mean of S over pixels with floor(|(y, x) - (H//2, W//2)|) = k      (azimuthal average)
        q = delta + (1 - 2 delta) (p - min p) / (max p - min p)                  (per image, in [delta, 1-delta])
        loss = loss_weight * mean_b mean_k BCE(q_pred[k], q_target[k])

    The original computed the profile in numpy, so no gradient reached the generator; here it does.
    `delta` (1e-4) keeps BCE's gradient finite at the profile's extremes. The loss is minimal (not 0:
    BCE(t, t) is t's entropy) and its gradient 0 when pred == target. A NaN in pred_b or target_b gives
    loss_b NaN (and a zero gradient on that image).
    """

    def __init__(self, eps: float = 1e-8, delta: float = 1e-4, reduction: str = "mean", loss_weight: float = 1.0):
        super().__init__()
        if not eps > 0:
            raise ValueError(f"SpectralLoss: eps must be > 0, got {eps!r}")
        if not 0 <= delta < 0.5:
            raise ValueError(f"SpectralLoss: delta must be in [0, 0.5), got {delta!r}")
        self.eps, self.delta, self.loss_weight = float(eps), float(delta), float(loss_weight)
        self.reduction = check_reduction(reduction, "SpectralLoss")

    def profile(self, img: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> normalised 1-D profile q (B, R)."""
        img = img.to(compute_dtype(img.dtype))
        if img.shape[1] == 3:
            gray = sum(wt * img[:, c] for c, wt in enumerate(_GRAY))
        elif img.shape[1] == 1:
            gray = img[:, 0]
        else:
            raise ValueError(f"SpectralLoss: inputs must have 1 or 3 channels, got shape {tuple(img.shape)}")
        spec = torch.fft.fftshift(torch.fft.fft2(gray, norm="ortho"), dim=(-2, -1))
        p = azimuthal_profile(torch.log(spec.real ** 2 + spec.imag ** 2 + self.eps))
        lo, hi = p.amin(1, keepdim=True), p.amax(1, keepdim=True)
        q = (p - lo) / (hi - lo).clamp_min(torch.finfo(p.dtype).tiny)
        return self.delta + (1 - 2 * self.delta) * q

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair(pred, target, "SpectralLoss", ndim=4)
        if pred.shape[-2] < 2 or pred.shape[-1] < 2:
            raise ValueError(f"SpectralLoss: H and W must be >= 2, got shape {tuple(pred.shape)}")
        q_pred, q_target = self.profile(pred), self.profile(target.detach())
        # binary_cross_entropy raises on NaN (it checks its inputs lie in [0, 1]): images with a NaN
        # profile get a placeholder for it and a NaN loss
        nan_rows = (q_pred.isnan() | q_target.isnan()).any(1, keepdim=True)
        half = torch.full_like(q_pred, 0.5)
        bce = F.binary_cross_entropy(torch.where(nan_rows, half, q_pred), torch.where(nan_rows, half, q_target),
                                     reduction="none")
        per_image = torch.where(nan_rows, torch.full_like(bce, float("nan")), bce).mean(1)
        return self.loss_weight * reduce(per_image, self.reduction)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, delta={self.delta}, reduction={self.reduction!r}"


class FocalFrequencyLoss(nn.Module):
    """Focal frequency loss (Jiang et al. 2021), as the authors' reference implementation::

        F = fft2(patches, "ortho")  (the image cut into patch_factor x patch_factor patches)
        [ave_spectrum: F averaged over the batch first]
        d = |F_pred - F_target|^2 per frequency (u, v)
        w = |F_pred - F_target|^alpha  [log(w + 1) if log_matrix], divided by its max over (u, v) per
            (image, patch, channel) (over everything if batch_matrix), NaN -> 0, clipped to [0, 1], detached
        loss = loss_weight * mean(w * d)

    `forward(pred, target, matrix=None)`: a given `matrix` is used (detached) as w.
    """

    def __init__(self, loss_weight: float = 1.0, alpha: float = 1.0, patch_factor: int = 1,
                 ave_spectrum: bool = False, log_matrix: bool = False, batch_matrix: bool = False):
        super().__init__()
        if not isinstance(patch_factor, int) or patch_factor < 1:
            raise ValueError(f"FocalFrequencyLoss: patch_factor must be an int >= 1, got {patch_factor!r}")
        self.loss_weight, self.alpha, self.patch_factor = float(loss_weight), float(alpha), patch_factor
        self.ave_spectrum, self.log_matrix, self.batch_matrix = ave_spectrum, log_matrix, batch_matrix

    def tensor2freq(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> complex spectra of the patches (B, P*P, C, H/P, W/P)."""
        pf = self.patch_factor
        B, C, H, W = x.shape
        if H % pf or W % pf:
            raise ValueError(f"FocalFrequencyLoss: H and W must be divisible by patch_factor={pf}, "
                             f"got shape {tuple(x.shape)}")
        ph, pw = H // pf, W // pf
        # (B, C, pf, ph, pf, pw) -> (B, pf, pf, C, ph, pw): patch (i, j) at index i * pf + j
        patches = x.reshape(B, C, pf, ph, pf, pw).permute(0, 2, 4, 1, 3, 5).reshape(B, pf * pf, C, ph, pw)
        return torch.fft.fft2(patches.to(compute_dtype(x.dtype)), norm="ortho")

    def forward(self, pred: torch.Tensor, target: torch.Tensor, matrix: torch.Tensor | None = None) -> torch.Tensor:
        check_pair(pred, target, "FocalFrequencyLoss", ndim=4)
        fp, ft = self.tensor2freq(pred), self.tensor2freq(target)
        if self.ave_spectrum:
            fp, ft = fp.mean(0, keepdim=True), ft.mean(0, keepdim=True)
        diff = fp - ft
        dist = diff.real ** 2 + diff.imag ** 2
        if matrix is not None:
            w = matrix.detach()
        else:
            with torch.no_grad():
                w = dist.sqrt() ** self.alpha
                if self.log_matrix:
                    w = torch.log(w + 1.0)
                top = w.amax() if self.batch_matrix else w.amax(dim=(-2, -1), keepdim=True)
                w = torch.nan_to_num(w / top, nan=0.0).clamp(0.0, 1.0)
        return self.loss_weight * (w * dist).mean()

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, patch_factor={self.patch_factor}, ave_spectrum={self.ave_spectrum}, "
                f"log_matrix={self.log_matrix}, batch_matrix={self.batch_matrix}")
