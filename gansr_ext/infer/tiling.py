"""Tile planning and feathered blending for tiled inference.

Each axis of length L is cut into n = ceil(L / tile) nearly equal *cores* (a partition of [0, L)).
A core [c0, c1) is read through a *window* that adds ``context = overlap + feather`` input pixels on
each side (clamped to the image, shifted inwards so all windows of an axis have the same size and
tiles can be batched). Along an axis, the tile's output weight at input position p (output pixel X
sits at p = (X + 0.5) / scale) is::

    w(p) = ramp((p - (c0 - f)) / 2f)  *  ramp(((c1 + f) - p) / 2f),   ramp(t) = clamp(t, 0, 1)

with f = feather and the ramp on a side replaced by 1 at the image border. Adjacent ramps sum to 1,
so the weights of neighbouring cores form a partition of unity over a band of width 2f around each
core boundary; the 2-D weight is the outer product of the two axes' weights. A tile contributes only
where p is in (c0 - f, c1 + f), and its window reaches `overlap` pixels beyond that, so:

    if `overlap` >= the model's receptive-field radius (in input pixels), tiled == untiled
    (up to float rounding); a smaller overlap gives errors that the feather ramp spreads smoothly
    instead of leaving a visible seam.

Because every tile's weight is separable and the tiles form a grid, the sum of weights is the outer
product of the per-axis sums: normalisation needs only two 1-D buffers, not a full-size weight map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AxisSpan:
    """One tile along one axis: the core it is responsible for and the window it reads."""

    core: tuple[int, int]
    window: tuple[int, int]


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _tile_on_grid(tile: int, multiple: int) -> int:
    """`tile` rounded down to the `multiple` grid, at least one grid step."""
    return max(multiple, tile // multiple * multiple)


def check_int(name: str, value, minimum: int, who: str = "tiling") -> None:
    """ValueError naming `who` and `name` unless `value` is an int (not a bool) >= `minimum` (0 or 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "positive" if minimum > 0 else "non-negative"
        raise ValueError(f"{who}: {name} must be a {kind} int, got {value!r}")


def _cores(length: int, tile: int, multiple: int) -> list[tuple[int, int]]:
    """n = ceil(length / tile) nearly equal cores partitioning [0, length), on the `multiple` grid."""
    units = length // multiple
    n = math.ceil(length / tile)
    bounds = [round(i * units / n) * multiple for i in range(n + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(n)]


def plan_axis(length: int, tile: int, context: int, multiple: int = 1) -> list[AxisSpan]:
    """Cores and equal-size windows along one axis (see the module docstring).

    `length` must be a multiple of `multiple` (the model's input size granularity, e.g. 4 for a
    pixel-unshuffled x1 RRDBNet); core boundaries, window starts and sizes are multiples of it.
    """
    check_int("length", length, 1)
    check_int("tile", tile, 1)
    check_int("multiple", multiple, 1)
    check_int("context", context, 0)
    if length % multiple:
        raise ValueError(f"tiling: length {length} is not a multiple of {multiple}")
    tile = _tile_on_grid(tile, multiple)
    cores = _cores(length, tile, multiple)
    if len(cores) == 1:
        return [AxisSpan((0, length), (0, length))]
    max_core = max(c1 - c0 for c0, c1 in cores)
    # + multiple - 1: the start is floored to the grid, the window must still reach c1 + context
    size = min(length, _ceil_to(max_core + 2 * context + multiple - 1, multiple))
    spans = []
    for c0, c1 in cores:
        start = (c0 - context) // multiple * multiple
        start = min(max(start, 0), length - size)
        spans.append(AxisSpan((c0, c1), (start, start + size)))
    return spans


def axis_weight(span: AxisSpan, length: int, feather: float, scale: int) -> torch.Tensor:
    """1-D float32 blending weight over the span's output window (length scale * window size)."""
    (c0, c1), (w0, w1) = span.core, span.window
    p = (torch.arange(w0 * scale, w1 * scale, dtype=torch.float64) + 0.5) / scale
    w = torch.ones_like(p)
    if feather > 0:
        if c0 > 0:
            w = w * ((p - (c0 - feather)) / (2 * feather)).clamp(0, 1)
        if c1 < length:
            w = w * (((c1 + feather) - p) / (2 * feather)).clamp(0, 1)
    else:  # hard cut at the core boundary
        w = w * ((p >= c0) & (p < c1))
    return w.float()


@dataclass(frozen=True)
class TilePlan:
    """A grid of tiles over an (H, W) image: rows x cols spans and the feather used."""

    rows: list[AxisSpan]
    cols: list[AxisSpan]
    height: int
    width: int
    feather: float

    @property
    def tile_shape(self) -> tuple[int, int]:
        """(h, w) of every window: all tiles have the same shape so they can be batched."""
        r, c = self.rows[0].window, self.cols[0].window
        return r[1] - r[0], c[1] - c[0]

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def tiles(self):
        """(row_span, col_span) pairs in raster order."""
        return [(r, c) for r in self.rows for c in self.cols]


def plan_tiles(height: int, width: int, tile: int, overlap: int, feather: int, multiple: int = 1) -> TilePlan:
    """Plan a tile grid. `feather` is reduced to half the shortest core so ramps of one core's two
    sides never overlap (which keeps the weights a partition of unity)."""
    check_int("tile", tile, 1)
    check_int("overlap", overlap, 0)
    check_int("feather", feather, 0)
    check_int("multiple", multiple, 1)
    tile = _tile_on_grid(tile, multiple)
    core_sizes = [c1 - c0 for length in (height, width) if length > tile
                  for c0, c1 in _cores(length, tile, multiple)]
    if core_sizes:
        feather = min(feather, min(core_sizes) // 2)
    context = overlap + feather
    rows = plan_axis(height, tile, context, multiple)
    cols = plan_axis(width, tile, context, multiple)
    return TilePlan(rows, cols, height, width, float(feather))


def auto_tile_size(free_bytes: int, bytes_per_pixel: float, batch: int, context: int, multiple: int = 1,
                   budget: float = 0.5, min_tile: int = 32, max_tile: int = 1024) -> int:
    """Largest core size whose batch of windows, (tile + 2 context)^2 pixels each, fits the budget.

    ``batch * (tile + 2 * context)^2 * bytes_per_pixel <= budget * free_bytes``, clamped to
    [min_tile, max_tile] and rounded down to `multiple`.
    """
    if free_bytes <= 0 or bytes_per_pixel <= 0 or batch < 1:
        raise ValueError(f"auto_tile_size: need positive free_bytes, bytes_per_pixel and batch, got "
                         f"{free_bytes}, {bytes_per_pixel}, {batch}")
    side = math.sqrt(budget * free_bytes / (batch * bytes_per_pixel))
    tile = int(side) - 2 * context
    tile = min(max(tile, min_tile), max_tile)
    return _tile_on_grid(tile, multiple)
