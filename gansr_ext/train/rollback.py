"""The divergence guard: skipped steps, rollbacks to a known-good checkpoint, healthy checkpoints.

A non-finite G loss skips the whole iteration; a non-finite D loss skips the D update (G and its EMA
have stepped by then); either is logged and counted. `guard.max_nonfinite` in a row, or a D loss
below `guard.collapse_d_loss` for `guard.collapse_patience` iterations, rolls back to the newest
checkpoint (one further back when the previous rollback led straight back into the divergence) and
multiplies the learning rates by `guard.lr_factor`. Checkpoints are never written inside such a
streak or with non-finite weights, and the last known-good one is kept out of pruning. A
discriminator whose loss stays at its chance value (`guard.idle_d_*`) gets a warning in the log.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from . import distributed as dist_utils
from .checkpointing import CheckpointManager
from .guard import IdleDiscriminatorWatch, NaNLoss, TrainingDiverged, chance_d_loss, nan_at, window_for
from .logging import RunLogger

_unwrap = dist_utils.unwrap


def scale_learning_rates(pairs, factor: float) -> None:
    """Multiply the learning rates of (optimizer, scheduler) pairs by `factor`, the schedulers' base
    rates included (their next step() sets get_last_lr()); pairs with no optimizer are skipped."""
    for opt, sched in pairs:
        if opt is None:
            continue
        for group in opt.param_groups:
            group["lr"] *= factor
            if "initial_lr" in group:
                group["initial_lr"] *= factor
        sched.base_lrs = [b * factor for b in sched.base_lrs]


class DivergenceGuard:
    """Guard methods of `Trainer` (a mixin: they read the trainer's config, models, optimizers and
    checkpoints, and restore one through `load_state`)."""

    def _setup_guard(self) -> None:
        """The guard's state (module docstring) and the `guard.inject_nan_at` test hook, which wraps the
        G loss."""
        guard_cfg, cfg = self.cfg["guard"], self.cfg
        self.idle_d = None
        if self.gan:
            self.idle_d = IdleDiscriminatorWatch(
                chance_d_loss(self.gan_loss), guard_cfg["idle_d_epsilon"],
                window_for(cfg["train"]["total_iters"], guard_cfg["idle_d_window"], guard_cfg["idle_d_min_iters"]))
        if guard_cfg["inject_nan_at"]:
            self.losses = NaNLoss(self.losses, nan_at(guard_cfg["inject_nan_at"], lambda: self.iteration + 1))
        self.skipped_total = self.rollbacks = 0
        self._nonfinite_run = self._collapse_run = 0

    def _guard(self, stats: dict, log: RunLogger) -> bool:
        """Update the divergence counters; True when a rollback happened."""
        guard_cfg = self.cfg["guard"]
        if stats["skipped"]:
            self._nonfinite_run += 1
            self.skipped_total += 1
            self._clean_since_save = False
            bad = {k: v for k, v in ((k, float(v)) for k, v in stats.items()) if not math.isfinite(v)}
            log.info(f"iter {self.iteration}: non-finite loss {bad} -> step skipped "
                     f"({self._nonfinite_run}/{guard_cfg['max_nonfinite']} in a row)")
            if self._nonfinite_run >= guard_cfg["max_nonfinite"]:
                self.rollback(f"{self._nonfinite_run} non-finite losses in a row", log)
                return True
            return False
        self._nonfinite_run = 0
        if self.idle_d is not None and "d_loss" in stats:
            warning = self.idle_d.update(stats["d_loss"], self.iteration)
            if warning:
                self._note(warning, log)
        if self.gan and guard_cfg["collapse_d_loss"] > 0:
            low = dist_utils.all_true(stats.get("d_loss", 1.0) < guard_cfg["collapse_d_loss"], self.device)
            self._collapse_run = self._collapse_run + 1 if low else 0
            self._clean_since_save = self._clean_since_save and not low
            if self._collapse_run >= guard_cfg["collapse_patience"]:
                self.rollback(f"D loss below {guard_cfg['collapse_d_loss']} for {self._collapse_run} iterations "
                              "(discriminator collapse)", log)
                return True
        return False

    def _rollback_target(self, reason: str) -> Path:
        """The newest checkpoint; one older than the last restored one when training diverged again
        before writing a new checkpoint (the restored state leads back into the divergence)."""
        files = self.ckpt.iteration_files()
        if self._restored is not None:
            files = [(it, p) for it, p in files if it < self._restored]
        if not files:
            again = f" again after restoring iter {self._restored}," if self._restored is not None else ""
            raise TrainingDiverged(f"training diverged ({reason}){again} and there is no older checkpoint to "
                                   "roll back to")
        return files[-1][1]

    def rollback(self, reason: str, log: RunLogger) -> None:
        """Restore a checkpoint from before the divergence (`_rollback_target`), delete the newer ones
        (the abandoned timeline), and scale every learning rate by guard.lr_factor."""
        guard_cfg = self.cfg["guard"]
        if self.rollbacks >= guard_cfg["max_rollbacks"]:
            raise TrainingDiverged(f"training diverged: {reason}, and {self.rollbacks} rollbacks "
                                   "(guard.max_rollbacks) did not help")
        path = self._rollback_target(reason)
        from_iter = self.iteration
        self.load_state(CheckpointManager.load(path), counters=False)
        self._restored = self._last_saved = self.iteration
        self._clean_since_save, self._ckpt_due = True, False
        dropped = self.ckpt.discard_after(self.iteration) if self.main else []
        dist_utils.barrier()
        factor = guard_cfg["lr_factor"]
        scale_learning_rates(((self.opt_g, self.sched_g), (self.opt_d, self.sched_d)), factor)
        self.rollbacks += 1
        self._nonfinite_run = self._collapse_run = 0
        lrs = ", ".join(f"{n} {o.param_groups[0]['lr']:.3g}" for n, o in (("G", self.opt_g), ("D", self.opt_d)) if o)
        log.info(f"ROLLBACK #{self.rollbacks} at iter {from_iter}: {reason}; restored {path.name} "
                 f"(iter {self.iteration}); learning rates x{factor} -> {lrs}"
                 + (f"; deleted the abandoned {', '.join(p.name for p in dropped)}" if dropped else ""))
        log.reset_progress(self.iteration)

    def _unhealthy(self) -> str | None:
        """Why now is no time for a checkpoint (inside a non-finite or collapse streak, or non-finite
        weights), or None. A checkpoint written then is what a rollback would restore."""
        if self._nonfinite_run or self._collapse_run:
            return (f"inside a streak ({self._nonfinite_run} non-finite losses, {self._collapse_run} collapse "
                    "iterations in a row)")
        models = [_unwrap(self.G)] + ([self.D] if self.D is not None else [])
        finite = bool(torch.stack([torch.isfinite(p).all() for m in models for p in m.parameters()]).all())
        if not dist_utils.all_true(finite, self.device):
            return "the weights hold non-finite values"
        return None

    def _checkpoint_if_healthy(self, log: RunLogger) -> Path | None:
        """Save a checkpoint, or postpone it to the next healthy iteration (logged once)."""
        why = self._unhealthy()
        if why is None:
            return self.save_checkpoint()
        if not self._ckpt_due:
            log.info(f"iter {self.iteration}: checkpoint postponed: {why}")
        self._ckpt_due = True
        return None
