"""Benchmark of the fused RRDB op (`gansr_ext.ops.rrdb`) against eager PyTorch (GPU only).

Rows (bf16, B16 at LR 32 and LR 64 unless stated), each timed as the median of CUDA-event
measurements after warm-up, all variants re-measured in this run:
  dense block fwd+bwd   eager autocast channels_last; fused = one fused RRDB / 3 (the op works per RRDB)
  RRDB fwd+bwd          fused | fused with CUTLASS forward convs (GANSR_RRDB_CUTLASS=1) | eager autocast
                        channels_last | CUDA-graphed eager / fused | torch.compile
  G (RRDBNet nb=23) fwd+bwd, same variants (+ CUDA-graphed fused), the peak memory of the step and
                        the GPU kernels it launches (profiler; the fused trunk casts its parameters
                        to bf16 in one kernel, not one per tensor)
  inference 1x3x512x512 -> x4, fp16 weights, channels_last: fused vs eager
Prints a table with ratios (eager / fused) and writes OUT.json + OUT.md (benchlib.write_results).

    python python/bench_rrdb.py [--out bench/results/rrdb] [--quick] [--no-compile]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import metadata, time_fn, write_results  # noqa: E402

COLUMNS = ["fused", "fused_cutlass", "eager", "eager_graph", "fused_graph", "compile"]


def _timed(fn, warmup: int, reps: int) -> float:
    return time_fn(fn, torch.device("cuda"), warmup=warmup, iters=reps)


def graphed(step, warmup: int = 3):
    """Capture `step` (forward + backward into existing .grad buffers) in one CUDA graph; returns replay."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


@contextlib.contextmanager
def cutlass_convs():
    """Opt the fused op's forward convs 1..4 into the CUTLASS kernels (GANSR_RRDB_CUTLASS=1)."""
    prev = os.environ.get("GANSR_RRDB_CUTLASS")
    os.environ["GANSR_RRDB_CUTLASS"] = "1"
    try:
        yield
    finally:
        if prev is None:
            del os.environ["GANSR_RRDB_CUTLASS"]
        else:
            os.environ["GANSR_RRDB_CUTLASS"] = prev


def train_step(model, x, grad, dtype):
    def step():
        with torch.autocast("cuda", dtype=dtype, cache_enabled=False):
            out = model(x)
        out.backward(grad)
    return step


