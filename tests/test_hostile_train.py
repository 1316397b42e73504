"""`gansr train` against a careless or hostile user (issue 11): planted checkpoints, killed writes,
two runs in one folder, truncated configs, bad data, and rollbacks that must not land in a divergence.
Tiny CPU runs; each test reproduces a failure of the code before its fix."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from gansr_ext.cli import main
from gansr_ext.train.checkpointing import CheckpointError, CheckpointManager, atomic_save
from gansr_ext.train.guard import NaNLoss
from gansr_ext.train.trainer import Trainer
from test_train_helpers import TinyImages, one_thread, psnr_metric, tiny_cfg, weights  # noqa: F401


def make(cfg, cls=Trainer, **kw):
    kw.setdefault("train_set", TinyImages())
    kw.setdefault("val_set", TinyImages(n=1, size=16, crop=None))
    kw.setdefault("metrics", {"psnr": psnr_metric})
    return cls(cfg, **kw)


def train_cli(capsys, *argv) -> tuple[int, str]:
    """`gansr train ARGV`: its return code and, when it failed, its one-line error."""
    capsys.readouterr()
    rc = main(["train", *argv])
    # the run's own log lines ("[HH:MM:SS] ...") aside
    err = "\n".join(line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("["))
    if rc:
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return rc, err


def csv_iters(path) -> list[int]:
    import csv

    with open(path, newline="") as f:
        return [int(r["iter"]) for r in csv.DictReader(f)]


# ---------------------------------------------------------------- 1. no code runs from a checkpoint

class _WritesAFile:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))  # unpickling creates the marker file


def test_a_planted_checkpoint_runs_nothing_on_resume(tmp_path, capsys):
    run = tmp_path / "run"
    make(tiny_cfg(tmp_path, "train.total_iters=2", "checkpoint.every=0")).train()
    marker = tmp_path / "pwned"
    torch.save({"iteration": 5, "G": _WritesAFile(marker), "rng": {}}, run / "checkpoints" / "iter_99999999.pt")
    rc, err = train_cli(capsys, "--resume", str(run))
    assert rc == 2 and not marker.exists()
    assert "iter_99999999.pt" in err and "was not loaded" in err and "GLOBAL io.open" in err
    # the divergence guard's rollback reads checkpoints with the same loader
    with pytest.raises(CheckpointError, match="was not loaded"):
        CheckpointManager.load(run / "checkpoints" / "iter_99999999.pt")
    assert not marker.exists()
    (run / "checkpoints" / "iter_99999999.pt").unlink()  # once removed, the run resumes
    assert train_cli(capsys, "--resume", str(run), "train.total_iters=3")[0] == 0


def test_checkpoints_load_safely_and_old_ones_still_load(tmp_path):
    tr = make(tiny_cfg(tmp_path, "train.total_iters=2", "checkpoint.every=0"))
    tr.train()
    path = tr.ckpt.latest()
    torch.load(path, weights_only=True)  # nothing but tensors and plain values
    old = CheckpointManager.load(path)
    old["rng"][0]["numpy"] = np.random.get_state()  # how checkpoints stored it before
    atomic_save(old, tmp_path / "old.pt")
    state = CheckpointManager.load(tmp_path / "old.pt")
    tr.load_state(state)
    assert tr.iteration == 2
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot be read"):
        CheckpointManager.load(tmp_path / "cut.pt")


# ---------------------------------------------------------------- 3. rollback lands before the divergence

class _PoisonedAt4(Trainer):
    """Weights silently turn NaN after the step of iteration 4 (as a finite loss with a NaN gradient
    does); every later loss is then NaN."""

    def train_step(self, batch):
        stats = super().train_step(batch)
        if self.iteration == 4 and self.rollbacks == 0:
            with torch.no_grad():
                for p in self.G.parameters():
                    p.fill_(float("nan"))
        return stats


def test_rollback_restores_a_state_from_before_the_divergence(tmp_path):
    cfg = tiny_cfg(tmp_path, "train.total_iters=8", "checkpoint.every=2", "guard.max_nonfinite=3",
                   "guard.max_rollbacks=2", "train.ema_decay=0")
    tr = make(cfg, cls=_PoisonedAt4)
    summary = tr.train()
    assert summary["rollbacks"] == 1 and summary["iterations"] == 8
    assert all(torch.isfinite(v).all() for v in weights(tr.G).values())
    log = (tmp_path / "run" / "train.log").read_text()
    assert "checkpoint postponed: the weights hold non-finite values" in log
    assert "restored iter_00000002.pt (iter 2)" in log


class _DivergesFrom5UntilTwoRollbacks(Trainer):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.losses = NaNLoss(self.losses, lambda: self.rollbacks < 2 and self.iteration + 1 >= 5)


def test_repeated_rollbacks_step_back_to_the_kept_known_good_checkpoint(tmp_path):
    """keep_last=1: iter_2 survives pruning as the last known-good checkpoint; the second rollback
    from iter_4's timeline goes back to it. Nothing is saved at iter 6, inside the NaN streak."""
    cfg = tiny_cfg(tmp_path, "train.total_iters=9", "checkpoint.every=2", "checkpoint.keep_last=1",
                   "guard.max_nonfinite=3", "guard.max_rollbacks=3")
    tr = make(cfg, cls=_DivergesFrom5UntilTwoRollbacks)
    assert tr.train()["rollbacks"] == 2
    log = (tmp_path / "run" / "train.log").read_text()
    assert "iter 6: checkpoint postponed: inside a streak (2 non-finite losses" in log
    assert "ROLLBACK #1 at iter 7: 3 non-finite losses in a row; restored iter_00000004.pt (iter 4)" in log
    assert ("ROLLBACK #2 at iter 7: 3 non-finite losses in a row; restored iter_00000002.pt (iter 2); learning "
            "rates x0.5 -> G 0.0001; deleted the abandoned iter_00000004.pt") in log


