"""Fused ops (`torch.ops.gansr.*`) with their pure-PyTorch references next to them.

Every op has three implementations held equal by tests: the reference here (the spec), a C++ CPU
kernel and a CUDA kernel. Callers pick with `fused`: True (kernel, error if not built), False
(reference), None = auto (kernel when built for the tensor's device).
"""

from .fft_loss import fft_loss, fft_loss_reference
from .gradient_penalty import gp_interpolate, gp_penalty  # gradient-penalty arithmetic
from .rrdb import rrdb_reference, rrdb_trunk  # fused RRDB (the function `rrdb` stays in gansr_ext.ops.rrdb)

__all__ = ["fft_loss", "fft_loss_reference", "gp_interpolate", "gp_penalty", "rrdb_reference", "rrdb_trunk"]
