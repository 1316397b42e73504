"""Benchmark of the gradient penalty in a discriminator step (VGGDiscriminator128, B16, 128x128).

    python python/bench_gp.py [--out bench/results/gp.json] [--batch 16] [--nf 64] [--iters 30]

Rows: precision (fp32; bf16 autocast + channels_last), penalty path (none, eager reference, fused
exact, fused lazy k=4 amortised over 4 steps). A D step = zero_grad, D(real), D(fake), relativistic
loss (+ penalty), backward, Adam step. overhead = (step with penalty - step without) / step without.
Target on H100/H200: fused exact overhead <= 1.5 (eager reference: 3.3), lazy k=4 <= 0.5.
Needs a GPU (exits with a message otherwise); `--device cpu` runs a small smoke version.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import metadata, time_fn, write_results  # noqa: E402

from gansr_ext.losses.penalty import gradient_penalty, gradient_penalty_reference  # noqa: E402
from gansr_ext.models import VGGDiscriminator128  # noqa: E402

LAZY = 4


def make_step(D, opt, real, fake, penalty, amp: bool):
    """One D step; `penalty(step)` returns the penalty term (or None for no penalty)."""
    ctx = (lambda: torch.autocast(real.device.type, dtype=torch.bfloat16)) if amp else torch.enable_grad
    counter = [0]

    def run():
        opt.zero_grad(set_to_none=True)
        with ctx():
            lr, lf = D(real), D(fake)
        loss = F.softplus(-(lr.float() - lf.float().mean())).mean() + F.softplus(lf.float() - lr.float().mean()).mean()
        gp = penalty(counter[0])
        counter[0] += 1
        if gp is not None:
            loss = loss + gp
        loss.backward()
        opt.step()

    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="bench/results/gp.json")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--nf", type=int, default=64)
    ap.add_argument("--iters", type=int, default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_gp: no CUDA GPU on this machine; nothing measured (use --device cpu for a smoke run)")
        return 0
    iters = args.iters or (40 if device.type == "cuda" else 3)
    torch.manual_seed(0)
    real = torch.randn(args.batch, 3, 128, 128, device=device)
    fake = torch.randn(args.batch, 3, 128, 128, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    rows = []
    for amp in (False, True):
        D = VGGDiscriminator128(nf=args.nf).to(device)
        if amp:
            D = D.to(memory_format=torch.channels_last)
        r, f = (real.contiguous(memory_format=torch.channels_last), fake.contiguous(memory_format=torch.channels_last)) \
            if amp else (real, fake)
        opt = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.0, 0.99))
        opts = dict(autocast_dtype=torch.bfloat16 if amp else None, channels_last=amp, generator=gen)
        variants = {
            "no penalty": lambda step: None,
            "eager reference": (lambda step: _amp_reference(D, r, f, gen)) if amp
            else (lambda step: gradient_penalty_reference(D, r, f, generator=gen)),
            "fused exact": lambda step: gradient_penalty(D, r, f, fused=True, **opts),
            f"fused lazy k={LAZY}": lambda step: gradient_penalty(D, r, f, fused=True, step=step, lazy_interval=LAZY,
                                                                  **opts),
        }
        base = None
        for name, pen in variants.items():
            step = make_step(D, opt, r, f, pen, amp)
            if "lazy" in name:  # amortised: time LAZY consecutive steps (one with the penalty)
                ms = time_fn(lambda: [step() for _ in range(LAZY)], device, warmup=2, iters=max(3, iters // LAZY)) / LAZY
            else:
                ms = time_fn(step, device, warmup=5, iters=iters)
            base = ms if base is None else base
            rows.append({"precision": "bf16 autocast + channels_last" if amp else "fp32", "penalty": name,
                         "D step ms": ms, "overhead": (ms - base) / base, "vs no penalty": ms / base})
    for r_ in rows:
        print(f"{r_['precision']:<30} {r_['penalty']:<18} {r_['D step ms']:9.3f} ms  overhead {r_['overhead']:6.2f}x")
    meta = metadata(device) | {"batch": args.batch, "size": 128, "discriminator": f"VGGDiscriminator128(nf={args.nf})",
                               "lazy_interval": LAZY}
    write_results(args.out, "Gradient penalty in a D step: overhead vs the step without penalty", meta, rows,
                  ["precision", "penalty", "D step ms", "overhead", "vs no penalty"])
    return 0


def _amp_reference(D, real, fake, gen):
    """The eager reference with D's forward under bf16 autocast (what a user would write)."""
    with torch.autocast(real.device.type, dtype=torch.bfloat16):
        return gradient_penalty_reference(D, real, fake, generator=gen)


if __name__ == "__main__":
    sys.exit(main())