def test_the_last_known_good_checkpoint_is_kept_out_of_pruning(tmp_path):
    make(tiny_cfg(tmp_path, "train.total_iters=6", "checkpoint.every=2", "checkpoint.keep_last=1")).train()
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("iter_*.pt"))
    assert names == ["iter_00000004.pt", "iter_00000006.pt"]


# ---------------------------------------------------------------- 4. one training per run folder

TINY = ["device=cpu", "model.generator.nb=1", "model.generator.nf=8", "model.generator.gc=4", "data.crop=16",
        "data.batch_size=2", "data.num_workers=0", "data.train.type=samples", "data.val.type=samples", "val.every=0",
        "val.metrics=[psnr]", "log.progress=false", "log.tensorboard=false", "checkpoint.every=2", "train.fused=off"]


def test_a_second_training_into_a_locked_folder_fails_and_the_first_is_unharmed(tmp_path, capsys):
    first = make(tiny_cfg(tmp_path, "train.total_iters=3"))  # holds the folder from here
    rc, err = train_cli(capsys, "esrgan_psnr", *TINY, f"output_dir={tmp_path}", "name=run", "train.total_iters=2")
    assert rc == 2 and "in use by another training" in err
    summary = first.train()
    assert summary["iterations"] == 3 and summary["rollbacks"] == 0
    assert csv_iters(tmp_path / "run" / "train_log.csv") == [1, 2, 3]
    assert "esrgan_psnr" not in (tmp_path / "run" / "config.yaml").read_text()


def test_the_lock_of_a_killed_run_does_not_block_a_resume(tmp_path, capsys):
    run = tmp_path / "run"
    make(tiny_cfg(tmp_path, "train.total_iters=2", "checkpoint.every=0")).train()
    # a training process as the OS sees it: it holds the lock (its pid in the file) until it is killed
    hold = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.ftruncate(fd, 0); os.write(fd, b'4242'); "
            "print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(run / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc, err = train_cli(capsys, "--resume", str(run), "train.total_iters=3")
        assert rc == 2 and "in use by another training (pid 4242)" in err
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert (run / ".lock").exists()  # the dead run's lock file stays; its lock went with the process
    assert main(["train", "--resume", str(run), "train.total_iters=3"]) == 0


# ---------------------------------------------------------------- 5. config.yaml

