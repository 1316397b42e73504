"""`evaluate(models, datasets, out_dir, options)`: one pass over each set's images (scores, spectra,
FID features, crops), then the set's rows, written by `report`."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from gansr_ext.metrics.spectrum import KINDS as SPECTRAL_KINDS

from .report import markdown_table, safe_filename, write_set_files
from .scoring import BICUBIC, METRICS, NO_REFERENCE, PER_IMAGE, MetricSuite
from .testsets import Crop, crop_box, find_pairs, load_pair, parse_crop


@dataclass
class EvalOptions:
    """How `evaluate` runs (every field has a default).

    Args:
        scale: the SR factor; also the border shave of PSNR / SSIM / NIQE.
        device: a torch device or its name; None: cuda if available, else cpu.
        metrics: a non-empty subset of `METRICS` (the columns keep `METRICS`' order).
        crops: `Crop`s or 'name:x,y,size' texts for the side-by-side figures; empty: a 128x128
            centre crop of each set's first image.
        pretrained: False uses random FID / LPIPS networks (smoke tests; numbers not comparable).
        fid_weights, lpips_weights: weight files (None: the torch hub cache).
        lpips_net: "alex", "vgg" or "squeeze".
        tile: tile size in LR pixels for large images (None: whole images).
        dtype: "fp32", "fp16" or "bf16" for the models.
        save_images: also write the SR images as PNG (`<set>/images/<method>/`).
        progress: a progress bar per set.
        fid_dims: Inception feature size; 2048 is the standard, pytorch-fid's smaller blocks are for tests.
        spectral_kind: "abs", "squared" or "durall" (see `gansr_ext.metrics.spectrum`; durall is the
            scale of Durall et al.).
    """

    scale: int = 4
    device: str | torch.device | None = None
    metrics: tuple = METRICS
    crops: tuple = ()
    pretrained: bool = True
    fid_weights: str | os.PathLike | None = None
    lpips_weights: str | os.PathLike | None = None
    lpips_net: str = "alex"
    tile: int | None = None
    dtype: str = "fp32"
    save_images: bool = False
    progress: bool = True
    fid_dims: int = 2048
    spectral_kind: str = "abs"

    def __post_init__(self):
        scale = self.scale
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ValueError(f"evaluate: scale must be a positive integer, got {scale!r}")
        metrics = tuple(self.metrics)
        if not metrics or any(m not in METRICS for m in metrics):
            raise ValueError(f"evaluate: metrics must be a non-empty subset of {METRICS}, got {metrics}")
        if self.spectral_kind not in SPECTRAL_KINDS:
            raise ValueError(f"evaluate: spectral_kind must be one of {SPECTRAL_KINDS}, got {self.spectral_kind!r}")
        self.metrics = tuple(m for m in METRICS if m in metrics)  # column order
        self.crops = tuple(c if isinstance(c, Crop) else parse_crop(c) for c in (self.crops or ()))


def evaluate(models: dict, datasets: dict, out_dir, options: EvalOptions | None = None, **overrides) -> dict:
    """Evaluate `models` (name -> nn.Module or checkpoint path) on `datasets` (name -> folder).

    `options` (an `EvalOptions`) and / or its fields as keywords (`device="cpu", metrics=("psnr",)`).
    Writes `<out_dir>/<set>/metrics.{md,csv,json}`, `spectrum.png`, `crops_<image>.png` and
    `<out_dir>/results.{md,json}`. Returns {"datasets": {set: {"rows": {method: {metric: value or
    None}}, "unavailable": {...}, ...}}, "markdown": str, ...}.
    """
    if options is not None and not isinstance(options, EvalOptions):
        raise TypeError(f"evaluate: options must be an EvalOptions, got {type(options).__name__}")
    opts = dataclasses.replace(options, **overrides) if options is not None else EvalOptions(**overrides)
    if not isinstance(models, dict) or not isinstance(datasets, dict):
        raise TypeError("evaluate: models and datasets must be dicts (name -> model / folder)")
    if not datasets:
        raise ValueError("evaluate: no datasets given")
    if BICUBIC in models or "HR" in models:
        raise ValueError(f"evaluate: model names {BICUBIC!r} and 'HR' are reserved")
    device = torch.device(opts.device if opts.device is not None else
                          "cuda" if torch.cuda.is_available() else "cpu")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    upscalers = {name: _make_upscaler(m, device, opts) for name, m in models.items()}
    for name, up in upscalers.items():
        if up.scale != opts.scale:
            raise ValueError(f"evaluate: model {name!r} upscales x{up.scale}, but scale={opts.scale}")
    suite = MetricSuite(opts, device)
    results = {set_name: _evaluate_set(set_name, folder, upscalers, suite, opts, out_dir / safe_filename(set_name))
               for set_name, folder in datasets.items()}
    markdown = "\n".join(markdown_table(s, r, opts.pretrained) for s, r in results.items())
    (out_dir / "results.md").write_text(markdown)
    summary = {"scale": opts.scale, "device": str(device), "metrics": list(opts.metrics),
               "pretrained": opts.pretrained, "fid_dims": opts.fid_dims, "spectral_kind": opts.spectral_kind,
               "models": list(models), "datasets": results}
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2, allow_nan=True))
    return {**summary, "markdown": markdown}


def _make_upscaler(model, device, opts: EvalOptions):
    from gansr_ext.infer import Upscaler

    if isinstance(model, torch.nn.Module):
        model = copy.deepcopy(model)  # Upscaler moves / freezes the module in place: leave the caller's alone
    elif not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"evaluate: a model must be an nn.Module or a checkpoint path, got {type(model).__name__}")
    # pre_pad=0: the model on the plain LR image, as BasicSR's test script runs it (comparable numbers)
    return Upscaler(model, device=device, dtype=opts.dtype, tile=opts.tile, pre_pad=0)


# --- one set -----------------------------------------------------------------------------------------
def _evaluate_set(set_name, folder, upscalers, suite: MetricSuite, opts: EvalOptions, out_dir: Path) -> dict:
    pairs = find_pairs(folder, opts.scale)
    c = _collect(set_name, pairs, upscalers, suite, opts, out_dir)
    summary = _summarize(c, [BICUBIC, *upscalers], suite)
    result = {
        "folder": str(folder), "n_images": len(pairs) - len(c.skipped), "n_found": len(pairs),
        "skipped": c.skipped, "counts": _image_counts(c, summary.rows), "scale": opts.scale,
        "metrics": list(suite.names), "rows": summary.rows, "unavailable": summary.unavailable, "notes": c.notes,
        "hr_reference": summary.hr_reference,
        "per_image": {m: {img: {k: (None if isinstance(v, Exception) else v) for k, v in scores.items()}
                          for img, scores in d.items()} for m, d in c.scores.items()},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    result["files"] = write_set_files(set_name, result, out_dir, summary.mean_spectra, c.crop_panels, suite)
    return result


@dataclass
class _Collected:
    """What the pass over a set's images keeps, per method ("HR" for the reference images)."""

    scores: dict  # method -> image -> {metric: value or the ValueError}
    spectra: dict  # method -> [1-D spectrum per image]
    fid_features: dict  # method -> [features per image]
    crop_panels: list  # [(image, (x, y, size), [(method, crop)])]
    notes: list
    skipped: dict  # image name -> why it could not be used


def _collect(set_name, pairs, upscalers, suite: MetricSuite, opts: EvalOptions, out_dir) -> _Collected:
    from tqdm import tqdm

    methods = ["HR", BICUBIC, *upscalers]
    c = _Collected({m: {} for m in methods}, {m: [] for m in methods}, {m: [] for m in methods}, [],
                   list(suite.notes), {})
    crops_by_image = {cr.image: cr for cr in opts.crops} if opts.crops else None
    for name, hr_path, lr_path in tqdm(pairs, desc=set_name, unit="img", disable=not opts.progress):
        loaded = _load_or_skip(name, hr_path, lr_path, opts.scale, c)
        if loaded is None:
            continue
        hr, lr = loaded
        images = {"HR": hr, **_upscale(name, hr, lr, upscalers, opts.scale)}
        _add_image(c, suite, name, images, opts.scale)
        if opts.save_images:
            _save_outputs(out_dir, name, images)
        box = crop_box(name, hr.shape, crops_by_image, bool(c.crop_panels), c.notes)
        if box is not None:
            x, y, size = box
            c.crop_panels.append((name, box, [(m, im[y:y + size, x:x + size]) for m, im in images.items()]))
    if len(c.skipped) == len(pairs):
        reasons = "; ".join(list(c.skipped.values())[:3])
        raise ValueError(f"evaluate: none of the {len(pairs)} image(s) of {set_name} could be used: {reasons}")
    if crops_by_image is not None:
        found = {p[0] for p in c.crop_panels}
        c.notes += [f"crop image {n!r} is not in this set" for n in crops_by_image if n not in found]
    return c


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


def _upscale(name, hr, lr, upscalers, scale) -> dict:
    """{method: output}: bicubic, then each model."""
    from gansr_ext.data import imresize

    outputs = {BICUBIC: imresize(lr, scale)}
    for m, up in upscalers.items():
        outputs[m] = up.upscale(lr)
        if outputs[m].shape != hr.shape:
            raise ValueError(f"evaluate: model {m!r} produced {outputs[m].shape} for {name}, expected {hr.shape}")
    return outputs


def _add_image(c: _Collected, suite: MetricSuite, name, images: dict, scale) -> None:
    """Scores, spectra and FID features of one image's HR and outputs (`images`, HR first)."""
    from gansr_ext.metrics.spectrum import spectrum_1d

    hr = images["HR"]
    for m, img in images.items():
        c.scores[m][name] = suite.score_image(img, hr, scale, only=NO_REFERENCE if m == "HR" else PER_IMAGE)
    for m, img in images.items():
        if "spectral" in suite.names:
            try:
                c.spectra[m].append(spectrum_1d(img, suite.spectral_kind))
            except ValueError as e:  # e.g. a flat image has no normalised (durall) curve
                c.notes.append(f"spectral: {m}/{name} left out: {e}")
        if suite.fid is not None:
            c.fid_features[m].append(suite.fid.features(img))


def _save_outputs(out_dir: Path, name, images: dict) -> None:
    from gansr_ext.data.io import write_image

    for m, img in images.items():
        if m != "HR":
            write_image(out_dir / "images" / safe_filename(m) / f"{name}.png", img)  # creates the folder


# --- a set's rows ------------------------------------------------------------------------------------
def _mean(values: list) -> float | None:
    ok = [v for v in values if not isinstance(v, Exception)]
    return float(np.mean(ok)) if ok else None


class _Summary(NamedTuple):
    rows: dict  # method -> {metric: value or None}, every metric of the suite
    unavailable: dict  # metric -> why
    hr_reference: dict  # no-reference metric -> its mean over the HR images
    mean_spectra: dict | None  # method (and "HR") -> mean 1-D spectrum; None without the spectral metric


def _summarize(c: _Collected, methods, suite: MetricSuite) -> _Summary:
    unavailable = dict(suite.unavailable)
    rows = {m: {} for m in methods}
    _add_per_image_means(c, methods, suite, rows, unavailable)
    if suite.fid is not None:
        _add_fid(c, methods, suite, rows, unavailable)
    mean_spectra = _add_spectral(c, methods, suite, rows) if "spectral" in suite.names else None
    hr_reference = {k: _mean([scores[k] for scores in c.scores["HR"].values()])
                    for k in NO_REFERENCE if k in suite.names and k not in unavailable}
    rows = {m: {k: (row.get(k) if k not in unavailable else None) for k in suite.names} for m, row in rows.items()}
    return _Summary(rows, unavailable, hr_reference, mean_spectra)


def _add_per_image_means(c: _Collected, methods, suite: MetricSuite, rows: dict, unavailable: dict) -> None:
    """Each method's mean of each per-image metric; a metric that failed everywhere is unavailable,
    one that failed on some outputs gets a note."""
    for metric in PER_IMAGE:
        if metric not in suite.names or metric in unavailable:
            continue
        failures = [(f"{m}/{img}", scores[metric]) for m in methods for img, scores in c.scores[m].items()
                    if isinstance(scores.get(metric), Exception)]
        for m in methods:
            rows[m][metric] = _mean([scores[metric] for scores in c.scores[m].values()])
        if failures and all(rows[m][metric] is None for m in methods):
            unavailable[metric] = f"{failures[0][1]} ({failures[0][0]})"
        elif failures:
            where = ", ".join(w for w, _ in failures[:5]) + (", ..." if len(failures) > 5 else "")
            c.notes.append(f"{metric}: skipped on {len(failures)} output(s) ({where}): {failures[0][1]}")


def _add_fid(c: _Collected, methods, suite: MetricSuite, rows: dict, unavailable: dict) -> None:
    if len(c.fid_features["HR"]) < 2:
        unavailable["fid"] = "FID needs at least 2 images per set"
        return
    hr_features = np.concatenate(c.fid_features["HR"])
    try:
        for m in methods:
            rows[m]["fid"] = suite.fid.distance(hr_features, np.concatenate(c.fid_features[m]))
    except ValueError as e:  # sqrtm failed (too few images for the feature size)
        unavailable["fid"] = str(e)


def _add_spectral(c: _Collected, methods, suite: MetricSuite, rows: dict) -> dict:
    """-> the mean spectra (HR and every method), each method's discrepancy from HR in `rows`."""
    from gansr_ext.metrics.spectrum import discrepancy_of_spectra, resample_spectrum

    n_bins = min(len(s) for s in c.spectra["HR"])  # every method's outputs have the HR sizes
    mean_spectra = {m: np.mean([resample_spectrum(s, n_bins) for s in specs], axis=0)
                    for m, specs in c.spectra.items()}
    for m in methods:
        rows[m]["spectral"] = discrepancy_of_spectra(mean_spectra["HR"], mean_spectra[m], suite.spectral_kind)
    return mean_spectra


def _image_counts(c: _Collected, rows: dict) -> dict:
    """{method: {"images": n, metric: images behind the value}} (0 where there is no value)."""
    counts = {}
    for m, row in rows.items():
        scores = c.scores[m].values()
        n = {"images": len(c.scores[m])}
        for metric, value in row.items():
            if value is None:
                n[metric] = 0
            elif metric in PER_IMAGE:
                n[metric] = sum(metric in s and not isinstance(s[metric], Exception) for s in scores)
            else:  # set-level: the images whose spectra / features entered the set's statistics
                n[metric] = len((c.spectra if metric == "spectral" else c.fid_features)[m])
        counts[m] = n
    return counts
