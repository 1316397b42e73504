"""Loads the compiled module `gansr_ext._C` with a clear error on a torch mismatch.

`_C` registers the `torch.ops.gansr.*` operators (CPU always, CUDA when compiled) and exposes
`build_info()` through pybind11. Loading a `_C` built against another torch can crash inside the
dynamic linker, so the torch version recorded at build time is checked *before* loading it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util

import torch

_C = None
_load_error: str | None = None


def _torch_base(version: str) -> str:
    return version.split("+")[0]


def _load():
    global _C, _load_error
    if _C is not None or _load_error is not None:
        return _C
    try:
        cfg = importlib.import_module("gansr_ext._build_config")
    except ImportError:
        _load_error = ("gansr_ext._C is not built (no gansr_ext/_build_config.py): install the package with "
                       "`pip install --no-build-isolation .` or run `make build`")
        return None
    if _torch_base(cfg.TORCH_VERSION) != _torch_base(torch.__version__):
        raise ImportError(
            f"gansr_ext._C was built against torch {cfg.TORCH_VERSION} but torch {torch.__version__} is "
            "installed; rebuild the extension (`pip install --no-build-isolation --force-reinstall .` or `make build`)"
        )
    if importlib.util.find_spec("gansr_ext._C") is None:
        _load_error = "gansr_ext._C shared library not found next to the package; rebuild with `make build`"
        return None
    _C = importlib.import_module("gansr_ext._C")
    return _C


def extension_available() -> bool:
    """True when the compiled ops (`torch.ops.gansr.*`) are loaded."""
    return _load() is not None


def ops_loaded() -> bool:
    """Whether `_C` is loaded, so `torch.ops.gansr.*` exist; never raises (a `_C` built against another
    torch counts as not loaded, and `require_extension` or `extension_available` say why). The op
    modules register their fake and autograd kernels at import when this is True."""
    try:
        return _load() is not None
    except ImportError:
        return False


@functools.cache
def cuda_kernels_available() -> bool:
    """True when `_C` holds CUDA kernels (compiled; says nothing about a GPU being present)."""
    return extension_available() and bool(_C.build_info()["cuda"])


def require_extension():
    if _load() is None:
        raise RuntimeError(_load_error)
    return _C


def build_info() -> dict:
    """Build facts of `_C`: version, torch it was built against, CUDA kernels compiled, CUDA version,
    arch list, cuFFT linked, CUTLASS kernels compiled. Raises RuntimeError when the extension is not built."""
    return dict(require_extension().build_info())
