"""The fused RRDB's CUTLASS convs checked on the CPU (no GPU needed).

csrc/rrdb/rrdb_cutlass_problem.h builds the CUTLASS problem of each fused conv (sizes, NHWC strides and
pointer offsets into the shared channel buffer, alpha / beta, LeakyReLU slope) from the argument block
the sliced algorithm passes; the GPU launcher (rrdb_cutlass.cu) and rrdb_cutlass_host_ref.cc share it.
The latter runs CUTLASS's host reference convolution and the kernel's own epilogue functor on that
problem; built here with g++ (cached), it replaces the emulated conv of `gansr::rrdb_sliced_fwd`, so
the whole RRDB forward the GPU path would compute is compared with the PyTorch reference in fp64.
Only the device kernel itself (tiles, iterators, can_implement) stays for the GPU check.
"""

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch
from test_rrdb import _run_ops, make_params

from gansr_ext._ext import require_extension
from gansr_ext.ops import rrdb as R

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "csrc" / "rrdb" / "rrdb_cutlass_host_ref.cc"
HEADERS = [REPO / "csrc" / "rrdb" / n for n in ("rrdb_cutlass_problem.h", "rrdb_args.h")]
# CUTLASS's numeric_conversion.h names device intrinsics in templates the host never instantiates
FLAGS = ["-std=c++17", "-O2", "-fPIC", "-shared", "-fpermissive", "-w"]