def test_config_is_not_rewritten_on_a_plain_resume_and_a_truncated_one_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    make(tiny_cfg(tmp_path, "train.total_iters=2", "checkpoint.every=0")).train()
    config = run / "config.yaml"
    before = config.stat().st_mtime_ns
    assert main(["train", "--resume", str(run)]) == 0
    assert config.stat().st_mtime_ns == before
    assert main(["train", "--resume", str(run), "train.total_iters=3"]) == 0
    assert "total_iters: 3" in config.read_text()
    lines = config.read_text().splitlines(keepends=True)
    config.write_text("".join(lines[:len(lines) * 2 // 3]))  # a full disk cut it at a line boundary
    rc, err = train_cli(capsys, "--resume", str(run), "train.total_iters=4")
    assert rc == 2 and "config.yaml is incomplete" in err
    assert CheckpointManager.load(CheckpointManager(run / "checkpoints").latest())["iteration"] == 3


# ---------------------------------------------------------------- 12. user errors, debris, logs, resume

def test_user_errors_are_one_line_and_leave_no_run_folder(tmp_path, capsys):
    from gansr_ext.data import write_image

    common = ["esrgan_psnr", *TINY, f"output_dir={tmp_path}", "name=run", "train.total_iters=1"]
    rc, err = train_cli(capsys, *common, "optim.g.lr=-1")
    assert rc == 2 and "optim.g.lr" in err
    rc, err = train_cli(capsys, *common, "data.train.type=hr_only", f"data.train.root={tmp_path / 'missing'}")
    assert rc == 2 and "data.train" in err and "missing is not a directory" in err
    rng = np.random.default_rng(0)
    for name in ("a", "b"):  # every pair disagrees in size: no usable image
        write_image(tmp_path / "hr" / f"{name}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        write_image(tmp_path / "lr" / f"{name}.png", rng.integers(0, 256, (5, 5, 3), dtype=np.uint8))
    paired = ["data.train.type=paired", f"data.train.root={tmp_path / 'hr'}", f"data.train.lr_root={tmp_path / 'lr'}"]
    with pytest.warns(UserWarning, match="does not match LR"):
        rc, err = train_cli(capsys, *common, *paired)
    assert rc == 2 and "data.train" in err
    assert not (tmp_path / "run").exists()  # so the fixed command needs no --resume
    assert main(["train", *common]) == 0


def test_a_resume_removes_killed_writes_and_logs_no_row_twice(tmp_path):
    cfg = ["train.total_iters=7", "checkpoint.every=3"]
    make(tiny_cfg(tmp_path, *cfg)).train(stop_at=5)
    run = tmp_path / "run"
    orphans = [run / "checkpoints" / ".iter_00000006.pt.k1ll.tmp", run / ".config.yaml.k1ll.tmp"]
    for p in orphans:
        p.write_bytes(b"half a file")
    tr = make(tiny_cfg(tmp_path, *cfg), resume=True)
    assert not any(p.exists() for p in orphans)
    tr.train()
    assert csv_iters(run / "train_log.csv") == list(range(1, 8))
    assert "removed 2 temp file(s) left by a killed write" in (run / "train.log").read_text()


def test_resuming_a_gan_run_does_not_need_the_stage1_generator(tmp_path):
    from gansr_ext.models import RRDBNet, save_generator

    g1 = save_generator(RRDBNet(nf=8, nb=1, gc=4), tmp_path / "stage1.pth")
    opts = ["train.total_iters=3", "checkpoint.every=2", f"model.pretrained_g={g1}"]
    make(tiny_cfg(tmp_path, *opts, stage="gan")).train(stop_at=2)
    g1.unlink()
    tr = make(tiny_cfg(tmp_path, *opts, stage="gan"), resume=True)
    assert tr.iteration == 2 and tr.train()["iterations"] == 3


def test_a_run_the_guard_gives_up_on_ends_with_one_line_and_exit_1(tmp_path, capsys):
    rc, err = train_cli(capsys, "esrgan_psnr", *TINY, f"output_dir={tmp_path}", "name=run", "train.total_iters=3",
                        "guard.inject_nan_at=[2]", "guard.max_nonfinite=1", "guard.max_rollbacks=0")
    assert rc == 1 and "training diverged: 1 non-finite losses in a row" in err
