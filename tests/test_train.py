"""Trainer: learning, exact resume, divergence guard, checkpoints, data order (tiny CPU runs)."""

import csv

import numpy as np
import pytest
import torch

from conftest import requires_cuda
from gansr_ext.train.checkpointing import CheckpointManager, atomic_save
from gansr_ext.train.distributed import ResumableSampler
from gansr_ext.train.trainer import Trainer
from test_train_helpers import TinyImages, assert_same_weights, one_thread, psnr_metric, tiny_cfg, weights  # noqa: F401


def make(cfg, **kw):
    kw.setdefault("train_set", TinyImages())
    kw.setdefault("val_set", TinyImages(n=1, size=16, crop=None))
    kw.setdefault("metrics", {"psnr": psnr_metric})
    return Trainer(cfg, **kw)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_l1_loss_decreases_on_a_fixed_image(tmp_path):
    cfg = tiny_cfg(tmp_path, "train.total_iters=25", "optim.g.lr=2e-3", "checkpoint.every=0", "train.ema_decay=0",
                   "log.tensorboard=true", "log.progress=true")
    fixed = TinyImages(n=2, size=16, crop=None)  # batch 2 of 2 whole images: the same batch every step
    summary = make(cfg, train_set=fixed, val_set=fixed).train()
    rows = read_csv(tmp_path / "run" / "train_log.csv")
    first, last = float(rows[0]["g_pixel"]), float(rows[-1]["g_pixel"])
    assert last < 0.5 * first, (first, last)
    assert summary["iterations"] == 25 and summary["final_validation"]["psnr"] > 0
    for name in ("summary.json", "config.yaml", "train.log", "val_log.csv", "generator_ema.pth"):
        assert (tmp_path / "run" / name).is_file(), name
    assert {"lr_g", "its_per_s", "g_total"} <= set(rows[0])
    assert list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))


def _final_state(trainer):
    return {"G": weights(trainer.G), "ema": weights(trainer.ema.module),
            **({"D": weights(trainer.D)} if trainer.D is not None else {})}


@pytest.mark.parametrize("stage,extra", [("psnr", []), ("psnr", ["data.num_workers=2"]),
                                         ("gan", ["losses.gan.type=ragp", "losses.frequency.weight=0.3"])])
def test_resume_after_a_stop_is_bit_identical(tmp_path, stage, extra):
    """A run stopped after 5 iterations (last checkpoint at 3) and resumed equals an uninterrupted run:
    models, EMA, optimizer moments, data order (an epoch boundary is crossed) and RNG (penalty eps)."""
    opts = ["train.total_iters=7", "checkpoint.every=3", *extra]
    full = make(tiny_cfg(tmp_path / "a", *opts, stage=stage))
    full.train()
    stopped = make(tiny_cfg(tmp_path / "b", *opts, stage=stage))
    assert stopped.train(stop_at=5)["stopped"]
    resumed = make(tiny_cfg(tmp_path / "b", *opts, stage=stage), resume=True)
    assert resumed.iteration == 3 and resumed.resumed_from.name == "iter_00000003.pt"
    resumed.train()
    a, b = _final_state(full), _final_state(resumed)
    for k in a:
        assert_same_weights(a[k], b[k])
    sa, sb = full.opt_g.state_dict()["state"], resumed.opt_g.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    # the check can fail: a run that skips the resume's data repositioning ends elsewhere
    other = make(tiny_cfg(tmp_path / "c", *opts, "seed=1", stage=stage))
    other.train()
    assert not torch.equal(weights(other.G)["conv_first.weight"], a["G"]["conv_first.weight"])


def test_nonfinite_loss_skips_the_step(tmp_path):
    cfg = tiny_cfg(tmp_path, "guard.inject_nan_at=[2]", "stage=gan", "losses.gan.weight=0.01",
                   "model.discriminator.type=unet", "model.discriminator.args={nf: 8}")
    tr = make(cfg)
    assert not tr.train_step(tr._next_batch())["skipped"]
    d_params = lambda: {k: v.detach().clone() for k, v in tr.D.named_parameters()}  # noqa: E731
    # (D's spectral-norm power-iteration buffers advance in every forward, skipped or not)
    before = {"G": weights(tr.G), "ema": weights(tr.ema.module), "D": d_params()}
    steps = tr.opt_g.state_dict()["state"][0]["step"].item()
    stats = tr.train_step(tr._next_batch())
    assert stats["skipped"] == 1.0 and stats["g_total"] != stats["g_total"]  # NaN
    assert_same_weights(before["G"], weights(tr.G))
    assert_same_weights(before["ema"], weights(tr.ema.module))
    assert_same_weights(before["D"], d_params())
    assert tr.opt_g.state_dict()["state"][0]["step"].item() == steps
    assert not tr.train_step(tr._next_batch())["skipped"]  # injected once: iteration 3 trains again


