"""Build the project's .cu kernel files with g++ against cudasim and call their launchers via ctypes.

`build(op)` compiles `csrc/<op>/<...>_kernels.cu` of the source tree this file sits in (rewritten by
rewrite_launches.py), cudasim.cpp and bindings_<op>.cpp into one shared library, cached by a hash of
every input (so a session compiles each kernel file once, and an edited tree is rebuilt). `source=`
builds a modified copy of the .cu file instead (mutation tests). cuFFT, cuDNN and CUTLASS device code
cannot run here: the tests emulate cuFFT at the kernels' boundary with torch.fft.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CXX = os.environ.get("CXX", "g++")
FLAGS = ("-std=c++20", "-O1", "-fPIC", "-shared", "-Wall", "-Wno-unused-function", "-Wno-unused-variable")


@dataclass(frozen=True)
class Op:
    kernel_file: str  # relative to the repository
    bindings: str | None  # in this folder; None: the .cu file has its own extern "C" functions
    signatures: dict  # C function -> argument codes: P pointer, d double, q int64, i int


def _fft_signatures() -> dict:
    sig = {"fft_norms_chunks": "q"}
    for s in ("f32", "f64"):
        sig[f"fft_launch_norms_{s}"] = "PdqqqqiiPiPP"
        sig[f"fft_launch_grad_spectrum_{s}"] = "PdPPqqqqqiiiP"
    return sig


OPS = {
    "fft_loss": Op("csrc/fft_loss/fft_loss_kernels.cu", "bindings_fft_loss.cpp", _fft_signatures()),
    "gradient_penalty": Op("csrc/gradient_penalty/gradient_penalty_kernels.cu", "bindings_gradient_penalty.cpp",
                           {"gp_penalty_chunks": "q", "gp_launch_interpolate": "iPPPPqq",
                            "gp_launch_penalty_fwd": "iPqqidPiPP", "gp_launch_penalty_bwd": "iPPPPqqidP"}),
    "rrdb": Op("csrc/rrdb/rrdb_kernels.cu", "bindings_rrdb.cpp",
               {"rrdb_args_sizes": "P", "rrdb_launch_epilogue": "iP", "rrdb_launch_gather": "iP"}),
    "misuse": Op("tests/cuda_on_cpu/misuse.cu", None, {"misuse_shuffles": "P", "misuse_run": "iP"}),
}
_CTYPES = {"P": ctypes.c_void_p, "d": ctypes.c_double, "q": ctypes.c_int64, "i": ctypes.c_int}
_SHIM = ("cudasim.h", "cudasim.cpp", "cuda_runtime.h", "cuda_fp16.h", "cuda_bf16.h", "rewrite_launches.py")


class KernelError(RuntimeError):
    """A launch failed: cudasim's message (misuse, bad configuration) or the launcher's error code."""


def _cache_dir() -> Path:
    d = Path(os.environ.get("GANSR_CUDASIM_CACHE") or Path(tempfile.gettempdir()) / "gansr_cudasim")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _digest(files, *extra: str) -> str:
    h = hashlib.sha256(" ".join((CXX, *FLAGS, *extra)).encode())
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def _run_compiler(cmd: list[str], what: Path) -> None:
    done = subprocess.run([CXX, *FLAGS, f"-I{HERE}", *cmd], capture_output=True, text=True)
    if done.returncode != 0:
        raise KernelError(f"compiling {what} failed:\n{done.stderr[-4000:]}")


def _runtime_object() -> Path:
    """cudasim.cpp, compiled once per version (its standard headers make it the slowest part)."""
    obj = _cache_dir() / f"cudasim-{_digest([HERE / 'cudasim.h', HERE / 'cudasim.cpp'])}.o"
    if not obj.exists():
        with tempfile.TemporaryDirectory(dir=obj.parent) as tmp:
            out = Path(tmp) / obj.name
            _run_compiler(["-c", str(HERE / "cudasim.cpp"), "-o", str(out)], HERE / "cudasim.cpp")
            os.replace(out, obj)  # atomic: a concurrent session sees the whole file or none
    return obj


def _compile(op: Op, source: Path) -> Path:
    """One shared library: the rewritten .cu file and its bindings in one unit, linked with cudasim.o."""
    kernel_dir = (REPO / op.kernel_file).parent
    # the .cu file's own folder and csrc/ (device_utils.cuh, kernel_defs.h) hold the headers it includes
    bindings = [HERE / op.bindings] if op.bindings else []
    headers = [h for d in (kernel_dir, REPO / "csrc") for pattern in ("*.h", "*.cuh") for h in sorted(d.glob(pattern))]
    inputs = [source, *bindings, *(HERE / f for f in _SHIM), *headers]
    lib = _cache_dir() / f"{source.stem}-{_digest(inputs)}.so"
    if lib.exists():
        return lib
    runtime = _runtime_object()
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        rewritten = Path(tmp) / (source.name + ".cpp")
        # messages name the file relative to the repository (a copy outside it: by its name), so that a
        # library cached by content never names a path of an earlier session
        name = source.relative_to(REPO) if source.is_relative_to(REPO) else source.name
        subprocess.run([sys.executable, str(HERE / "rewrite_launches.py"), str(source), str(rewritten), str(name)],
                       check=True)
        unit = Path(tmp) / "unit.cpp"
        unit.write_text("".join(f'#include "{f}"\n' for f in [rewritten, *bindings]))
        out = Path(tmp) / lib.name
        _run_compiler([f"-I{kernel_dir}", f"-I{REPO / 'csrc'}", str(unit), str(runtime), "-o", str(out), "-lpthread"],
                      source)
        os.replace(out, lib)
    return lib


class Kernels:
    """One compiled kernel file: `run(name, *args)` calls a launcher and raises KernelError on failure."""

    def __init__(self, op: Op, source: Path, path: Path):
        self.source, self.path = source, path
        self._lib = ctypes.CDLL(str(path))
        self._lib.cudasim_error.restype = ctypes.c_char_p
        self._lib.cudasim_cap_grid_x.argtypes = [ctypes.c_char_p, ctypes.c_uint]
        for name, codes in op.signatures.items():
            fn = getattr(self._lib, name)
            fn.argtypes = [_CTYPES[c] for c in codes]
            fn.restype = ctypes.c_int

    def configure(self, reverse: bool = False, threads: bool = False, grid_x_caps: dict | None = None) -> None:
        """Schedule (ascending or descending block/thread order; fibers or OS threads) and grid caps:
        {kernel name: most blocks along x}, only for grid-stride kernels, to take their clamped-grid
        path at small sizes."""
        self._lib.cudasim_configure(int(threads), int(reverse))
        for kernel, cap in (grid_x_caps or {}).items():
            self._lib.cudasim_cap_grid_x(kernel.encode(), cap)

    def stats(self) -> tuple[int, int, int]:
        """(launches, blocks, CUDA threads) run by this library so far."""
        out = (ctypes.c_int64 * 3)()
        self._lib.cudasim_stats(out)
        return tuple(out)

    def value(self, name: str, *args) -> int:
        """A plain (non-launching) C function's result, e.g. the chunk count of a reduction."""
        return getattr(self._lib, name)(*args)

    def run(self, name: str, *args) -> None:
        converted = [a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args]
        rc = getattr(self._lib, name)(*converted)
        message = self._lib.cudasim_error().decode()
        self._lib.cudasim_clear_error()
        if message or rc != 0:
            raise KernelError(f"{name}: {message or f'cudaError {rc}'}")


