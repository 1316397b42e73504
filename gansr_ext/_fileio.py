"""Atomic file writes: write a temp file next to the target, fsync, then `os.replace` onto it, so a
reader (or a run killed mid-write) never sees a half-written file under the real name. And the
reading side: `load_tensors` (torch.load that runs no code) and `read_error_text` (a failure as one line).

The temp file is created with mode 0o666 filtered by the process umask, as `open(path, "wb")` would
create the target (`tempfile.mkstemp` would leave every written file 0600)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable

_NEW_FILE_MODE = 0o666  # the kernel applies the umask to it


def _create_temp(folder: Path, name: str) -> tuple[int, Path]:
    """An exclusively created, empty temp file next to the target: (fd, path)."""
    while True:
        tmp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                           _NEW_FILE_MODE), tmp
        except FileExistsError:
            continue


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(f)` with a binary file object opened on a temp file, then move it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_error_text(err: BaseException) -> str:
    """'Type: cause' on one line: torch.load reports a truncated file as a bare EOFError and buries the
    cause of a weights_only refusal among lines of advice."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    cause = [line for line in lines if "Unsupported" in line or "WeightsUnpickler" in line]
    text = (cause or lines or ["unexpected end of file"])[-1 if cause else 0]
    return f"{type(err).__name__}: {text.split('. ')[0][:200]}"


def _numpy_array_globals() -> list:
    """What a numpy array unpickles with: `_reconstruct`, ndarray, dtype and the numeric dtype classes
    (none of them runs code; an object array's items go through the same restricted unpickler)."""
    import numpy as np

    core = np._core if hasattr(np, "_core") else np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype] + [type(np.dtype(c)) for c in "?bBhHiIlLqQefd"]


def load_tensors(path: str | os.PathLike):
    """torch.load(weights_only=True) on the CPU, numpy arrays allowed (older trainer checkpoints hold the
    numpy RNG state as one); anything else that is not tensors and plain values: pickle.UnpicklingError."""
    import torch

    with torch.serialization.safe_globals(_numpy_array_globals()):
        return torch.load(path, map_location="cpu", weights_only=True)
