"""Tiny data and stand-in components for the training tests (CPU, a few ms per step)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gansr_ext.train.config import load_config


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on the shared 2-core machine two threads make these tiny convs 10x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class TinyImages(torch.utils.data.Dataset):
    """`n` smooth random HR images; items are random HR crops (global torch RNG, as real datasets
    do) with their 4x box-downscaled LR."""

    def __init__(self, n: int = 8, size: int = 48, crop: int | None = 16, scale: int = 4, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        base = torch.rand(n, 3, size // 4, size // 4, generator=g)
        self.hr = F.interpolate(base, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
        self.crop, self.scale = crop, scale

    def __len__(self):
        return len(self.hr)

    def __getitem__(self, i):
        hr = self.hr[i]
        if self.crop is not None:
            top, left = (int(v) for v in torch.randint(0, hr.shape[-1] - self.crop + 1, (2,)))
            hr = hr[:, top:top + self.crop, left:left + self.crop]
            if torch.rand(()) < 0.5:
                hr = hr.flip(-1)
        lr = F.avg_pool2d(hr[None], self.scale)[0]
        return {"lr": lr, "hr": hr.contiguous(), "name": f"img{i}"}


def tiny_cfg(tmp_path, *overrides, stage: str = "psnr", config=None):
    """A config with tiny sizes and nothing slow (no TensorBoard/progress bar, no periodic validation)."""
    base = [
        f"output_dir={tmp_path}", "name=run", "device=cpu", "train.total_iters=6", "data.batch_size=2",
        "data.crop=16", "data.num_workers=0", "model.generator.nb=1", "model.generator.nf=8",
        "model.generator.gc=4", "val.every=0", "checkpoint.every=3", "log.every=1", "log.tensorboard=false",
        "log.progress=false", "train.fused=off", "val.metrics=[psnr]", "val.best_metric=psnr",
        "model.pretrained_g=null", "data.train.type=samples", "data.val.type=samples",
    ]
    if stage == "gan":
        base += ["stage=gan", "losses.gan.weight=0.01", "model.discriminator.type=unet",
                 "model.discriminator.args={nf: 8}"]
    return load_config(config, base + list(overrides))


def psnr_metric(sr, hr):
    mse = F.mse_loss(sr, hr).item()
    return 10.0 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))).item()


def weights(module: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


class HostSyncCounter:
    """Counts the host syncs that the package's own code asks for: `.item()`, `.tolist()`, `bool()`,
    `float()`, `int()` of a tensor called from a file under `gansr_ext/` (on a GPU each waits for the
    device; a library's internal reads of CPU scalars, e.g. Adam's step count, are not counted)."""

    METHODS = ("item", "tolist", "__bool__", "__float__", "__int__")

    def __init__(self, monkeypatch):
        import sys

        self.count = 0
        for name in self.METHODS:
            original = getattr(torch.Tensor, name)

            def counted(t, *a, _original=original, **kw):
                if "/gansr_ext/" in sys._getframe(1).f_code.co_filename.replace("\\", "/"):
                    self.count += 1
                return _original(t, *a, **kw)

            monkeypatch.setattr(torch.Tensor, name, counted)
