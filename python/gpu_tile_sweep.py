"""Sweep the CTA tiles of the fused RRDB's CUTLASS fprop (convs 1..4, bf16) on a GPU and keep the fastest
valid one (issue 14; run by python/gpu_check.sh).

For B16 x 64 ch x LR 32 and 64 (ESRGAN's nf 64 / gc 32, bf16, channels_last) and every tile of
rrdb_kernels.h (0 = 128x32x64, the default; 1 = 64x32x64; 2 = 256x32x32) the RRDB forward with
cutlass="fwd" is timed (median of CUDA events) after checking that the tile is valid: no conv fell
back to cuDNN (gansr_ext.ops.rrdb.cutlass_fallbacks) and the output matches tile 0's within bf16
rounding. The tile is set through the extension's unmangled `gansr_rrdb_set_fprop_tile` (ctypes; the
process-wide setter of rrdb_cutlass.cu), restored to the previous one at the end.

  python python/gpu_tile_sweep.py [--out tiles.json] [--lr 32 64] [--reps 30]

Prints one line per (LR, tile) and the choice; --out writes {"rows": [...], "best": {"32": tile, ...},
"best_overall": tile} (the tile with the least summed time among those valid at every LR).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import time_fn  # noqa: E402

TILES = {0: "128x32x64", 1: "64x32x64", 2: "256x32x32"}  # rrdb_kernels.h set_fprop_tile


def tile_setter():
    """ctypes handle of gansr_rrdb_set_fprop_tile in the loaded extension"""
    import gansr_ext._C as ext

    fn = ctypes.CDLL(ext.__file__).gansr_rrdb_set_fprop_tile
    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn


def sweep(lrs, batch=16, nf=64, gc=32, warmup=5, reps=30) -> dict:
    from gansr_ext.models.rrdbnet import RRDB
    from gansr_ext.ops import rrdb as R

    set_tile = tile_setter()
    prev = set_tile(0)
    dev = torch.device("cuda")
    rows = []
    try:
        for lr in lrs:
            torch.manual_seed(0)
            block = RRDB(nf, gc).to(dev, torch.bfloat16).to(memory_format=torch.channels_last)
            params = R.rrdb_params(block)
            x = torch.randn(batch, nf, lr, lr, device=dev, dtype=torch.bfloat16).contiguous(
                memory_format=torch.channels_last)
            ref = None
            for tile, name in TILES.items():
                assert set_tile(tile) >= 0
                fwd = lambda: R.rrdb(x, params, fused=True, cutlass="fwd")  # noqa: E731
                with torch.no_grad():
                    R.cutlass_fallbacks(reset=True)
                    out = fwd().float()
                    torch.cuda.synchronize()
                    fallbacks = R.cutlass_fallbacks(reset=True)
                    if ref is None:
                        ref = out
                    err = ((out - ref).abs().max() / ref.abs().max()).item()
                    valid = fallbacks == 0 and bool(torch.isfinite(out).all()) and err < 2e-2
                    ms = time_fn(fwd, dev, warmup=warmup, iters=reps) if valid else None
                row = {"lr": lr, "batch": batch, "tile": tile, "shape": name, "ms": ms, "valid": valid,
                       "fallbacks": fallbacks, "rel_err_vs_tile0": err}
                rows.append(row)
                print(f"LR {lr:3d} tile {tile} {name:>10}: "
                      + (f"{ms:7.3f} ms" if valid else f"INVALID (fallbacks {fallbacks}, err {err:.2e})"),
                      flush=True)
    finally:
        set_tile(prev)
    best = {}
    for lr in lrs:
        ok = [r for r in rows if r["lr"] == lr and r["valid"]]
        best[str(lr)] = min(ok, key=lambda r: r["ms"])["tile"] if ok else 0
    everywhere = [t for t in TILES if all(r["valid"] for r in rows if r["tile"] == t)]
    overall = min(everywhere, key=lambda t: sum(r["ms"] for r in rows if r["tile"] == t)) if everywhere else 0
    return {"rows": rows, "best": best, "best_overall": overall, "tiles": TILES}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="JSON file for the rows and the choice")
    ap.add_argument("--lr", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_tile_sweep: no CUDA device", file=sys.stderr)
        return 2
    res = sweep(args.lr, batch=args.batch, warmup=args.warmup, reps=args.reps)
    print(f"fastest valid tile per LR: {res['best']}; overall: {res['best_overall']} "
          f"({TILES[res['best_overall']]})")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
