"""Benchmark of the fused RRDB op (`gansr_ext.ops.rrdb`) against eager PyTorch (GPU only).

Rows (bf16, B16 at LR 32 and LR 64 unless stated), each timed as the median of CUDA-event
measurements after warm-up, all variants re-measured in this run:
  dense block fwd+bwd   eager autocast channels_last; fused = one fused RRDB / 3 (the op works per RRDB)
  RRDB fwd+bwd          fused | fused with CUTLASS forward convs (cutlass="fwd") | + CUTLASS
                        dgrad / wgrad (cutlass="all") | eager autocast
                        channels_last | CUDA-graphed eager / fused | torch.compile
  G (RRDBNet nb=23) fwd+bwd, same variants (+ CUDA-graphed fused), the peak memory of the step and
                        the GPU kernels it launches (profiler; the fused trunk casts its parameters
                        to bf16 in one kernel, not one per tensor)
  inference 1x3x512x512 -> x4, fp16 weights, channels_last: fused vs eager
Prints a table with ratios (eager / fused) and writes OUT.json + OUT.md (benchlib.write_results).

    python python/bench_rrdb.py [--out bench/results/rrdb] [--quick] [--no-compile]
    python python/bench_rrdb.py --cpu-launches   # no GPU: bench/results/rrdb_launches_cpu.{json,md}
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import metadata, time_fn, write_results  # noqa: E402

COLUMNS = ["fused", "fused_cutlass", "fused_cutlass_bwd", "eager", "eager_graph", "fused_graph", "compile"]


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


# the CUTLASS columns: "fwd" = forward convs 1..4, "all" = + backward dgrad / wgrad
CUTLASS_COLUMNS = {"fused_cutlass": "fwd", "fused_cutlass_bwd": "all"}


@contextlib.contextmanager
def cutlass_convs(model, mode: str):
    """Run `model`'s fused trunk with `cutlass=mode` (gansr_ext.ops.rrdb: off | fwd | bwd | all)."""
    prev, model.cutlass = model.cutlass, mode
    try:
        yield
    finally:
        model.cutlass = prev


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
    def fused_step(cutlass="off"):
        return lambda: rrdb(x, rrdb_params(block), fused=True, cutlass=cutlass).backward(g)

    fused = fused_step()
    eager = train_step(block, x, g, dtype)
    res = {"fused": _timed(fused, args.warmup, args.reps), "eager": _timed(eager, args.warmup, args.reps)}
    for column, mode in CUTLASS_COLUMNS.items():
        res[column] = _timed(fused_step(mode), args.warmup, args.reps)
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
            for column, mode in CUTLASS_COLUMNS.items():
                with cutlass_convs(G, mode):
                    res[column] = _timed(step, args.warmup, args.reps)
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
        with cutlass_convs(G, "fwd"):  # fp16: CUTLASS forward convs
            res["fused_cutlass"] = _timed(lambda: G(x), max(2, args.warmup // 2), max(3, args.reps // 4))
    return size, res


# ---------------------------------------------------------------- launch economy, on the CPU
# The sliced algorithm (csrc/rrdb/rrdb_sliced.cpp) is backend-generic: the CPU op (gansr::rrdb_fwd /
# _bwd) runs it with the C++ twins of its kernels, so its profile shows every backend call the CUDA
# backend makes, in "rrdb::" scopes, per dense block ("rrdb::dense_block_fwd" / "_bwd").
_BACKEND_CALLS = {"rrdb::fused_conv": "cutlass conv", "rrdb::epilogue": "epilogue", "rrdb::gather": "gather",
                  "rrdb::cutlass_dgrad": "cutlass dgrad", "rrdb::cutlass_wgrad": "cutlass wgrad"}
# ATen ops that launch no kernel (allocation, views, metadata); any other leaf op counts as one launch
_NO_LAUNCH = {"aten::empty", "aten::empty_strided", "aten::empty_like", "aten::as_strided", "aten::narrow",
              "aten::slice", "aten::view", "aten::reshape", "aten::_reshape_alias", "aten::resize_", "aten::permute",
              "aten::transpose", "aten::t", "aten::expand", "aten::alias", "aten::detach", "detach", "aten::lift_fresh",
              "aten::split", "aten::unsqueeze", "aten::squeeze", "aten::select", "aten::set_", "aten::result_type",
              "aten::resolve_conj", "aten::resolve_neg", "aten::_unsafe_view", "aten::is_nonzero", "aten::item",
              "aten::_local_scalar_dense", "aten::size", "aten::stride", "aten::contiguous", "aten::to"}

# ATen ops of one kernel each, whatever their CPU implementation calls inside (aten::sum fills its output)
_ONE_LAUNCH = {"aten::sum", "aten::fill_", "aten::zero_", "aten::copy_", "aten::cat", "aten::add", "aten::add_",
               "aten::mul", "aten::mul_", "aten::_to_copy"}


def _launches(event, counts: dict) -> None:
    """Add the GPU launches event stands for to counts {kind: n}: a backend call is one kernel, an ATen
    convolution one (cuDNN fprop), a convolution backward one dgrad + one wgrad (when weight grads are
    computed: inputs[-1] is the output mask), an aten::copy_ inside a convolution a 'prefix copy'
    (ATen makes strided activation views contiguous) or a 'weight copy' ((O, I, 3, 3) tensors; the
    activations' H, W must differ from 3), any other kernel-launching ATen op 'other <op>' (under
    torch.use_deterministic_algorithms every aten::empty fills its memory: 'other fill_')."""
    def add(kind, n=1):
        counts[kind] = counts.get(kind, 0) + n

    name = event.name
    if name in _BACKEND_CALLS:
        return add(_BACKEND_CALLS[name])
    if name in ("aten::convolution", "aten::convolution_backward"):
        if name == "aten::convolution":
            add("conv fprop")
        else:
            mask = event.concrete_inputs[-1] if event.concrete_inputs else [True, True, False]
            add("conv dgrad", int(bool(mask[0])))
            add("conv wgrad", int(bool(mask[1])))
        stack = list(event.cpu_children)
        while stack:
            e = stack.pop()
            if e.name == "aten::copy_" and e.input_shapes and len(e.input_shapes[0]) == 4:
                add("weight copy" if e.input_shapes[0][2:] == [3, 3] else "prefix copy")
            else:
                stack.extend(e.cpu_children)
        return None
    if name in _ONE_LAUNCH or (not event.cpu_children and name not in _NO_LAUNCH):
        return add("other " + name.removeprefix("aten::"))
    for child in event.cpu_children:
        _launches(child, counts)
    return None


def rrdb_launch_counts(nf=64, gc=32, shape=(2, 8, 8), cutlass_fwd=False, deterministic=False,
                       dtype=torch.float64, cutlass_bwd=False) -> dict:
    """Launches of one RRDB fwd / bwd on the CPU proxy, per dense block (each of the three, and the
    RRDB-level rest): {"fwd": {"blocks": [counts x3], "rrdb": counts}, "bwd": {...}}. cutlass_fwd: convs
    1..4 through the CUTLASS argument block (rrdb_fwd(cutlass=True): emulated with ATen here, one kernel
    on the GPU); cutlass_bwd: the backward through the CUTLASS dgrad / wgrad argument blocks
    (rrdb_bwd(cutlass=True), likewise). fp64 by
    default: ATen's CPU fp32 convolution (oneDNN) converts weight layouts inside its backward, which
    the cuDNN path does not; the fp64 path makes the copies ATen's CUDA convolution makes."""
    from torch.profiler import ProfilerActivity, profile

    from gansr_ext._ext import require_extension
    from gansr_ext.ops.rrdb import N_BLOCKS, N_CONVS

    require_extension()
    torch.manual_seed(0)
    n, h, w = shape
    params = []
    for _ in range(N_BLOCKS):
        for k in range(1, N_CONVS + 1):
            cout = nf if k == N_CONVS else gc
            w4 = torch.randn(cout, nf + (k - 1) * gc, 3, 3, dtype=dtype) * 0.05
            params += [w4.contiguous(memory_format=torch.channels_last), torch.randn(cout, dtype=dtype) * 0.1]
    x = torch.randn(n, nf, h, w, dtype=dtype)
    g = torch.randn(n, nf, h, w, dtype=dtype).contiguous(memory_format=torch.channels_last)
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as fwd:
            out, *bufs = torch.ops.gansr.rrdb_fwd(x, params, cutlass_fwd)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as bwd:
            torch.ops.gansr.rrdb_bwd(g, *bufs, params, cutlass=cutlass_bwd)
    finally:
        torch.use_deterministic_algorithms(prev)
    result = {}
    for pas, prof, op in (("fwd", fwd, "gansr::rrdb_fwd"), ("bwd", bwd, "gansr::rrdb_bwd")):
        (top,) = [e for e in prof.events() if e.name == op and e.cpu_parent is None]
        blocks, rest = [], {}
        for child in top.cpu_children:
            if child.name.startswith("rrdb::dense_block"):
                blocks.append({})
                for c in child.cpu_children:
                    _launches(c, blocks[-1])
            else:
                _launches(child, rest)
        result[pas] = {"blocks": blocks, "rrdb": rest}
    return result


_KINDS = ["conv fprop", "cutlass conv", "epilogue", "conv dgrad", "conv wgrad", "cutlass dgrad", "cutlass wgrad",
          "gather", "prefix copy", "weight copy"]


def _row(backend: str, work: str, counts: dict, times: int = 1) -> dict:
    named = {k: times * counts.get(k, 0) for k in _KINDS}
    total = times * sum(counts.values())
    return {"backend": backend, "work": work, **named, "other": total - sum(named.values()), "launches": total}


def _summed(parts) -> dict:
    out = {}
    for part in parts:
        for k, v in part.items():
            out[k] = out.get(k, 0) + v
    return out


def launch_table(nb=23) -> tuple[list[dict], list[str]]:
    """Rows of the launch-economy table (per dense block, per RRDB, per G-step trunk of nb RRDBs:
    the trunk's RRDBs only) for the cuDNN backend, CUTLASS forward convs, CUTLASS forward and backward."""
    rows = []
    for backend, cutlass_fwd, cutlass_bwd in (("cuDNN convs", False, False), ("CUTLASS fprop", True, False),
                                              ("CUTLASS fprop+dgrad+wgrad", True, True)):
        c = rrdb_launch_counts(cutlass_fwd=cutlass_fwd, cutlass_bwd=cutlass_bwd)
        fwd, bwd = c["fwd"]["blocks"][1], c["bwd"]["blocks"][1]  # a middle block (all three alike: tested)
        det = rrdb_launch_counts(cutlass_fwd=cutlass_fwd, deterministic=True,
                                 cutlass_bwd=cutlass_bwd)["bwd"]["blocks"][1]
        rrdb = _summed([*c["fwd"]["blocks"], c["fwd"]["rrdb"], *c["bwd"]["blocks"], c["bwd"]["rrdb"]])
        rows += [_row(backend, "dense block fwd", fwd), _row(backend, "dense block bwd", bwd),
                 _row(backend, "dense block fwd+bwd", _summed([fwd, bwd])),
                 _row(backend, "dense block bwd, deterministic", det), _row(backend, "RRDB fwd+bwd", rrdb),
                 _row(backend, f"G-step trunk ({nb} RRDBs)", rrdb, nb)]
    return rows, ["backend", "work", *_KINDS, "other", "launches"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench/results/rrdb", help="writes OUT.json and OUT.md")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--nb", type=int, default=23, help="RRDBs in the generator")
    p.add_argument("--quick", action="store_true", help="LR 32 only, smaller inference image")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    p.add_argument("--cpu-launches", action="store_true",
                   help="only the launch-economy table from the CPU proxy (no GPU; OUT default rrdb_launches_cpu)")
    args = p.parse_args(argv)
    if args.cpu_launches:
        out = args.out if args.out != p.get_default("out") else "bench/results/rrdb_launches_cpu"
        rows, columns = launch_table(args.nb)
        write_results(out, f"Fused RRDB launches per dense block / RRDB / G-step trunk (nb {args.nb}), counted on "
                      "the CPU proxy: GPU kernels the CUDA backend would launch (B2 8x8, nf 64, gc 32, fp64)",
                      metadata(torch.device("cpu")), rows, columns)
        return 0
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

    from gansr_ext.ops.rrdb import cutlass_fallbacks

    cutlass_fallbacks(reset=True)

    def flush():  # write after every section so a timeout still leaves results
        meta["cutlass_fallbacks"] = cutlass_fallbacks()  # CUTLASS convs that ran as cuDNN instead: timings mixed
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
