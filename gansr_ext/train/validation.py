"""Validation during training: SR of each validation image with the EMA generator, metrics, samples.

PSNR and SSIM are computed on the Y channel with `crop_border` pixels shaved (the SR papers'
protocol); LPIPS needs pretrained AlexNet weights and is left out with a note when they are absent;
NIQE is no-reference (on the SR image only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch


def build_metrics(names, crop_border: int, device: torch.device) -> tuple[dict[str, Callable], list[str]]:
    """name -> fn(sr, hr) -> float for (C, H, W) tensors in [0, 1]; plus notes on what was left out."""
    from ..weights import MissingWeightsError

    out: dict[str, Callable] = {}
    notes: list[str] = []
    for name in names:
        if name in ("psnr", "ssim"):
            from .. import metrics

            fn = getattr(metrics, name)
            out[name] = lambda sr, hr, fn=fn: float(fn(sr, hr, crop_border=crop_border, y_channel=True))
        elif name == "niqe":
            from ..metrics import niqe

            out[name] = lambda sr, hr: float(niqe(sr, crop_border=crop_border))
        elif name == "lpips":
            from ..metrics import LPIPSMetric

            try:
                net = LPIPSMetric(device=device)
            except MissingWeightsError as e:
                notes.append(f"validation: LPIPS left out, its pretrained weights are missing ({e})")
                continue
            out[name] = lambda sr, hr, net=net: float(net(sr, hr))
        else:
            raise ValueError(f"val.metrics: unknown metric {name!r} (psnr, ssim, niqe, lpips)")
    return out, notes


@torch.no_grad()
def super_resolve(model: torch.nn.Module, lr: torch.Tensor, device: torch.device, autocast,
                  memory_format=torch.contiguous_format) -> torch.Tensor:
    """model(lr) for one (C, h, w) or (1, C, h, w) image, clamped to [0, 1], fp32 on CPU."""
    x = lr if lr.dim() == 4 else lr[None]
    x = x.to(device).contiguous(memory_format=memory_format)
    with autocast():
        sr = model(x)
    return sr.float().clamp(0, 1).cpu().contiguous()


@torch.no_grad()
def run_validation(model, dataset, metrics: dict, device, autocast, max_images: int | None, save_images: int,
                   out_dir: Path, memory_format=torch.contiguous_format, notes: list | None = None) -> dict:
    """Mean of each metric over the (first `max_images`) validation images. A metric that rejects an
    image (ValueError, e.g. NIQE on an image under 192 pixels) is averaged over the others, and left
    out when it rejects them all; `notes` receives one line per such metric."""
    from ..data import write_image

    was_training = model.training
    model.eval()
    values: dict[str, list[float]] = {k: [] for k in metrics}
    rejected: dict[str, str] = {}
    n = len(dataset) if max_images is None else min(len(dataset), max_images)
    for i in range(n):
        item = dataset[i]
        sr = super_resolve(model, item["lr"], device, autocast, memory_format)[0]
        hr = item["hr"].float()
        for k, fn in metrics.items():
            try:
                values[k].append(fn(sr, hr))
            except ValueError as e:
                rejected.setdefault(k, f"{item.get('name', i)}: {e}")
        if i < save_images:
            write_image(out_dir / f"{Path(str(item.get('name', i))).stem}.png", sr)
    model.train(was_training)
    if notes is not None:
        notes += [f"validation: {k} skipped on some images ({why})" for k, why in rejected.items()]
    return {k: sum(v) / len(v) for k, v in values.items() if v}
