"""The run folder's lifetime guard: one training at a time, and no debris from killed writes.

`RunLock` takes an exclusive `fcntl.flock` on `RUN_DIR/.lock` for as long as the trainer holds the
folder. The kernel drops the lock when the process dies (kill -9 included), so a lock file left by
a killed run never blocks a resume; a second training into a folder in use fails at once with the
holder's pid instead of interleaving checkpoints, config and logs with it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = ".lock"


class RunFolderError(RuntimeError):
    """The run folder cannot be used (in use by another training, or holding a finished/other run)."""


class RunFolderExists(RunFolderError, FileExistsError):
    """A fresh run was pointed at a folder that already holds checkpoints."""


class RunLock:
    """An exclusive, non-blocking OS lock on a run folder; `release()` (or process exit) frees it."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderError(f"run folder {self.path.parent} is in use by another training (pid {holder}); "
                                 "wait for it to finish, or pick another name / output_dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd: int | None = fd
        self._identity = _identity(fd)

    def forget_in_child(self) -> None:
        """In a forked child (DataLoader worker): drop the inherited descriptor without unlocking, so
        the lock ends with the training process and not with its last worker. A no-op where the
        descriptor was not inherited (spawned workers): the number is checked to be our lock file."""
        if self._fd is not None:
            try:
                if _identity(self._fd) == self._identity:
                    os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def remove_orphan_temps(run_dir: str | Path) -> list[Path]:
    """Delete the `.NAME.XXXX.tmp` files that `_fileio.atomic_write` leaves when killed mid-write
    (only call this while holding the run's lock: a live writer's temp file looks the same)."""
    run_dir = Path(run_dir)
    found = [p for folder in (run_dir, run_dir / "checkpoints") if folder.is_dir()
             for p in folder.glob(".*.tmp") if p.is_file()]
    for p in found:
        p.unlink(missing_ok=True)
    return found


def refuse_a_used_folder(run_dir: str | Path, resume) -> None:
    """A fresh run (not `resume`) must not write into a folder that already holds checkpoints."""
    from .checkpointing import CheckpointManager

    if not resume and CheckpointManager(Path(run_dir) / "checkpoints").latest() is not None:
        raise RunFolderExists(f"run folder {run_dir} already holds checkpoints: continue it with "
                              f"`gansr train --resume {run_dir}` or pick another name / output_dir")


def lock_run_folder(run_dir: str | Path, resume, notes: list[str]) -> RunLock:
    """Lock the run folder (rank 0), refuse it again under the lock (the first look may have raced a
    starting run) and remove the temp files of writes a killed run left (noted in `notes`)."""
    lock = RunLock(run_dir)
    try:
        refuse_a_used_folder(run_dir, resume)
    except RunFolderError:
        lock.release()
        raise
    orphans = remove_orphan_temps(run_dir)
    if orphans:
        notes.append(f"removed {len(orphans)} temp file(s) left by a killed write: "
                     + ", ".join(p.name for p in orphans[:5]))
    return lock
