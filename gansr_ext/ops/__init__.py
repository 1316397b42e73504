"""Fused ops (`torch.ops.gansr.*`) with their pure-PyTorch references next to them.

Every op has three implementations held equal by tests: the reference here (the spec), a C++ CPU
kernel and a CUDA kernel. Callers pick with `fused`: True (kernel, error if not built), False
(reference), None = auto (kernel when built for the tensor's device).

When `_C` is loaded, each op module registers its fake (meta) and autograd kernels at import.
Input checks are written once, in C++ (`check_*_inputs` next to each op's schema): the op is public
(`torch.ops.gansr.*`), so it must not trust its caller, and its kernels would read out of bounds on
a bad shape or dtype. They raise ValueError / TypeError (TORCH_CHECK_VALUE / _TYPE), as Python code
would. The wrappers check only the Python-level arguments the op never sees (mode, kind and
reduction names, p); the references are the spec's arithmetic, and the public losses
(`gansr_ext.losses`) validate their inputs on every path.
"""

from .fft_loss import fft_loss, fft_loss_reference
from .gradient_penalty import gp_interpolate, gp_penalty  # gradient-penalty arithmetic
from .rrdb import rrdb_reference, rrdb_trunk  # fused RRDB (the function `rrdb` stays in gansr_ext.ops.rrdb)

__all__ = ["fft_loss", "fft_loss_reference", "gp_interpolate", "gp_penalty", "rrdb_reference", "rrdb_trunk"]
