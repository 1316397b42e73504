"""Perceptual losses with random backbones (no downloads): layer wiring, frozen nets, gradients,
weight loading from explicit files, and clear errors when pretrained weights are missing."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gansr_ext.losses import DISTSLoss, LPIPSLoss, VGGPerceptualLoss
from gansr_ext.losses.perceptual import DISTS_WEIGHTS_URL, L2Pooling, vgg_features, vgg_layer_names
from gansr_ext.weights import MissingWeightsError


@pytest.fixture
def empty_hub(monkeypatch, tmp_path):
    """A torch hub cache with no weights in it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path


def test_vgg19_layer_names_follow_torchvision_indices():
    names = vgg_layer_names(vgg_features("vgg19", pretrained=False))
    assert len(names) == 37
    expect = {"conv1_1": 0, "relu1_1": 1, "conv1_2": 2, "pool1": 4, "conv2_1": 5, "relu3_4": 17, "pool3": 18,
              "conv4_1": 19, "conv5_4": 34, "relu5_4": 35, "pool5": 36}
    assert {n: names.index(n) for n in expect} == expect


@pytest.fixture(scope="module")
def shallow_vgg():
    return VGGPerceptualLoss({"conv1_2": 0.5, "relu2_1": 2.0}, pretrained=False, loss_weight=3.0)


def test_vgg_loss_value_from_the_layers(shallow_vgg):
    pred, target = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    f = shallow_vgg.features
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def layers(x):
        x = (x - mean) / std
        conv1_2 = f[2](f[1](f[0](x)))
        relu2_1 = torch.relu(f[5](f[4](torch.relu(conv1_2))))
        return conv1_2, relu2_1

    (a1, a2), (b1, b2) = layers(pred), layers(target)
    expect = 3.0 * (0.5 * (a1 - b1).abs().mean() + 2.0 * (a2 - b2).abs().mean())
    torch.testing.assert_close(shallow_vgg(pred, target), expect)
    assert len(f) == 7  # truncated after the deepest layer asked for (relu2_1 = index 6)


def test_vgg_loss_frozen_gradients_to_pred_only(shallow_vgg):
    pred = torch.rand(1, 3, 16, 16, requires_grad=True)
    target = torch.rand(1, 3, 16, 16, requires_grad=True)
    assert shallow_vgg(pred, pred.detach()).item() == 0.0
    shallow_vgg(pred, target).backward()
    assert pred.grad.abs().sum() > 0
    assert target.grad is None  # the target is detached
    assert all(not p.requires_grad for p in shallow_vgg.parameters())
    shallow_vgg.train()
    assert not shallow_vgg.features.training


def test_vgg_loss_esrgan_default_and_after_relu():
    esrgan = VGGPerceptualLoss(pretrained=False)  # conv5_4 before ReLU, L1 (the ESRGAN loss)
    assert esrgan.layer_index == {"conv5_4": 34}
    pred = torch.rand(1, 3, 32, 32, requires_grad=True)
    out = esrgan(pred, torch.rand(1, 3, 32, 32))
    assert out.shape == () and out.dtype == torch.float32
    out.backward()
    assert pred.grad.abs().sum() > 0
    srgan = VGGPerceptualLoss({"conv1_2": 1.0}, pretrained=False, before_relu=False)
    assert srgan.layer_index == {"conv1_2": 3}  # relu1_2


def test_vgg_loss_criteria(shallow_vgg):
    a, b = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    l2 = VGGPerceptualLoss({"conv1_1": 1.0}, pretrained=False, criterion="l2")
    fro = VGGPerceptualLoss({"conv1_1": 1.0}, pretrained=False, criterion="fro")
    fro.features.load_state_dict(l2.features.state_dict())
    fa, fb = l2.extract(a)["conv1_1"], l2.extract(b)["conv1_1"]
    torch.testing.assert_close(l2(a, b), F.mse_loss(fa, fb))
    torch.testing.assert_close(fro(a, b), (fa - fb).pow(2).sum().sqrt())


def test_vgg_loss_errors(empty_hub):
    with pytest.raises(ValueError, match="unknown vgg19 layer 'conv6_1'"):
        VGGPerceptualLoss({"conv6_1": 1.0}, pretrained=False)
    with pytest.raises(ValueError, match="criterion"):
        VGGPerceptualLoss(criterion="l3", pretrained=False)
    with pytest.raises(ValueError, match="vgg_type"):
        VGGPerceptualLoss(vgg_type="vgg11", pretrained=False)
    with pytest.raises(MissingWeightsError, match="vgg19-dcbb9e9d.pth"):
        VGGPerceptualLoss()  # pretrained by default, nothing in the hub cache
    with pytest.raises(MissingWeightsError, match="does not exist"):
        VGGPerceptualLoss(weights_path=empty_hub / "nope.pth")


def test_vgg_loss_input_checks(shallow_vgg):
    with pytest.raises(ValueError, match="3 channels"):
        shallow_vgg(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="4-D"):
        shallow_vgg(torch.rand(3, 8, 8), torch.rand(3, 8, 8))


# ---------------------------------------------------------------- LPIPS


@pytest.fixture(scope="module")
def lpips_alex():
    return LPIPSLoss("alex", pretrained=False)


def test_lpips_identity_reduction_and_gradients(lpips_alex):
    pred = torch.rand(2, 3, 32, 32, requires_grad=True)
    target = torch.rand(2, 3, 32, 32)
    none = copy.copy(lpips_alex)  # same nets, other reduction
    none.reduction = "none"
    values = none(pred, target)
    assert values.shape == (2,) and (values > 0).all()
    torch.testing.assert_close(lpips_alex(pred, target), values.mean())
    assert lpips_alex(target, target).abs().item() < 1e-7
    lpips_alex(pred, target).backward()
    assert pred.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in lpips_alex.parameters())
    lpips_alex.train()
    assert not any(m.training for m in lpips_alex.lpips.modules())  # dropout of the linear layers stays off


