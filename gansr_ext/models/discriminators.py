"""Discriminators: ESRGAN's VGG-style (128x128 in, one logit) and Real-ESRGAN's U-Net with
spectral norm (per-pixel logits). Layer names follow BasicSR so its checkpoints load."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from .rrdbnet import _check_image


class VGGDiscriminator128(nn.Module):
    """BasicSR `VGGStyleDiscriminator` (input_size=128): five stages of (3x3 conv, 4x4 stride-2 conv),
    BN + LeakyReLU(0.2), channels nf, 2nf, 4nf, 8nf, 8nf, down to 4x4, then Linear -> 100 -> 1.
    Returns (B, 1) logits.

    batch_norm=False drops the BatchNorm layers (the convs then carry biases), as WGAN-GP's authors advise
    for a critic under a gradient penalty (the penalty is per sample; BN couples the samples). Measured
    here (D trained alone on natural crops vs their bicubic upscales, RaGP lam 1, 600 steps): d_loss 0.355
    with BN, 0.122 without. Parameter names are BasicSR's either way (no bn* entries without BN)."""

    input_size = 128

    def __init__(self, in_ch: int = 3, nf: int = 64, batch_norm: bool = True):
        super().__init__()
        self.in_ch, self.batch_norm = in_ch, batch_norm
        chans = [nf, 2 * nf, 4 * nf, 8 * nf, 8 * nf]
        self.conv0_0 = nn.Conv2d(in_ch, nf, 3, 1, 1, bias=True)
        self.conv0_1 = nn.Conv2d(nf, nf, 4, 2, 1, bias=not batch_norm)
        self.bn0_1 = self._norm(nf)
        for i in range(1, 5):
            cin, cout = chans[i - 1], chans[i]
            setattr(self, f"conv{i}_0", nn.Conv2d(cin, cout, 3, 1, 1, bias=not batch_norm))
            setattr(self, f"bn{i}_0", self._norm(cout))
            setattr(self, f"conv{i}_1", nn.Conv2d(cout, cout, 4, 2, 1, bias=not batch_norm))
            setattr(self, f"bn{i}_1", self._norm(cout))
        self.linear1 = nn.Linear(8 * nf * 4 * 4, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def _norm(self, channels: int) -> nn.Module:
        return nn.BatchNorm2d(channels, affine=True) if self.batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image("VGGDiscriminator128", x, self.in_ch)
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(f"VGGDiscriminator128: input must be 128x128, got {tuple(x.shape[-2:])}; "
                             "use UNetDiscriminatorSN for other sizes")
        feat = self.lrelu(self.conv0_0(x))
        feat = self.lrelu(self.bn0_1(self.conv0_1(feat)))
        for i in range(1, 5):
            feat = self.lrelu(getattr(self, f"bn{i}_0")(getattr(self, f"conv{i}_0")(feat)))
            feat = self.lrelu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(feat)))
        feat = self.lrelu(self.linear1(feat.flatten(1)))
        return self.linear2(feat)


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN U-Net discriminator: three spectral-norm 4x4 stride-2 down convs, three bilinear x2 up
    stages with skip connections (added), two extra convs, 1-channel output at input resolution.
    Any H, W >= 8 (upsampling goes to the skip's size, identical to x2 when H, W divide by 8)."""

    min_size = 8

    def __init__(self, in_ch: int = 3, nf: int = 64, skip_connection: bool = True):
        super().__init__()
        self.in_ch = in_ch
        self.skip_connection = skip_connection
        sn = spectral_norm
        self.conv0 = nn.Conv2d(in_ch, nf, 3, 1, 1)
        self.conv1 = sn(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False))
        self.conv2 = sn(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False))
        self.conv3 = sn(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False))
        self.conv4 = sn(nn.Conv2d(nf * 8, nf * 4, 3, 1, 1, bias=False))
        self.conv5 = sn(nn.Conv2d(nf * 4, nf * 2, 3, 1, 1, bias=False))
        self.conv6 = sn(nn.Conv2d(nf * 2, nf, 3, 1, 1, bias=False))
        self.conv7 = sn(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv8 = sn(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

    def _up(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image("UNetDiscriminatorSN", x, self.in_ch)
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(f"UNetDiscriminatorSN: H and W must be >= {self.min_size}, got {tuple(x.shape[-2:])}")
        lrelu = lambda t: F.leaky_relu(t, 0.2, inplace=True)  # noqa: E731
        x0 = lrelu(self.conv0(x))
        x1 = lrelu(self.conv1(x0))
        x2 = lrelu(self.conv2(x1))
        x3 = lrelu(self.conv3(x2))
        x4 = lrelu(self.conv4(self._up(x3, x2)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = lrelu(self.conv5(self._up(x4, x1)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = lrelu(self.conv6(self._up(x5, x0)))
        if self.skip_connection:
            x6 = x6 + x0
        out = lrelu(self.conv7(x6))
        out = lrelu(self.conv8(out))
        return self.conv9(out)
