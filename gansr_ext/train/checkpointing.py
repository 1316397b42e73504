"""Training checkpoints: atomic writes, keep-last-K + best, RNG state capture for exact resume.

Files in `RUN_DIR/checkpoints/`: `iter_<N>.pt` (the last `keep_last` are kept) and `best.pt`.
A file is written to a temporary name in the same folder, flushed to disk and renamed with
`os.replace`, so a run killed mid-write never leaves a truncated checkpoint under a real name.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import torch

from .._fileio import atomic_write

_ITER_RE = re.compile(r"^iter_(\d+)\.pt$")


def atomic_save(obj, path: str | Path) -> Path:
    """torch.save to a temp file next to `path`, fsync, then os.replace onto `path`."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def rng_state() -> dict:
    """Python, numpy, torch CPU and (when present) all CUDA generators."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class CheckpointManager:
    """Writes `iter_<N>.pt`, prunes all but the newest `keep_last`, keeps `best.pt` apart."""

    def __init__(self, folder: str | Path, keep_last: int = 3):
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.folder = Path(folder)
        self.keep_last = keep_last

    def iteration_files(self) -> list[tuple[int, Path]]:
        if not self.folder.is_dir():
            return []
        found = []
        for p in self.folder.iterdir():
            m = _ITER_RE.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found)

    def latest(self) -> Path | None:
        files = self.iteration_files()
        return files[-1][1] if files else None

    def save(self, state: dict, iteration: int) -> Path:
        path = atomic_save(state, self.folder / f"iter_{iteration:08d}.pt")
        for _, old in self.iteration_files()[:-self.keep_last]:
            old.unlink(missing_ok=True)
        return path

    def save_best(self, state: dict) -> Path:
        return atomic_save(state, self.folder / "best.pt")

    @staticmethod
    def load(path: str | Path) -> dict:
        # our own files: they hold numpy RNG state and config dicts, so not weights_only
        return torch.load(path, map_location="cpu", weights_only=False)
