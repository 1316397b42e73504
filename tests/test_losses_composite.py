"""CompositeLoss and build_losses (config dicts as YAML gives them)."""

import pytest
import torch
import yaml

from gansr_ext.losses import (CompositeLoss, FFTLoss, L1Loss, MSELoss, VGGPerceptualLoss, build_loss, build_losses,
                              make_gan_loss)
from gansr_ext.losses.adversarial import RelativisticAverageGANLoss
from gansr_ext.weights import MissingWeightsError


def test_composite_total_and_logs():
    pred, target = torch.rand(2, 3, 8, 8, requires_grad=True), torch.rand(2, 3, 8, 8)
    real, fake = torch.randn(2, 1), torch.randn(2, 1)
    gan = make_gan_loss("ragan")
    comp = CompositeLoss({"pix": (L1Loss(), 0.5), "mse": (MSELoss(), 2.0), "adv": (gan, 0.1)})
    total, logs = comp(pred, target, real, fake)
    expect = {"pix": 0.5 * (pred - target).abs().mean(), "mse": 2.0 * ((pred - target) ** 2).mean(),
              "adv": 0.1 * gan.g_loss(real, fake)}
    assert set(logs) == set(expect)
    for k in expect:
        torch.testing.assert_close(logs[k], expect[k].detach())
        assert not logs[k].requires_grad
    torch.testing.assert_close(total, sum(expect.values()))
    total.backward()
    assert pred.grad.abs().sum() > 0
    assert comp.gan_loss is gan


def test_composite_errors():
    with pytest.raises(ValueError, match="no loss terms"):
        CompositeLoss({})
    with pytest.raises(TypeError, match="module, weight"):
        CompositeLoss({"pix": L1Loss()})
    with pytest.raises(ValueError, match="at most one adversarial"):
        CompositeLoss({"a": (make_gan_loss("ragan"), 1.0), "b": (make_gan_loss("hinge"), 1.0)})
    comp = CompositeLoss({"pix": (L1Loss(), 1.0), "gan": (make_gan_loss("vanilla"), 1.0)})
    with pytest.raises(ValueError, match="needs fake_logits"):
        comp(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4))
    assert CompositeLoss({"pix": (L1Loss(), 1.0)}).gan_loss is None


def test_build_losses_esrgan_defaults_from_yaml():
    cfg = yaml.safe_load("""
    pixel: {}
    perceptual: {pretrained: false}
    gan: {}
    """)
    comp = build_losses(cfg)
    assert comp.weights == {"pixel": 1e-2, "perceptual": 1.0, "gan": 5e-3}
    assert isinstance(comp.terms["pixel"], L1Loss)
    assert isinstance(comp.terms["perceptual"], VGGPerceptualLoss)
    assert comp.terms["perceptual"].layer_index == {"conv5_4": 34} and comp.terms["perceptual"].criterion == "l1"
    assert isinstance(comp.gan_loss, RelativisticAverageGANLoss) and comp.gan_loss.name == "ragan"
    pred, target = torch.rand(1, 3, 32, 32, requires_grad=True), torch.rand(1, 3, 32, 32)
    total, logs = comp(pred, target, torch.randn(1, 1), torch.randn(1, 1))
    torch.testing.assert_close(total.detach(), sum(logs.values()))


def test_build_losses_options_strings_and_dropping():
    # YAML 1.1 reads 1e-2 (no dot) as a string
    cfg = yaml.safe_load("""
    l1: {weight: 1e-2, reduction: sum}
    fft: {weight: 0.1, p: 1, fused: false}
    adv: {type: wgan-gp, lam: 5.0}
    off: null
    zero: {type: mse, weight: 0}
    """)
    comp = build_losses(cfg)
    assert comp.weights == {"l1": 0.01, "fft": 0.1, "adv": 5e-3}
    assert comp.terms["l1"].reduction == "sum"
    assert isinstance(comp.terms["fft"], FFTLoss) and comp.terms["fft"].p == 1 and comp.terms["fft"].fused is False
    assert comp.gan_loss.needs_penalty and comp.gan_loss.lam == 5.0


def test_build_losses_errors(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="unknown type 'l3'"):
        build_losses({"pix": {"type": "l3"}})
    with pytest.raises(ValueError, match="needs a weight"):
        build_losses({"fft": {}})
    with pytest.raises(ValueError, match="weight must be a number"):
        build_losses({"pixel": {"weight": "a lot"}})
    with pytest.raises(TypeError, match="must be a dict"):
        build_losses({"pixel": 0.01})
    with pytest.raises(TypeError, match="dict of loss terms"):
        build_losses(["l1"])
    with pytest.raises(ValueError, match="unknown loss type"):
        build_loss("nope")
    # the default set needs VGG19's ImageNet weights: a clear error when they are not on the machine
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="vgg19-dcbb9e9d.pth"):
        build_losses()