def test_repeated_nonfinite_losses_roll_back_and_halve_the_lr(tmp_path):
    cfg = tiny_cfg(tmp_path, "train.total_iters=8", "guard.inject_nan_at=[4, 5, 6]", "guard.max_nonfinite=3",
                   "optim.g.lr=1e-3")
    tr = make(cfg)
    summary = tr.train()
    assert summary["rollbacks"] == 1 and summary["skipped_iterations"] == 3 and summary["iterations"] == 8
    assert tr.opt_g.param_groups[0]["lr"] == pytest.approx(5e-4)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "non-finite loss" in log and "step skipped (3/3 in a row)" in log
    assert "ROLLBACK #1 at iter 6: 3 non-finite losses in a row; restored iter_00000003.pt (iter 3)" in log
    assert "G 0.0005" in log
    rows = read_csv(tmp_path / "run" / "train_log.csv")
    assert float(rows[-1]["lr_g"]) == pytest.approx(5e-4)


def test_guard_gives_up_after_max_rollbacks_and_detects_collapse(tmp_path):
    cfg = tiny_cfg(tmp_path / "a", "guard.inject_nan_at=[2]", "guard.max_nonfinite=1", "guard.max_rollbacks=0")
    with pytest.raises(RuntimeError, match="diverged: 1 non-finite"):
        make(cfg).train()
    cfg = tiny_cfg(tmp_path / "b", "guard.collapse_d_loss=1e9", "guard.collapse_patience=2", "guard.max_rollbacks=1",
                   stage="gan")
    with pytest.raises(RuntimeError, match="discriminator collapse"):
        make(cfg).train()
    assert "ROLLBACK #1 at iter 2: D loss below" in (tmp_path / "b" / "run" / "train.log").read_text()


def test_checkpoints_keep_last_k_and_best(tmp_path):
    cfg = tiny_cfg(tmp_path, "train.total_iters=8", "checkpoint.every=2", "checkpoint.keep_last=2", "val.every=4")
    make(cfg).train()
    folder = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "iter_00000006.pt", "iter_00000008.pt"]
    best = CheckpointManager.load(folder / "best.pt")
    assert best["best"]["iteration"] in (4, 8) and best["iteration"] == best["best"]["iteration"]
    assert {"G", "ema", "opt_g", "sched_g", "scaler", "rng", "iteration"} <= set(best)


def test_atomic_save_leaves_no_partial_file(tmp_path):
    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    target = tmp_path / "ck.pt"
    atomic_save({"a": 1}, target)
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save({"a": Boom()}, target)
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]
    assert torch.load(target)["a"] == 1


def test_resumable_sampler_shards_and_resumes():
    n, world = 10, 3
    shards = [list(ResumableSampler(n, seed=4, num_replicas=world, rank_=r)) for r in range(world)]
    assert all(len(s) == 4 for s in shards)
    assert set(sum(shards, [])) == set(range(n))  # padded by wrapping, covers everything
    s = ResumableSampler(n, seed=4, num_replicas=world, rank_=1)
    s.set_position(0, 3)
    assert list(s) == shards[1][3:]
    s.set_position(1, 0)
    assert list(s) != shards[1]  # a new epoch reshuffles


def test_a_fresh_run_refuses_a_folder_with_checkpoints(tmp_path):
    make(tiny_cfg(tmp_path, "train.total_iters=1")).train()
    with pytest.raises(FileExistsError, match="already holds checkpoints.*--resume"):
        make(tiny_cfg(tmp_path, "train.total_iters=1"))


def test_trainer_rejects_a_dataset_smaller_than_the_batch(tmp_path):
    with pytest.raises(ValueError, match="fewer than data.batch_size=4"):
        make(tiny_cfg(tmp_path, "data.batch_size=4"), train_set=TinyImages(n=3))


