"""The seed's ablation tables at a stated budget: every row trained from one stage-1 model, >= 3 seeds.

    python python/ablate.py                      # CPU budget, tables a-e, 3 seeds -> bench/results/ablation/
    python python/ablate.py --budget full --data-train DIV2K/HR --data-val DIV2K/val_HR   # a GPU + DIV2K

Rows (the seed's slides):
  (a) adversarial loss: RaGAN, RaHinge, RaLS, RcGAN, RcHinge, RcLS, RaGP
  (b) RaGP + frequency term: none, FFT 0.3, FFT 0.5, spectral
  (c) spectral discrepancy: RaGAN / WGAN-GP / RaGP x {none, FFT 0.3, spectral}
  (d) perceptual: VGG / LPIPS / DISTS -- run only with pretrained backbones (reported as "needs pretrained
      weights" otherwise: random-backbone perceptual metrics are never reported)
  (e) the FFT loss's two forms: magnitude difference || |F(SR)| - |F(HR)| || vs the complex difference
      ||F(SR) - F(HR)|| (the seed's literal formula)
A row shared by several tables (e.g. RaGP + none) is trained once. Every row starts from the same stage-1
(L1) generator and differs from the others only in its adversarial / frequency / perceptual terms.

Evaluation on held-back material: each held-back image is super-resolved whole; PSNR, SSIM, BRISQUE and the
spectral discrepancies are computed on a grid of `--tile`-pixel tiles of every image (many samples), NIQE on
the whole images (its 96-pixel blocks need room). The table gives mean +- std over seeds of each metric
(each seed's value being the mean over tiles / images), the 1-D spectral discrepancy in both the project's
`abs` kind and Durall et al.'s (CVPR 2020) kind when the metric offers it, and each loss term's share of the
generator loss (mean |weighted term| over the run / sum over terms).

Output: ablation.md, ablation.csv, ablation.json and spectra.png under --out.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Budget:
    stage1_iters: int
    stage2_iters: int
    batch: int
    crop: int
    nf: int
    nb: int
    gc: int
    d_nf: int


BUDGETS = {
    "smoke": Budget(20, 6, 2, 32, 16, 1, 8, 8),  # the test's budget: checks the runner, not the method
    "cpu": Budget(1000, 120, 4, 48, 32, 2, 16, 16),  # ~1 hour on 2 busy cores for tables a-c x 3 seeds
    "cpu-400": Budget(1000, 400, 4, 48, 32, 2, 16, 16),  # `cpu` with rows 3.3x longer: RaGP's D needs them
    "cpu-long": Budget(4000, 400, 6, 64, 32, 2, 16, 16),  # the demo's sizes
    "full": Budget(400_000, 400_000, 16, 128, 64, 23, 32, 64),
}

# row name -> loss overrides (config key -> value, `as_overrides`) on top of the `esrgan_gan` recipe
_NONE = {"losses.frequency": {"type": "fft", "weight": 0.0}}
_FFT3 = {"losses.frequency": {"type": "fft", "weight": 0.3}}
_FFT5 = {"losses.frequency": {"type": "fft", "weight": 0.5}}
_SPEC = {"losses.frequency": {"type": "spectral", "weight": 1.0}}
_RAGP = {"losses.gan": {"type": "ragp", "weight": 5.0e-3, "args": {"lam": 1.0}}}
_RAGAN = {"losses.gan": {"type": "ragan", "weight": 5.0e-3}}
_WGAN_GP = {"losses.gan": {"type": "wgan-gp", "weight": 5.0e-3, "args": {"lam": 10.0}}}
ROWS: dict[str, dict] = {
    **{name.lower(): {"losses.gan": {"type": name.lower(), "weight": 5.0e-3}, **_NONE}
       for name in ("RaGAN", "RaHinge", "RaLS", "RcGAN", "RcHinge", "RcLS")},
    "ragp": {**_RAGP, **_NONE},
    "ragp+fft0.3": {**_RAGP, **_FFT3},
    "ragp+fft0.5": {**_RAGP, **_FFT5},
    "ragp+spectral": {**_RAGP, **_SPEC},
    "ragp+fft0.3-complex": {**_RAGP, "losses.frequency": {"type": "fft", "weight": 0.3, "args": {"mode": "complex"}}},
    "ragan+fft0.3": {**_RAGAN, **_FFT3},
    "ragan+spectral": {**_RAGAN, **_SPEC},
    "wgan-gp": {**_WGAN_GP, **_NONE},
    "wgan-gp+fft0.3": {**_WGAN_GP, **_FFT3},
    "wgan-gp+spectral": {**_WGAN_GP, **_SPEC},
    "perceptual-vgg": {"losses.perceptual": {"type": "vgg", "weight": 1.0}, **_FFT3},
    "perceptual-lpips": {**_FFT3},  # the LPIPS term every row has (`_lpips`)
    "perceptual-dists": {"losses.perceptual": {"type": "dists", "weight": 1.0}, **_FFT3},
}


def _lpips(pretrained: bool) -> dict:
    return {"losses.perceptual": {"type": "lpips", "weight": 1.0, "args": {"net": "alex", "pretrained": pretrained}}}


TABLES = {
    "a": ("Adversarial loss (no frequency term)", ["ragan", "rahinge", "rals", "rcgan", "rchinge", "rcls", "ragp"]),
    "b": ("RaGP + frequency term", ["ragp", "ragp+fft0.3", "ragp+fft0.5", "ragp+spectral"]),
    "c": ("Spectral discrepancy: adversarial loss x frequency term",
          ["ragan", "ragan+fft0.3", "ragan+spectral", "wgan-gp", "wgan-gp+fft0.3", "wgan-gp+spectral",
           "ragp", "ragp+fft0.3", "ragp+spectral"]),
    "d": ("Perceptual loss (RaGP + FFT 0.3)", ["perceptual-vgg", "perceptual-lpips", "perceptual-dists"]),
    "e": ("FFT loss: magnitude vs complex spectrum difference (RaGP + FFT 0.3)", ["ragp+fft0.3", "ragp+fft0.3-complex"]),
}
METRICS = ("psnr", "ssim", "niqe", "brisque", "lpips", "spectral_abs", "spectral_durall", "d_loss", "d_gap")


def _common(args, budget: Budget, run_root: Path) -> dict:
    data = {"data.train.type": "samples", "data.val.type": "samples"}
    if args.data_train:
        data = {"data.train.type": "hr_only", "data.train.root": args.data_train, "data.train.lr_root": None,
                "data.val.type": "hr_only", "data.val.root": args.data_val, "data.val.lr_root": None}
    return {
        "output_dir": run_root, "device": args.device, "train.fused": "auto", **data,
        "model.generator.nf": budget.nf, "model.generator.nb": budget.nb, "model.generator.gc": budget.gc,
        "data.crop": budget.crop, "data.batch_size": budget.batch, "data.num_workers": 0,
        "val.every": 0, "val.metrics": ["psnr"], "val.best_metric": "psnr", "val.save_images": 0,
        "checkpoint.keep_last": 1, "log.every": 5, "log.tensorboard": False,
    }


def _train_stage1(args, budget: Budget, run_root: Path) -> Path:
    from gansr_ext.train.config import load_config
    from gansr_ext.train.demo import as_overrides
    from gansr_ext.train.trainer import Trainer

    it = budget.stage1_iters
    cfg = load_config("esrgan_psnr", as_overrides({
        **_common(args, budget, run_root), "name": "stage1", "seed": 0, "train.total_iters": it,
        "checkpoint.every": it, "optim.g.lr": 5e-4, "scheduler": {"type": "cosine", "eta_min": 1.0e-6}}))
    return Path(Trainer(cfg).train()["generator"])


def _train_row(args, budget: Budget, run_root: Path, row: str, seed: int, stage1: Path, pretrained: bool):
    from gansr_ext.train.config import load_config
    from gansr_ext.train.demo import as_overrides
    from gansr_ext.train.trainer import Trainer

    it = budget.stage2_iters
    cfg = load_config("esrgan_gan", as_overrides({
        **_common(args, budget, run_root), **_lpips(pretrained), **ROWS[row],
        "name": f"{row}-seed{seed}", "seed": seed, "train.total_iters": it, "checkpoint.every": it,
        "model.pretrained_g": stage1, "model.discriminator.type": "unet",
        "model.discriminator.args": {"nf": budget.d_nf}, "scheduler.milestones": [max(1, it * 3 // 4)]}))
    summary = Trainer(cfg).train()
    run_dir = run_root / f"{row}-seed{seed}"
    return Path(summary["generator"]), _term_shares(run_dir / "train_log.csv"), _d_stats(run_dir)


def _term_shares(log_csv: Path) -> dict:
    """Each generator term's share: mean |weighted term| over the logged iterations / their sum."""
    with open(log_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    keys = [k for k in rows[0] if k.startswith("g_") and k != "g_total"] if rows else []
    means = {k[2:]: float(np.nanmean([abs(float(r[k])) for r in rows if r.get(k) not in (None, "")])) for k in keys}
    total = sum(means.values()) or 1.0
    return {k: v / total for k, v in means.items()}


def _d_stats(run_dir: Path) -> dict:
    """The discriminator's d_loss and real - fake logit gap over the last quarter of the run (did it learn?)."""
    from gansr_ext.train.demo import discriminator_summary

    d = discriminator_summary(run_dir)
    return {"d_loss": d["d_loss"], "d_gap": d["logit_gap"]}


def _held_back(args) -> list[tuple[str, np.ndarray]]:
    from gansr_ext.data import read_image, sample_images

    if args.data_val:
        files = sorted(p for p in Path(args.data_val).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        return [(p.stem, read_image(p)) for p in files]
    return [(name, np.asarray(img)) for name, img in sample_images("val")]


def _tiles(img: np.ndarray, size: int) -> list[np.ndarray]:
    h, w = img.shape[:2]
    return [img[y:y + size, x:x + size] for y in range(0, h - size + 1, size) for x in range(0, w - size + 1, size)]


def _spectral(real: list, fake: list) -> dict:
    """Both kinds of the 1-D spectral discrepancy the metric offers (Durall's only if it exists)."""
    from gansr_ext.metrics import spectral_discrepancy

    out = {"spectral_abs": spectral_discrepancy(real, fake, kind="abs")}
    try:
        out["spectral_durall"] = spectral_discrepancy(real, fake, kind="durall")
    except ValueError:
        out["spectral_durall"] = None
    return out


class Evaluator:
    """Metrics of one generator on the held-back images (see the module docstring)."""

    def __init__(self, images, tile: int, device, lpips_metric):
        from gansr_ext.data import imresize, modcrop

        self.hr = [modcrop(img, 4) for _, img in images]
        self.lr = [imresize(torch.from_numpy(np.ascontiguousarray(h)).permute(2, 0, 1).float() / 255, 1 / 4)
                   for h in self.hr]
        self.tile, self.device, self.lpips = tile, device, lpips_metric

    def _sr(self, g) -> list[np.ndarray]:
        out = []
        with torch.no_grad():
            for lr in self.lr:
                sr = g(lr[None].clamp(0, 1).to(self.device))[0].clamp(0, 1).cpu()
                out.append((sr.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        return out

    def bicubic(self) -> list[np.ndarray]:
        from gansr_ext.data import imresize

        return [(imresize(lr, 4).clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                for lr in self.lr]

    def __call__(self, sr_images: list[np.ndarray]) -> dict:
        from gansr_ext.metrics import brisque, niqe, psnr, ssim
        from gansr_ext.metrics.spectrum import EPS, mean_power_spectrum

        hr_t = [t for h in self.hr for t in _tiles(h, self.tile)]
        sr_t = [t for s in sr_images for t in _tiles(s, self.tile)]
        m = {"psnr": float(np.mean([psnr(s, h) for s, h in zip(sr_t, hr_t)])),
             "ssim": float(np.mean([ssim(s, h) for s, h in zip(sr_t, hr_t)])),
             "brisque": float(np.mean([brisque(s) for s in sr_t])),
             "niqe": float(np.mean([niqe(s) for s in sr_images])),
             "lpips": None, "tiles": len(sr_t)}
        if self.lpips is not None:
            m["lpips"] = float(np.mean([self.lpips(s, h) for s, h in zip(sr_t, hr_t)]))
        m.update(_spectral(hr_t, sr_t))
        m["curve"] = np.log10(mean_power_spectrum(sr_t, self.tile // 2 + 1) + EPS).tolist()
        return m

    def hr_curve(self) -> list:
        from gansr_ext.metrics.spectrum import EPS, mean_power_spectrum

        hr_t = [t for h in self.hr for t in _tiles(h, self.tile)]
        return np.log10(mean_power_spectrum(hr_t, self.tile // 2 + 1) + EPS).tolist()

    def model(self, path: Path) -> dict:
        from gansr_ext.models import load_generator

        g = load_generator(path).to(self.device).eval()
        return self(self._sr(g))


def _pretrained_lpips(device):
    from gansr_ext.metrics import LPIPSMetric
    from gansr_ext.weights import MissingWeightsError

    try:
        return LPIPSMetric(net="alex", pretrained=True, device=device), ""
    except MissingWeightsError as e:
        return None, str(e)


def _mean_std(values: list) -> tuple[float | None, float | None]:
    v = [x for x in values if x is not None]
    if not v:
        return None, None
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def _fmt(mean, std, digits: int) -> str:
    return "n/a" if mean is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


_DIGITS = {"psnr": 2, "ssim": 4, "niqe": 3, "brisque": 2, "lpips": 4, "spectral_abs": 4, "spectral_durall": 5,
           "d_loss": 3, "d_gap": 3}


def _markdown(results: dict, tables: list[str], meta: dict, skipped: dict) -> str:
    lines = ["# Ablation (the seed's tables at a small budget)", "",
             f"Budget `{meta['budget']}`: {meta['budget_detail']}; {meta['seeds']} seeds per row; "
             f"{meta['device']}, torch {meta['torch']}, commit {meta['commit']}, {meta['date']}, "
             f"{meta['seconds']:.0f} s in all (load average at start {meta['load_start']}).", "",
             f"Held-back material: {meta['held_back']}. Mean ± std over seeds; each seed's value is the mean "
             "over tiles (NIQE: over whole images). ↓ lower is better, ↑ higher is better. D columns: the "
             "discriminator's adversarial loss and real − fake logit over the last quarter of each run (its "
             "chance value differs per loss: ln 2 = 0.693 for RaGAN/RcGAN, 1 for the hinge and LS variants, "
             "0 gap for WGAN-GP).", "",
             *[f"- {n}" for n in meta["notes"]], ""]
    head = ["Row", "PSNR ↑", "SSIM ↑", "NIQE ↓", "BRISQUE ↓", "LPIPS ↓", "Spectral abs ↓", "Spectral Durall ↓",
            "D: d_loss", "D: real−fake logit", "term shares of L_G"]
    for key in tables:
        title, rows = TABLES[key]
        lines += [f"## ({key}) {title}", ""]
        if key in skipped:
            lines += [f"Not run: {skipped[key]}", ""]
            continue
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in ["bicubic", "stage1"] + rows:
            r = results[row]
            cells = [row] + [_fmt(*r[m], _DIGITS[m]) for m in METRICS]
            cells.append(", ".join(f"{k} {v:.0%}" for k, v in r.get("shares", {}).items()) or "—")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _plot(mean_curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, curve in mean_curves.items():
        ax.plot(np.linspace(0, 1, len(curve)), curve, label=name, lw=1.8 if name == "HR" else 1)
    ax.set_xlabel("normalised frequency")
    ax.set_ylabel("log10 mean power (seed 0)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    p.add_argument("--tables", default="a,b,c,d,e", help="which tables (comma-separated from a, b, c, d, e)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--tile", type=int, default=96, help="tile size (HR pixels) for the per-tile metrics")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--stage1", type=Path, default=None, help="reuse this stage-1 generator instead of training one")
    p.add_argument("--data-train", default=None, help="HR training folder (default: scikit-image samples)")
    p.add_argument("--data-val", default=None, help="held-back HR folder (default: chelsea, coffee, rocket)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ablation")
    p.add_argument("--runs", type=Path, default=None, help="folder for the training runs (default: OUT/runs)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if bool(args.data_train) != bool(args.data_val):
        p.error("--data-train and --data-val go together")
    if args.seeds < 1:
        p.error("--seeds must be >= 1")
    tables = [t.strip() for t in args.tables.split(",") if t.strip()]
    if bad := [t for t in tables if t not in TABLES]:
        p.error(f"unknown table(s) {bad}; choose from {sorted(TABLES)}")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = BUDGETS[args.budget]
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    run_root = args.runs or args.out / "runs"
    t0 = time.perf_counter()
    load_start = os.getloadavg()[0]

    lpips_metric, why = _pretrained_lpips(device)
    pretrained = lpips_metric is not None
    notes, skipped = [], {}
    if not pretrained:
        notes.append("Pretrained AlexNet weights are not on this machine: LPIPS is not reported, and the LPIPS "
                     "training term of every row ran on a random-weight backbone (the same for all rows). " + why)
        if "d" in tables:
            skipped["d"] = "needs pretrained weights (VGG19 / AlexNet / DISTS backbones are not on this machine)"
    rows = list(dict.fromkeys(r for t in tables if t not in skipped for r in TABLES[t][1]))

    stage1 = args.stage1 or _train_stage1(args, budget, run_root)
    evaluator = Evaluator(_held_back(args), args.tile, device, lpips_metric)
    per_seed: dict[str, list[dict]] = {"bicubic": [evaluator(evaluator.bicubic())], "stage1": [evaluator.model(stage1)]}
    shares: dict[str, list[dict]] = {}
    for row in rows:
        for seed in range(args.seeds):
            print(f"[ablate] {row} seed {seed} ...", flush=True)
            g_path, sh, d_stats = _train_row(args, budget, run_root, row, seed, stage1, pretrained)
            per_seed.setdefault(row, []).append({**evaluator.model(g_path), **d_stats})
            shares.setdefault(row, []).append(sh)

    results = {}
    for row, runs in per_seed.items():
        results[row] = {m: _mean_std([r.get(m) for r in runs]) for m in METRICS}
        if row in shares:
            results[row]["shares"] = {k: float(np.mean([s[k] for s in shares[row]])) for k in shares[row][0]}
        results[row]["tiles"] = runs[0]["tiles"]
    b = budget
    meta = {"budget": args.budget, "seeds": args.seeds, "device": str(device) if device.type == "cpu"
            else torch.cuda.get_device_name(device), "torch": torch.__version__, "commit": _commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "load_start": f"{load_start:.2f}",
            "seconds": time.perf_counter() - t0,
            "budget_detail": f"stage 1 {b.stage1_iters} it (L1, cosine), each row {b.stage2_iters} it, batch "
                             f"{b.batch}, HR crop {b.crop}, RRDBNet nf {b.nf} nb {b.nb} gc {b.gc}, U-Net D nf "
                             f"{b.d_nf}, data {'scikit-image samples' if not args.data_train else args.data_train}",
            "held_back": (args.data_val or "chelsea, coffee, rocket") + f" ({results['bicubic']['tiles']} tiles of "
                         f"{args.tile} px)", "notes": notes}
    (args.out / "ablation.md").write_text(_markdown(results, tables, meta, skipped))
    curves = {"HR": evaluator.hr_curve(), **{row: runs[0]["curve"] for row, runs in per_seed.items()}}
    _plot(curves, args.out / "spectra.png")
    with open(args.out / "ablation.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", *[f"{m}_{s}" for m in METRICS for s in ("mean", "std")], "seeds"])
        for row, r in results.items():
            w.writerow([row, *[("" if v is None else f"{v:.6g}") for m in METRICS for v in r[m]],
                        len(per_seed[row])])
    (args.out / "ablation.json").write_text(json.dumps({"meta": meta, "results": results, "per_seed": per_seed,
                                                        "skipped": skipped}, indent=1))
    print((args.out / "ablation.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
