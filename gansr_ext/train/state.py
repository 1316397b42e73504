"""The trainer's checkpointed state: what a checkpoint holds, how it is restored, when it is written.

Exact resume: a checkpoint holds the models, EMA, optimizers, schedulers, GradScaler, every rank's
RNG states, the best-metric record and the iteration; the data position is the iteration (epoch =
iteration // batches_per_epoch, offset within the epoch), and each item's random crop is seeded from
(seed, epoch, index) (`EpochSeededDataset`), so a resumed run sees the same batches.

The file format (atomic writes, pruning, safe loading) is `checkpointing.CheckpointManager`'s.
"""

from __future__ import annotations

from pathlib import Path

from . import distributed as dist_utils
from .checkpointing import CheckpointError, CheckpointManager, rng_state, set_rng_state

LOWER_IS_BETTER = {"lpips", "niqe", "brisque", "fid", "dists"}
_unwrap = dist_utils.unwrap


class TrainerState:
    """Checkpoint methods of `Trainer` (a mixin: they read and set the trainer's models, optimizers,
    schedulers, scaler, `iteration`, `best`, the guard's counters and the data position)."""

    def _setup_checkpoints(self) -> None:
        self.ckpt = CheckpointManager(self.run_dir / "checkpoints", self.cfg["checkpoint"]["keep_last"])
        self.iteration = 0
        self.best = {"metric": self.cfg["val"]["best_metric"], "value": None, "iteration": None}
        self._last_saved: int | None = None  # iteration of the newest checkpoint this run wrote or resumed
        self._clean_since_save = False  # no skipped step and no collapse count since that checkpoint
        self._restored: int | None = None  # iteration the last rollback restored, until a new checkpoint
        self._ckpt_due = False  # a checkpoint was due inside a streak and is written at the next healthy one

    def _resume(self, resume) -> None:
        path = self.ckpt.latest() if resume is True else Path(resume)
        if path is None:
            raise CheckpointError(f"--resume: no checkpoint in {self.ckpt.folder}")
        self.load_state(CheckpointManager.load(path))
        self._last_saved, self._clean_since_save = self.iteration, True
        self.resumed_from = path

    def state_dict(self) -> dict:
        rngs = dist_utils.gather_objects(rng_state())
        return {
            "iteration": self.iteration, "config": self.cfg, "world_size": self.world,
            "G": _unwrap(self.G).state_dict(), "ema": self.ema.state_dict() if self.ema else None,
            "ema_updates": self.ema.updates if self.ema else None,
            "D": self.D.state_dict() if self.D is not None else None,
            "opt_g": self.opt_g.state_dict(), "sched_g": self.sched_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d else None,
            "sched_d": self.sched_d.state_dict() if self.sched_d else None,
            "scaler": self.scaler.state_dict(), "rng": rngs, "best": dict(self.best),
            "guard": {"skipped_total": self.skipped_total, "rollbacks": self.rollbacks,
                      "known_good": self.ckpt.protected},
        }

    def load_state(self, state: dict, counters: bool = True) -> None:
        """Restore a checkpoint; `counters=False` (rollback) keeps this run's skip/rollback counts."""
        _unwrap(self.G).load_state_dict(state["G"])
        if self.ema is not None:
            # checkpoints from before the EMA warm-up hold no update count: as many as iterations
            updates = state.get("ema_updates")
            self.ema.load_state_dict(state["ema"] if state["ema"] is not None else state["G"],
                                     updates=state["iteration"] if updates is None else updates)
        if self.D is not None:
            if state["D"] is None:
                raise CheckpointError("checkpoint has no discriminator (a PSNR-stage checkpoint): start the GAN "
                                      "stage with model.pretrained_g=<checkpoint> instead of resuming")
            self.D.load_state_dict(state["D"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.sched_d.load_state_dict(state["sched_d"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.scaler.load_state_dict(state["scaler"])
        rngs = state["rng"]
        set_rng_state(rngs[self.rank] if self.rank < len(rngs) else rngs[0])
        self.iteration = state["iteration"]
        self.best = dict(state["best"])
        if counters:
            self.skipped_total = state["guard"]["skipped_total"]
            self.rollbacks = state["guard"].get("rollbacks", 0)
            self.ckpt.protected = state["guard"].get("known_good")
        self._loader_iter = None  # re-position the data on the next batch

    def save_checkpoint(self) -> Path | None:
        """Write `iter_<N>.pt`. The previous checkpoint becomes the known-good one (kept out of pruning)
        when training went from it to here without a skipped step or a collapse count."""
        if self._clean_since_save and self._last_saved is not None and self._last_saved < self.iteration:
            self.ckpt.protected = self._last_saved
        state = self.state_dict()  # every rank: gathers RNG states
        path = self.ckpt.save(state, self.iteration) if self.main else None
        dist_utils.barrier()
        self._last_saved, self._clean_since_save, self._restored, self._ckpt_due = self.iteration, True, None, False
        return path

    def _is_better(self, value: float) -> bool:
        if self.best["value"] is None:
            return True
        lower = self.best["metric"] in LOWER_IS_BETTER
        return value < self.best["value"] if lower else value > self.best["value"]
