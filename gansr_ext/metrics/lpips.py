"""LPIPS (Zhang et al. 2018) through the `lpips` package, lower is better.

The package ships its linear calibration layers (v0.1) but fetches the ImageNet backbone from
torchvision on its own; here the backbone weights come from `resolve_weights` (explicit path or the
torch hub cache) so nothing is downloaded. `pretrained=False` gives a random backbone (tests only).
Inputs in [0, 1] are mapped to [-1, 1]; the distance is computed on the full RGB image.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ._image import pair

__all__ = ["LPIPSMetric", "BACKBONE_URLS"]

# torchvision ImageNet weights of each LPIPS backbone (file name = last URL component)
BACKBONE_URLS = {
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "squeeze": "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
}


def _load_backbone(lpips_model, net: str, weights_path) -> None:
    """Copy torchvision `features.<i>.*` weights into lpips' `net.slice<k>.<i>.*` layout."""
    from gansr_ext.weights import load_state_dict

    url = BACKBONE_URLS[net]
    sd = load_state_dict(url.rsplit("/", 1)[1], url, weights_path, what=f"LPIPS {net} backbone")
    slice_of = {idx: name for name, sl in lpips_model.net.named_children() for idx in sl._modules}
    mapped = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "features" and parts[1] in slice_of:
            mapped[".".join([slice_of[parts[1]], *parts[1:]])] = value
    lpips_model.net.load_state_dict(mapped, strict=True)


class LPIPSMetric:
    """Callable `metric(sr, hr)` -> float (one image) or (N,) array (batch)."""

    def __init__(self, net: str = "alex", pretrained: bool = True, weights_path=None, device="cpu"):
        import lpips

        if net not in BACKBONE_URLS:
            raise ValueError(f"LPIPSMetric: net must be one of {tuple(BACKBONE_URLS)}, got {net!r}")
        self.net_name, self.pretrained = net, pretrained
        self.device = torch.device(device)
        with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=` argument
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        if pretrained:
            _load_backbone(model, net, weights_path)
        self.model = model.eval().to(self.device)

    @torch.no_grad()
    def __call__(self, sr, hr):
        a, b, single = pair(sr, hr, "lpips")
        if a.shape[-1] != 3:
            raise ValueError(f"lpips: images must be RGB, got {a.shape[-1]} channel(s)")
        to_t = lambda x: torch.from_numpy(x / 255.0).permute(0, 3, 1, 2).float().to(self.device)  # noqa: E731
        d = self.model(to_t(a), to_t(b), normalize=True).flatten().cpu().numpy().astype(np.float64)
        return float(d[0]) if single else d
