"""LPIPS (Zhang et al. 2018) through the `lpips` package, lower is better.

The package ships its linear calibration layers (v0.1) but fetches the ImageNet backbone from
torchvision on its own; here the network is built by `gansr_ext.losses.perceptual.build_lpips`,
whose backbone weights come from an explicit path or the torch hub cache, so nothing is downloaded.
`pretrained=False` gives a random backbone (tests only).
Inputs in [0, 1] are mapped to [-1, 1]; the distance is computed on the full RGB image.
"""

from __future__ import annotations

import numpy as np
import torch

from ._image import pair

__all__ = ["LPIPSMetric"]


# smallest side whose deepest feature map is not empty (measured; a smaller image fails inside torch)
MIN_SIZE = {"alex": 31, "vgg": 16, "squeeze": 17}


class LPIPSMetric:
    """Callable `metric(sr, hr)` -> float (one image) or (N,) array (batch)."""

    def __init__(self, net: str = "alex", pretrained: bool = True, weights_path=None, device="cpu"):
        from gansr_ext.losses.perceptual import build_lpips

        model = build_lpips(net, pretrained, weights_path, what="LPIPSMetric")
        self.net_name, self.pretrained = net, pretrained
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)

    @torch.no_grad()
    def __call__(self, sr, hr):
        a, b, single = pair(sr, hr, "lpips")
        if a.shape[-1] != 3:
            raise ValueError(f"lpips: images must be RGB, got {a.shape[-1]} channel(s)")
        if min(a.shape[1:3]) < MIN_SIZE[self.net_name]:
            raise ValueError(f"lpips: images must be at least {MIN_SIZE[self.net_name]}x{MIN_SIZE[self.net_name]} "
                             f"for the {self.net_name} network, got {a.shape[1]}x{a.shape[2]}")
        to_t = lambda x: torch.from_numpy(x / 255.0).permute(0, 3, 1, 2).float().to(self.device)  # noqa: E731
        d = self.model(to_t(a), to_t(b), normalize=True).flatten().cpu().numpy().astype(np.float64)
        return float(d[0]) if single else d