def test_lpips_maps_unit_range_to_plus_minus_one(lpips_alex):
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(lpips_alex(a, b).reshape(()), lpips_alex.lpips(2 * a - 1, 2 * b - 1).reshape(()))


def test_lpips_missing_and_explicit_backbone_weights(empty_hub):
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth"):
        LPIPSLoss("alex")
    with pytest.raises(MissingWeightsError, match="squeezenet1_1-b8a52dc0.pth"):
        LPIPSLoss("squeeze")
    with pytest.raises(ValueError, match="net must be"):
        LPIPSLoss("resnet", pretrained=False)
    # a torchvision-style alexnet state dict (features only is enough) from an explicit path
    import torchvision

    sd = {"features." + k: torch.randn_like(v) for k, v in torchvision.models.alexnet().features.state_dict().items()}
    path = empty_hub / "alex.pth"
    torch.save(sd, path)
    loss = LPIPSLoss("alex", weights_path=path)
    torch.testing.assert_close(loss.lpips.net.slice1[0].weight, sd["features.0.weight"])
    torch.testing.assert_close(loss.lpips.net.slice5._modules["10"].bias, sd["features.10.bias"])


# ---------------------------------------------------------------- DISTS


def test_l2pooling_by_hand():
    # filter [.25, .5, .25]^T [.25, .5, .25]; constant c: interior sqrt(c^2) = |c|, corner (0.75)^2 of the filter
    out = L2Pooling(2)(torch.full((1, 2, 6, 6), -2.0))
    assert out.shape == (1, 2, 3, 3)
    np.testing.assert_allclose(out[0, 0, 1, 1].item(), 2.0, rtol=1e-6)
    np.testing.assert_allclose(out[0, 0, 0, 0].item(), np.sqrt(0.75 ** 2 * 4.0), rtol=1e-6)


@pytest.fixture(scope="module")
def dists_random():
    return DISTSLoss(pretrained=False)


def test_dists_identity_symmetry_gradients(dists_random):
    a = torch.rand(2, 3, 32, 32, requires_grad=True)
    b = torch.rand(2, 3, 32, 32)
    assert dists_random(b, b).abs().item() < 1e-5
    d_ab, d_ba = dists_random.distance(a, b), dists_random.distance(b, a)
    torch.testing.assert_close(d_ab, d_ba)
    assert d_ab.shape == (2,) and (d_ab > 0).all()
    dists_random(a, b).backward()
    assert a.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in dists_random.parameters())


def test_dists_first_stage_is_the_image_statistics():
    # with all weight on the image stage, DISTS reduces to the SSIM-like terms of the raw images
    loss = DISTSLoss(pretrained=False)
    loss.alpha.zero_()
    loss.beta.zero_()
    loss.alpha[0, :3] = 1.0
    loss.beta[0, :3] = 1.0
    x, y = torch.rand(1, 3, 8, 8, dtype=torch.float64), torch.rand(1, 3, 8, 8, dtype=torch.float64)
    loss = loss.double()
    c = 1e-6
    xs, ys = x[0].reshape(3, -1).numpy(), y[0].reshape(3, -1).numpy()
    mx, my = xs.mean(1), ys.mean(1)
    s1 = (2 * mx * my + c) / (mx ** 2 + my ** 2 + c)
    cov = (xs * ys).mean(1) - mx * my
    s2 = (2 * cov + c) / (xs.var(1) + ys.var(1) + c)
    assert loss(x, y).item() == pytest.approx(1 - (s1.sum() + s2.sum()) / 6, rel=1e-10)


def test_dists_missing_weights(empty_hub):
    with pytest.raises(MissingWeightsError, match="DISTS weights.pt") as err:
        DISTSLoss()
    assert DISTS_WEIGHTS_URL in str(err.value)
    ab = {"alpha": torch.rand(1, 1475, 1, 1), "beta": torch.rand(1, 1475, 1, 1)}
    torch.save(ab, empty_hub / "weights.pt")
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth"):
        DISTSLoss(alpha_beta_path=empty_hub / "weights.pt")
    torch.save({"alpha": torch.rand(1, 10, 1, 1), "beta": torch.rand(1, 10, 1, 1)}, empty_hub / "bad.pt")
    with pytest.raises(ValueError, match="1475"):
        DISTSLoss(alpha_beta_path=empty_hub / "bad.pt")


def test_dists_loads_explicit_backbone_and_alpha_beta(tmp_path):
    features = vgg_features("vgg16", pretrained=False)
    sd = {"features." + k: torch.randn_like(v) for k, v in features.state_dict().items()}
    torch.save(sd, tmp_path / "vgg16.pth")
    ab = {"alpha": torch.rand(1, 1475, 1, 1), "beta": torch.rand(1, 1475, 1, 1)}
    torch.save(ab, tmp_path / "weights.pt")
    loss = DISTSLoss(weights_path=tmp_path / "vgg16.pth", alpha_beta_path=tmp_path / "weights.pt")
    torch.testing.assert_close(loss.alpha, ab["alpha"])
    torch.testing.assert_close(loss.beta, ab["beta"])
    # stage 2 = L2Pooling then VGG16 features 5.. (conv2_1); stage 5 ends with conv5_3 (index 28) + ReLU
    assert isinstance(loss.stages[1][0], L2Pooling)
    torch.testing.assert_close(loss.stages[1][1].weight, sd["features.5.weight"])
    torch.testing.assert_close(loss.stages[4][-2].bias, sd["features.28.bias"])
    assert isinstance(loss.stages[4][-1], torch.nn.ReLU)
