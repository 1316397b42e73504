"""Timing and reporting helpers shared by the benchmark scripts in python/ (not installed).

GPU: median of CUDA-event timings after warm-up. CPU: median of perf_counter timings.
Results: JSON + a Markdown table naming device, torch, commit and date.
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import torch


def time_fn(fn, device: torch.device, warmup: int = 5, iters: int = 20) -> float:
    """Median milliseconds of fn() after warm-up."""
    for _ in range(warmup):
        fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


# the 1-minute load average when the benchmark process starts (importing this module), before its own
# threads add to it: CPU timings on a busy machine are 10-25x off (spinning OpenMP threads), so every
# result says how quiet the machine was
_LOAD_AT_START = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def metadata(device: torch.device) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=False).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    load = _LOAD_AT_START
    return {"device": name, "torch": torch.__version__, "commit": commit,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load_before": load, "cpus": os.cpu_count()}


def write_results(out: str | Path, title: str, meta: dict, rows: list[dict], columns: list[str]) -> None:
    """Write `<out>.json` and `<out>.md` (a Markdown table with the metadata above it)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"title": title, **meta, "rows": rows}, indent=2) + "\n")
    lines = [f"# {title}", "", f"device: {meta['device']} · torch {meta['torch']} · commit {meta['commit']} · {meta['date']}"
             + (f" · load before the run {meta['load_before']} on {meta['cpus']} CPUs" if meta.get("load_before") is not None
                else ""),
             "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)
