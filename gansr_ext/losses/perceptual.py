"""Perceptual losses on frozen pretrained networks: VGG features (ESRGAN), LPIPS, DISTS.

Inputs are RGB images (B, 3, H, W) in [0, 1]. Gradients flow to `pred`; `target` is detached and
the networks are frozen (no parameter gradients, always in eval mode). `pretrained=True` (the
default) needs the ImageNet weights on disk (`gansr_ext.weights`: an explicit path or the torch hub
cache) and raises MissingWeightsError otherwise; random weights must be asked for (`pretrained=False`).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..weights import MissingWeightsError, load_state_dict, resolve_weights
from ..ops._common import reduce
from ._common import check_pair, check_reduction, freeze

_TV = "https://download.pytorch.org/models/"
VGG_WEIGHTS = {"vgg16": "vgg16-397923af.pth", "vgg19": "vgg19-dcbb9e9d.pth"}
_VGG_CFG = {"vgg16": "D", "vgg19": "E"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg_layer_names(features: nn.Sequential) -> list[str]:
    """Names of torchvision VGG `features` indices: conv1_1, relu1_1, ..., pool1, conv2_1, ..."""
    names, block, conv = [], 1, 0
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            conv += 1
            names.append(f"conv{block}_{conv}")
        elif isinstance(layer, nn.ReLU):
            names.append(f"relu{block}_{conv}")
        elif isinstance(layer, nn.MaxPool2d):
            names.append(f"pool{block}")
            block, conv = block + 1, 0
        else:
            raise TypeError(f"unexpected VGG layer {layer!r}")
    return names


def vgg_features(vgg_type: str = "vgg19", pretrained: bool = True, weights_path=None,
                 who: str = "VGG") -> nn.Sequential:
    """torchvision's VGG `features` (no classifier), ImageNet weights when `pretrained`, ReLUs not
    in place (intermediate outputs are kept)."""
    from torchvision.models import vgg

    if vgg_type not in VGG_WEIGHTS:
        raise ValueError(f"{who}: vgg_type must be one of {sorted(VGG_WEIGHTS)}, got {vgg_type!r}")
    state = None
    if pretrained:  # before building, so a missing file fails fast
        name = VGG_WEIGHTS[vgg_type]
        state = load_state_dict(name, _TV + name, weights_path, what=f"{who} ({vgg_type} ImageNet weights)")
    features = vgg.make_layers(vgg.cfgs[_VGG_CFG[vgg_type]], batch_norm=False)
    if state is not None:
        features.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
    for layer in features:
        if isinstance(layer, nn.ReLU):
            layer.inplace = False
    return features


class _FrozenNetLoss(nn.Module):
    """Keeps its networks in eval mode whatever `.train()` asks (dropout/BN must not change the loss)."""

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.children():
            m.eval()
        return self


class VGGPerceptualLoss(_FrozenNetLoss):
    """Feature loss of ESRGAN/BasicSR::

        loss = loss_weight * sum_l w_l * crit(phi_l(n(pred)), phi_l(n(target)))

    phi_l: torchvision VGG feature at layer l (names conv1_1 .. conv5_4, relu.., pool..);
    n: ImageNet mean/std normalisation when use_input_norm; crit: "l1" mean |a - b|, "l2" mean (a - b)^2,
    "fro" ||a - b||_F. ESRGAN: {"conv5_4": 1.0} before the ReLU, L1. With before_relu=False a
    "convX_Y" name means the output of its ReLU (SRGAN's choice).
    """

    def __init__(self, layer_weights: dict[str, float] | None = None, use_input_norm: bool = True,
                 criterion: str = "l1", pretrained: bool = True, weights_path=None, before_relu: bool = True,
                 vgg_type: str = "vgg19", loss_weight: float = 1.0):
        super().__init__()
        layer_weights = {"conv5_4": 1.0} if layer_weights is None else dict(layer_weights)
        if not layer_weights:
            raise ValueError("VGGPerceptualLoss: layer_weights is empty")
        if criterion not in ("l1", "l2", "fro"):
            raise ValueError(f"VGGPerceptualLoss: criterion must be 'l1', 'l2' or 'fro', got {criterion!r}")
        features = vgg_features(vgg_type, pretrained, weights_path, "VGGPerceptualLoss")
        names = vgg_layer_names(features)
        self.layer_index: dict[str, int] = {}
        for name in layer_weights:
            taken = name if before_relu or not name.startswith("conv") else "relu" + name[len("conv"):]
            if taken not in names:
                raise ValueError(f"VGGPerceptualLoss: unknown {vgg_type} layer {name!r}; known: {', '.join(names)}")
            self.layer_index[name] = names.index(taken)
        self.features = freeze(features[: max(self.layer_index.values()) + 1])
        self.layer_weights = {k: float(v) for k, v in layer_weights.items()}
        self.use_input_norm, self.criterion, self.loss_weight = use_input_norm, criterion, float(loss_weight)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def extract(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{layer name: feature} for the layers in layer_weights."""
        if self.use_input_norm:
            x = (x - self.mean) / self.std
        wanted = {i: n for n, i in self.layer_index.items()}
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                out[wanted[i]] = x
        return out

    def _crit(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.criterion == "l1":
            return F.l1_loss(a, b)
        if self.criterion == "l2":
            return F.mse_loss(a, b)
        return torch.linalg.vector_norm(a - b)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair(pred, target, "VGGPerceptualLoss", ndim=4, channels=3)
        fp, ft = self.extract(pred), self.extract(target.detach())
        total = sum(w * self._crit(fp[n], ft[n]) for n, w in self.layer_weights.items())
        return self.loss_weight * total

    def extra_repr(self) -> str:
        return f"layer_weights={self.layer_weights}, criterion={self.criterion!r}, use_input_norm={self.use_input_norm}"


LPIPS_BACKBONES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth",
                   "squeeze": "squeezenet1_1-b8a52dc0.pth"}


def build_lpips(net: str = "alex", pretrained: bool = True, weights_path=None, what: str = "LPIPS"):
    """`lpips.LPIPS` with the calibrated linear layers its wheel ships and the ImageNet backbone
    (alexnet / vgg16 / squeezenet1_1) from `weights_path` or the torch hub cache; random when not
    `pretrained`. Shared by `LPIPSLoss` and `gansr_ext.metrics.LPIPSMetric`."""
    import lpips

    if net not in LPIPS_BACKBONES:
        raise ValueError(f"{what}: net must be one of {sorted(LPIPS_BACKBONES)}, got {net!r}")
    state = None
    if pretrained:
        name = LPIPS_BACKBONES[net]
        state = load_state_dict(name, _TV + name, weights_path, what=f"{what} ({net} backbone)")
    with warnings.catch_warnings():  # lpips uses torchvision's deprecated `pretrained=` argument
        warnings.simplefilter("ignore", UserWarning)
        # random trunk here (lpips would download it), the ImageNet one loaded below
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    if state is not None:
        # lpips slices keep torchvision's `features` indices: net.sliceK.N.* <- features.N.*
        trunk = {k: state["features." + k.split(".", 1)[1]] for k in model.net.state_dict()}
        model.net.load_state_dict(trunk)
    return model


class LPIPSLoss(_FrozenNetLoss):
    """LPIPS (Zhang et al. 2018) through the `lpips` package::

        loss = loss_weight * reduce_b sum_l mean_hw || w_l * (f_l(x) - f_l(y)) ||^2,  f_l unit-normalised over channels

    with x, y = 2 pred - 1, 2 target - 1 ([0, 1] -> [-1, 1]). The calibrated linear weights w_l ship
    with the lpips wheel and are always used; `pretrained` is about the backbone (ImageNet
    alexnet / vgg16 / squeezenet1_1 from `weights_path` or the hub cache; random when False).
    """

    def __init__(self, net: str = "alex", pretrained: bool = True, weights_path=None, reduction: str = "mean",
                 loss_weight: float = 1.0):
        super().__init__()
        self.lpips = build_lpips(net, pretrained, weights_path, what="LPIPSLoss")
        freeze(self.lpips)
        self.net, self.loss_weight = net, float(loss_weight)
        self.reduction = check_reduction(reduction, "LPIPSLoss")

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair(pred, target, "LPIPSLoss", ndim=4, channels=3)
        per_image = self.lpips(pred, target.detach(), normalize=True).reshape(pred.shape[0])
        return self.loss_weight * reduce(per_image, self.reduction)

    def extra_repr(self) -> str:
        return f"net={self.net!r}, reduction={self.reduction!r}"


DISTS_WEIGHTS_URL = "https://github.com/dingkeyan93/DISTS/raw/master/DISTS_pytorch/weights.pt"


class L2Pooling(nn.Module):
    """DISTS's anti-aliased pooling: sqrt(hann3x3 * (x^2) + 1e-12), stride 2, padding 1, per channel;
    hann3x3 = [.5, 1, .5]^T [.5, 1, .5] / 4."""

    def __init__(self, channels: int):
        super().__init__()
        a = torch.hann_window(5, periodic=False, dtype=torch.float64)[1:-1]
        g = (a[:, None] * a[None, :]) / (a.sum() ** 2)
        self.register_buffer("filter", g.float()[None, None].repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x * x, self.filter, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


class DISTSLoss(_FrozenNetLoss):
    """DISTS (Ding et al. 2020), structure and texture similarity on VGG16 with L2 pooling::

        f_0 = x (the image), f_1..f_5 = VGG16 relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (max-pools
        replaced by L2Pooling) on the ImageNet-normalised image; per channel j of stage k:
        S1 = (2 mu_x mu_y + c) / (mu_x^2 + mu_y^2 + c),  S2 = (2 cov_xy + c) / (var_x + var_y + c),  c = 1e-6
        D(x, y) = 1 - sum_kj (alpha_kj S1 + beta_kj S2) / (sum alpha + sum beta)
        loss = loss_weight * reduce_b D(pred_b, target_b)

    alpha, beta (1, 1475, 1, 1) are the published `weights.pt` (not in any package: pass
    `alpha_beta_path`); `pretrained=False`: random VGG16 and uniform alpha = beta.
    """

    CHANNELS = (3, 64, 128, 256, 512, 512)
    _STAGES = ((0, 4), (5, 9), (10, 16), (17, 23), (24, 30))  # VGG16 `features` ranges; pools at 4, 9, 16, 23

    def __init__(self, pretrained: bool = True, weights_path=None, alpha_beta_path=None, reduction: str = "mean",
                 loss_weight: float = 1.0):
        super().__init__()
        alpha = beta = torch.ones(1, sum(self.CHANNELS), 1, 1)
        if pretrained:
            if alpha_beta_path is None:
                raise MissingWeightsError(
                    "DISTSLoss: the DISTS weights.pt (alpha/beta) is needed for pretrained=True; download it from "
                    f"{DISTS_WEIGHTS_URL} and pass alpha_beta_path=..., or ask for pretrained=False")
            ab = torch.load(resolve_weights("weights.pt", DISTS_WEIGHTS_URL, alpha_beta_path, what="DISTS weights.pt"),
                            map_location="cpu", weights_only=True)
            alpha, beta = ab["alpha"].float(), ab["beta"].float()
            if alpha.shape != (1, sum(self.CHANNELS), 1, 1) or beta.shape != alpha.shape:
                raise ValueError(f"DISTSLoss: {alpha_beta_path} has alpha/beta of shape {tuple(alpha.shape)}, "
                                 f"{tuple(beta.shape)}; expected (1, {sum(self.CHANNELS)}, 1, 1)")
        features = vgg_features("vgg16", pretrained, weights_path, "DISTSLoss")
        stages = []
        for k, (lo, hi) in enumerate(self._STAGES):
            layers = [] if k == 0 else [L2Pooling(self.CHANNELS[k])]
            stages.append(nn.Sequential(*layers, *features[lo:hi]))
        self.stages = freeze(nn.Sequential(*stages))
        self.register_buffer("alpha", alpha.clone())
        self.register_buffer("beta", beta.clone())
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.loss_weight = float(loss_weight)
        self.reduction = check_reduction(reduction, "DISTSLoss")

    def extract(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats, h = [x], (x - self.mean) / self.std
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        return feats

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image DISTS (B,)."""
        c = 1e-6
        w_sum = self.alpha.sum() + self.beta.sum()
        alpha = torch.split(self.alpha / w_sum, self.CHANNELS, dim=1)
        beta = torch.split(self.beta / w_sum, self.CHANNELS, dim=1)
        sim = 0
        for k, (fx, fy) in enumerate(zip(self.extract(x), self.extract(y))):
            mx, my = fx.mean((2, 3), keepdim=True), fy.mean((2, 3), keepdim=True)
            vx, vy = ((fx - mx) ** 2).mean((2, 3), keepdim=True), ((fy - my) ** 2).mean((2, 3), keepdim=True)
            cov = (fx * fy).mean((2, 3), keepdim=True) - mx * my
            s1 = (2 * mx * my + c) / (mx ** 2 + my ** 2 + c)
            s2 = (2 * cov + c) / (vx + vy + c)
            sim = sim + (alpha[k] * s1 + beta[k] * s2).sum((1, 2, 3))
        return 1 - sim

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair(pred, target, "DISTSLoss", ndim=4, channels=3)
        return self.loss_weight * reduce(self.distance(pred, target.detach()), self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
