"""Evaluate SR models on test sets: metric tables (Markdown, CSV, JSON) and figures (PNG).

A test set folder holds either HR images (LR = MATLAB bicubic `imresize(modcrop(HR), 1/scale)`) or
`HR/` (or `GT/`) and `LR/` (or `LRbicx<scale>/`, `LR_bicubic/X<scale>/`) subfolders, paired by file
name (LR names may end in `x<scale>`). Rows: bicubic upsampling (always) and each model; columns:
NIQE, FID, LPIPS, PSNR, SSIM, BRISQUE and spectral discrepancy (see `gansr_ext.metrics`; its
`spectral_kind` is "abs", "squared" or "durall", Durall et al.'s normalised 1-D spectra, on the scale
of the discrepancies published with that paper; see `gansr_ext.metrics.spectrum`). PSNR /
SSIM / NIQE use the Y channel with a `scale`-pixel border shave; SR outputs are rounded to 8-bit as
if saved. Set-level metrics (FID, spectral discrepancy) compare each method's outputs with the HR
set. Metrics that cannot run (missing pretrained weights, images too small) are reported as
unavailable with the reason; the others still run. Images that cannot be used at all (unreadable,
corrupt, smaller than `scale`, an LR that does not match its HR) are skipped and reported (a warning,
the tables' notes, `skipped` in the JSON); the tables say how many images each row and each value
used.

Python API: `evaluate({"name": model_or_checkpoint}, {"Set5": "path/to/Set5"}, "out")`;
CLI: `gansr eval --model CKPT --data DIR --out OUT`.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gansr_ext.metrics.spectrum import KINDS as SPECTRAL_KINDS

METRICS = ("niqe", "fid", "lpips", "psnr", "ssim", "brisque", "spectral")
LABELS = {"niqe": "NIQE ↓", "fid": "FID ↓", "lpips": "LPIPS ↓", "psnr": "PSNR ↑", "ssim": "SSIM ↑",
          "brisque": "BRISQUE ↓", "spectral": "Spectral ↓"}
FORMATS = {"niqe": "{:.3f}", "fid": "{:.2f}", "lpips": "{:.4f}", "psnr": "{:.2f}", "ssim": "{:.4f}",
           "brisque": "{:.2f}", "spectral": "{:.4g}"}  # spectral: 0.6 (abs) .. 0.0003 (durall)
PER_IMAGE = ("psnr", "ssim", "lpips", "niqe", "brisque")
NO_REFERENCE = ("niqe", "brisque")
BICUBIC = "Bicubic"
HR_DIRS = ("HR", "GT")


@dataclass(frozen=True)
class Crop:
    """A square region of one HR image (HR pixel coordinates) for the side-by-side figure."""

    image: str
    x: int
    y: int
    size: int


def parse_crop(text: str) -> Crop:
    """'name:x,y,size' -> Crop (name = image file stem)."""
    m = re.fullmatch(r"(.+):(\d+),(\d+),(\d+)", text.strip())
    if not m or int(m.group(4)) < 1:
        raise ValueError(f"crop must be NAME:X,Y,SIZE with non-negative integers and SIZE >= 1, got {text!r}")
    return Crop(m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)))


# --- test sets -------------------------------------------------------------------------------------
def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def _lr_dir(folder: Path, scale: int) -> Path | None:
    for name in ("LR", f"LRbicx{scale}", f"LR_bicubic/X{scale}", f"LR_bicubic/x{scale}"):
        if (folder / name).is_dir():
            return folder / name
    return None


def _lr_key(stem: str, scale: int) -> str:
    return re.sub(rf"_?(x{scale}|lrbicx{scale}|lr)$", "", stem, flags=re.IGNORECASE)


def find_pairs(folder, scale: int = 4) -> list[tuple[str, Path, Path | None]]:
    """[(name, HR path, LR path or None)] of a test-set folder (see the module docstring)."""
    from gansr_ext.data.io import list_images

    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"evaluate: test set {folder} is not a directory")
    hr_dir = next((folder / d for d in HR_DIRS if (folder / d).is_dir()), None)
    lr_dir = _lr_dir(folder, scale)
    if hr_dir is None and lr_dir is not None:
        raise ValueError(f"evaluate: {folder} has {lr_dir.name}/ but no HR/ (or GT/) folder")
    hr_dir = hr_dir or folder
    hr_files = list_images(hr_dir)
    if not hr_files:
        raise ValueError(f"evaluate: no images in {hr_dir}")
    if lr_dir is None:
        return [(p.stem, p, None) for p in hr_files]
    lr_by_key = {_lr_key(p.stem, scale): p for p in list_images(lr_dir)}
    missing = [p.name for p in hr_files if p.stem not in lr_by_key]
    if missing:
        raise ValueError(f"evaluate: no LR image in {lr_dir} for HR image(s) {missing[:5]}")
    return [(p.stem, p, lr_by_key[p.stem]) for p in hr_files]


def load_pair(hr_path: Path, lr_path: Path | None, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(HR uint8 HWC cropped to a multiple of scale, LR uint8 HWC)."""
    from gansr_ext.data import make_lr, modcrop
    from gansr_ext.data.io import read_image

    hr = modcrop(_to_uint8(read_image(hr_path)), scale)
    if lr_path is None:
        return hr, make_lr(hr, scale)
    lr = _to_uint8(read_image(lr_path))
    if (lr.shape[0] * scale, lr.shape[1] * scale) != hr.shape[:2]:
        raise ValueError(f"evaluate: LR {lr_path.name} is {lr.shape[1]}x{lr.shape[0]}, HR {hr_path.name} is "
                         f"{hr.shape[1]}x{hr.shape[0]} after modcrop: not a x{scale} pair")
    return hr, lr


