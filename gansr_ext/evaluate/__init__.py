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

Python API: `evaluate({"name": model_or_checkpoint}, {"Set5": "path/to/Set5"}, "out", EvalOptions(...))`
(or the options' fields as keywords); CLI: `gansr eval --model CKPT --data DIR --out OUT`.

Modules: `testsets` (pairs, loading, crops), `scoring` (the metric table, `MetricSuite`), `runner`
(`EvalOptions`, `evaluate`: the pass over each set, its rows), `report` (tables, JSON, figures),
`cli` (`gansr eval`).
"""

from .cli import add_arguments, run
from .report import markdown_table
from .runner import EvalOptions, evaluate
from .scoring import BICUBIC, METRIC_TABLE, METRICS, Metric
from .testsets import Crop, find_pairs, load_pair, parse_crop

__all__ = ["evaluate", "EvalOptions", "Crop", "parse_crop", "find_pairs", "load_pair", "markdown_table",
           "METRICS", "METRIC_TABLE", "Metric", "BICUBIC", "add_arguments", "run"]
