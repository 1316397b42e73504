"""RRDBNet, the ESRGAN generator (Wang et al. 2018), with BasicSR's parameter names.

    feat  = conv_first(x)                    # x pixel-unshuffled first for scale 2 (x2) / 1 (x4)
    feat  = feat + conv_body(trunk(feat))    # trunk = nb RRDBs (`_forward_trunk`)
    feat  = lrelu(conv_up1(nearest_x2(feat))); feat = lrelu(conv_up2(nearest_x2(feat)))
    out   = conv_last(lrelu(conv_hr(feat)))

RDB:  x_k = lrelu(conv_k(cat(x, x_1..x_{k-1}))) for k = 1..4,  out = conv5(cat(x, x_1..x_4)) * 0.2 + x
RRDB: out = rdb3(rdb2(rdb1(x))) * 0.2 + x
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_SCALES = (1, 2, 4)
# pixel-unshuffle factor applied to the input so that the fixed x4 upsampler yields `scale`
_UNSHUFFLE = {4: 1, 2: 2, 1: 4}


@torch.no_grad()
def _init_scaled_kaiming(convs, scale: float = 0.1) -> None:
    """BasicSR `default_init_weights`: kaiming-normal (fan_in, a=0) times `scale`, zero bias."""
    for conv in convs:
        nn.init.kaiming_normal_(conv.weight)
        conv.weight.mul_(scale)
        if conv.bias is not None:
            conv.bias.zero_()


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs with a residual scaled by 0.2."""

    def __init__(self, nf: int = 64, gc: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        _init_scaled_kaiming([self.conv1, self.conv2, self.conv3, self.conv4, self.conv5], 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks, residual scaled by 0.2."""

    def __init__(self, nf: int = 64, gc: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(nf, gc)
        self.rdb2 = ResidualDenseBlock(nf, gc)
        self.rdb3 = ResidualDenseBlock(nf, gc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


def _fused_trunk_op():
    """The compiled RRDB trunk `gansr_ext.ops.rrdb_trunk(feat, body) -> trunk(feat)`, or a clear error."""
    from .. import ops

    op = getattr(ops, "rrdb_trunk", None)
    if op is None:
        raise RuntimeError("RRDBNet(fused=True): the fused RRDB op (gansr_ext.ops.rrdb_trunk) is not built yet; "
                           "use fused=False")
    return op


def _check_image(name: str, x, in_ch: int) -> None:
    """TypeError / ValueError naming the model unless x is a (B, in_ch, H, W) tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: input must be a tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != in_ch:
        raise ValueError(f"{name}: input must be (B, {in_ch}, H, W), got shape {tuple(x.shape)}")


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"RRDBNet: {name} must be a positive int, got {value!r}")


class RRDBNet(nn.Module):
    """ESRGAN generator (see module docstring). `scale` in {1, 2, 4}; `fused` runs the RRDB trunk with
    the compiled op, `cutlass` ('off' | 'fwd' | 'bwd' | 'all', or False / True; the attribute may be
    changed later) which of its passes use the CUTLASS convs (`gansr_ext.ops.rrdb`). Neither changes
    parameters or the state_dict."""

    def __init__(self, in_ch: int = 3, out_ch: int = 3, scale: int = 4, nf: int = 64, nb: int = 23, gc: int = 32,
                 fused: bool = False, cutlass: str | bool = "off"):
        super().__init__()
        for name, value in (("in_ch", in_ch), ("out_ch", out_ch), ("nf", nf), ("nb", nb), ("gc", gc)):
            _check_positive_int(name, value)
        if scale not in _SCALES:
            raise ValueError(f"RRDBNet: scale must be one of {_SCALES}, got {scale!r}")
        self.in_ch, self.out_ch, self.scale, self.nf, self.nb, self.gc = in_ch, out_ch, scale, nf, nb, gc
        self.unshuffle = _UNSHUFFLE[scale]
        self.conv_first = nn.Conv2d(in_ch * self.unshuffle ** 2, nf, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(nf, gc) for _ in range(nb)))
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        self.fused = False
        self.set_fused(fused)
        from ..ops.rrdb import cutlass_flags

        cutlass_flags(cutlass)  # a bad mode fails here, not at the first fused forward
        self.cutlass = cutlass

    @property
    def arch(self) -> dict:
        """Constructor hyper-parameters (what checkpoints store as metadata)."""
        return dict(in_ch=self.in_ch, out_ch=self.out_ch, scale=self.scale, nf=self.nf, nb=self.nb, gc=self.gc)

    def set_fused(self, flag) -> "RRDBNet":
        """`flag`: True/False, or the package's vocabulary ('auto' | 'on' | 'off' | None, resolved for
        the device of the weights by `gansr_ext.ops._common.resolve_fused`)."""
        if flag is None or isinstance(flag, str):
            from ..ops._common import resolve_fused

            flag = resolve_fused(flag, self.conv_first.weight.device)
        if flag:
            _fused_trunk_op()  # fail early when the op is missing
        self.fused = bool(flag)
        return self

    def _forward_trunk(self, feat: torch.Tensor) -> torch.Tensor:
        """The nb RRDBs (the part the fused op replaces)."""
        if self.fused:
            return _fused_trunk_op()(feat, self.body, cutlass=self.cutlass)
        return self.body(feat)

    def _check_input(self, x: torch.Tensor) -> None:
        _check_image("RRDBNet", x, self.in_ch)
        f = self.unshuffle
        if x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(f"RRDBNet(scale={self.scale}): H and W must be divisible by {f}, "
                             f"got shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        feat = F.pixel_unshuffle(x, self.unshuffle) if self.unshuffle > 1 else x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self._forward_trunk(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))
