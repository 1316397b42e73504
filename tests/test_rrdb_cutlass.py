"""The fused RRDB's CUTLASS convs checked on the CPU (no GPU needed).

csrc/rrdb/rrdb_cutlass_problem.h builds the CUTLASS problem of each fused conv (sizes, NHWC strides and
pointer offsets into the shared channel buffer, alpha / beta, LeakyReLU slope) from the argument block
the sliced algorithm passes; the GPU launcher (rrdb_cutlass.cu) and rrdb_cutlass_host_ref.cc share it.
The latter runs CUTLASS's host reference convolution and the kernel's own epilogue functor on that
problem; built here with g++ (cached), it is the fused conv of the test op `gansr_testing::rrdb_fwd_host_conv`, so
the whole RRDB forward the GPU path would compute is compared with the PyTorch reference in fp64.
The dgrad (beta = 1: accumulating into the strided gradient prefix) and wgrad (reading the strided
activation prefix) problems are checked the same way, on views of shared buffers, and chained through a
dense block's backward as the accumulating algorithm would run them.
Only the device kernels themselves (tiles, iterators, can_implement) stay for the GPU check.
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
HEADERS = [REPO / "csrc" / n for n in ("rrdb/rrdb_cutlass_problem.h", "rrdb/rrdb_args.h", "kernel_defs.h")]
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


def build_host_ref(sources: dict | None = None) -> ctypes.CDLL:
    """ctypes handle of the host-reference library, built once per content hash. `sources`: file name
    -> text replacing that file of csrc/rrdb (mutation tests)."""
    cutlass, cuda = _cutlass_source(), _cuda_include()
    if cutlass is None or cuda is None:  # the extension's CUDA build needs both as well
        pytest.skip("needs the nvidia-cutlass headers and a CUDA toolkit's include folder (nvcc)")
    texts = {f.name: f.read_text() for f in [SOURCE, *HEADERS]} | (sources or {})
    includes = [f"-I{p}" for p in (cutlass / "include", cutlass / "tools/util/include", cuda / "cccl", cuda)]
    h = hashlib.sha256(" ".join(FLAGS + includes).encode())
    for name, text in sorted(texts.items()):
        h.update(name.encode() + text.encode())
    h.update((cutlass / "include/cutlass/version.h").read_bytes())
    cache = Path(os.environ.get("GANSR_CUDASIM_CACHE", "/tmp/gansr_cudasim")) / "cutlass_host_ref"
    cache.mkdir(parents=True, exist_ok=True)
    lib = cache / f"rrdb_cutlass_host_ref_{h.hexdigest()[:16]}.so"
    if not lib.exists():
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            # laid out as in csrc/ (rrdb_args.h includes "../kernel_defs.h")
            where = {f.name: Path(tmp, f.relative_to(REPO / "csrc")) for f in [SOURCE, *HEADERS]}
            for name, text in texts.items():
                where[name].parent.mkdir(exist_ok=True)
                where[name].write_text(text)
            out = Path(tmp) / lib.name
            subprocess.run(["g++", *FLAGS, *includes, str(where[SOURCE.name]), "-o", str(out)],
                           check=True)
            out.replace(lib)  # atomic: concurrent sessions never load a half-written file
    dll = ctypes.CDLL(str(lib))
    for f in ("fprop", "dgrad", "wgrad", "residual"):
        getattr(dll, f"rrdb_cutlass_{f}_host").restype = ctypes.c_int
        getattr(dll, f"rrdb_cutlass_{f}_host").argtypes = [ctypes.c_int, ctypes.c_void_p]
    dll.rrdb_cutlass_wgrad_split_host.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    dll.rrdb_cutlass_wgrad_split.argtypes = [ctypes.c_void_p, ctypes.c_int]
    dll.rrdb_cutlass_wgrad_workspace.argtypes = [ctypes.c_void_p, ctypes.c_int]
    dll.rrdb_cutlass_wgrad_workspace.restype = ctypes.c_int64
    return dll


@pytest.fixture(scope="module")
def host_ref():
    require_extension()
    return build_host_ref()


class Calls:
    """The host reference as the sliced algorithm's fused convs (fprop, dgrad, wgrad), counting what
    each computed / declined: done["fprop"], declined["dgrad"], ..."""

    def __init__(self, dll):
        self.done = dict.fromkeys(("fprop", "residual", "dgrad", "wgrad"), 0)
        self.declined = dict(self.done)
        self._keep, self.address = [], {}
        for kind in self.done:
            entry = getattr(dll, f"rrdb_cutlass_{kind}_host")

            @ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
            def conv(dtype, args, kind=kind, entry=entry):
                rc = entry(dtype, args)
                self.done[kind] += rc == 0
                self.declined[kind] += rc == 1
                return rc

            self._keep.append(conv)  # keep the trampolines alive
            self.address[kind] = ctypes.cast(conv, ctypes.c_void_p).value

    def fwd(self, x, params):
        return torch.ops.gansr_testing.rrdb_fwd_host_conv(x, params, self.address["fprop"], self.address["residual"])

    def bwd(self, *args, **kwargs):
        return torch.ops.gansr_testing.rrdb_bwd_host_conv(*args, self.address["dgrad"], self.address["wgrad"],
                                                          **kwargs)


def _case(nf, gc, shape, seed, dtype=torch.float64):
    torch.manual_seed(seed)
    n, h, w = shape
    params = [p.detach().to(dtype) for p in make_params(nf, gc, scale=0.1)]
    x = torch.randn(n, nf, h, w, dtype=torch.float64)
    g = torch.randn(n, nf, h, w, dtype=torch.float64)
    return x.to(dtype), params, g.to(dtype)


class DgradArgs(ctypes.Structure):  # rrdb_args.h ConvDgradArgs
    _fields_ = [("dy", ctypes.c_void_p), ("dy_stride", ctypes.c_int64), ("w", ctypes.c_void_p),
                ("dx", ctypes.c_void_p), ("dx_stride", ctypes.c_int64), ("N", ctypes.c_int), ("H", ctypes.c_int),
                ("W", ctypes.c_int), ("cin", ctypes.c_int), ("cout", ctypes.c_int), ("beta", ctypes.c_double)]


class WgradArgs(ctypes.Structure):  # rrdb_args.h ConvWgradArgs
    _fields_ = [("dy", ctypes.c_void_p), ("dy_stride", ctypes.c_int64), ("x", ctypes.c_void_p),
                ("x_stride", ctypes.c_int64), ("dw", ctypes.c_void_p), ("N", ctypes.c_int), ("H", ctypes.c_int),
                ("W", ctypes.c_int), ("cin", ctypes.c_int), ("cout", ctypes.c_int), ("dw_fp32", ctypes.c_bool),
                ("workspace", ctypes.c_void_p), ("workspace_bytes", ctypes.c_size_t)]


_DTYPE_CODE = {torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}  # gansr::DType (csrc/kernel_defs.h)


def test_host_library_sees_the_same_argument_blocks(host_ref):
    # ConvBiasActArgs: 4 pointers + 2 strides (8 B each), 5 ints, a double, with padding
    assert host_ref.rrdb_cutlass_args_size(0) == 8 * 6 + 4 * 5 + 4 + 8
    assert host_ref.rrdb_cutlass_args_size(1) == ctypes.sizeof(DgradArgs)
    assert host_ref.rrdb_cutlass_args_size(2) == ctypes.sizeof(WgradArgs)


def _prefix(buf, c0=0):
    """address of channel c0 of a channels_last (N, C, H, W) tensor, and its pixel stride"""
    assert buf.is_contiguous(memory_format=torch.channels_last)
    return buf.data_ptr() + c0 * buf.element_size(), buf.size(1)


def dgrad(dll, dy, w, grad_buf, beta):
    """grad_buf[:, :cin] = beta grad_buf[:, :cin] + conv dgrad(dy, w), through the CUTLASS problem"""
    cout, cin = w.shape[:2]
    n, _, h, wd = dy.shape
    dy_p, dy_s = _prefix(dy)
    dx_p, dx_s = _prefix(grad_buf)
    args = DgradArgs(dy_p, dy_s, _prefix(w)[0], dx_p, dx_s, n, h, wd, cin, cout, beta)
    return dll.rrdb_cutlass_dgrad_host(_DTYPE_CODE[dy.dtype], ctypes.byref(args))


def wgrad(dll, dy, buf, cin):
    """the KRSC (channels_last) weight gradient of a conv that read buf[:, :cin] and got dy"""
    n, cout, h, wd = dy.shape
    dw = torch.full((cout, cin, 3, 3), float("nan"), dtype=dy.dtype).contiguous(memory_format=torch.channels_last)
    dy_p, dy_s = _prefix(dy)
    x_p, x_s = _prefix(buf)
    rc = dll.rrdb_cutlass_wgrad_host(_DTYPE_CODE[dy.dtype], ctypes.byref(WgradArgs(dy_p, dy_s, x_p, x_s, dw.data_ptr(),
                                                                                   n, h, wd, cin, cout)))
    return rc, dw


def _cl(t):
    return t.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_cutlass_dgrad_accumulates_into_the_strided_gradient_prefix(host_ref, beta):
    torch.manual_seed(34)
    n, ct, cin, cout, h, w = 2, 48, 32, 16, 5, 6
    grad_buf = _cl(torch.randn(n, ct, h, w, dtype=torch.float64))
    before = grad_buf.clone()
    dy = _cl(torch.randn(n, cout, h, w, dtype=torch.float64))
    wt = _cl(torch.randn(cout, cin, 3, 3, dtype=torch.float64))
    assert dgrad(host_ref, dy, wt, grad_buf, beta) == 0
    expected = beta * before[:, :cin] + torch.nn.grad.conv2d_input((n, cin, h, w), wt, dy, padding=1)
    torch.testing.assert_close(grad_buf[:, :cin], expected, atol=1e-12, rtol=1e-12)
    assert torch.equal(grad_buf[:, cin:], before[:, cin:])  # the rest of the buffer untouched


def test_cutlass_wgrad_reads_the_strided_activation_prefix(host_ref):
    torch.manual_seed(35)
    n, ct, cin, cout, h, w = 2, 48, 40, 16, 5, 6
    buf = _cl(torch.randn(n, ct, h, w, dtype=torch.float64))
    dy = _cl(torch.randn(n, cout, h, w, dtype=torch.float64))
    rc, dw = wgrad(host_ref, dy, buf, cin)
    assert rc == 0
    expected = torch.nn.grad.conv2d_weight(buf[:, :cin], (cout, cin, 3, 3), dy, padding=1)
    torch.testing.assert_close(dw, expected, atol=1e-12, rtol=1e-12)


def test_cutlass_backward_problems_decline_unaligned_channels(host_ref):
    buf = _cl(torch.randn(1, 20, 3, 4, dtype=torch.float64))
    dy = _cl(torch.randn(1, 4, 3, 4, dtype=torch.float64))
    assert dgrad(host_ref, dy, _cl(torch.randn(4, 16, 3, 3, dtype=torch.float64)), buf, 1.0) == 1
    assert wgrad(host_ref, dy, buf, 16)[0] == 1


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_dense_block_backward_by_accumulating_dgrad_and_strided_wgrad(host_ref, dtype):
    """One dense block's backward as the CUTLASS backend would run it: one gradient buffer G like
    the activation buffer; conv5's dgrad, then for k = 4..1 the slice k of G (complete once convs
    k+1..5 have added to it) masked by lrelu' is conv_k's output gradient; its dgrad adds into G's
    prefix (beta 1), its wgrad reads the activation prefix. G's first nf channels + the residual
    gradient must equal autograd's input gradient, and every weight gradient autograd's."""
    torch.manual_seed(36)
    nf, gc, n, h, w = 16, 8, 2, 4, 5
    params = [p.detach() for p in make_params(nf, gc, scale=0.1)][:10]
    x = torch.randn(n, nf, h, w, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(n, nf, h, w, dtype=torch.float64)
    ps = [p.clone().requires_grad_() for p in params]
    y = R.dense_block_reference(x, ps)
    ref = torch.autograd.grad(y, [x, *ps[0::2]], gy)
    # the forward buffer as the op keeps it: x, then x_1..x_4
    acts = [x.detach()]
    for k in range(4):
        acts.append(torch.nn.functional.leaky_relu(
            torch.nn.functional.conv2d(torch.cat(acts, 1), params[2 * k], params[2 * k + 1], padding=1), 0.2))
    buf = _cl(torch.cat(acts, 1)).to(dtype)
    ws = [_cl(p).to(dtype) for p in params[0::2]]
    G = _cl(torch.full_like(buf, float("nan")))
    gk = _cl(0.2 * gy).to(dtype)  # conv5's output gradient
    dws = [None] * 5
    for k in range(5, 0, -1):
        cin = nf + (k - 1) * gc
        if k < 5:
            act = buf[:, cin:cin + gc]
            gk = _cl(torch.where(act > 0, G[:, cin:cin + gc], 0.2 * G[:, cin:cin + gc]))
        assert dgrad(host_ref, gk, ws[k - 1], G, 0.0 if k == 5 else 1.0) == 0  # conv5 covers all it reads
        rc, dws[k - 1] = wgrad(host_ref, gk, buf, cin)
        assert rc == 0
    grad_x = G[:, :nf].double() + gy
    tol = dict(atol=1e-12, rtol=1e-12) if dtype == torch.float64 else dict(atol=0.05, rtol=0.05)
    torch.testing.assert_close(grad_x, ref[0], **tol)
    for k, (a, b) in enumerate(zip(dws, ref[1:]), 1):
        torch.testing.assert_close(a.double(), b, **tol, msg=lambda m, k=k: f"conv{k} weight grad: {m}")


@pytest.mark.parametrize("nf,gc,shape", [(16, 8, (2, 5, 6)), (64, 32, (1, 4, 3)), (8, 16, (2, 1, 7))])
def test_cutlass_fprop_problems_compute_the_reference_in_fp64(host_ref, nf, gc, shape):
    """Every conv 1..4 of the three dense blocks, and each block's conv5 + its residual, through
    CUTLASS's host reference on the problems the GPU launchers build; the RRDB output, the saved buffers and the backward from them equal the
    PyTorch reference / CPU twin (same sums in another order: 1e-12)."""
    x, params, g = _case(nf, gc, shape, seed=31)
    calls = Calls(host_ref)
    R.cutlass_fallbacks(reset=True)
    got = _run_ops(calls.fwd, torch.ops.gansr.rrdb_bwd, x, params, g)
    assert (calls.done["fprop"], calls.declined["fprop"], R.cutlass_fallbacks()) == (12, 0, 0)
    assert (calls.done["residual"], calls.declined["residual"]) == (3, 0)
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
    aten = torch.ops.gansr.rrdb_fwd(x16, p16, True)
    assert calls.done["fprop"] == 12 and calls.done["residual"] == 3
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
    got = _run_ops(calls.fwd, torch.ops.gansr.rrdb_bwd, x, params, g)
    # conv5 + residual reads nf + 4 gc and writes nf channels: declined exactly when nf is
    residual_declined = 3 if nf % 8 else 0  # not a multiple of 8 (nf = 16, gc = 4: Ct = 32, computed)
    assert (calls.done["fprop"], calls.declined["fprop"], calls.declined["residual"], calls.done["residual"],
            R.cutlass_fallbacks(reset=True), R.cutlass_fallbacks()) == \
        (0, 12, residual_declined, 3 - residual_declined, 12 + residual_declined, 0)
    twin = _run_ops(torch.ops.gansr.rrdb_fwd, torch.ops.gansr.rrdb_bwd, x, params, g)
    for a, b in zip(got, twin):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("nf,gc,shape", [(16, 8, (2, 5, 6)), (64, 32, (1, 4, 3))])
def test_cutlass_backward_through_the_sliced_algorithm_in_fp64(host_ref, nf, gc, shape):
    """The whole RRDB backward with every conv's dgrad (accumulating into the block's gradient buffer)
    and wgrad (reading the activation prefix) through CUTLASS's host reference on the problems the GPU
    launchers build: equal to the CPU twin (1e-12), nothing declined."""
    x, params, g = _case(nf, gc, shape, seed=37)
    calls = Calls(host_ref)
    R.cutlass_fallbacks(reset=True)
    got = _run_ops(calls.fwd, calls.bwd, x, params, g)
    assert calls.done == {"fprop": 12, "residual": 3, "dgrad": 15, "wgrad": 15} and R.cutlass_fallbacks() == 0
    twin = _run_ops(torch.ops.gansr.rrdb_fwd, torch.ops.gansr.rrdb_bwd, x, params, g)
    for i, (a, b) in enumerate(zip(got, twin)):
        assert a.stride() == b.stride(), i
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12, msg=lambda m, i=i: f"output {i}: {m}")


def test_cutlass_backward_declined_convs_fall_back_and_are_counted(host_ref):
    x, params, g = _case(12, 4, (2, 3, 4), seed=38)
    calls = Calls(host_ref)
    R.cutlass_fallbacks(reset=True)
    got = _run_ops(calls.fwd, calls.bwd, x, params, g)
    assert calls.declined == {"fprop": 12, "residual": 3, "dgrad": 15, "wgrad": 15} and R.cutlass_fallbacks() == 45
    twin = _run_ops(torch.ops.gansr.rrdb_fwd, torch.ops.gansr.rrdb_bwd, x, params, g)
    for a, b in zip(got, twin):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_cutlass_backward_in_the_gpu_instantiation_is_as_accurate_as_aten(host_ref):
    x, params, g = _case(32, 16, (2, 4, 5), seed=39)
    ref = _run_ops(torch.ops.gansr.rrdb_fwd, torch.ops.gansr.rrdb_bwd, x, params, g)
    low = [x.bfloat16(), [p.bfloat16() for p in params], g.bfloat16()]
    calls = Calls(host_ref)
    cutlass = _run_ops(calls.fwd, calls.bwd, *low)
    aten = _run_ops(torch.ops.gansr.rrdb_fwd, torch.ops.gansr.rrdb_bwd, *low)
    assert calls.done == {"fprop": 12, "residual": 3, "dgrad": 15, "wgrad": 15}
    rel = lambda a, r: ((a.double() - r).abs().max() / r.abs().max()).item()  # noqa: E731
    err_c = [rel(a, r) for a, r in zip(cutlass, ref)]
    err_a = [rel(a, r) for a, r in zip(aten, ref)]
    # weight gradients of this small image are cancellation-heavy: compare the error class on average
    assert sum(err_c) / len(err_c) <= 1.5 * sum(err_a) / len(err_a) + 0.02, (err_c, err_a)


# wrong arguments the checks above must catch, in the header the GPU launchers use
MUTATIONS = {
    "dgrad overwrites instead of accumulating": ("dx, dx, 1.0, a.beta, 1.0", "dx, dx, 1.0, 0.0, 1.0"),
    "fprop prefix read with its own channel count as pixel stride": (
        "ConvBiasActArgs& a) {\n  const auto size = conv3x3_size(a.N, a.H, a.W, a.cin, a.cout);\n"
        "  return {size,\n          ref<E>(a.x, nhwc_strided(a.x_stride, a.W, a.H)),",
        "ConvBiasActArgs& a) {\n  const auto size = conv3x3_size(a.N, a.H, a.W, a.cin, a.cout);\n"
        "  return {size,\n          ref<E>(a.x, nhwc_strided(a.cin, a.W, a.H)),"),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_injected_argument_bug_is_caught(mutation):
    require_extension()
    old, new = MUTATIONS[mutation]
    header = HEADERS[0].read_text()
    assert header.count(old) == 1, old
    dll = build_host_ref({HEADERS[0].name: header.replace(old, new)})
    x, params, g = _case(16, 8, (2, 3, 4), seed=40)
    calls = Calls(dll)
    got = _run_ops(calls.fwd, calls.bwd, x, params, g)
    twin = _run_ops(torch.ops.gansr.rrdb_fwd, torch.ops.gansr.rrdb_bwd, x, params, g)
    assert not all(torch.allclose(a, b, atol=1e-6, rtol=1e-6) for a, b in zip(got, twin))


class ResidualArgs(ctypes.Structure):  # rrdb_args.h ConvBiasResidualArgs
    _fields_ = [("x", ctypes.c_void_p), ("x_stride", ctypes.c_int64), ("w", ctypes.c_void_p),
                ("bias", ctypes.c_void_p), ("r1", ctypes.c_void_p), ("r1_stride", ctypes.c_int64),
                ("s1", ctypes.c_double), ("r2", ctypes.c_void_p), ("r2_stride", ctypes.c_int64),
                ("s2", ctypes.c_double), ("out", ctypes.c_void_p), ("out_stride", ctypes.c_int64),
                ("N", ctypes.c_int), ("H", ctypes.c_int), ("W", ctypes.c_int), ("cin", ctypes.c_int),
                ("cout", ctypes.c_int)]


def test_host_library_sees_the_new_argument_blocks(host_ref):
    assert host_ref.rrdb_cutlass_args_size(3) == ctypes.sizeof(ResidualArgs)
    # ConvWgradArgs: the five pointers / strides, five ints, the fp32 flag, workspace pointer + size
    assert host_ref.rrdb_cutlass_args_size(2) == ctypes.sizeof(WgradArgs) == 8 * 5 + 4 * 5 + 4 + 8 + 8


def residual_conv(dll, buf, cin, w, bias, nf, out, out_c0=0, r1_c0=0, s1=0.2, r2=None, s2=0.2):
    """out[:, out_c0:out_c0 + nf] = buf[:, r1_c0:r1_c0 + nf] + s1 (conv(buf[:, :cin], w) + bias) (+ r2's
    second residual) through the CUTLASS residual problem (conv5 of a dense block)"""
    n, _, h, wd = buf.shape
    x_p, x_s = _prefix(buf)
    r1_p, r1_s = _prefix(buf, r1_c0)
    o_p, o_s = _prefix(out, out_c0)
    r2_p, r2_s = _prefix(r2) if r2 is not None else (None, 0)
    args = ResidualArgs(x_p, x_s, _prefix(w)[0], bias.data_ptr(), r1_p, r1_s, s1, r2_p, r2_s, s2, o_p, o_s,
                        n, h, wd, cin, nf)
    return dll.rrdb_cutlass_residual_host(_DTYPE_CODE[buf.dtype], ctypes.byref(args))


def _residual_case(nf, gc, n, h, w, dtype, extra=8, out_width=None, seed=41):
    """the block's buffer (x + 4 slices + `extra` channels after), conv5's weight and bias, the next
    block's buffer (NaN: what is not written must stay NaN)"""
    torch.manual_seed(seed)
    cin = nf + 4 * gc
    buf = _cl(torch.randn(n, cin + extra, h, w, dtype=torch.float64)).to(dtype)
    wt = _cl(0.1 * torch.randn(nf, cin, 3, 3, dtype=torch.float64)).to(dtype)
    bias = torch.randn(nf, dtype=torch.float64).to(dtype)
    out = _cl(torch.full((n, out_width or cin + extra, h, w), float("nan"), dtype=dtype))
    return cin, buf, wt, bias, out


