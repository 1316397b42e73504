"""gansr_ext: GAN-based 4x super-resolution (ESRGAN family) with fused C++/CUDA ops.

Submodules are imported lazily so that `import gansr_ext` stays cheap:
`gansr_ext.ops` (fused ops + their pure-PyTorch references), `models`, `losses`, `data`,
`metrics`, `train`, `infer`.
"""

__version__ = "0.1.0"

from ._ext import build_info, extension_available  # noqa: E402

__all__ = ["__version__", "build_info", "extension_available"]
