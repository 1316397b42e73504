"""Run logging: text log, CSV of every logged scalar, TensorBoard, tqdm progress with ETA.

Only rank 0 logs (other ranks get a `RunLogger(enabled=False)` whose methods do nothing).
"""

from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from .._fileio import atomic_write


class CSVLog:
    """Rows of scalars; a row with new columns rewrites the file with the wider header.

    A resumed run keeps the rows logged up to its checkpoint's iteration (`upto`) and drops the
    later ones, which the resumed run logs again."""

    def __init__(self, path: Path, upto: int | None = None):
        self.path = path
        self.fields: list[str] = []
        self.rows: list[dict] = []
        if path.is_file():  # resumed run: keep what was logged
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                self.fields = list(reader.fieldnames or [])
                self.rows = list(reader)
            kept = [r for r in self.rows if upto is None or not _after(r, upto)]
            if len(kept) < len(self.rows):
                self.rows = kept
                self._rewrite()

    def _rewrite(self) -> None:
        def write(f):
            text = io.StringIO(newline="")
            w = csv.DictWriter(text, fieldnames=self.fields)
            w.writeheader()
            w.writerows(self.rows)
            f.write(text.getvalue().encode())

        atomic_write(self.path, write)

    def write(self, row: dict) -> None:
        new = [k for k in row if k not in self.fields]
        self.rows.append(row)
        if new or not self.path.is_file():
            self.fields += new
            self._rewrite()
        else:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.fields).writerow(row)


def _after(row: dict, iteration: int) -> bool:
    try:
        return int(row.get("iter") or -1) > iteration
    except ValueError:  # a damaged row: not ours to judge, kept
        return False


class RunLogger:
    def __init__(self, run_dir: str | Path | None, total: int, start: int = 0, enabled: bool = True,
                 tensorboard: bool = True, use_csv: bool = True, progress: bool = True):
        self.enabled = enabled and run_dir is not None
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.csv = self.val_csv = self.tb = self.bar = None
        self._text = None
        if not self.enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._text = open(self.run_dir / "train.log", "a")
        if use_csv:
            self.csv = CSVLog(self.run_dir / "train_log.csv", upto=start)
            self.val_csv = CSVLog(self.run_dir / "val_log.csv", upto=start)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.run_dir / "tb"))
        if progress:
            self.bar = tqdm(total=total, initial=start, dynamic_ncols=True, desc="train", file=sys.stderr)

    def info(self, msg: str) -> None:
        if not self.enabled:
            return
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)
        self._text.write(line + "\n")
        self._text.flush()

    def scalars(self, iteration: int, values: dict, prefix: str = "train") -> None:
        if not self.enabled:
            return
        target = self.val_csv if prefix == "val" else self.csv
        if target is not None:
            target.write({"iter": iteration, **values})
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{prefix}/{k}", v, iteration)

    def progress(self, n: int = 1, postfix: dict | None = None) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def reset_progress(self, iteration: int) -> None:  # after a rollback
        if self.bar is not None:
            self.bar.n = iteration
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        if self._text is not None:
            self._text.close()
        self.bar = self.tb = self._text = None


class IntervalMeans:
    """Per-key means of the training steps' values over one log interval. Tensor values stay on the
    device until `means()` reads them all in one transfer (the loop's one host sync per log row);
    float values (already on the host) are summed as they come."""

    def __init__(self):
        self.values: dict[str, list] = {}
        self.count = 0

    def add(self, stats: dict) -> None:
        for k, v in stats.items():
            self.values.setdefault(k, []).append(v)
        self.count += 1

    def means(self) -> dict[str, float]:
        on_device = [k for k, vs in self.values.items() if isinstance(vs[0], torch.Tensor)]
        sums = {k: sum(vs) for k, vs in self.values.items() if k not in on_device}
        if on_device:
            totals = torch.stack([torch.stack([v.double() for v in self.values[k]]).sum() for k in on_device])
            sums.update(zip(on_device, totals.tolist()))
        return {k: sums[k] / self.count for k in self.values}