# --- metric objects ----------------------------------------------------------------------------------
class _Metrics:
    """Builds the requested metrics once; keeps why the unavailable ones are unavailable."""

    def __init__(self, metrics, device, pretrained, fid_weights, lpips_weights, lpips_net, fid_dims,
                 spectral_kind="abs"):
        self.names = tuple(metrics)
        self.pretrained = pretrained
        self.spectral_kind = spectral_kind
        self.unavailable: dict[str, str] = {}
        self.notes: list[str] = []
        if "spectral" in self.names:
            self.notes.append(f"spectral discrepancy of kind {spectral_kind!r} (gansr_ext.metrics.spectrum)")
        self.lpips = self.fid = None
        if "lpips" in self.names:
            self.lpips = self._build("lpips", _make_lpips, lpips_net, pretrained, lpips_weights, device)
        if "fid" in self.names:
            self.fid = self._build("fid", _make_fid, fid_weights, pretrained, device, fid_dims)
            if fid_dims != 2048:
                self.notes.append(f"FID on {fid_dims}-d Inception features (not the standard 2048-d pool3)")

    def _build(self, name, make, *args):
        from gansr_ext.weights import MissingWeightsError

        try:
            return make(*args)
        except (MissingWeightsError, ImportError) as e:  # ImportError: pytorch-fid not installed
            self.unavailable[name] = f"{type(e).__name__}: {e}"
            return None

    def per_image(self, sr: np.ndarray, hr: np.ndarray, scale: int, only=PER_IMAGE) -> dict:
        """{metric: value or an exception} for one SR image against its HR image."""
        from gansr_ext.metrics import brisque, niqe, psnr, ssim

        fns = {"psnr": lambda: psnr(sr, hr, crop_border=scale), "ssim": lambda: ssim(sr, hr, crop_border=scale),
               "niqe": lambda: niqe(sr, crop_border=scale), "brisque": lambda: brisque(sr),
               "lpips": lambda: self.lpips(sr, hr)}
        out = {}
        for name in only:
            if name in self.names and name not in self.unavailable:
                try:
                    out[name] = float(fns[name]())
                except ValueError as e:
                    out[name] = e
        return out


def _make_lpips(net, pretrained, weights, device):
    from gansr_ext.metrics.lpips import LPIPSMetric

    return LPIPSMetric(net, pretrained, weights, device)


def _make_fid(weights, pretrained, device, dims):
    from gansr_ext.metrics.fid import FIDMetric

    return FIDMetric(weights, pretrained, device, dims=dims)


# --- models --------------------------------------------------------------------------------------------
def _upscaler(model, device, dtype, tile):
    from gansr_ext.infer import Upscaler

    if isinstance(model, torch.nn.Module):
        model = copy.deepcopy(model)  # Upscaler moves / freezes the module in place: leave the caller's alone
    elif not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"evaluate: a model must be an nn.Module or a checkpoint path, got {type(model).__name__}")
    # pre_pad=0: the model on the plain LR image, as BasicSR's test script runs it (comparable numbers)
    return Upscaler(model, device=device, dtype=dtype, tile=tile, pre_pad=0)


