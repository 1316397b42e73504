"""One `fused` switch (issue 15.4): 'auto' | 'on' | 'off', also spelt None | True | False, resolved by
`gansr_ext.ops._common.resolve_fused` for the ops, the losses, the trainer, the upscaler and
`gansr upscale`."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gansr_ext.infer import Upscaler
from gansr_ext.ops._common import FUSED_MODES, fused_available, fused_mode, resolve_fused, use_fused


@pytest.mark.parametrize("spelling,mode", [(None, "auto"), (True, "on"), (False, "off"), ("auto", "auto"),
                                           ("on", "on"), ("off", "off"), ("ON", "on")])
def test_every_spelling_names_one_mode(spelling, mode):
    assert fused_mode(spelling) == mode and mode in FUSED_MODES


@pytest.mark.parametrize("bad", ["yes", 1, 0, "fused"])
def test_other_values_are_refused(bad):
    with pytest.raises(ValueError, match="fused must be one of"):
        fused_mode(bad)


def test_the_resolver_is_the_ops_rule():
    cpu = torch.device("cpu")
    assert resolve_fused("off", cpu) is False and resolve_fused(False, cpu) is False
    assert resolve_fused("auto", cpu) == fused_available(cpu) == resolve_fused(None, cpu)
    x = torch.zeros(1)
    for spelling in (None, True, False, "auto", "on", "off"):
        if fused_mode(spelling) == "on" and not fused_available(cpu):
            continue
        assert use_fused(spelling, x) == resolve_fused(spelling, cpu)
    assert resolve_fused("auto", "meta") is False
    with pytest.raises(RuntimeError, match="run on cpu and cuda"):
        resolve_fused("on", "meta")


class _FusedFails(nn.Module):
    """x2 model whose fused path raises (as a broken kernel would)."""

    scale = 2

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.fused = True

    def set_fused(self, flag):
        self.fused = bool(flag)

    def forward(self, x):
        if self.fused:
            raise RuntimeError("fused kernel failed")
        return F.pixel_shuffle(self.conv(x), 2)


@pytest.mark.parametrize("fused", [None, "auto"])
def test_a_failing_fused_path_is_an_error_not_a_silent_rerun(fused):
    model = _FusedFails()
    up = Upscaler(model, device="cpu", fused=fused)  # auto leaves a CPU model's setting alone
    with pytest.raises(RuntimeError, match="fused kernel failed"):
        up.upscale_tensor(torch.rand(1, 3, 8, 8))
    assert model.fused


def test_the_upscaler_takes_the_vocabulary():
    model = _FusedFails()
    Upscaler(model, device="cpu", fused="off")
    assert not model.fused
    out = Upscaler(model, device="cpu", fused=False).upscale_tensor(torch.rand(1, 3, 8, 8))
    assert out.shape[-1] == 16
    with pytest.raises(ValueError, match="fused must be one of"):
        Upscaler(model, device="cpu", fused="sometimes")


def test_the_generator_takes_the_vocabulary():
    from gansr_ext.models import RRDBNet

    model = RRDBNet(nb=1, nf=8, gc=4)
    cpu = torch.device("cpu")
    assert model.set_fused("auto").fused == resolve_fused("auto", cpu) == model.set_fused(None).fused
    assert not model.set_fused("off").fused and not model.set_fused(False).fused
    with pytest.raises(ValueError, match="fused must be one of"):
        model.set_fused("sometimes")


SPELLINGS = [None, True, False, "auto", "on", "off"]


def _runnable(spellings):
    """The spellings this build can run on the CPU ('on' needs the compiled ops)."""
    return [s for s in spellings if fused_mode(s) != "on" or fused_available(torch.device("cpu"))]


def test_the_fft_loss_takes_the_vocabulary():
    from gansr_ext.losses.frequency import FFTLoss

    g = torch.Generator().manual_seed(0)
    sr, hr = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    ref = FFTLoss(fused=False)(sr, hr)
    for spelling in _runnable(SPELLINGS):
        loss = FFTLoss(fused=spelling)
        assert loss.fused == spelling  # kept as given, resolved per call by the op
        torch.testing.assert_close(loss(sr, hr), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="fused must be one of"):  # at construction, not at the first call
        FFTLoss(fused="sometimes")


def _critic():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3, padding=1))


def test_the_gradient_penalty_takes_the_vocabulary():
    from gansr_ext.losses.penalty import gradient_penalty

    D, g = _critic(), torch.Generator().manual_seed(1)
    real, fake, eps = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g), torch.rand(2)
    ref = gradient_penalty(D, real, fake, eps=eps, fused=False)
    for spelling in _runnable(SPELLINGS):
        torch.testing.assert_close(gradient_penalty(D, real, fake, eps=eps, fused=spelling), ref,
                                   rtol=1e-5, atol=1e-6)
    # refused on a lazy step that computes nothing too (a typo must not wait for the k-th iteration)
    with pytest.raises(ValueError, match="fused must be one of"):
        gradient_penalty(D, real, fake, fused="sometimes", lazy_interval=2, step=1)


def test_make_gan_loss_takes_the_vocabulary():
    from gansr_ext.losses.adversarial import make_gan_loss

    D, g = _critic(), torch.Generator().manual_seed(2)
    real, fake, eps = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g), torch.rand(2)
    ref = make_gan_loss("ragp", fused=False).penalty(D, real, fake, eps=eps)
    for spelling in _runnable(SPELLINGS):
        loss = make_gan_loss("ragp", fused=spelling)
        assert loss.penalty_kw["fused"] == spelling
        torch.testing.assert_close(loss.penalty(D, real, fake, eps=eps), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="fused must be one of"):  # at construction, not at the first D step
        make_gan_loss("r1", fused="sometimes")