def _cuda_include() -> Path | None:
    """The CUDA toolkit's include folder (cuda_bf16.h, cccl/cuda/std for CUTLASS's host headers)."""
    nvcc = shutil.which("nvcc")
    if nvcc:
        dry = subprocess.run([nvcc, "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
                             capture_output=True, text=True)
        m = re.search(r'INCLUDES="-I([^"]+)"', dry.stdout + dry.stderr)
        if m and (Path(m.group(1)) / "cccl").is_dir():
            return Path(m.group(1)).resolve()
    home = os.environ.get("CUDA_HOME")
    return Path(home, "include") if home and Path(home, "include", "cccl").is_dir() else None


def _cutlass_source() -> Path | None:
    try:
        import cutlass_library
    except ImportError:
        return None
    return Path(cutlass_library.__file__).parent / "source"


@pytest.fixture(scope="module")
def host_ref():
    """ctypes handle of the host-reference library (built once per content hash)."""
    require_extension()
    cutlass, cuda = _cutlass_source(), _cuda_include()
    if cutlass is None or cuda is None:  # the extension's CUDA build needs both as well
        pytest.skip("needs the nvidia-cutlass headers and a CUDA toolkit's include folder (nvcc)")
    includes = [f"-I{p}" for p in (cutlass / "include", cutlass / "tools/util/include", cuda / "cccl", cuda,
                                   SOURCE.parent)]
    h = hashlib.sha256(" ".join(FLAGS + includes).encode())
    for f in [SOURCE, *HEADERS, cutlass / "include/cutlass/version.h"]:
        h.update(f.read_bytes())
    cache = Path(os.environ.get("GANSR_CUDASIM_CACHE", "/tmp/gansr_cudasim")) / "cutlass_host_ref"
    cache.mkdir(parents=True, exist_ok=True)
    lib = cache / f"rrdb_cutlass_host_ref_{h.hexdigest()[:16]}.so"
    if not lib.exists():
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            out = Path(tmp) / lib.name
            subprocess.run(["g++", *FLAGS, *includes, str(SOURCE), "-o", str(out)], check=True)
            out.replace(lib)  # atomic: concurrent sessions never load a half-written file
    dll = ctypes.CDLL(str(lib))
    dll.rrdb_cutlass_fprop_host.restype = ctypes.c_int
    dll.rrdb_cutlass_fprop_host.argtypes = [ctypes.c_int, ctypes.c_void_p]
    return dll


class Calls:
    """The host reference as the sliced algorithm's fused conv, counting what it computed / declined."""

    def __init__(self, dll):
        self.done = self.declined = 0

        @ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
        def conv(dtype, args):
            rc = dll.rrdb_cutlass_fprop_host(dtype, args)
            self.done += rc == 0
            self.declined += rc == 1
            return rc

        self._conv = conv  # keep the trampoline alive
        self.address = ctypes.cast(conv, ctypes.c_void_p).value

    def fwd(self, x, params):
        return torch.ops.gansr.rrdb_sliced_fwd(x, params, False, self.address)


def _case(nf, gc, shape, seed, dtype=torch.float64):
    torch.manual_seed(seed)
    n, h, w = shape
    params = [p.detach().to(dtype) for p in make_params(nf, gc, scale=0.1)]
    x = torch.randn(n, nf, h, w, dtype=torch.float64)
    g = torch.randn(n, nf, h, w, dtype=torch.float64)
    return x.to(dtype), params, g.to(dtype)


def test_host_library_sees_the_same_argument_block(host_ref):
    # ConvBiasActArgs: 4 pointers + 2 strides (8 B each), 5 ints, a double, with padding
    assert host_ref.rrdb_cutlass_args_size() == 8 * 6 + 4 * 5 + 4 + 8


@pytest.mark.parametrize("nf,gc,shape", [(16, 8, (2, 5, 6)), (64, 32, (1, 4, 3)), (8, 16, (2, 1, 7))])
def test_cutlass_fprop_problems_compute_the_reference_in_fp64(host_ref, nf, gc, shape):
    """Every conv 1..4 of the three dense blocks through CUTLASS's host reference on the problem the
    GPU launcher builds; the RRDB output, the saved buffers and the backward from them equal the
    PyTorch reference / CPU twin (same sums in another order: 1e-12)."""
    x, params, g = _case(nf, gc, shape, seed=31)
    calls = Calls(host_ref)
    R.cutlass_fallbacks(reset=True)
    got = _run_ops(calls.fwd, torch.ops.gansr.rrdb_sliced_bwd, x, params, g)
    assert (calls.done, calls.declined, R.cutlass_fallbacks()) == (12, 0, 0)
    twin = _run_ops(torch.ops.gansr.rrdb_fwd, torch.ops.gansr.rrdb_bwd, x, params, g)
    torch.testing.assert_close(got[0], R.rrdb_reference(x, params), atol=1e-12, rtol=1e-12)
    for i, (a, b) in enumerate(zip(got, twin)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12, msg=lambda m, i=i: f"output {i}: {m}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cutlass_fprop_in_the_gpu_instantiation_is_as_accurate_as_aten(host_ref, dtype):
    """The element types the GPU kernel is built for (bf16 / fp16 in, fp32 accumulate, the same
    LinearCombinationLeakyRelu<E, 8, float, float> epilogue): forward within the low-precision error
    of the ATen-emulated conv of the same glue."""
    x, params, _ = _case(32, 16, (2, 4, 5), seed=32)
    ref = [t.double() for t in torch.ops.gansr.rrdb_fwd(x, params)]
    x16, p16 = x.to(dtype), [p.to(dtype) for p in params]
    calls = Calls(host_ref)
    cutlass = calls.fwd(x16, p16)
    aten = torch.ops.gansr.rrdb_sliced_fwd(x16, p16, True)
    assert calls.done == 12
    for i, (c, a, r) in enumerate(zip(cutlass, aten, ref)):
        scale = r.abs().max()
        err_c, err_a = ((c.double() - r).abs().max() / scale).item(), ((a.double() - r).abs().max() / scale).item()
        assert err_c < 0.02 and err_c <= 1.5 * err_a + 2e-3, (i, err_c, err_a)


@pytest.mark.parametrize("nf,gc", [(12, 4), (16, 4), (20, 8)])
def test_declined_problems_fall_back_to_the_aten_conv_and_are_counted(host_ref, nf, gc):
    """Channel counts / offsets that are not multiples of 8: the launcher declines every conv (as it
    returns cudaErrorNotSupported on the GPU), each runs as ATen conv + epilogue, the counter says so."""
    x, params, g = _case(nf, gc, (2, 3, 4), seed=33)
    calls = Calls(host_ref)
    R.cutlass_fallbacks(reset=True)
    got = _run_ops(calls.fwd, torch.ops.gansr.rrdb_sliced_bwd, x, params, g)
    assert (calls.done, calls.declined, R.cutlass_fallbacks(reset=True), R.cutlass_fallbacks()) == (0, 12, 12, 0)
    twin = _run_ops(torch.ops.gansr.rrdb_fwd, torch.ops.gansr.rrdb_bwd, x, params, g)
    for a, b in zip(got, twin):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