GAN_OPTS = ["losses.gan.type=ragp", "losses.frequency.weight=0.3", "train.total_iters=2", "checkpoint.every=0"]


def test_fused_switch_reaches_every_fused_op(tmp_path):
    """train.fused=on puts G, the FFT loss and the gradient penalty on the compiled ops at once, and
    trains like the pure-PyTorch path."""
    on = make(tiny_cfg(tmp_path / "on", "train.fused=on", *GAN_OPTS, stage="gan"))
    off = make(tiny_cfg(tmp_path / "off", "train.fused=off", *GAN_OPTS, stage="gan"))
    assert (on.G.fused, on.losses.terms["frequency"].fused, on.gan_loss.penalty_kw["fused"]) == (True, True, True)
    assert (off.G.fused, off.losses.terms["frequency"].fused, off.gan_loss.penalty_kw["fused"]) == (False,) * 3
    on.train()
    off.train()
    w_off = weights(off.G)
    for k, v in weights(on.G).items():
        torch.testing.assert_close(v, w_off[k], rtol=1e-4, atol=1e-5)


def test_lazy_gradient_penalty_from_the_config_runs_on_every_kth_iteration(tmp_path):
    """losses.gan.args.lazy_interval=2: the D step passes the iteration, so the penalty is computed on
    even iterations (x2 weight) and is 0 on odd ones (without the step it raised on the first D step)."""
    cfg = tiny_cfg(tmp_path, "losses.gan.type=ragp", "losses.gan.args={lam: 10.0, lazy_interval: 2}",
                   "train.total_iters=4", "checkpoint.every=0", stage="gan")
    tr = make(cfg)
    assert tr.train()["skipped_iterations"] == 0
    pen = {int(r["iter"]): float(r["d_penalty"]) for r in read_csv(tmp_path / "run" / "train_log.csv")}
    assert pen[1] == pen[3] == 0.0 and pen[2] > 0 and pen[4] > 0


def test_bf16_autocast_and_channels_last_on_cpu(tmp_path):
    tr = make(tiny_cfg(tmp_path, "train.amp=bf16", "train.channels_last=true", *GAN_OPTS, stage="gan"))
    assert tr.amp_dtype == torch.bfloat16 and tr.mem_format == torch.channels_last
    assert tr.gan_loss.penalty_kw["autocast_dtype"] == torch.bfloat16
    summary = tr.train()
    assert summary["skipped_iterations"] == 0
    row = read_csv(tmp_path / "run" / "train_log.csv")[-1]
    assert all(torch.isfinite(torch.tensor(float(row[k]))) for k in ("g_total", "d_total", "d_penalty"))
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        make(tiny_cfg(tmp_path / "b", "train.amp=fp16"))


def test_ema_follows_its_formula():
    """d = min(decay, (1 + n) / (10 + n)), n = earlier updates: 0.1 at the first update, then `decay`."""
    from gansr_ext.train.ema import EMA

    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    start = weights(ema.module)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.module.weight, 0.1 * start["weight"] + 0.9 * model.weight.detach())
    ema.updates = 1000  # warm-up over: (1 + n) / (10 + n) > 0.9
    before = ema.module.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.module.weight, 0.9 * before + 0.1 * model.weight.detach())
    assert ema.updates == 1001 and not any(p.requires_grad for p in ema.module.parameters())


def test_the_ema_of_a_short_run_follows_the_weights_not_the_random_init(tmp_path):
    """30 steps at decay 0.999: without a warm-up the EMA is still 0.999^30 = 97% the random init."""
    tr = make(tiny_cfg(tmp_path, "train.total_iters=30", "optim.g.lr=2e-3", "checkpoint.every=0"))
    init = weights(tr.G)
    tr.train()
    raw, ema = weights(tr.G), weights(tr.ema.module)
    moved = sum(float((raw[k] - init[k]).norm() ** 2) for k in raw) ** 0.5
    lag = sum(float((raw[k] - ema[k]).norm() ** 2) for k in raw) ** 0.5
    assert lag < 0.3 * moved, (lag, moved)


def test_a_checkpoint_without_the_ema_update_count_still_loads(tmp_path):
    tr = make(tiny_cfg(tmp_path, "train.total_iters=4", "checkpoint.every=0"))
    tr.train()
    state = CheckpointManager.load(tr.ckpt.latest())
    assert state["ema_updates"] == 4
    del state["ema_updates"]  # written before the EMA had a warm-up
    other = make(tiny_cfg(tmp_path / "b"))
    other.load_state(state)
    assert other.ema.updates == 4 and other.iteration == 4
    assert_same_weights(weights(other.ema.module), weights(tr.ema.module))


