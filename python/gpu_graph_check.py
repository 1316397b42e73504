"""GPU check of the graphed generator step (`train.cuda_graph=on`, gansr_ext/train/graphed.py).

A small RRDBNet (nb 2, nf 32, gc 16; batch 16, LR 32x32; bf16 autocast, train.fused=on) trains 3 PSNR-stage
and 3 GAN-stage iterations (vgg128 D, RaGAN) from the same seed with train.cuda_graph=on, =off, and =off
again (the eager run's own noise floor, reported). Asserted, for each stage:
- every graphed iteration replayed the graph (the guarded forward's graphed path, counted);
- each iteration's G loss agrees with eager within 1e-2 relative (the first: same weights, same batch);
- G's weight updates (w_3 - w_0) agree: ||dw_graph - dw_eager|| <= 0.01 ||dw_eager|| over all of G, and
  <= 0.03 for every parameter tensor. Why: a replay runs the kernels it captured, so a correct graph
  differs from eager only by bf16 rounding (2^-8 relative) where the capture picked other conv
  algorithms, and by reduction order; Adam turns each gradient into a step of about lr * sign, which
  rounding hardly moves. Modelled on the CPU with this model (every gradient element perturbed by up
  to 2^-8 relative at each of the 3 steps): 4e-4 over G, 8e-4 for the worst tensor. The bugs guarded
  against give more: training each step on the previous batch (a missed input copy) 0.04 / 0.07, a
  gradient the graph drops 1.0 for its tensor;
- a training-mode forward through the graph matches G's eager forward on the same batch within 1e-2.
A batch of another shape must raise GraphShapeError. Then 20 G steps (forward, loss, backward, Adam) are
timed per mode on the PSNR run (median of CUDA-event times after 5 warm-up steps).
Prints one JSON line; exit status 1 when a check fails. About 30-60 s on an H200, CUDA init included.

    python python/gpu_graph_check.py [--fused on|off]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchlib import time_fn

from gansr_ext.train.config import load_config
from gansr_ext.train.distributed import unwrap
from gansr_ext.train.graphed import GraphShapeError, is_graphed
from gansr_ext.train.trainer import Trainer

ITERS, TIMED, WARMUP = 3, 20, 5
BATCH, CROP = 16, 128
LOSS_TOL, UPDATE_TOL, TENSOR_TOL, FORWARD_TOL = 1e-2, 0.01, 0.03, 1e-2


class SmoothImages(torch.utils.data.Dataset):
    """Smooth random HR crops and their 4x box-downscaled LR (crops from the global RNG, which the
    trainer's loader seeds per item)."""

    def __init__(self, n: int = 32, size: int = 160):
        g = torch.Generator().manual_seed(0)
        base = torch.rand(n, 3, size // 8, size // 8, generator=g)
        self.hr = F.interpolate(base, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)

    def __len__(self):
        return len(self.hr)

    def __getitem__(self, i):
        top, left = (int(v) for v in torch.randint(0, self.hr.shape[-1] - CROP + 1, (2,)))
        hr = self.hr[i, :, top:top + CROP, left:left + CROP].contiguous()
        return {"lr": F.avg_pool2d(hr[None], 4)[0], "hr": hr, "name": f"img{i}"}


def config(tmp: Path, stage: str, cuda_graph: str, fused: str) -> dict:
    overrides = [
        f"output_dir={tmp}", f"name={stage}_{cuda_graph}_{time.monotonic_ns()}", "device=cuda", "seed=7",
        f"train.total_iters={ITERS + WARMUP + TIMED}", f"data.batch_size={BATCH}", f"data.crop={CROP}",
        "data.num_workers=0", "model.generator.nb=2", "model.generator.nf=32", "model.generator.gc=16",
        "model.pretrained_g=null", "train.amp=bf16", f"train.fused={fused}", f"train.cuda_graph={cuda_graph}",
        "val.every=0", "checkpoint.every=0", "log.tensorboard=false", "log.progress=false",
    ]
    if stage == "gan":
        overrides += ["stage=gan", "losses.gan.type=ragan", "losses.gan.weight=0.005",
                      "model.discriminator.type=vgg128", "model.discriminator.args={nf: 32}"]
    return load_config(None, overrides)


def weights(module) -> dict:
    return {k: v.detach().float().clone() for k, v in module.state_dict().items()}


def run(tmp: Path, stage: str, cuda_graph: str, fused: str, timed: bool = False) -> dict:
    """3 iterations; the start and end weights of G, each iteration's G loss, graph replays, and (timed)
    the median G-step milliseconds and the graphed-vs-eager forward check."""
    tr = Trainer(config(tmp, stage, cuda_graph, fused), train_set=SmoothImages(), val_set=None)
    try:
        G = unwrap(tr.G)
        replays = [0]
        if cuda_graph == "on":
            assert is_graphed(G), "train.cuda_graph=on left G eager"
            guarded = vars(G)["forward"]
            graphed = guarded.graphed

            def counted(x):
                replays[0] += 1
                return graphed(x)

            guarded.graphed = counted
        start, losses = weights(G), []
        for _ in range(ITERS):
            stats = tr.train_step(tr._next_batch())
            losses.append(float(stats["g_total"]))
        out = {"start": start, "end": weights(G), "losses": losses, "replays": replays[0]}
        if timed:
            batch = tr._next_batch()
            lr, hr = tr._to_device(batch["lr"]), tr._to_device(batch["hr"])
            out["g_step_ms"] = time_fn(lambda: tr._g_step(lr, hr, {}), tr.device, warmup=WARMUP, iters=TIMED)
            if cuda_graph == "on":
                out.update(_graph_io_checks(tr, G, lr))
        return out
    finally:
        tr.close()


def _graph_io_checks(tr: Trainer, G, lr: torch.Tensor) -> dict:
    """The graphed forward vs G's eager forward on one batch; a smaller batch must be refused."""
    with tr._autocast():
        via_graph = G(lr).detach().float().clone()
        eager = type(G).forward(G, lr).detach().float()
    forward_err = float((via_graph - eager).norm() / eager.norm())
    try:
        with tr._autocast():
            G(lr[:BATCH // 2])
        refused = False
    except GraphShapeError:
        refused = True
    return {"forward_rel_err": forward_err, "other_shape_refused": refused}


def update_errors(a: dict, b: dict) -> tuple[float, float, str]:
    """(||dw_a - dw_b|| / ||dw_b|| over all float tensors, the worst tensor's ratio, its name)."""
    num = den = 0.0
    worst, worst_name = 0.0, ""
    for k, start in b["start"].items():
        da, db = a["end"][k] - start, b["end"][k] - start
        n, d = float((da - db).norm()) ** 2, float(db.norm()) ** 2
        num, den = num + n, den + d
        ratio = (n ** 0.5) / max(d ** 0.5, 1e-12) if d > 0 or n > 0 else 0.0
        if ratio > worst:
            worst, worst_name = ratio, k
    return (num ** 0.5) / max(den ** 0.5, 1e-12), worst, worst_name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fused", default="on", choices=("on", "off"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"check": "cuda_graph", "ok": False, "error": "no CUDA device"}))
        return 1
    t0 = time.perf_counter()
    report = {"check": "cuda_graph", "device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "fused": args.fused, "model": "RRDBNet nb2 nf32 gc16, B16 LR32, bf16", "iters": ITERS,
              "tolerance": {"loss_rel": LOSS_TOL, "update_rel": UPDATE_TOL, "tensor_update_rel": TENSOR_TOL,
                            "forward_rel": FORWARD_TOL}}
    failures = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for stage in ("psnr", "gan"):
                timed = stage == "psnr"
                g, e = (run(Path(tmp), stage, mode, args.fused, timed=timed) for mode in ("on", "off"))
                e2 = run(Path(tmp), stage, "off", args.fused)
                r = {"replays": g["replays"], "loss_graph": g["losses"], "loss_eager": e["losses"]}
                r["loss_rel_err"] = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(g["losses"], e["losses"]))
                r["update_rel_err"], r["worst_tensor_rel_err"], r["worst_tensor"] = update_errors(g, e)
                r["eager_rerun_update_rel_err"] = update_errors(e2, e)[0]
                if g["replays"] != ITERS:
                    failures.append(f"{stage}: {g['replays']} graph replays in {ITERS} iterations")
                if r["loss_rel_err"] > LOSS_TOL:
                    failures.append(f"{stage}: G losses differ by up to {r['loss_rel_err']:.3g}")
                if r["update_rel_err"] > UPDATE_TOL or r["worst_tensor_rel_err"] > TENSOR_TOL:
                    failures.append(f"{stage}: G updates differ by {r['update_rel_err']:.3g} "
                                    f"(worst {r['worst_tensor']}: {r['worst_tensor_rel_err']:.3g})")
                if timed:
                    r["g_step_ms"] = {"graph": g["g_step_ms"], "eager": e["g_step_ms"]}
                    r["speedup"] = e["g_step_ms"] / g["g_step_ms"]
                    r["forward_rel_err"], r["other_shape_refused"] = g["forward_rel_err"], g["other_shape_refused"]
                    if r["forward_rel_err"] > FORWARD_TOL:
                        failures.append(f"graphed forward differs from eager by {r['forward_rel_err']:.3g}")
                    if not r["other_shape_refused"]:
                        failures.append("a batch of another shape was not refused")
                report[stage] = r
    except Exception as exc:  # noqa: BLE001  the JSON line must come out whatever failed
        failures.append(f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}")
    report.update(ok=not failures, failures=failures, seconds=round(time.perf_counter() - t0, 1))
    print(json.dumps(report))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