def _residual_expected(buf, cin, wt, bias, nf, r1_c0=0):
    b, w = buf.double(), wt.double()
    return b[:, r1_c0:r1_c0 + nf] + 0.2 * torch.nn.functional.conv2d(b[:, :cin], w, bias.double(), padding=1)


@pytest.mark.parametrize("nf,gc,out_c0", [(16, 8, 0), (16, 8, 8), (64, 32, 0)])
def test_cutlass_residual_conv_writes_the_next_block_prefix_in_fp64(host_ref, nf, gc, out_c0):
    """conv5 + bias + the dense block's residual (r1 = the block input, channels [0, nf) of the buffer
    conv5 reads, 0.2) from strided slices of wider buffers into a slice of the next block's buffer:
    the PyTorch computation in fp64 (1e-12), every other channel of the output buffer untouched"""
    cin, buf, wt, bias, out = _residual_case(nf, gc, 2, 5, 6, torch.float64)
    before = buf.clone()
    assert residual_conv(host_ref, buf, cin, wt, bias, nf, out, out_c0) == 0
    expected = _residual_expected(buf, cin, wt, bias, nf)
    torch.testing.assert_close(out[:, out_c0:out_c0 + nf], expected, atol=1e-12, rtol=1e-12)
    rest = torch.cat([out[:, :out_c0], out[:, out_c0 + nf:]], 1)
    assert rest.isnan().all() and torch.equal(buf, before)