def test_validation_skips_a_metric_that_rejects_an_image(tmp_path):
    def picky(sr, hr):
        if sr.shape[-1] < 32:
            raise ValueError("image too small")
        return 1.0

    val = torch.utils.data.ConcatDataset([TinyImages(n=1, size=16, crop=None), TinyImages(n=1, size=32, crop=None)])
    tr = make(tiny_cfg(tmp_path, "train.total_iters=1", "val.best_metric=never"), val_set=val,
              metrics={"psnr": psnr_metric, "picky": picky, "always_fails": lambda sr, hr: picky(sr[..., :8], hr)})
    tr.train()
    assert set(tr.last_val) == {"psnr", "picky"} and tr.last_val["picky"] == 1.0
    log = (tmp_path / "run" / "train.log").read_text()
    assert "validation: picky skipped on some images (img0: image too small)" in log
    assert "val.best_metric 'never' is not among the validation results" in log


def test_datasets_from_config_folders(tmp_path):
    from gansr_ext.data import write_image
    from gansr_ext.train.builders import build_dataset
    from gansr_ext.train.config import ConfigError, load_config

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_image(tmp_path / "hr" / f"{name}.png", rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
        write_image(tmp_path / "lr" / f"{name}x4.png", rng.integers(0, 256, (10, 12, 3), dtype=np.uint8))
    cfg = load_config(None, ["data.crop=16", f"data.train.root={tmp_path / 'hr'}", "data.train.type=hr_only",
                             "data.val.type=paired", f"data.val.root={tmp_path / 'hr'}",
                             f"data.val.lr_root={tmp_path / 'lr'}"])
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    assert train[0]["hr"].shape == (3, 16, 16) and train[0]["lr"].shape == (3, 4, 4)
    assert val[1]["hr"].shape == (3, 40, 48) and val[1]["lr"].shape == (3, 10, 12)
    cfg["data"]["train"]["args"] = {"croppp": 3}
    with pytest.raises(ConfigError, match="data.train.args.croppp"):
        build_dataset(cfg, "train")
    cfg["data"]["val"]["lr_root"] = None
    with pytest.raises(ConfigError, match="data.val.lr_root"):
        build_dataset(cfg, "val")


@requires_cuda
def test_cuda_fused_training_matches_unfused_and_bf16_runs(tmp_path):
    """CUDA sibling of the two CPU tests above: fused kernels vs PyTorch ops (fp32), then bf16 autocast
    with channels_last (the GPU defaults); GPU memory is logged."""
    opts = ["device=cuda", "train.amp=off", *GAN_OPTS]
    on = make(tiny_cfg(tmp_path / "on", "train.fused=on", *opts, stage="gan"))
    off = make(tiny_cfg(tmp_path / "off", "train.fused=off", *opts, stage="gan"))
    on.train()
    off.train()
    w_off = weights(off.G)
    for k, v in weights(on.G).items():
        torch.testing.assert_close(v, w_off[k], rtol=1e-3, atol=1e-3)  # TF32 convolutions either way
    tr = make(tiny_cfg(tmp_path / "bf16", "device=cuda", *GAN_OPTS, stage="gan"))
    assert tr.amp_dtype == torch.bfloat16 and tr.mem_format == torch.channels_last and tr.fused
    assert tr.train()["skipped_iterations"] == 0
    row = read_csv(tmp_path / "bf16" / "run" / "train_log.csv")[-1]
    assert float(row["gpu_mem_gb"]) > 0 and np.isfinite(float(row["g_total"]))


def test_item_seeding_leaves_the_cuda_generators_alone(monkeypatch):
    # per-item seeding must touch (and restore) the CPU generator only: reseeding the CUDA generators
    # would tie the training step's GPU randomness (e.g. the penalty's eps) to the last item loaded
    from gansr_ext.data.datasets import EpochSeededDataset

    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: calls.append(seed))
    class RandomItems:  # an item = a draw from the global torch RNG, as random crops are
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.rand(1)

    ds = EpochSeededDataset(RandomItems(), seed=1)
    before = torch.get_rng_state()
    a, b = ds[(0, 1)], ds[(0, 1)]
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), before)
    assert calls == []


