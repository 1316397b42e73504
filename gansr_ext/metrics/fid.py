"""FID (Heusel et al. 2017) with the standard pytorch-fid InceptionV3 (TF 2015-12-05 weights).

Features are the 2048-d pool3 activations of the FID Inception network (pytorch-fid's patched
blocks): images in [0, 1] are resized bilinearly to 299x299 and scaled to [-1, 1]. With the
feature means mu and covariances S of the two sets::

    FID = ||mu_r - mu_f||^2 + tr(S_r + S_f - 2 (S_r S_f)^(1/2))

(matrix square root by scipy.linalg.sqrtm, as pytorch-fid's `calculate_frechet_distance`). The
weights file comes from an explicit path or the torch hub cache (`resolve_weights`);
`pretrained=False` gives a random network (tests only: the numbers mean nothing).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import linalg

from ._image import to_batch255

__all__ = ["FIDMetric", "FIDInceptionPool3", "frechet_distance", "FID_WEIGHTS_FILE", "FID_WEIGHTS_URL"]

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_FILE}"


def _fid_inception(state_dict) -> nn.Module:
    """torchvision InceptionV3 with pytorch-fid's TF-compatible blocks (`fid_inception_v3`, no download)."""
    from pytorch_fid.inception import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2, _inception_v3

    net = _inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE_1(1280)
    net.Mixed_7c = FIDInceptionE_2(2048)
    if state_dict is not None:
        net.load_state_dict(state_dict)
    return net


# feature size -> number of leading layers of FIDInceptionPool3.layers (pytorch-fid's --dims blocks)
_DIMS_DEPTH = {64: 4, 192: 7, 768: 15, 2048: 19}


class FIDInceptionPool3(nn.Module):
    """(N, 3, H, W) in [0, 1] -> (N, dims) features: pool3 (2048, the FID standard) or, as
    pytorch-fid's --dims, the globally averaged output of an earlier block (64, 192, 768).

    state_dict None: random weights, convolutions Kaiming-initialised so that features do not
    collapse to a constant through the 90-odd layers (PyTorch's default init does). resize_to: 299
    is the FID standard; smaller values (>= 75) only make tests faster.
    """

    def __init__(self, state_dict=None, resize_to: int = 299, dims: int = 2048):
        super().__init__()
        if dims not in _DIMS_DEPTH:
            raise ValueError(f"FIDInceptionPool3: dims must be one of {tuple(_DIMS_DEPTH)}, got {dims!r}")
        self.dims = dims
        if resize_to < 75:
            raise ValueError(f"FIDInceptionPool3: resize_to must be >= 75 (InceptionV3 minimum), got {resize_to}")
        self.resize_to = int(resize_to)
        n = _fid_inception(state_dict)
        if state_dict is None:
            for m in n.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        self.layers = nn.Sequential(
            n.Conv2d_1a_3x3, n.Conv2d_2a_3x3, n.Conv2d_2b_3x3, nn.MaxPool2d(3, 2),
            n.Conv2d_3b_1x1, n.Conv2d_4a_3x3, nn.MaxPool2d(3, 2),
            n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b, n.Mixed_6c, n.Mixed_6d, n.Mixed_6e,
            n.Mixed_7a, n.Mixed_7b, n.Mixed_7c,
        )[: _DIMS_DEPTH[dims]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(self.resize_to, self.resize_to), mode="bilinear", align_corners=False)
        return F.adaptive_avg_pool2d(self.layers(2 * x - 1), 1).flatten(1)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrtm(S1 S2)), as pytorch-fid's `calculate_frechet_distance`.

    (Own copy of those few lines: pytorch-fid passes scipy's `disp` argument, deprecated in SciPy
    1.16 and removed in 1.18.) A near-singular product gets eps on the diagonals; an imaginary part
    of the square root above 1e-3 on the diagonal is an error (ValueError).
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"frechet_distance: shapes do not match: mu {mu1.shape} / {mu2.shape}, "
                         f"sigma {sigma1.shape} / {sigma2.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # singular products are handled below
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"frechet_distance: imaginary component {np.max(np.abs(covmean.imag))} in sqrtm")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


class FIDMetric:
    """`metric(real_images, fake_images)` -> FID; or `features` / `statistics` / `distance` piecewise.

    dims=2048 (pool3) is FID; smaller dims (64, 192, 768) are pytorch-fid's cheaper variants, not
    comparable with published FIDs. Image sets are a batch (tensor (N, C, H, W), array NHWC) or a
    list of images (sizes may differ).
    """

    def __init__(self, weights_path=None, pretrained: bool = True, device="cpu", batch_size: int = 16,
                 resize_to: int = 299, dims: int = 2048):
        state_dict = None
        if pretrained:
            from gansr_ext.weights import load_state_dict

            state_dict = load_state_dict(FID_WEIGHTS_FILE, FID_WEIGHTS_URL, weights_path, what="FID InceptionV3")
        elif weights_path is not None:
            raise ValueError("FIDMetric: weights_path given with pretrained=False")
        self.pretrained = pretrained
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.model = FIDInceptionPool3(state_dict, resize_to, dims).eval().to(self.device)

    @torch.no_grad()
    def features(self, images) -> np.ndarray:
        """(N, dims) float64 features."""
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        feats = []
        for item in items:  # one item converted at a time (not the whole set held as float tensors)
            x, _ = to_batch255(item, "fid")
            if x.shape[-1] == 1:
                x = np.repeat(x, 3, axis=-1)
            batch = torch.from_numpy(x / 255.0).permute(0, 3, 1, 2).float()
            for i in range(0, batch.shape[0], self.batch_size):
                feats.append(self.model(batch[i:i + self.batch_size].to(self.device)).cpu().double())
        if not feats:
            raise ValueError("fid: empty image set")
        return torch.cat(feats).numpy()

    @staticmethod
    def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if features.ndim != 2 or features.shape[0] < 2:
            raise ValueError(f"fid: needs at least 2 images per set, got features of shape {features.shape}")
        return features.mean(axis=0), np.cov(features, rowvar=False)

    def distance(self, real_features: np.ndarray, fake_features: np.ndarray) -> float:
        return frechet_distance(*self.statistics(real_features), *self.statistics(fake_features))

    def __call__(self, real_images, fake_images) -> float:
        return self.distance(self.features(real_images), self.features(fake_images))