def build(op_name: str, source: Path | None = None) -> Kernels:
    op = OPS[op_name]
    source = source or REPO / op.kernel_file
    return Kernels(op, source, _compile(op, source))


def build_all(names=tuple(OPS)) -> dict[str, Kernels]:
    """Every op's library, compiled in parallel."""
    _runtime_object()
    with ThreadPoolExecutor(max_workers=max(1, min(len(names), os.cpu_count() or 1))) as pool:
        paths = dict(zip(names, pool.map(lambda n: _compile(OPS[n], REPO / OPS[n].kernel_file), names)))
    return {n: Kernels(OPS[n], REPO / OPS[n].kernel_file, p) for n, p in paths.items()}


# ---- buffers with NaN guard bands: out-of-bounds writes and unwritten outputs show up ------------------

GUARD = 64


class Buffer:
    """A tensor inside a NaN-filled allocation with GUARD elements either side. `t` is the tensor
    (the given values, or NaN: an output the kernel must write in full); `guards_intact()` tells
    whether the kernel wrote outside it."""

    def __init__(self, values: torch.Tensor | None = None, shape=None, dtype=None):
        shape = tuple(values.shape) if values is not None else tuple(shape)
        dtype = values.dtype if values is not None else dtype
        n = 1
        for s in shape:
            n *= s
        self._all = torch.full((GUARD + n + GUARD,), float("nan"), dtype=dtype)
        self.t = self._all[GUARD:GUARD + n].view(shape)
        if values is not None:
            self.t.copy_(values)

    def guards_intact(self) -> bool:
        return bool(self._all[:GUARD].isnan().all() and self._all[-GUARD:].isnan().all())