@pytest.mark.parametrize("name,chance", [
    ("ragan", np.log(2)), ("ragp", np.log(2)), ("rcgan", np.log(2)), ("rals", 1.0), ("rahinge", 1.0),
    ("rcls", 1.0), ("rchinge", 1.0), ("vanilla", 2 * np.log(2)), ("r1", 2 * np.log(2)), ("lsgan", 0.5),
    ("hinge", 2.0), ("wgan", 0.0), ("wgan-gp", 0.0)])
def test_chance_value_of_each_discriminator_loss(name, chance):
    """What a D that cannot tell real from fake scores (by hand: sigma(0) = 1/2 in -log terms, ls at 0 or
    1/2, hinge's flat bottom, wgan's zero)."""
    from gansr_ext.losses import make_gan_loss
    from gansr_ext.train.guard import chance_d_loss

    assert chance_d_loss(make_gan_loss(name)) == pytest.approx(chance, abs=1e-9)


class _BlindD(torch.nn.Module):
    """A discriminator that cannot learn: one learnable logit for every image (its input gradient is 0)."""

    def __init__(self):
        super().__init__()
        self.c = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.c + 0.0 * x[:, :1, ::4, ::4]


IDLE_OPTS = ["train.total_iters=12", "guard.idle_d_min_iters=5", "guard.idle_d_window=0.5", "checkpoint.every=0",
             "losses.gan.type=ragan"]


def test_a_discriminator_that_does_not_learn_is_reported_not_rolled_back(tmp_path):
    tr = make(tiny_cfg(tmp_path, *IDLE_OPTS, stage="gan"), discriminator=_BlindD())
    summary = tr.train()
    assert summary["rollbacks"] == 0 and summary["iterations"] == 12
    log = (tmp_path / "run" / "train.log").read_text()
    # the window scales with the run: 0.5 * 12 = 6 iterations (more than the minimum 5)
    assert "WARNING iter 6: the discriminator is not learning" in log and "chance value 0.6931" in log
    assert "WARNING iter 5" not in log
    assert any("not learning" in n for n in summary["notes"])
    rows = read_csv(tmp_path / "run" / "train_log.csv")
    assert [float(r["d_input_grad"]) for r in rows] == [0.0] * 12


def test_a_learning_discriminator_is_not_reported_and_its_input_gradient_is_logged(tmp_path):
    """D = a 1x1 convolution with weights w: each image's mean logit has the input gradient w_c / (H W)
    at every pixel, whose norm is ||w|| / sqrt(H W) = ||w|| / 16 on 16x16 crops."""
    D = torch.nn.Conv2d(3, 1, 1)
    tr = make(tiny_cfg(tmp_path, *IDLE_OPTS, "optim.d.lr=1e-2", stage="gan"), discriminator=D)
    tr.train()
    assert "not learning" not in (tmp_path / "run" / "train.log").read_text()
    last = read_csv(tmp_path / "run" / "train_log.csv")[-1]
    assert float(last["d_input_grad"]) == pytest.approx(float(D.weight.detach().norm()) / 16, rel=1e-5)


@pytest.mark.parametrize("gan_type", ["ragan", "ragp"])
def test_a_gan_step_syncs_with_the_host_twice(tmp_path, monkeypatch, gan_type):
    """Logged values stay on the device until their log row. Per GAN step: one host sync for each
    loss's finiteness (the D one brings d_loss for the guard); per log row: one for the interval's
    means and one for D's input-gradient probe. (Before: 10-12 per step, one `.item()` per value.)"""
    from test_train_helpers import HostSyncCounter

    counts = {}
    for stop in (4, 8):  # the difference: 4 steps and 1 log row, inside the first epoch
        cfg = tiny_cfg(tmp_path / str(stop), "train.total_iters=20", "checkpoint.every=0", "log.every=4",
                       "losses.frequency.weight=0.3", f"losses.gan.type={gan_type}", stage="gan")
        tr = make(cfg, train_set=TinyImages(n=20), val_set=None)
        with monkeypatch.context() as m:
            counter = HostSyncCounter(m)
            tr.train(stop_at=stop)
        counts[stop] = counter.count
    assert counts[8] - counts[4] == 4 * 2 + 2, counts
