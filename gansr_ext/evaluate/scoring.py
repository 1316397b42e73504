"""The metric table (one entry per metric: column label, number format, what it scores) and
`MetricSuite`, which builds the requested metrics once and scores one image with them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from gansr_ext import metrics as M


@dataclass(frozen=True)
class Metric:
    """One column of the tables.

    scope: "pair" (an output against its HR image), "image" (an image alone, no reference: also
    reported for the HR images) or "set" (a method's outputs against the HR set, FID / spectral).
    score: `(suite, sr, hr, scale) -> float` for the per-image scopes, None for "set".
    """

    label: str
    fmt: str
    scope: str
    score: Callable | None = None


METRIC_TABLE = {  # in column order
    "niqe": Metric("NIQE ↓", "{:.3f}", "image", lambda s, sr, hr, scale: M.niqe(sr, crop_border=scale)),
    "fid": Metric("FID ↓", "{:.2f}", "set"),
    "lpips": Metric("LPIPS ↓", "{:.4f}", "pair", lambda s, sr, hr, scale: s.lpips(sr, hr)),
    "psnr": Metric("PSNR ↑", "{:.2f}", "pair", lambda s, sr, hr, scale: M.psnr(sr, hr, crop_border=scale)),
    "ssim": Metric("SSIM ↑", "{:.4f}", "pair", lambda s, sr, hr, scale: M.ssim(sr, hr, crop_border=scale)),
    "brisque": Metric("BRISQUE ↓", "{:.2f}", "image", lambda s, sr, hr, scale: M.brisque(sr)),
    "spectral": Metric("Spectral ↓", "{:.4g}", "set"),  # 0.6 (abs) .. 0.0003 (durall)
}
METRICS = tuple(METRIC_TABLE)
BICUBIC = "Bicubic"  # the row every evaluation has; "HR" names the reference images (not a row)
PER_IMAGE = tuple(k for k, m in METRIC_TABLE.items() if m.scope != "set")
NO_REFERENCE = tuple(k for k, m in METRIC_TABLE.items() if m.scope == "image")


def format_value(metric: str, value) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "inf"
    return METRIC_TABLE[metric].fmt.format(value)


class MetricSuite:
    """The requested metrics (`names`, column order), built once; `unavailable` says why those that
    cannot run cannot (missing weights, pytorch-fid not installed)."""

    def __init__(self, opts, device):
        self.names = opts.metrics
        self.pretrained = opts.pretrained
        self.spectral_kind = opts.spectral_kind
        self.unavailable: dict[str, str] = {}
        self.notes: list[str] = []
        if "spectral" in self.names:
            self.notes.append(f"spectral discrepancy of kind {opts.spectral_kind!r} (gansr_ext.metrics.spectrum)")
        self.lpips = self.fid = None
        if "lpips" in self.names:
            self.lpips = self._build("lpips", _make_lpips, opts.lpips_net, opts.pretrained, opts.lpips_weights,
                                     device)
        if "fid" in self.names:
            self.fid = self._build("fid", _make_fid, opts.fid_weights, opts.pretrained, device, opts.fid_dims)
            if opts.fid_dims != 2048:
                self.notes.append(f"FID on {opts.fid_dims}-d Inception features (not the standard 2048-d pool3)")

    def _build(self, name, make, *args):
        from gansr_ext.weights import MissingWeightsError

        try:
            return make(*args)
        except (MissingWeightsError, ImportError) as e:  # ImportError: pytorch-fid not installed
            self.unavailable[name] = f"{type(e).__name__}: {e}"
            return None

    def score_image(self, sr: np.ndarray, hr: np.ndarray, scale: int, only=PER_IMAGE) -> dict:
        """{metric: value or the ValueError that stopped it} for one image against its HR image."""
        out = {}
        for name in only:
            if name in self.names and name not in self.unavailable:
                try:
                    out[name] = float(METRIC_TABLE[name].score(self, sr, hr, scale))
                except ValueError as e:
                    out[name] = e
        return out


def _make_lpips(net, pretrained, weights, device):
    from gansr_ext.metrics.lpips import LPIPSMetric

    return LPIPSMetric(net, pretrained, weights, device)


def _make_fid(weights, pretrained, device, dims):
    from gansr_ext.metrics.fid import FIDMetric

    return FIDMetric(weights, pretrained, device, dims=dims)