# --- per-set evaluation ----------------------------------------------------------------------------
def _mean(values: list) -> float | None:
    ok = [v for v in values if not isinstance(v, Exception)]
    return float(np.mean(ok)) if ok else None


def _centre_crop(name: str, shape, size: int = 128) -> Crop:
    size = min(size, shape[0], shape[1])
    return Crop(name, (shape[1] - size) // 2, (shape[0] - size) // 2, size)


def _clip_crop(crop: Crop, shape) -> tuple[int, int, int]:
    h, w = shape[:2]
    size = min(crop.size, h, w)
    return min(crop.x, w - size), min(crop.y, h - size), size


@dataclass
class _Collected:
    """What the pass over a set's images keeps (per-image scores, spectra, FID features, crops)."""

    per_image: dict
    spectra: dict
    fid_feats: dict
    crop_panels: list
    notes: list
    skipped: dict  # image name -> why it could not be used


def _load_or_skip(name, hr_path, lr_path, scale, c: _Collected):
    """(HR, LR) of one pair, or None after recording and warning why the pair cannot be used."""
    from gansr_ext.data.datasets import UnreadableImageWarning
    from gansr_ext.data.io import ImageReadError

    try:
        return load_pair(hr_path, lr_path, scale)
    except ImageReadError as e:  # its message names the file
        c.skipped[name] = str(e)
    except ValueError as e:  # too small for the scale, LR / HR sizes disagree
        c.skipped[name] = f"{hr_path}: {e}"
    warnings.warn(f"evaluate: skipping {c.skipped[name]}", UnreadableImageWarning, stacklevel=4)
    return None


def _choose_crop(name, shape, want_crops, have_any, notes) -> tuple[int, int, int] | None:
    if want_crops is None:  # default: centre crop of the first image
        chosen = None if have_any else _centre_crop(name, shape)
    else:
        chosen = want_crops.get(name)
    if chosen is None:
        return None
    box = _clip_crop(chosen, shape)
    if box != (chosen.x, chosen.y, chosen.size):
        notes.append(f"crop {name}:{chosen.x},{chosen.y},{chosen.size} moved/shrunk to "
                     f"{box[0]},{box[1]},{box[2]} to fit the {shape[1]}x{shape[0]} image")
    return box


def _collect(set_name, pairs, upscalers, suite: _Metrics, scale, crops, out_dir, progress, save_images) -> _Collected:
    from tqdm import tqdm

    from gansr_ext.data import imresize
    from gansr_ext.data.io import write_image
    from gansr_ext.metrics.spectrum import spectrum_1d

    methods = ["HR", BICUBIC, *upscalers]
    c = _Collected({m: {} for m in methods}, {m: [] for m in methods}, {m: [] for m in methods}, [],
                   list(suite.notes), {})
    want_crops = {cr.image: cr for cr in crops} if crops else None
    for name, hr_path, lr_path in tqdm(pairs, desc=set_name, unit="img", disable=not progress):
        loaded = _load_or_skip(name, hr_path, lr_path, scale, c)
        if loaded is None:
            continue
        hr, lr = loaded
        outputs = {BICUBIC: imresize(lr, scale)}
        for m, up in upscalers.items():
            outputs[m] = up.upscale(lr)
            if outputs[m].shape != hr.shape:
                raise ValueError(f"evaluate: model {m!r} produced {outputs[m].shape} for {name}, expected {hr.shape}")
        c.per_image["HR"][name] = suite.per_image(hr, hr, scale, only=NO_REFERENCE)
        for m, sr in outputs.items():
            c.per_image[m][name] = suite.per_image(sr, hr, scale)
        for m, img in [("HR", hr), *outputs.items()]:
            if "spectral" in suite.names:
                try:
                    c.spectra[m].append(spectrum_1d(img, suite.spectral_kind))
                except ValueError as e:  # e.g. a flat image has no normalised (durall) curve
                    c.notes.append(f"spectral: {m}/{name} left out: {e}")
            if suite.fid is not None:
                c.fid_feats[m].append(suite.fid.features(img))
            if save_images and m != "HR":
                write_image(out_dir / "images" / _safe(m) / f"{name}.png", img)  # creates the folder
        box = _choose_crop(name, hr.shape, want_crops, bool(c.crop_panels), c.notes)
        if box is not None:
            x, y, size = box
            panels = [(m, im[y:y + size, x:x + size]) for m, im in [("HR", hr), *outputs.items()]]
            c.crop_panels.append((name, box, panels))
    if len(c.skipped) == len(pairs):
        reasons = "; ".join(list(c.skipped.values())[:3])
        raise ValueError(f"evaluate: none of the {len(pairs)} image(s) of {set_name} could be used: {reasons}")
    if want_crops is not None:
        found = {p[0] for p in c.crop_panels}
        c.notes += [f"crop image {n!r} is not in this set" for n in want_crops if n not in found]
    return c


def _counts(c: _Collected, rows: dict) -> dict:
    """{method: {"images": n, metric: images behind the value}} (0 where there is no value)."""
    counts = {}
    for m, row in rows.items():
        scores = c.per_image[m].values()
        n = {"images": len(c.per_image[m])}
        for metric, value in row.items():
            if value is None:
                n[metric] = 0
            elif metric in PER_IMAGE:
                n[metric] = sum(metric in s and not isinstance(s[metric], Exception) for s in scores)
            else:  # set-level: the images whose spectra / features entered the set's statistics
                n[metric] = len((c.spectra if metric == "spectral" else c.fid_feats)[m])
        counts[m] = n
    return counts


def _summarize(c: _Collected, methods, suite: _Metrics) -> tuple[dict, dict, dict, dict | None]:
    """-> (rows, unavailable, hr_reference, mean spectra) from the collected per-image data."""
    from gansr_ext.metrics.spectrum import discrepancy_of_spectra, resample_spectrum

    unavailable = dict(suite.unavailable)
    rows = {m: {} for m in methods}
    for metric in PER_IMAGE:
        if metric not in suite.names or metric in unavailable:
            continue
        failures = [(f"{m}/{img}", scores[metric]) for m in methods for img, scores in c.per_image[m].items()
                    if isinstance(scores.get(metric), Exception)]
        for m in methods:
            rows[m][metric] = _mean([scores[metric] for scores in c.per_image[m].values()])
        if failures and all(rows[m][metric] is None for m in methods):
            unavailable[metric] = f"{failures[0][1]} ({failures[0][0]})"
        elif failures:
            where = ", ".join(w for w, _ in failures[:5]) + (", ..." if len(failures) > 5 else "")
            c.notes.append(f"{metric}: skipped on {len(failures)} output(s) ({where}): {failures[0][1]}")
    if suite.fid is not None:
        if len(c.fid_feats["HR"]) < 2:
            unavailable["fid"] = "FID needs at least 2 images per set"
        else:
            hr_f = np.concatenate(c.fid_feats["HR"])
            try:
                for m in methods:
                    rows[m]["fid"] = suite.fid.distance(hr_f, np.concatenate(c.fid_feats[m]))
            except ValueError as e:  # sqrtm failed (too few images for the feature size)
                unavailable["fid"] = str(e)
    mean_spectra = None
    if "spectral" in suite.names:
        n_bins = min(len(s) for s in c.spectra["HR"])  # every method's outputs have the HR sizes
        mean_spectra = {m: np.mean([resample_spectrum(s, n_bins) for s in specs], axis=0)
                        for m, specs in c.spectra.items()}
        for m in methods:
            rows[m]["spectral"] = discrepancy_of_spectra(mean_spectra["HR"], mean_spectra[m], suite.spectral_kind)
    hr_reference = {k: _mean([scores[k] for scores in c.per_image["HR"].values()])
                    for k in NO_REFERENCE if k in suite.names and k not in unavailable}
    rows = {m: {k: (row.get(k) if k not in unavailable else None) for k in suite.names} for m, row in rows.items()}
    return rows, unavailable, hr_reference, mean_spectra


def _evaluate_set(set_name, folder, upscalers, suite: _Metrics, scale, crops, out_dir: Path, progress,
                  save_images) -> dict:
    pairs = find_pairs(folder, scale)
    c = _collect(set_name, pairs, upscalers, suite, scale, crops, out_dir, progress, save_images)
    rows, unavailable, hr_reference, mean_spectra = _summarize(c, [BICUBIC, *upscalers], suite)
    result = {
        "folder": str(folder), "n_images": len(pairs) - len(c.skipped), "n_found": len(pairs),
        "skipped": c.skipped, "counts": _counts(c, rows), "scale": scale, "metrics": list(suite.names),
        "rows": rows, "unavailable": unavailable, "notes": c.notes, "hr_reference": hr_reference,
        "per_image": {m: {img: {k: (None if isinstance(v, Exception) else v) for k, v in scores.items()}
                          for img, scores in d.items()} for m, d in c.per_image.items()},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    result["files"] = _write_set(set_name, result, out_dir, mean_spectra, c.crop_panels, suite)
    return result


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


# --- outputs -------------------------------------------------------------------------------------------
def _fmt(metric: str, value) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "inf"
    return FORMATS[metric].format(value)


def _cell(metric: str, value, n: int, row_images: int) -> str:
    """The value, with the number of images behind it when fewer than the row's."""
    text = _fmt(metric, value)
    return text if value is None or n == row_images else f"{text} (n={n})"


def markdown_table(set_name: str, result: dict, pretrained: bool = True) -> str:
    names = result["metrics"]
    used, found = result["n_images"], result["n_found"]
    images = f"{used} images" if used == found else f"{used} of {found} images, {found - used} skipped"
    lines = [f"### {set_name} (x{result['scale']}, {images})", "",
             "| Method | Images | " + " | ".join(LABELS[k] for k in names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for m, row in result["rows"].items():
        n = result["counts"][m]
        lines.append(f"| {m} | {n['images']} | " + " | ".join(_cell(k, row[k], n[k], n["images"]) for k in names)
                     + " |")
    lines.append("")
    if result["hr_reference"]:
        ref = ", ".join(f"{k.upper()} {_fmt(k, v)}" for k, v in result["hr_reference"].items())
        lines.append(f"HR images (reference): {ref}.")
    for k, why in result["unavailable"].items():
        lines.append(f"- {LABELS[k].split()[0]} unavailable: {why}")
    for why in result["skipped"].values():
        lines.append(f"- skipped: {why}")
    for note in result["notes"]:
        lines.append(f"- note: {note}")
    if not pretrained:
        lines.append("- FID / LPIPS computed with RANDOM network weights (pretrained=False): "
                     "the numbers are not comparable with published ones")
    return "\n".join(lines).rstrip() + "\n"


def _write_set(set_name, result, out_dir: Path, mean_spectra, crop_panels, suite: _Metrics) -> dict:
    files = {}
    md = out_dir / "metrics.md"
    md.write_text(markdown_table(set_name, result, suite.pretrained))
    files["markdown"] = str(md)
    path = out_dir / "metrics.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "images", *result["metrics"], *(f"n_{k}" for k in result["metrics"])])
        for m, row in result["rows"].items():
            n = result["counts"][m]
            w.writerow([m, n["images"], *("" if row[k] is None else repr(row[k]) for k in result["metrics"]),
                        *(n[k] for k in result["metrics"])])
    files["csv"] = str(path)
    if mean_spectra is not None:
        files["spectrum"] = str(_plot_spectra(set_name, mean_spectra, suite.spectral_kind, out_dir / "spectrum.png"))
    files["crops"] = [str(_plot_crops(set_name, name, box, panels, result, out_dir / f"crops_{_safe(name)}.png"))
                      for name, box, panels in crop_panels]
    path = out_dir / "metrics.json"
    files["json"] = str(path)
    path.write_text(json.dumps({**result, "files": files}, indent=2, allow_nan=True))
    return files


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (imported on first plot: slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_spectra(set_name, mean_spectra: dict, kind: str, path: Path) -> Path:
    plt = _pyplot()
    from gansr_ext.metrics.spectrum import EPS

    fig, (ax, ax_ratio) = plt.subplots(2, 1, figsize=(7, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    durall = kind == "durall"
    hr = mean_spectra["HR"]
    for m, spec in mean_spectra.items():
        style = {"color": "black", "linewidth": 2} if m == "HR" else {"linestyle": "--"} if m == BICUBIC else {}
        if durall:  # normalised curves over the rings, centre to corner
            freq = np.linspace(0, 1, len(spec))
            ax.plot(freq, spec, label=m, **style)
            ax_ratio.plot(freq, spec - hr, label=m, **style)
        else:
            freq = np.linspace(0, 0.5, len(spec))
            ax.semilogy(freq, spec + EPS, label=m, **style)
            ax_ratio.plot(freq, np.log10(spec + EPS) - np.log10(hr + EPS), label=m, **style)
    ax.set_ylabel("mean normalised 20 ln|F|" if durall else "mean power")
    ax.set_title(f"{set_name}: azimuthally averaged " + ("log spectrum (Durall et al.)" if durall else "power spectrum"))
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    ax_ratio.set_xlabel("ring radius / largest ring (centre to corner)" if durall
                        else "spatial frequency (cycles / pixel)")
    ax_ratio.set_ylabel("a - a_HR" if durall else "log10(P / P_HR)")
    ax_ratio.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_crops(set_name, name, box, panels, result, path: Path) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.4), squeeze=False)
    for ax, (m, crop) in zip(axes[0], panels):
        ax.imshow(crop, interpolation="nearest")
        scores = result["per_image"].get(m, {}).get(name, {})
        extra = ", ".join(f"{k.upper()} {_fmt(k, scores[k])}" for k in ("psnr", "lpips") if scores.get(k) is not None)
        extra = f"image {extra}" if extra else ""
        ax.set_title(f"{m}\n{extra}" if extra else m, fontsize=9)
        ax.axis("off")
    x, y, size = box
    fig.suptitle(f"{set_name} / {name}: x={x}, y={y}, {size}x{size}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --- public API -------------------------------------------------------------------------------------
def evaluate(models: dict, datasets: dict, out_dir, scale: int = 4, device=None, metrics=METRICS,
             crops=None, pretrained: bool = True, fid_weights=None, lpips_weights=None, lpips_net: str = "alex",
             tile=None, dtype="fp32", save_images: bool = False, progress: bool = True, fid_dims: int = 2048,
             spectral_kind: str = "abs") -> dict:
    """Evaluate `models` (name -> nn.Module or checkpoint path) on `datasets` (name -> folder).

    Writes `<out_dir>/<set>/metrics.{md,csv,json}`, `spectrum.png`, `crops_<image>.png` (crops:
    list of `Crop` or 'name:x,y,size'; default a 128x128 centre crop of each set's first image) and
    `<out_dir>/results.{md,json}`. pretrained=False uses random FID / LPIPS networks (smoke tests);
    fid_dims < 2048 (pytorch-fid's cheaper feature blocks) is for tests too. spectral_kind: "abs",
    "squared" or "durall" (see `gansr_ext.metrics.spectrum`; durall is the scale of Durall et al.).
    Returns {"datasets": {set: {"rows": {method: {metric: value or None}}, "unavailable": {...},
    ...}}, "markdown": str, ...}.
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"evaluate: scale must be a positive integer, got {scale!r}")
    metrics = tuple(metrics)
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise ValueError(f"evaluate: metrics must be a non-empty subset of {METRICS}, got {metrics}")
    if spectral_kind not in SPECTRAL_KINDS:
        raise ValueError(f"evaluate: spectral_kind must be one of {SPECTRAL_KINDS}, got {spectral_kind!r}")
    metrics = tuple(m for m in METRICS if m in metrics)  # column order
    if not isinstance(models, dict) or not isinstance(datasets, dict):
        raise TypeError("evaluate: models and datasets must be dicts (name -> model / folder)")
    if not datasets:
        raise ValueError("evaluate: no datasets given")
    if BICUBIC in models or "HR" in models:
        raise ValueError(f"evaluate: model names {BICUBIC!r} and 'HR' are reserved")
    crops = [c if isinstance(c, Crop) else parse_crop(c) for c in (crops or [])]
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    upscalers = {name: _upscaler(m, device, dtype, tile) for name, m in models.items()}
    for name, up in upscalers.items():
        if up.scale != scale:
            raise ValueError(f"evaluate: model {name!r} upscales x{up.scale}, but scale={scale}")
    suite = _Metrics(metrics, device, pretrained, fid_weights, lpips_weights, lpips_net, fid_dims, spectral_kind)
    results = {}
    for set_name, folder in datasets.items():
        results[set_name] = _evaluate_set(set_name, folder, upscalers, suite, scale, crops,
                                          out_dir / _safe(set_name), progress, save_images)
    markdown = "\n".join(markdown_table(s, r, pretrained) for s, r in results.items())
    (out_dir / "results.md").write_text(markdown)
    summary = {"scale": scale, "device": str(device), "metrics": list(metrics), "pretrained": pretrained,
               "fid_dims": fid_dims, "spectral_kind": spectral_kind,
               "models": list(models), "datasets": results}
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2, allow_nan=True))
    return {**summary, "markdown": markdown}


# --- CLI ------------------------------------------------------------------------------------------------
def _named(values, what: str) -> dict:
    """'NAME=PATH' or 'PATH' (name = file stem / folder name), unique names. A model may also be a
    pretrained model's name (`gansr models`): its package must be installed."""
    from gansr_ext.models import zoo

    out = {}
    for v in values or []:
        name, path = v.split("=", 1) if "=" in v and not Path(v).exists() else ("", v)
        name = name or Path(path.rstrip("/")).stem or path
        base, i = name, 2
        while name in out:
            name, i = f"{base}_{i}", i + 1
        if what == "model" and zoo.is_zoo_name(path):
            zoo.model_files(path)  # MissingModelPackageError naming the extra, before any work
        elif not Path(path).exists():
            hint = f" and is not a pretrained model's name ({', '.join(zoo.ZOO)})" if what == "model" else ""
            raise FileNotFoundError(f"gansr eval: {what} {path} does not exist{hint}")
        out[name] = path
    return out


def add_arguments(parser) -> None:
    parser.add_argument("--model", action="append", default=[], metavar="[NAME=]CKPT",
                        help="generator checkpoint or pretrained model's name (`gansr models`), repeatable; "
                             "bicubic is always evaluated")
    parser.add_argument("--data", action="append", required=True, metavar="[NAME=]DIR",
                        help="test set: a folder of HR images, or with HR/ and LR/ (LRbicx4/) subfolders (repeatable)")
    parser.add_argument("--out", required=True, metavar="OUT_DIR", help="output folder for tables and figures")
    parser.add_argument("--scale", type=int, default=4, help="SR factor; also the border shave for PSNR/SSIM/NIQE")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument("--metrics", nargs="+", choices=METRICS, default=list(METRICS))
    parser.add_argument("--crops", nargs="+", default=[], metavar="NAME:X,Y,SIZE",
                        help="crops (HR pixels) shown side by side; default: centre of each set's first image")
    parser.add_argument("--fid-weights", default=None, help="path to the FID Inception weights (else torch hub cache)")
    parser.add_argument("--lpips-weights", default=None,
                        help="path to the LPIPS backbone weights (else torch hub cache)")
    parser.add_argument("--lpips-net", default="alex", choices=("alex", "vgg", "squeeze"))
    parser.add_argument("--random-weights", action="store_true",
                        help="FID / LPIPS with random networks (smoke tests only; numbers not comparable)")
    parser.add_argument("--tile", type=int, default=None, help="tile size in LR pixels for large images")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--spectral-kind", default="abs", choices=SPECTRAL_KINDS,
                        help="spectral discrepancy: abs / squared (log10 mean power) or durall (Durall et al. "
                             "CVPR 2020: normalised 1-D log spectra, squared difference; the scale of their figures)")
    parser.add_argument("--save-images", action="store_true", help="also write the SR images as PNG")
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    try:
        models, datasets = _named(args.model, "model"), _named(args.data, "data folder")
    except (FileNotFoundError, ImportError) as e:  # a missing file, or a zoo model's package not installed
        print(f"gansr eval: error: {e}", file=sys.stderr)
        return 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # scipy sqrtm / torchvision chatter
        result = evaluate(models, datasets, args.out, scale=args.scale,
                          device=args.device, metrics=args.metrics, crops=args.crops,
                          pretrained=not args.random_weights, fid_weights=args.fid_weights,
                          lpips_weights=args.lpips_weights, lpips_net=args.lpips_net, tile=args.tile, dtype=args.dtype,
                          save_images=args.save_images, progress=not args.no_progress,
                          spectral_kind=args.spectral_kind)
    print(result["markdown"])
    print(f"written to {Path(args.out).resolve()}")
    skipped = [why for res in result["datasets"].values() for why in res["skipped"].values()]
    for why in skipped:  # as `gansr upscale`: each unusable image on stderr, exit status 1
        print(f"gansr eval: skipped {why}", file=sys.stderr)
    if skipped:
        print(f"gansr eval: {len(skipped)} image(s) skipped (see above); the tables use the others", file=sys.stderr)
    return 1 if skipped else 0