def kernels_per_call(fn) -> int:
    """GPU kernels (and memsets / copies) one call of fn launches, from the profiler's CUDA events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(e.device_type == torch.autograd.DeviceType.CUDA for e in prof.events())


def rrdb_variants(nf, gc, B, lr, dtype, args):
    from gansr_ext.models.rrdbnet import RRDB, ResidualDenseBlock
    from gansr_ext.ops.rrdb import rrdb, rrdb_params

    dev = "cuda"
    block = RRDB(nf, gc).to(dev).to(memory_format=torch.channels_last)
    x = torch.randn(B, nf, lr, lr, device=dev, dtype=dtype).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    g = torch.randn_like(x)
    fused = lambda: rrdb(x, rrdb_params(block), fused=True).backward(g)  # noqa: E731
    eager = train_step(block, x, g, dtype)
    res = {"fused": _timed(fused, args.warmup, args.reps), "eager": _timed(eager, args.warmup, args.reps)}
    with cutlass_convs():
        res["fused_cutlass"] = _timed(fused, args.warmup, args.reps)
    res["eager_graph"] = _timed(graphed(eager), args.warmup, args.reps)
    res["fused_graph"] = _timed(graphed(fused), args.warmup, args.reps)
    if not args.no_compile:
        compiled = torch.compile(block)
        res["compile"] = _timed(train_step(compiled, x, g, dtype), args.warmup, args.reps)
    rdb = ResidualDenseBlock(nf, gc).to(dev).to(memory_format=torch.channels_last)
    dense = {"eager": _timed(train_step(rdb, x, g, dtype), args.warmup, args.reps), "fused": res["fused"] / 3}
    return res, dense


def generator_variants(B, lr, dtype, args):
    from gansr_ext.models import RRDBNet

    G = RRDBNet(nb=args.nb).cuda().to(memory_format=torch.channels_last)
    x = torch.rand(B, 3, lr, lr, device="cuda").contiguous(memory_format=torch.channels_last)
    g = torch.randn(B, 3, 4 * lr, 4 * lr, device="cuda")
    res, mem, kernels = {}, {}, {}
    for name, flag in (("eager", False), ("fused", True)):
        G.set_fused(flag)
        step = train_step(G, x, g, dtype)
        step()
        G.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        mem[name] = (torch.cuda.max_memory_allocated() - base) / 2**30
        kernels[name] = kernels_per_call(step)
        res[name] = _timed(step, args.warmup, args.reps)
        res[name + "_graph"] = _timed(graphed(step), args.warmup, args.reps)
        if flag:
            with cutlass_convs():
                res["fused_cutlass"] = _timed(step, args.warmup, args.reps)
    G.set_fused(False)
    if not args.no_compile:
        for blk in G.body:  # regional compile: one graph per RRDB, reused 23 times
            blk.compile()
        res["compile"] = _timed(train_step(G, x, g, dtype), args.warmup, args.reps)
    return res, mem, kernels


def inference(args):
    from gansr_ext.models import RRDBNet

    G = RRDBNet(nb=args.nb).cuda().half().to(memory_format=torch.channels_last).eval()
    size = 256 if args.quick else 512
    x = torch.rand(1, 3, size, size, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    res = {}
    with torch.inference_mode():
        for name, flag in (("eager", False), ("fused", True)):
            G.set_fused(flag)
            res[name] = _timed(lambda: G(x), max(2, args.warmup // 2), max(3, args.reps // 4))
        with cutlass_convs():  # fp16: CUTLASS forward convs
            res["fused_cutlass"] = _timed(lambda: G(x), max(2, args.warmup // 2), max(3, args.reps // 4))
    return size, res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench/results/rrdb", help="writes OUT.json and OUT.md")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--nb", type=int, default=23, help="RRDBs in the generator")
    p.add_argument("--quick", action="store_true", help="LR 32 only, smaller inference image")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_rrdb: no CUDA GPU available; nothing to measure")
        return 0
    from gansr_ext._ext import cuda_kernels_available

    if not cuda_kernels_available():
        print("bench_rrdb: gansr_ext._C has no CUDA kernels (rebuild with nvcc); nothing to measure")
        return 0
    torch.backends.cudnn.benchmark = True
    dtype = torch.bfloat16
    meta = {**metadata(torch.device("cuda")), "dtype": "bfloat16", "batch": 16}
    rows = []

    def flush():  # write after every section so a timeout still leaves results
        table = [{"work": r["work"], **{c: r[c] for c in COLUMNS if c in r},
                  "eager/fused": r["eager"] / r["fused"] if r.get("fused") else ""} for r in rows]
        write_results(args.out, "Fused RRDB: bf16 B16 fwd+bwd (ms unless stated); ratio = eager / fused", meta,
                      table, ["work"] + COLUMNS + ["eager/fused"])

    t0 = time.time()
    for lr in ((32,) if args.quick else (32, 64)):
        rrdb_res, dense = rrdb_variants(64, 32, 16, lr, dtype, args)
        rows.append({"work": f"dense block fwd+bwd LR{lr}", **dense})
        rows.append({"work": f"RRDB fwd+bwd LR{lr}", **rrdb_res})
        flush()
        g_res, mem, kernels = generator_variants(16, lr, dtype, args)
        rows.append({"work": f"G fwd+bwd LR{lr}", **g_res})
        rows.append({"work": f"G step peak memory LR{lr} (GiB)", **mem})
        rows.append({"work": f"G step GPU kernels LR{lr} (count)", **kernels})
        flush()
    size, inf = inference(args)
    rows.append({"work": f"inference 1x3x{size}x{size} -> x4 fp16", **inf})
    flush()
    print(f"bench_rrdb: {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
