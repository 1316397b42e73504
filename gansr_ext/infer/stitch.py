"""The CPU-side array work around the network: padding before it, stitching tile outputs after it.

`tiling.py` plans the tiles and their blending weights; `run_tiled` executes a plan on one image:
batches of tile windows go through `run` (the Upscaler's device round trip), each output is weighted
and accumulated into a full-size CPU buffer, and the sum is normalised by the outer product of the two
per-axis weight sums. `reflect_pad` is the Upscaler's pre-padding (every side, cropped after);
`pad_to_multiple` pads right/bottom to the pixel-unshuffle factor of RRDBNet x2/x1.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from . import tiling


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    ph, pw = (-x.shape[-2]) % multiple, (-x.shape[-1]) % multiple
    if not ph and not pw:
        return x
    reflect = ph < x.shape[-2] and pw < x.shape[-1]
    return F.pad(x, (0, pw, 0, ph), mode="reflect" if reflect else "replicate")


def reflect_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """`pad` pixels on every side: reflected, or replicated where the image is too small to reflect."""
    if not pad:
        return x
    mode = "reflect" if pad < min(x.shape[-2:]) else "replicate"
    return F.pad(x, (pad,) * 4, mode=mode)


def run_tiled(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, plan: tiling.TilePlan, scale: int,
              batch: int, progress: bool = False) -> torch.Tensor:
    """One (C, H, W) CPU image through the tile grid `plan`, `batch` tiles per `run` call ((N, C, h, w)
    CPU float32 -> (N, C', sh, sw) CPU float32); returns the blended (C', sH, sW) output."""
    _, h, w = x.shape
    s = scale
    out = None
    row_w = {r: tiling.axis_weight(r, h, plan.feather, s) for r in plan.rows}
    col_w = {c: tiling.axis_weight(c, w, plan.feather, s) for c in plan.cols}
    norm_h, norm_w = torch.zeros(h * s), torch.zeros(w * s)
    for r in plan.rows:
        norm_h[r.window[0] * s:r.window[1] * s] += row_w[r]
    for c in plan.cols:
        norm_w[c.window[0] * s:c.window[1] * s] += col_w[c]
    tiles = plan.tiles()
    bar = _progress(len(tiles), progress)
    for i in range(0, len(tiles), batch):
        group = tiles[i:i + batch]
        inp = torch.stack([x[:, r.window[0]:r.window[1], c.window[0]:c.window[1]] for r, c in group])
        y = run(inp)
        if out is None:
            out = torch.zeros(y.shape[1], h * s, w * s)
        for (r, c), yt in zip(group, y):
            weight = row_w[r][:, None] * col_w[c][None, :]
            out[:, r.window[0] * s:r.window[1] * s, c.window[0] * s:c.window[1] * s].addcmul_(yt, weight)
        if bar is not None:
            bar.update(len(group))
    if bar is not None:
        bar.close()
    return out.div_(norm_h[:, None] * norm_w[None, :])


def _progress(total: int, enabled: bool):
    if not enabled or total <= 1:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="tiles", unit="tile", leave=False, disable=None)  # None: off when not a TTY
