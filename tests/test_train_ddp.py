"""Two CPU processes (gloo) train the GAN stage and end with identical weights; rank 0 alone writes.
With train.fused=on the generator's trunk is the compiled RRDB op: its parameters must be inputs of
the op's autograd node, or DDP's reducer raises at the next step; its parameter gradients must be
non-zero, or the trunk would not move from its initial weights (both checked by breaking the op)."""

import os
import socket

import pytest
import torch
import torch._dynamo  # noqa: F401  DistributedDataParallel imports it: once here, not in each child
import torch.distributed as dist
import torch.multiprocessing as mp

from test_train_helpers import TinyImages, assert_same_weights, one_thread, psnr_metric, tiny_cfg, weights  # noqa: F401


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, tmp: str, port: int, mode: str = "full", fused: str = "off") -> None:
    """mode full: train 5 iterations; stop: stop after 4 (last checkpoint at 3); resume: continue it.
    fused: train.fused."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    from gansr_ext.train.trainer import Trainer

    cfg = tiny_cfg(tmp, "train.total_iters=5", "losses.gan.type=ragp", "losses.frequency.weight=0.3",
                   "model.discriminator.type=vgg128", "data.crop=128", "model.discriminator.args={nf: 4}",
                   "dist.sync_bn=true", f"train.fused={fused}", stage="gan")
    tr = Trainer(cfg, train_set=TinyImages(n=8, size=128, crop=128), val_set=TinyImages(n=1, size=32, crop=None),
                 metrics={"psnr": psnr_metric}, resume=mode == "resume")
    assert tr.world == world and tr.rank == rank
    shard = list(tr.sampler)
    tr.train(stop_at=4 if mode == "stop" else None)
    torch.save({"G": weights(tr.G.module), "ema": weights(tr.ema.module), "D": weights(tr.D), "shard": shard},
               os.path.join(tmp, f"rank{rank}.pt"))
    dist.destroy_process_group()


def _launch(tmp, mode: str, world: int = 2, fused: str = "off") -> None:
    # fork: the children skip re-importing torch (seconds each on the 2-core CI machine)
    mp.start_processes(_worker, args=(world, str(tmp), _free_port(), mode, fused), nprocs=world, join=True,
                       start_method="fork")


@pytest.mark.parametrize("fused", ["off", "on"])
def test_two_gloo_processes_end_identical(tmp_path, fused):
    world = 2
    _launch(tmp_path, "full", fused=fused)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(world))
    assert set(r0["shard"]).isdisjoint(r1["shard"])  # each rank trains on its own half of the data
    for k in ("G", "ema", "D"):  # D includes its BatchNorm statistics (broadcast from rank 0)
        assert_same_weights(r0[k], r1[k])
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "iter_00000005.pt", weights_only=False)
    assert_same_weights(r0["G"], ckpt["G"])
    assert len(ckpt["rng"]) == world  # every rank's RNG state, for exact resume
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count("starting:") == 1 and "world 2" in log  # rank 0 alone logs
    assert "SyncBatchNorm runs on GPUs only" in log
    start = torch.load(tmp_path / "run" / "checkpoints" / "iter_00000000.pt", weights_only=False)
    assert f"fused {fused == 'on'}" in log
    for k in ("conv_first.weight", "body.0.rdb1.conv1.weight", "body.0.rdb3.conv5.bias"):  # it trained,
        assert not torch.equal(start["G"][k], ckpt["G"][k]), k  # the trunk too (fused: the op's gradients)


def test_two_gloo_processes_resume_exactly(tmp_path):
    """Stopped after 4 iterations and resumed from the checkpoint at 3, each rank ends where an
    uninterrupted 2-process run ends (every rank's RNG state and data shard position restored)."""
    _launch(tmp_path / "full", "full")
    _launch(tmp_path / "cut", "stop")
    _launch(tmp_path / "cut", "resume")
    for r in range(2):
        a, b = (torch.load(tmp_path / run / f"rank{r}.pt") for run in ("full", "cut"))
        for k in ("G", "ema", "D"):
            assert_same_weights(a[k], b[k])