def test_cutlass_residual_conv_reads_the_residual_at_its_own_offset(host_ref):
    # r1 at channel 8 of the buffer (not the prefix): the C operand's pointer offset is honoured
    cin, buf, wt, bias, out = _residual_case(16, 8, 1, 4, 3, torch.float64, seed=42)
    assert residual_conv(host_ref, buf, cin, wt, bias, 16, out, r1_c0=8) == 0
    torch.testing.assert_close(out[:, :16], _residual_expected(buf, cin, wt, bias, 16, r1_c0=8),
                               atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cutlass_residual_conv_in_the_gpu_instantiation(host_ref, dtype):
    """bf16 / fp16 operands, fp32 accumulate and epilogue (ResidualEpilogue<E, float>): within the
    output type's rounding of the fp64 value (plus fp32 sums' error)"""
    cin, buf, wt, bias, out = _residual_case(32, 16, 2, 4, 5, dtype, seed=43)
    assert residual_conv(host_ref, buf, cin, wt, bias, 32, out) == 0
    expected = _residual_expected(buf, cin, wt, bias, 32)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(out[:, :32].double(), expected, atol=eps, rtol=eps)


def test_cutlass_residual_conv_declines_what_it_cannot_compute(host_ref):
    """the RRDB's second residual (r2: the conv kernel's epilogue has one source tensor), a scale other
    than the compiled 0.2, unaligned channel counts or offsets: declined (1), nothing written"""
    cin, buf, wt, bias, out = _residual_case(16, 8, 1, 3, 4, torch.float64, seed=44)
    r2 = _cl(torch.randn(1, 16, 3, 4, dtype=torch.float64))
    assert residual_conv(host_ref, buf, cin, wt, bias, 16, out, r2=r2) == 1
    assert residual_conv(host_ref, buf, cin, wt, bias, 16, out, s1=0.25) == 1
    assert residual_conv(host_ref, buf, cin, wt, bias, 16, out, out_c0=4) == 1
    assert residual_conv(host_ref, buf, cin, wt, bias, 16, out, r1_c0=4) == 1
    cin, buf, wt, bias, out = _residual_case(12, 4, 1, 3, 4, torch.float64, seed=45)
    assert residual_conv(host_ref, buf, cin, wt, bias, 12, out) == 1
    assert out.isnan().all()


def _wgrad_args(dy, buf, cin, dw, dw_fp32=True):
    n, cout, h, wd = dy.shape
    dy_p, dy_s = _prefix(dy)
    x_p, x_s = _prefix(buf)
    return WgradArgs(dy_p, dy_s, x_p, x_s, dw.data_ptr(), n, h, wd, cin, cout, dw_fp32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cutlass_wgrad_writes_the_fp32_gradient(host_ref, dtype):
    """dw_fp32: 16-bit operands, fp32 accumulation written as fp32 (no rounding to the operands' type):
    the fp64 gradient of the same (rounded) operands within fp32 sums' error, far closer than the
    16-bit output path"""
    torch.manual_seed(46)
    n, ct, cin, cout, h, w = 2, 48, 40, 16, 5, 6
    buf = _cl(torch.randn(n, ct, h, w, dtype=torch.float64)).to(dtype)
    dy = _cl(torch.randn(n, cout, h, w, dtype=torch.float64)).to(dtype)
    dw = _cl(torch.full((cout, cin, 3, 3), float("nan"), dtype=torch.float32))
    assert host_ref.rrdb_cutlass_wgrad_host(_DTYPE_CODE[dtype], ctypes.byref(_wgrad_args(dy, buf, cin, dw))) == 0
    expected = torch.nn.grad.conv2d_weight(buf[:, :cin].double(), (cout, cin, 3, 3), dy.double(), padding=1)
    torch.testing.assert_close(dw.double(), expected, atol=1e-5, rtol=1e-5)
    rc, dw16 = wgrad(host_ref, dy, buf, cin)
    assert rc == 0
    assert (dw.double() - expected).abs().max() * 100 < (dw16.double() - expected).abs().max()


@pytest.mark.parametrize("split_k", [1, 2, 7, 64])
def test_cutlass_wgrad_serial_split_k_adds_the_slices_in_order(host_ref, split_k):
    """The fp32 wgrad as the serial split-K kernel runs it (slice s's partial sum over its pixel range,
    its epilogue after set_k_partition(s, slices) adding D from slice s - 1; slice 0 never reads the
    NaN-filled output): the unsplit gradient (fp64 operands; each slice's sum rounded to the fp32
    output: split_k fp32 roundings of the largest value), also with more slices than the 60 pixels
    hold (empty slices)"""
    torch.manual_seed(47)
    n, ct, cin, cout, h, w = 2, 48, 40, 16, 5, 6
    buf = _cl(torch.randn(n, ct, h, w, dtype=torch.float64))
    dy = _cl(torch.randn(n, cout, h, w, dtype=torch.float64))
    dw = _cl(torch.full((cout, cin, 3, 3), float("nan"), dtype=torch.float32))
    assert host_ref.rrdb_cutlass_wgrad_split_host(1, ctypes.byref(_wgrad_args(dy, buf, cin, dw)), split_k) == 0
    expected = torch.nn.grad.conv2d_weight(buf[:, :cin], (cout, cin, 3, 3), dy, padding=1)
    tol = split_k * torch.finfo(torch.float32).eps * expected.abs().max().item()
    torch.testing.assert_close(dw.double(), expected, atol=tol, rtol=0)


@pytest.mark.parametrize("cin,cout,n,hw,sms,split,workspace", [
    (64, 32, 16, 32, 132, 30, 4 * 9),     # conv1 of a block, B16 LR32, H200: 9 tiles -> ~2 CTAs per SM
    (160, 32, 16, 32, 132, 12, 4 * 23),   # conv5's input width (23 tiles of 64 x 64)
    (160, 64, 16, 32, 132, 12, 4 * 23),   # conv5: cout 64 is still one tile row
    (64, 32, 1, 8, 132, 1, 0),            # 64 pixels: below 8 K-tiles per slice, no split
    (64, 32, 16, 64, 132, 30, 4 * 9),     # LR64: the same grid target
    (64, 32, 16, 32, 4, 1, 0),            # a grid that fills the device alone
    (64, 32, 16, 32, 0, 1, 0),            # SM count unknown
])
def test_cutlass_wgrad_split_and_workspace_query(host_ref, cin, cout, n, hw, sms, split, workspace):
    """the split the fp32 wgrad launcher uses and the workspace conv3x3_wgrad_workspace reports (the
    same functions of rrdb_cutlass_problem.h, for a device of `sms` SMs): semaphores of one int per
    64x64 output tile when split, nothing otherwise or for the 16-bit-output path"""
    dy = torch.empty(0)
    args = WgradArgs(dy.data_ptr(), cout, dy.data_ptr(), cin, dy.data_ptr(), n, hw, hw, cin, cout, True)
    assert host_ref.rrdb_cutlass_wgrad_split(ctypes.byref(args), sms) == split
    assert host_ref.rrdb_cutlass_wgrad_workspace(ctypes.byref(args), sms) == workspace
    args.dw_fp32 = False
    assert host_ref.rrdb_cutlass_wgrad_split(ctypes.byref(args), sms) == 1
    assert host_ref.rrdb_cutlass_wgrad_workspace(ctypes.byref(args), sms) == 0


def test_fprop_tile_setter_through_the_sweep_scripts_ctypes_handle():
    """set_fprop_tile (rrdb_cutlass.cu, compiled with the CUDA kernels; host code only, so it runs here)
    as python/gpu_tile_sweep.py reaches it: returns the previous tile, refuses out-of-range ones (-1,
    unchanged); the sweep's tile names cover exactly rrdb_kernels.h's kFpropTiles"""
    require_extension()
    import gansr_ext

    if not gansr_ext.build_info()["cuda"]:
        pytest.skip("the setter lives in the CUDA sources (a CPU-only build has no CUTLASS path to tune)")
    import sys

    sys.path.insert(0, str(REPO / "python"))
    import gpu_tile_sweep

    kernels_h = (REPO / "csrc" / "rrdb" / "rrdb_kernels.h").read_text()
    assert f"constexpr int kFpropTiles = {len(gpu_tile_sweep.TILES)};" in kernels_h
    set_tile = gpu_tile_sweep.tile_setter()
    prev = set_tile(2)
    try:
        assert set_tile(1) == 2
        assert set_tile(len(gpu_tile_sweep.TILES)) == -1 and set_tile(-1) == -1
        assert set_tile(0) == 1
    finally:
        set_tile(prev)


def test_injected_residual_argument_bug_is_caught():
    """conv5's problem without its broadcast bias (the fused epilogue then adds zeros) must fail the
    fp64 comparison of the residual conv"""
    require_extension()
    header = HEADERS[0].read_text()
    old = "          1.0,\n          a.bias};"
    assert header.count(old) == 1
    dll = build_host_ref({HEADERS[0].name: header.replace(old, "          1.0,\n          nullptr};")})
    cin, buf, wt, bias, out = _residual_case(16, 8, 1, 3, 4, torch.float64, seed=48)
    assert residual_conv(dll, buf, cin, wt, bias, 16, out) == 0
    assert not torch.allclose(out[:, :16], _residual_expected(buf, cin, wt, bias, 16), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_sliced_backward_writes_fp32_param_grads_through_the_host_wgrad(host_ref, dtype):
    """rrdb_bwd(fp32_param_grads=True) on 16-bit buffers through the host reference: every wgrad takes
    dw_fp32 (none declined), the weight gradients are its fp32 accumulation, which the 16-bit path
    rounds (the same problems otherwise: grad_x identical, the bias gradients the fp32 accumulator the
    16-bit path rounds), and equal the CPU backend's fp32 emulation: within fp32 sums' error for
    rdb3.conv5 (the same operands in both), within the 16-bit dgrads' difference upstream otherwise"""
    x, params, g = _case(32, 16, (2, 4, 5), seed=48)
    x, params, g = x.to(dtype), [p.to(dtype) for p in params], g.to(dtype)
    _, *bufs = torch.ops.gansr.rrdb_fwd(x, params, True)
    calls = Calls(host_ref)
    gx, gw, gb = calls.bwd(g, *bufs, params, fp32_param_grads=True)
    assert calls.done["wgrad"] == 15 and calls.declined["wgrad"] == 0
    assert gx.dtype == dtype and gb.dtype == torch.float32 and all(w.dtype == torch.float32 for w in gw)
    gx16, gw16, gb16 = calls.bwd(g, *bufs, params)
    assert torch.equal(gx, gx16) and torch.equal(gb.to(dtype), gb16)
    for w, w16 in zip(gw, gw16, strict=True):
        assert torch.equal(w.to(dtype), w16) and not torch.equal(w.to(dtype).float(), w)
    _, gw_cpu, gb_cpu = torch.ops.gansr.rrdb_bwd(g, *bufs, params, True, True, True)
    torch.testing.assert_close(gw[-1], gw_cpu[-1], atol=1e-5 * gw_cpu[-1].abs().max().item(), rtol=0)
    for w, w_cpu in zip(gw, gw_cpu, strict=True):
        torch.testing.assert_close(w, w_cpu, atol=3e-2 * w_cpu.abs().max().item(), rtol=0)
    torch.testing.assert_close(gb, gb_cpu, atol=3e-2 * gb_cpu.abs().max().item(), rtol=0)


def test_declined_fp32_wgrads_fall_back_cast_and_are_counted(host_ref):
    """fp32_param_grads with every host wgrad declining (12 / 4 channels: unaligned): the ATen wgrad
    runs, its bf16 result cast to fp32, each counted as a fallback"""
    x, params, g = _case(12, 4, (2, 3, 4), seed=49)
    x, params, g = x.bfloat16(), [p.bfloat16() for p in params], g.bfloat16()
    _, *bufs = torch.ops.gansr.rrdb_fwd(x, params)
    calls = Calls(host_ref)
    R.cutlass_fallbacks(reset=True)
    gx, gw, gb = calls.bwd(g, *bufs, params, fp32_param_grads=True)
    assert calls.declined["wgrad"] == 15 and R.cutlass_fallbacks() == 30  # dgrad and wgrad of 15 convs
    assert gb.dtype == torch.float32 and all(w.dtype == torch.float32 for w in gw)
    gx16, gw16, gb16 = calls.bwd(g, *bufs, params)
    assert torch.equal(gx, gx16) and torch.equal(gb.bfloat16(), gb16)
    assert all(torch.equal(w.bfloat16().float(), w) and torch.equal(w.bfloat16(), w16) for w, w16 in zip(gw, gw16))
