"""LPIPS and FID: random-weight networks (no downloads), weight loading from a path, Frechet distance."""

from unittest import mock

import numpy as np
import pytest
import torch
import torchvision

from conftest import requires_cuda
from gansr_ext.metrics import FIDMetric, LPIPSMetric, frechet_distance
from gansr_ext.metrics.fid import FIDInceptionPool3, _fid_inception
from gansr_ext.weights import MissingWeightsError


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def lpips_rand():
    torch.manual_seed(0)
    return LPIPSMetric(net="alex", pretrained=False)


def test_lpips_identity_batch_and_noise_order(lpips_rand):
    g = torch.Generator().manual_seed(1)
    hr = torch.rand(2, 3, 48, 48, generator=g)
    noise = torch.randn(hr.shape, generator=g)
    assert lpips_rand(hr[0], hr[0]) == pytest.approx(0.0, abs=1e-7)
    mild = lpips_rand((hr + 0.02 * noise).clamp(0, 1), hr)
    strong = lpips_rand((hr + 0.3 * noise).clamp(0, 1), hr)
    assert mild.shape == (2,) and np.all(mild < strong)
    hwc = (hr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert lpips_rand(hwc, hwc) == pytest.approx(0.0, abs=1e-7)


def test_lpips_backbone_from_path(tmp_path):
    tv = torchvision.models.alexnet(weights=None)
    path = tmp_path / "alexnet.pth"
    torch.save(tv.state_dict(), path)
    m = LPIPSMetric(net="alex", pretrained=True, weights_path=path)
    convs = [mod for mod in m.model.net.modules() if isinstance(mod, torch.nn.Conv2d)]
    tv_convs = [mod for mod in tv.features if isinstance(mod, torch.nn.Conv2d)]
    assert len(convs) == len(tv_convs) == 5
    for a, b in zip(convs, tv_convs):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_lpips_missing_weights_and_errors(empty_hub, lpips_rand):
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth"):
        LPIPSMetric(net="alex")
    with pytest.raises(ValueError, match="net must be"):
        LPIPSMetric(net="resnet", pretrained=False)
    with pytest.raises(ValueError, match="same shape"):
        lpips_rand(torch.rand(3, 32, 32), torch.rand(3, 32, 30))
    # too small for AlexNet's deepest feature map: a clear error, not torch's max_pool2d failure
    with pytest.raises(ValueError, match="at least 31x31 for the alex network, got 30x40"):
        lpips_rand(torch.rand(3, 30, 40), torch.rand(3, 30, 40))
    assert np.isfinite(lpips_rand(torch.rand(3, 31, 31), torch.rand(3, 31, 31)))


def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    v1, v2 = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_matches_pytorch_fid():
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(30, 8)), rng.normal(size=(30, 8)) * 1.5 + 0.3
    stats = [(x.mean(0), np.cov(x, rowvar=False)) for x in (a, b)]
    ref = calculate_frechet_distance(*stats[0], *stats[1])
    assert frechet_distance(*stats[0], *stats[1]) == pytest.approx(ref, rel=1e-10)
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(stats[0][0], stats[0][1], stats[1][0][:4], stats[1][1])


@pytest.fixture(scope="module")
def random_inception_sd():
    torch.manual_seed(0)
    return _fid_inception(None).state_dict()


def test_fid_pool3_features_of_random_net_are_not_degenerate():
    torch.manual_seed(0)
    m = FIDMetric(pretrained=False, resize_to=75)
    real = torch.rand(3, 3, 40, 40)
    feats = m.features(real)
    assert feats.shape == (3, 2048) and feats.std(axis=0).mean() > 1e-3 * feats.mean()
    # a list of differently sized images is one set
    assert m.features([real[0], real[1, :, :32, :36], real[2:]]).shape == (3, 2048)


def test_fid_same_set_is_zero_and_different_sets_are_not():
    # 192-d features (pytorch-fid's --dims 192) keep scipy's sqrtm cheap; same code path as 2048
    torch.manual_seed(0)
    m = FIDMetric(pretrained=False, resize_to=75, dims=192)
    g = torch.Generator().manual_seed(2)
    real = torch.rand(6, 3, 40, 40, generator=g)
    feats = m.features(real)
    assert feats.shape == (6, 192)
    other = m(real, torch.rand(6, 3, 40, 40, generator=g) * 0.5)
    assert other > 0
    assert abs(m.distance(feats, feats)) < 1e-6 * other


def test_fid_needs_two_images_and_valid_dims():
    m = FIDMetric(pretrained=False, resize_to=75, dims=64)
    with pytest.raises(ValueError, match="at least 2 images"):
        m(torch.rand(1, 3, 40, 40), torch.rand(3, 3, 40, 40))
    with pytest.raises(ValueError, match="dims must be"):
        FIDMetric(pretrained=False, dims=100)


def test_fid_network_matches_pytorch_fid_inception(random_inception_sd):
    import pytorch_fid.inception as pfi

    sd = random_inception_sd
    ours = FIDInceptionPool3(sd, resize_to=80).eval()
    with mock.patch.object(pfi, "load_state_dict_from_url", return_value=sd):
        ref = pfi.InceptionV3([3], resize_input=False, normalize_input=True).eval()
    x = torch.rand(2, 3, 80, 80)  # already at resize_to: our bilinear resize is the identity
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x)[0].flatten(1), rtol=1e-5, atol=1e-6)


def test_fid_weights_from_path_and_missing(tmp_path, empty_hub, random_inception_sd):
    path = tmp_path / "inception.pth"
    sd = random_inception_sd
    torch.save(sd, path)
    m = FIDMetric(weights_path=path, resize_to=75)
    assert torch.equal(m.model.layers[0].conv.weight, sd["Conv2d_1a_3x3.conv.weight"])
    with pytest.raises(MissingWeightsError, match="pt_inception-2015-12-05-6726825d.pth"):
        FIDMetric()
    with pytest.raises(ValueError, match="pretrained=False"):
        FIDMetric(weights_path=path, pretrained=False)


@requires_cuda
def test_lpips_and_fid_on_cuda_match_cpu():
    torch.manual_seed(4)
    x, y = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)
    cpu = LPIPSMetric(pretrained=False)
    gpu = LPIPSMetric(pretrained=False, device="cuda")
    gpu.model.load_state_dict(cpu.model.state_dict())
    np.testing.assert_allclose(gpu(x, y), cpu(x, y), rtol=1e-2)  # cuDNN may use TF32
    fcpu = FIDMetric(pretrained=False, resize_to=75, dims=192)
    fgpu = FIDMetric(pretrained=False, resize_to=75, dims=192, device="cuda")
    fgpu.model.load_state_dict(fcpu.model.state_dict())
    a, b = fcpu.features(x), fgpu.features(x)
    assert np.linalg.norm(a - b) < 1e-2 * np.linalg.norm(a)
