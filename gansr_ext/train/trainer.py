"""The training loop: PSNR stage (pixel losses) and GAN stage (adds D and the adversarial term).

One iteration (GAN stage, ESRGAN/BasicSR order):
  G step: sr = G(lr); L_G = sum_t w_t * loss_t(sr, hr) + w_adv * g_loss(D(hr).detach(), D(sr)); Adam step; EMA.
  D step: L_D = d_loss(D(hr), D(sr.detach())) [+ penalty(D, hr, sr)]; Adam step.
Both schedulers step once per iteration, skipped iterations included, so lr is a function of the
iteration number.

Exact resume and the checkpoint's contents: `state.TrainerState`. Divergence guard (skipped
steps, rollbacks, checkpoints only when healthy, the idle-D warning): `rollback.DivergenceGuard`.
Each log row holds `d_input_grad`, the input-gradient norm of D's mean logit on the fakes.

Run folder: the trainer locks it (`runfolder.RunLock`) from construction to the end of `train()`.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import torch
from torch import nn

from ..data.datasets import DataError, EpochSeededDataset, EpochTaggedSampler
from . import distributed as dist_utils
from .builders import build_parts, resolve_device
from .checkpointing import seed_everything
from .config import dump_config
from .guard import input_gradient_norm
from .logging import IntervalMeans, RunLogger
from .rollback import DivergenceGuard
from .runfolder import RunFolderError, RunLock, lock_run_folder, refuse_a_used_folder
from .state import TrainerState

_unwrap = dist_utils.unwrap


class Trainer(TrainerState, DivergenceGuard):
    """Trains from a config (see `config.DEFAULTS`). Components may be passed in (tests, the demo);
    anything not passed is built from the config. Checkpointed state: `state.TrainerState`;
    divergence guard: `rollback.DivergenceGuard`.

    `metrics`: name -> fn(sr, hr) -> float on (C, H, W) images in [0, 1], used for validation.
    """

    def __init__(self, cfg: dict, run_dir: str | Path | None = None, *, train_set=None, val_set=None,
                 generator: nn.Module | None = None, discriminator: nn.Module | None = None,
                 losses: nn.Module | None = None, metrics: dict | None = None,
                 resume: bool | str | Path = False):
        self.cfg = cfg
        dist_utils.init_from_env(cfg["dist"]["backend"], resolve_device(cfg["device"]).type)
        self.device = resolve_device(cfg["device"])  # after joining: cuda:LOCAL_RANK
        self.rank, self.world = dist_utils.rank(), dist_utils.world_size()
        self.main = self.rank == 0
        self.run_dir = Path(run_dir) if run_dir is not None else Path(cfg["output_dir"]) / cfg["name"]
        self.lock: RunLock | None = None
        refuse_a_used_folder(self.run_dir, resume)  # before any collective (DDP init): every rank looks, none writes
        seed_everything(cfg["seed"] + self.rank)
        p = build_parts(cfg, self.device, self.world, resume=bool(resume), generator=generator,
                        discriminator=discriminator, losses=losses, train_set=train_set, val_set=val_set)
        self.G, self.D, self.ema, self.losses, self.gan_loss = p.G, p.D, p.ema, p.losses, p.gan_loss
        self.opt_g, self.sched_g, self.opt_d, self.sched_d = p.opt_g, p.sched_g, p.opt_d, p.sched_d
        self.scaler = p.scaler
        self.train_set, self.val_set, self.metrics = p.train_set, p.val_set, metrics
        self.fused, self.amp_dtype, self.mem_format, self.notes = p.fused, p.amp_dtype, p.mem_format, p.notes
        self.gan = cfg["stage"] == "gan"
        self._setup_loader()
        self._setup_checkpoints()
        self._setup_guard()
        self._last_fake = None  # the last SR batch, for the D input-gradient probe at log time
        self.last_val: dict = {}
        self._open_run_folder(resume)
        self.resumed_from = None
        if resume:
            try:
                self._resume(resume)
            except BaseException:
                self.close()  # a failed resume leaves the folder free
                raise

    # ------------------------------------------------------------------ run folder

    def _open_run_folder(self, resume) -> None:
        """Rank 0 creates and locks the run folder (held until `close()`) and removes the temp files of
        writes a killed run left; every rank raises if the folder is in use."""
        error = None
        if self.main:
            try:
                self.lock = lock_run_folder(self.run_dir, resume, self.notes)
            except RunFolderError as e:
                self.close()
                error = e
        error = dist_utils.broadcast_object(error)
        if error is not None:
            raise error

    def close(self) -> None:
        """Release the run folder's lock (train() does so when it returns) and stop the data workers."""
        self._loader_iter = None
        if self.lock is not None:
            self.lock.release()

    def _worker_init(self, worker_id: int) -> None:
        if self.lock is not None:
            self.lock.forget_in_child()

    # ------------------------------------------------------------------ setup helpers

    def _setup_loader(self) -> None:
        n = len(self.train_set)
        bs = self.cfg["data"]["batch_size"]
        self.sampler = dist_utils.ResumableSampler(n, seed=self.cfg["seed"])
        self.batches_per_epoch = self.sampler.per_rank // bs
        if self.batches_per_epoch < 1:
            raise DataError(f"training set has {n} images ({self.sampler.per_rank} per process), fewer than "
                            f"data.batch_size={bs}")
        self._loader_epoch = None
        self._loader_iter = None

    def _next_batch(self) -> dict:
        bs = self.cfg["data"]["batch_size"]
        epoch, offset = divmod(self.iteration, self.batches_per_epoch)
        if self._loader_iter is None or self._loader_epoch != epoch:
            self.sampler.set_position(epoch, offset * bs)
            sampler = EpochTaggedSampler(self.sampler, epoch)
            loader = torch.utils.data.DataLoader(
                EpochSeededDataset(self.train_set, self.cfg["seed"]), batch_size=bs, sampler=sampler,
                num_workers=self.cfg["data"]["num_workers"], drop_last=True,
                pin_memory=self.device.type == "cuda",
                generator=torch.Generator().manual_seed(self.cfg["seed"] + epoch),  # keeps the global RNG untouched
                worker_init_fn=self._worker_init,
            )
            self._loader_iter, self._loader_epoch = iter(loader), epoch
        return next(self._loader_iter)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device, non_blocking=True).contiguous(memory_format=self.mem_format)

    @property
    def generator(self) -> nn.Module:
        """The model to validate/export: the EMA copy when there is one."""
        return self.ema.module if self.ema is not None else _unwrap(self.G)

    # ------------------------------------------------------------------ one iteration

    def train_step(self, batch: dict) -> dict:
        """One iteration (module docstring). Returns the logged values as device tensors (read once per
        log row), 'skipped' (1.0 when a loss was not finite) and, for the guard, 'd_loss' as a float."""
        lr, hr = self._to_device(batch["lr"]), self._to_device(batch["hr"])
        stats: dict = {}
        # optimize G
        sr, g_ok = self._g_step(lr, hr, stats)
        # optimize D, on the SR batch of the G step
        d_ok = True
        if g_ok and self.gan:
            self._last_fake = sr.detach()
            d_ok = self._d_step(hr, self._last_fake, stats)
        if g_ok:
            self.scaler.update()
            if self.ema is not None:
                self.ema.update(_unwrap(self.G))
        for sched in (self.sched_g, self.sched_d):  # every iteration, skipped ones too
            if sched is not None:
                sched.step()
        self.iteration += 1
        stats["skipped"] = 0.0 if g_ok and d_ok else 1.0
        return stats

    def _g_step(self, lr: torch.Tensor, hr: torch.Tensor, stats: dict) -> tuple[torch.Tensor, bool]:
        """Generator update on L_G; (sr, False) with nothing stepped when L_G is not finite."""
        if self.D is not None:
            self.D.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            sr = self.G(lr)
            real_logits = fake_logits = None
            if self.gan:
                real_logits = self.D(hr).detach().float()
                fake_logits = self.D(sr).float()
            total, terms = self.losses(sr.float(), hr, real_logits, fake_logits)
        stats.update({f"g_{k}": v.detach() for k, v in terms.items()}, g_total=total.detach())
        (ok,) = self._all_finite(total)
        if ok:
            self.scaler.scale(total).backward()
            self._clip(self.G, self.opt_g)
            self.scaler.step(self.opt_g)
        return sr, ok

    def _d_step(self, hr: torch.Tensor, fake: torch.Tensor, stats: dict) -> bool:
        """Discriminator update on L_D; False with nothing stepped when L_D is not finite."""
        self.D.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            real_logits = self.D(hr).float()
            fake_logits = self.D(fake).float()
            d_loss = self.gan_loss.d_loss(real_logits, fake_logits)
        total = d_loss
        if getattr(self.gan_loss, "needs_penalty", False):
            with torch.autocast(self.device.type, enabled=False):  # double backward in fp32
                # step: lazy regularisation (losses.gan.args.lazy_interval) picks its iterations by it
                pen = self.gan_loss.penalty(self.D, hr.float(), fake.float(), step=self.iteration + 1)
            stats["d_penalty"] = pen.detach()
            total = total + pen
        stats.update(d_loss=d_loss.detach(), d_total=total.detach(), d_real_logit=real_logits.detach().mean(),
                     d_fake_logit=fake_logits.detach().mean())
        ok, stats["d_loss"] = self._all_finite(total, d_loss)  # on the host: the guard reads it every iteration
        if ok:
            self.scaler.scale(total).backward()
            dist_utils.average_gradients(self.D)
            self._clip(self.D, self.opt_d)
            self.scaler.step(self.opt_d)
            dist_utils.broadcast_buffers(self.D)
        return ok

    def _all_finite(self, loss: torch.Tensor, *values: torch.Tensor) -> tuple:
        """(whether `loss` is finite on every rank, *values as floats). The step's host sync: the
        weights may only be updated once the loss is known to be finite; `values` come along with it."""
        host = torch.stack([torch.isfinite(loss).float(), *(v.detach().float() for v in values)]).tolist()
        return (dist_utils.all_true(host[0] == 1.0, self.device), *host[1:])

    def _clip(self, model: nn.Module, opt) -> None:
        if self.cfg["train"]["grad_clip"]:
            self.scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg["train"]["grad_clip"])

    # ------------------------------------------------------------------ validation

    def _note(self, msg: str, log: RunLogger) -> None:
        """Log a fact once and keep it for the summary."""
        if msg not in self.notes:
            self.notes.append(msg)
            log.info(msg)

    @torch.no_grad()
    def validate(self, log: RunLogger | None = None) -> dict:
        """Metrics of the EMA generator on the validation set (rank 0); saves SR samples."""
        from .validation import build_metrics, run_validation

        log = log or RunLogger(None, 0, enabled=False)
        if self.val_set is None:
            return {}
        if self.metrics is None:
            self.metrics, notes = build_metrics(self.cfg["val"]["metrics"], self.cfg["val"]["crop_border"],
                                                self.device)
            for n in notes:
                self._note(n, log)
        out_dir = self.run_dir / "samples" / f"iter_{self.iteration:08d}"
        notes = []
        results = run_validation(self.generator, self.val_set, self.metrics, self.device, self._autocast,
                                 self.cfg["data"]["val"]["max_images"], self.cfg["val"]["save_images"], out_dir,
                                 self.mem_format, notes)
        for n in notes:
            self._note(n, log)
        self.last_val = results
        return results

    # ------------------------------------------------------------------ loop

    def train(self, stop_at: int | None = None) -> dict:
        """Run until train.total_iters (or `stop_at`, which simulates a run killed after that many
        iterations: no final checkpoint, validation or export). Returns the summary."""
        cfg = self.cfg
        total = cfg["train"]["total_iters"]
        if self.main and not (self.lock is not None and self.lock.held):  # a second train() call
            self.lock = RunLock(self.run_dir)
        try:
            if self.main:
                dump_config(cfg, self.run_dir / "config.yaml")  # atomic; untouched when unchanged
            lc = cfg["log"]
            # the CSV logs drop rows after the resumed iteration: they are logged again
            log = RunLogger(self.run_dir, total, self.iteration, enabled=self.main, tensorboard=lc["tensorboard"],
                            use_csv=lc["csv"], progress=lc["progress"])
            try:
                return self._loop(log, total, stop_at)
            finally:
                log.close()
        finally:
            self.close()

    def _loop(self, log: RunLogger, total: int, stop_at: int | None) -> dict:
        cfg = self.cfg
        log.info(f"{'resumed from ' + str(self.resumed_from) if self.resumed_from else 'starting'}: stage "
                 f"{cfg['stage']}, iter {self.iteration}/{total}, device {self.device}, world {self.world}, "
                 f"amp {self.amp_dtype}, fused {self.fused}, run dir {self.run_dir}")
        for n in self.notes:
            log.info(n)
        if self.ckpt.latest() is None:  # something to roll back to
            self.save_checkpoint()
        means = IntervalMeans()
        t_start = t_last = time.perf_counter()
        it_start = self.iteration
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        for model in (_unwrap(self.G), self.D):
            if model is not None:
                model.train()
        while self.iteration < total and (stop_at is None or self.iteration < stop_at):
            stats = self.train_step(self._next_batch())
            if self._guard(stats, log):  # rolled back: the log interval starts again
                means, t_last = IntervalMeans(), time.perf_counter()
                continue
            log.progress(1)
            if not stats.pop("skipped"):
                means.add(stats)
            it = self.iteration
            if _due(cfg["log"]["every"], it, total) and means.count:
                now = time.perf_counter()
                self._log_row(log, means, now - t_last)
                means, t_last = IntervalMeans(), now
            if cfg["val"]["every"] and it % cfg["val"]["every"] == 0 and it < total:
                self._validate_and_track(log)
            if (self._ckpt_due or (cfg["checkpoint"]["every"] and it % cfg["checkpoint"]["every"] == 0)) and it < total:
                self._checkpoint_if_healthy(log)
        if stop_at is not None and self.iteration < total:
            return {"iteration": self.iteration, "stopped": True}
        return self._finish(log, time.perf_counter() - t_start, self.iteration - it_start)

    def _log_row(self, log: RunLogger, means: IntervalMeans, seconds: float) -> None:
        """One row of train_log.csv: the interval's mean losses and logits, learning rates, speed."""
        row = means.means()  # note: a CPU-GPU sync point, once per log interval
        row["lr_g"] = self.opt_g.param_groups[0]["lr"]
        if self.opt_d is not None:
            row["lr_d"] = self.opt_d.param_groups[0]["lr"]
        row["its_per_s"] = means.count / max(seconds, 1e-9)
        row["skipped_total"] = self.skipped_total
        if self.main and self._last_fake is not None:  # one extra D forward/backward per log row
            row["d_input_grad"] = input_gradient_norm(self.D, self._last_fake)
        if self.device.type == "cuda":
            row["gpu_mem_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        log.progress(0, {k: row[k] for k in ("g_total", "d_total") if k in row})
        log.scalars(self.iteration, row)

    def _validate_and_track(self, log: RunLogger) -> None:
        results = {}
        if self.main and self.val_set is not None:
            _unwrap(self.G).eval()
            results = self.validate(log)
            _unwrap(self.G).train()
            log.scalars(self.iteration, results, prefix="val")
            log.info(f"iter {self.iteration} validation: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()))
        results = dist_utils.broadcast_object(results)
        value = results.get(self.best["metric"])
        if value is None and results:
            self._note(f"best checkpoint: val.best_metric {self.best['metric']!r} is not among the validation "
                       f"results ({', '.join(results)}); no best.pt is kept", log)
        if value is not None and self._is_better(value):
            self.best.update(value=value, iteration=self.iteration)
            state = self.state_dict()
            if self.main:
                self.ckpt.save_best(state)
                log.info(f"new best {self.best['metric']} {value:.4f} at iter {self.iteration}")
            dist_utils.barrier()

    def _finish(self, log: RunLogger, seconds: float, iters_done: int) -> dict:
        self._validate_and_track(log)
        self._checkpoint_if_healthy(log)
        export = None
        if self.main:
            export = self.export(self.run_dir / "generator_ema.pth")
        summary = {
            "run_dir": str(self.run_dir), "stage": self.cfg["stage"], "iterations": self.iteration,
            "seconds": round(seconds, 2), "its_per_s": round(iters_done / seconds, 3) if seconds > 0 else None,
            "skipped_iterations": self.skipped_total, "rollbacks": self.rollbacks, "best": self.best,
            "final_validation": self.last_val, "fused": self.fused, "amp": str(self.amp_dtype),
            "device": str(self.device), "world_size": self.world, "generator": str(export) if export else None,
            "notes": self.notes,
        }
        if self.main:
            with open(self.run_dir / "summary.json", "w") as f:
                json.dump(summary, f, indent=2, default=str)
            log.info("done: " + ", ".join(f"{k} {summary[k]}" for k in
                                          ("iterations", "seconds", "its_per_s", "skipped_iterations", "rollbacks")))
            if self.best["value"] is not None:
                log.info(f"best {self.best['metric']} {self.best['value']:.4f} at iter {self.best['iteration']}; "
                         f"generator (EMA) -> {export}")
        return summary

    def export(self, path: Path) -> Path:
        """Write the EMA generator in the package's generator format (`gansr_ext.models.load_generator`)."""
        from ..models import save_generator

        return save_generator(self.generator, path)


def _due(every: int, it: int, total: int) -> bool:
    """Every `every` iterations and at the last one (0: never)."""
    return bool(every) and (it % every == 0 or it == total)
