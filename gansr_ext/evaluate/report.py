"""What an evaluation writes: the Markdown table, CSV, JSON and the figures (PNG)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

from .scoring import BICUBIC, METRIC_TABLE, format_value


def safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _cell(metric: str, value, n: int, row_images: int) -> str:
    """The value, with the number of images behind it when fewer than the row's."""
    text = format_value(metric, value)
    return text if value is None or n == row_images else f"{text} (n={n})"


def markdown_table(set_name: str, result: dict, pretrained: bool = True) -> str:
    names = result["metrics"]
    used, found = result["n_images"], result["n_found"]
    images = f"{used} images" if used == found else f"{used} of {found} images, {found - used} skipped"
    lines = [f"### {set_name} (x{result['scale']}, {images})", "",
             "| Method | Images | " + " | ".join(METRIC_TABLE[k].label for k in names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for m, row in result["rows"].items():
        n = result["counts"][m]
        lines.append(f"| {m} | {n['images']} | " + " | ".join(_cell(k, row[k], n[k], n["images"]) for k in names)
                     + " |")
    lines.append("")
    if result["hr_reference"]:
        ref = ", ".join(f"{k.upper()} {format_value(k, v)}" for k, v in result["hr_reference"].items())
        lines.append(f"HR images (reference): {ref}.")
    for k, why in result["unavailable"].items():
        lines.append(f"- {METRIC_TABLE[k].label.split()[0]} unavailable: {why}")
    for why in result["skipped"].values():
        lines.append(f"- skipped: {why}")
    for note in result["notes"]:
        lines.append(f"- note: {note}")
    if not pretrained:
        lines.append("- FID / LPIPS computed with RANDOM network weights (pretrained=False): "
                     "the numbers are not comparable with published ones")
    return "\n".join(lines).rstrip() + "\n"


def _write_csv(result: dict, path: Path) -> None:
    names = result["metrics"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "images", *names, *(f"n_{k}" for k in names)])
        for m, row in result["rows"].items():
            n = result["counts"][m]
            w.writerow([m, n["images"], *("" if row[k] is None else repr(row[k]) for k in names),
                        *(n[k] for k in names)])


def write_set_files(set_name, result, out_dir: Path, mean_spectra, crop_panels, suite) -> dict:
    """metrics.{md,csv,json}, spectrum.png (mean_spectra not None), crops_<image>.png; -> {kind: path}."""
    files = {}
    md = out_dir / "metrics.md"
    md.write_text(markdown_table(set_name, result, suite.pretrained))
    files["markdown"] = str(md)
    _write_csv(result, out_dir / "metrics.csv")
    files["csv"] = str(out_dir / "metrics.csv")
    if mean_spectra is not None:
        files["spectrum"] = str(_plot_spectra(set_name, mean_spectra, suite.spectral_kind, out_dir / "spectrum.png"))
    files["crops"] = [str(_plot_crops(set_name, name, box, panels, result,
                                      out_dir / f"crops_{safe_filename(name)}.png"))
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
        shown = ", ".join(f"{k.upper()} {format_value(k, scores[k])}" for k in ("psnr", "lpips")
                          if scores.get(k) is not None)
        ax.set_title(f"{m}\nimage {shown}" if shown else m, fontsize=9)
        ax.axis("off")
    x, y, size = box
    fig.suptitle(f"{set_name} / {name}: x={x}, y={y}, {size}x{size}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
