"""Training checkpoints: atomic writes, keep-last-K + best + the last known-good one, safe loading,
RNG state capture for exact resume.

Files in `RUN_DIR/checkpoints/`: `iter_<N>.pt` (the last `keep_last` are kept, plus the `protected`
one: the trainer's last known-good checkpoint) and `best.pt`. A file is written to a temporary name
in the same folder, flushed to disk and renamed with `os.replace`, so a run killed mid-write never
leaves a truncated checkpoint under a real name.

Checkpoints are read with `torch.load(weights_only=True)`: a file planted in the run folder cannot
run code on `--resume` or on a divergence rollback. Everything in a checkpoint is therefore tensors
and plain Python values; the numpy RNG state is stored as a tensor (checkpoints written before
that held a numpy array, whose three reconstruction globals are allowed for them, and nothing else).
"""

from __future__ import annotations

import pickle
import random
import re
from pathlib import Path

import numpy as np
import torch

from .._fileio import atomic_write

_ITER_RE = re.compile(r"^iter_(\d+)\.pt$")
# what numpy.random.get_state()'s array needs to unpickle (older checkpoints stored it as is)
_NUMPY_ARRAY_GLOBALS = [np.ndarray, np.dtype, type(np.dtype(np.uint32)),
                        (np._core if hasattr(np, "_core") else np.core).multiarray._reconstruct]


def _what_was_refused(e: Exception) -> str:
    """The line of torch's weights-only error that names the refused global (its other lines advise
    loading the file unsafely)."""
    m = re.search(r"(Unsupported global: GLOBAL \S+|Unsupported operand \S+)", str(e))
    return m.group(1) if m else type(e).__name__


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded (not a trainer checkpoint, truncated, or holding code)."""


def atomic_save(obj, path: str | Path) -> Path:
    """torch.save to a temp file next to `path`, fsync, then os.replace onto `path`."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def rng_state() -> dict:
    """Python, numpy, torch CPU and (when present) all CUDA generators, as tensors and plain values."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state(saved) -> dict | tuple:
    if not isinstance(saved, dict):  # an older checkpoint: get_state()'s legacy tuple
        return saved
    return {"bit_generator": "MT19937", "state": {"key": saved["key"].numpy().astype(np.uint32), "pos": saved["pos"]},
            "has_gauss": saved["has_gauss"], "gauss": saved["gauss"]}


def set_rng_state(state: dict) -> None:
    python = state["python"]  # a list after weights_only loading, a tuple in memory
    random.setstate((python[0], tuple(python[1]), python[2]))
    np.random.set_state(_numpy_state(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class CheckpointManager:
    """Writes `iter_<N>.pt`, prunes all but the newest `keep_last` and the `protected` iteration,
    keeps `best.pt` apart."""

    def __init__(self, folder: str | Path, keep_last: int = 3):
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.folder = Path(folder)
        self.keep_last = keep_last
        self.protected: int | None = None  # the last known-good checkpoint's iteration

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
        for it, old in self.iteration_files()[:-self.keep_last]:
            if it != self.protected:
                old.unlink(missing_ok=True)
        return path

    def save_best(self, state: dict) -> Path:
        return atomic_save(state, self.folder / "best.pt")

    def discard_after(self, iteration: int) -> list[Path]:
        """Delete the checkpoints newer than `iteration` (a timeline abandoned by a rollback)."""
        gone = [p for it, p in self.iteration_files() if it > iteration]
        if self.protected is not None and self.protected > iteration:
            self.protected = None
        for p in gone:
            p.unlink(missing_ok=True)
        return gone

    @staticmethod
    def load(path: str | Path) -> dict:
        """A trainer checkpoint, read without executing anything it holds; CheckpointError otherwise."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
        try:
            with torch.serialization.safe_globals(_NUMPY_ARRAY_GLOBALS):
                state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise CheckpointError(f"checkpoint {path} holds objects other than tensors and plain values, so it "
                                  f"was not loaded (a file not written by gansr train?): {_what_was_refused(e)}"
                                  ) from None
        except (EOFError, RuntimeError, OSError, ValueError) as e:
            detail = f"{type(e).__name__}: {e}" if str(e).strip() else type(e).__name__
            raise CheckpointError(f"checkpoint {path} cannot be read (truncated or not a torch file): {detail}") from None
        if not isinstance(state, dict) or not {"iteration", "G", "rng"} <= set(state):
            raise CheckpointError(f"checkpoint {path} is not a gansr trainer checkpoint (no iteration/G/rng entries)")
        return state
