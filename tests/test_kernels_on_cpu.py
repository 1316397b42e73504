"""The project's CUDA kernel files (csrc/*/*_kernels.cu), unmodified, executed on the CPU by cudasim
(tests/cuda_on_cpu/: g++, one fiber per CUDA thread) and compared with the pure-PyTorch references.

The same properties as the `test_cuda_*` tests: odd sizes, batch 1, fp16/bf16 loads with fp32
accumulation, more than one block per reduction, and grid-stride kernels on a clamped grid (a grid
cap makes small inputs take the path that large ones take on a GPU). Outputs start as NaN inside NaN
guard bands: an element left unwritten or written out of bounds fails. cuFFT is emulated at the
kernels' boundary with torch.fft (R2C: unnormalised rfft2; C2R: irfft2 with norm="forward").
A mutation test checks that injected bugs make these checks fail.
"""

from __future__ import annotations

import ctypes
import math

import pytest
import torch
from cuda_on_cpu.harness import Buffer, KernelError, build, build_all

from gansr_ext.ops.fft_loss import fft_loss_reference
from gansr_ext.ops.gradient_penalty import KIND_CODES, gp_interpolate_reference, gp_penalty_reference

DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
ACC = {torch.float64: torch.float64}  # accumulation dtype: float for every other dtype
RTOL = {torch.float32: 2e-5, torch.float64: 1e-11, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
HALVES = (torch.float16, torch.bfloat16)


def acc(dtype: torch.dtype) -> torch.dtype:
    return ACC.get(dtype, torch.float32)


def close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float = 0.0) -> None:
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=atol, equal_nan=False)


@pytest.fixture(scope="session")
def kernels():
    return build_all()


@pytest.fixture
def k(kernels, request):
    """The compiled kernel file named by the test's `@lib(op)`, on the default schedule."""
    lib = kernels[request.param]
    lib.configure()
    yield lib
    lib.configure()


def lib(op: str):
    return pytest.mark.parametrize("k", [op], indirect=True)


# ---- FFT loss --------------------------------------------------------------------------------------

FFT_SHAPES = [(1, 1, 2, 2), (1, 3, 5, 7), (2, 3, 9, 8), (3, 2, 40, 41), (2, 3, 48, 64)]  # last two: >1 chunk


def fft_forward(k, sr, hr, p, mode):
    """launch_norms on the emulated R2C of (sr, hr): (loss (B,), norms (B, 3), spectrum buffer)."""
    B, C, H, W = sr.shape
    Wf, dt = W // 2 + 1, sr.dtype
    spec = Buffer(torch.view_as_real(torch.fft.rfft2(torch.stack([sr, hr]))).contiguous())
    per = C * H * Wf
    chunks = k.value("fft_norms_chunks", per)
    partial, norms, loss = Buffer(shape=(B, chunks, 3), dtype=dt), Buffer(shape=(B, 3), dtype=dt), Buffer(shape=(B,), dtype=dt)
    k.run(f"fft_launch_norms_{'f64' if dt == torch.float64 else 'f32'}", spec.t, 1 / math.sqrt(H * W), B, per, Wf, W, p,
          int(mode == "complex"), partial.t, chunks, norms.t, loss.t)
    assert all(b.guards_intact() for b in (partial, norms, loss))
    return loss.t, norms.t, spec


def check_fft_forward(k, shape, p, mode, dtype):
    sr, hr = torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype)
    loss, norms, _ = fft_forward(k, sr, hr, p, mode)
    X, Y = torch.fft.fft2(sr.double(), norm="ortho"), torch.fft.fft2(hr.double(), norm="ortho")
    d = X - Y if mode == "complex" else X.abs() - Y.abs()
    full = torch.stack([torch.linalg.vector_norm(v.abs(), ord=p, dim=(1, 2, 3)) for v in (d, X, Y)], 1)
    close(norms, full, rtol=RTOL[dtype])
    close(loss, fft_loss_reference(sr.double(), hr.double(), p, mode, reduction="none"), rtol=RTOL[dtype])


@lib("fft_loss")
@pytest.mark.parametrize("shape,dtype", [(s, torch.float64) for s in FFT_SHAPES]
                         + [(s, torch.float32) for s in FFT_SHAPES[1::2]])
@pytest.mark.parametrize("p,mode", [(1, "magnitude"), (2, "magnitude"), (1, "complex"), (2, "complex")])
def test_fft_norms_kernels_match_reference(k, shape, p, mode, dtype):
    check_fft_forward(k, shape, p, mode, dtype)


def c2r(z: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """cuFFT's unnormalised C2R, with its precondition: a Hermitian input. Columns 0 and W/2 (W even)
    must equal their own row-mirrored conjugate (irfft2 would silently take their Hermitian part)."""
    cols = [0, W // 2] if W % 2 == 0 else [0]
    for c in cols:
        column = z[..., c]
        mirrored = torch.roll(torch.flip(column, dims=[-1]), shifts=1, dims=-1).conj()  # row r -> (H - r) % H
        torch.testing.assert_close(column, mirrored, rtol=1e-12, atol=1e-15, msg=f"C2R input column {c} is not Hermitian")
    return torch.fft.irfft2(z, s=(H, W), norm="forward")


def check_fft_backward(k, shape, p, mode, need_hr, cap=None):
    sr, hr = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    B, C, H, W = shape
    Wf = W // 2 + 1
    _, norms, spec = fft_forward(k, sr, hr, p, mode)
    grad_loss = torch.randn(B, dtype=torch.float64)
    z = Buffer(shape=(2 if need_hr else 1, B, C, H, Wf, 2), dtype=torch.float64)
    if cap:
        k.configure(grid_x_caps={"grad_spectrum_kernel": cap})
    k.run("fft_launch_grad_spectrum_f64", spec.t, 1 / math.sqrt(H * W), norms, grad_loss, B, C, H, Wf, W, p,
          int(mode == "complex"), int(need_hr), z.t)
    assert z.guards_intact()
    grads = c2r(torch.view_as_complex(z.t), H, W)
    x, y = sr.clone().requires_grad_(), hr.clone().requires_grad_()
    (fft_loss_reference(x, y, p, mode, reduction="none") * grad_loss).sum().backward()
    close(grads[0], x.grad, rtol=1e-9, atol=1e-12)
    if need_hr:
        close(grads[1], y.grad, rtol=1e-9, atol=1e-12)


@lib("fft_loss")
@pytest.mark.parametrize("shape,cap", [((1, 1, 4, 4), None), ((1, 3, 5, 7), None), ((2, 3, 9, 8), None),
                                       ((2, 2, 17, 30), 2), ((3, 1, 12, 11), 1)])
@pytest.mark.parametrize("p,mode", [(1, "magnitude"), (2, "magnitude"), (1, "complex"), (2, "complex")])
def test_fft_grad_spectrum_kernel_matches_autograd(k, shape, cap, p, mode):
    check_fft_backward(k, shape, p, mode, need_hr=shape[0] != 1, cap=cap)


# ---- gradient penalty ------------------------------------------------------------------------------

def check_interpolate(k, shape, dtype, cap=None):
    real, fake = torch.randn(shape).to(dtype), torch.randn(shape).to(dtype)
    eps = torch.rand(shape[0], dtype=acc(dtype))
    out = Buffer(shape=shape, dtype=dtype)
    if cap:
        k.configure(grid_x_caps={"interpolate_kernel": cap})
    per = math.prod(shape[1:])
    k.run("gp_launch_interpolate", DTYPE_CODES[dtype], real, fake, eps, out.t, shape[0], per)
    assert out.guards_intact()
    close(out.t, gp_interpolate_reference(real, fake, eps), rtol=RTOL[dtype])


@lib("gradient_penalty")
@pytest.mark.parametrize("dtype", list(DTYPE_CODES))
@pytest.mark.parametrize("shape,cap", [((1, 3, 5, 7), None), ((3, 2, 33, 17), None), ((2, 3, 17, 19), 2)])
def test_gp_interpolate_kernel_matches_reference(k, shape, cap, dtype):
    check_interpolate(k, shape, dtype, cap)


def gp_forward(k, g, kind):
    B, per = g.shape[0], g[0].numel()
    a = acc(g.dtype)
    chunks = k.value("gp_penalty_chunks", per)
    partial, norms, loss = Buffer(shape=(B, chunks), dtype=a), Buffer(shape=(B,), dtype=a), Buffer(shape=(1,), dtype=a)
    k.run("gp_launch_penalty_fwd", DTYPE_CODES[g.dtype], g, B, per, KIND_CODES[kind], 10.0 / B, partial.t, chunks,
          norms.t, loss.t)
    assert all(b.guards_intact() for b in (partial, norms, loss))
    return loss.t[0], norms.t


GP_SHAPES = [(1, 3, 5, 7), (2, 3, 31, 29), (2, 3, 64, 70)]  # 1, 2 and 7 chunks


def check_penalty_forward(k, shape, kind, dtype, cap=None):
    g = (torch.randn(shape) * 0.05).to(dtype)
    if cap:
        k.configure(grid_x_caps={"sumsq_small_kernel": cap})
    loss, norms = gp_forward(k, g, kind)
    close(norms, torch.linalg.vector_norm(g.double().flatten(1), dim=1), rtol=RTOL[acc(dtype)] * 5)
    close(loss, gp_penalty_reference(g.double(), kind, weight=10.0), rtol=RTOL[acc(dtype)] * 20, atol=1e-12)


@lib("gradient_penalty")
@pytest.mark.parametrize("dtype", list(DTYPE_CODES))
@pytest.mark.parametrize("shape", GP_SHAPES)
@pytest.mark.parametrize("kind", list(KIND_CODES))
def test_gp_penalty_kernels_match_reference(k, shape, kind, dtype):
    check_penalty_forward(k, shape, kind, dtype)


@lib("gradient_penalty")
@pytest.mark.parametrize("dtype", list(DTYPE_CODES))
@pytest.mark.parametrize("shape,cap", [((1, 1), None), ((37, 2, 3), None), ((37, 32), 1)])
def test_gp_penalty_small_samples_one_thread_each(k, shape, cap, dtype):
    check_penalty_forward(k, shape, "wgan-gp", dtype, cap)


@lib("gradient_penalty")
def test_gp_penalty_finish_kernel_loops_over_more_samples_than_threads(k):
    check_penalty_forward(k, (300, 5), "one-sided", torch.bfloat16)


@lib("gradient_penalty")
def test_gp_kernels_take_a_batch_beyond_the_grid_y_limit(k):
    # gridDim.y stops at 65535 and the CPU op takes any batch: B must not be a y index. Tiny samples
    # (3 elements) keep the 65,537-sample run to a fraction of a second.
    shape = (65537, 3)
    check_interpolate(k, shape, torch.float32)
    check_penalty_forward(k, shape, "one-sided", torch.float32)
    check_penalty_backward(k, shape, "wgan-gp", torch.float32, with_grad_norms=True)


def check_penalty_backward(k, shape, kind, dtype, with_grad_norms, cap=None):
    g = (torch.randn(shape) * 0.05).to(dtype)
    B, per = shape[0], math.prod(shape[1:])
    a = acc(dtype)
    norms = torch.linalg.vector_norm(g.to(a).flatten(1), dim=1)
    grad_loss = torch.randn(1, dtype=a)
    grad_norms = torch.randn(B, dtype=a) if with_grad_norms else None
    out = Buffer(shape=shape, dtype=dtype)
    if cap:
        k.configure(grid_x_caps={"penalty_bwd_kernel": cap})
    k.run("gp_launch_penalty_bwd", DTYPE_CODES[dtype], g, norms, grad_loss, grad_norms, B, per, KIND_CODES[kind],
          10.0 / B, out.t)
    assert out.guards_intact()
    x = g.double().requires_grad_()
    total = gp_penalty_reference(x, kind, weight=10.0) * grad_loss.double()[0]
    if with_grad_norms:
        total = total + (torch.linalg.vector_norm(x.flatten(1), dim=1) * grad_norms.double()).sum()
    total.backward()
    close(out.t, x.grad, rtol=RTOL[dtype] * 4, atol=RTOL[dtype] * 1e-3)


@lib("gradient_penalty")
@pytest.mark.parametrize("dtype", list(DTYPE_CODES))
@pytest.mark.parametrize("shape,cap,with_grad_norms", [((1, 3, 5, 7), None, False), ((3, 2, 33, 17), None, True),
                                                       ((2, 3, 17, 19), 3, True)])
@pytest.mark.parametrize("kind", list(KIND_CODES))
def test_gp_penalty_bwd_kernel_matches_autograd(k, shape, cap, with_grad_norms, kind, dtype):
    check_penalty_backward(k, shape, kind, dtype, with_grad_norms, cap)


# ---- RRDB epilogue and gather ----------------------------------------------------------------------

class EpilogueArgs(ctypes.Structure):  # csrc/rrdb/rrdb_args.h
    _fields_ = [("y", ctypes.c_void_p), ("y_stride", ctypes.c_int64), ("bias", ctypes.c_void_p),
                ("r1", ctypes.c_void_p), ("r1_stride", ctypes.c_int64), ("s1", ctypes.c_double),
                ("r2", ctypes.c_void_p), ("r2_stride", ctypes.c_int64), ("s2", ctypes.c_double),
                ("out", ctypes.c_void_p), ("out_stride", ctypes.c_int64), ("M", ctypes.c_int64), ("C", ctypes.c_int),
                ("act", ctypes.c_bool), ("slope", ctypes.c_double)]


class GatherArgs(ctypes.Structure):  # csrc/rrdb/rrdb_args.h
    _fields_ = [("src", ctypes.c_void_p * 8), ("src_stride", ctypes.c_int64 * 8), ("src_scale", ctypes.c_double * 8),
                ("nsrc", ctypes.c_int), ("act", ctypes.c_void_p), ("act_stride", ctypes.c_int64),
                ("slope", ctypes.c_double), ("out", ctypes.c_void_p), ("out_stride", ctypes.c_int64),
                ("out2", ctypes.c_void_p), ("out2_stride", ctypes.c_int64), ("s2", ctypes.c_double),
                ("bias_grad", ctypes.c_void_p), ("M", ctypes.c_int64), ("C", ctypes.c_int),
                ("bias_partial", ctypes.c_void_p), ("partial_rows", ctypes.c_int64)]


C_RRDB = 37  # two channel blocks, the second one partial
LEFT = 3  # slices start 3 channels into a wider NaN buffer (like a channel slice of an RRDB buffer)


def rrdb_slice(M, dtype, values=True):
    """(M, C_RRDB) slice of an (M, C_RRDB + 11) buffer, NaN elsewhere: (buffer, slice)."""
    buf = Buffer(shape=(M, C_RRDB + 11), dtype=dtype)
    if values:
        buf.t[:, LEFT:LEFT + C_RRDB] = torch.randn(M, C_RRDB).to(dtype)
    return buf, buf.t[:, LEFT:LEFT + C_RRDB]


def outside_slice_untouched(buf: Buffer) -> bool:
    rest = torch.cat([buf.t[:, :LEFT], buf.t[:, LEFT + C_RRDB:]], 1)
    return buf.guards_intact() and bool(rest.isnan().all())


def check_epilogue(k, M, dtype, act, n_res, cap=None):
    a = acc(dtype)
    (_, y), (_, r1), (_, r2) = (rrdb_slice(M, dtype) for _ in range(3))
    bias = torch.randn(C_RRDB).to(dtype)
    out_buf, out = rrdb_slice(M, dtype, values=False)
    args = EpilogueArgs(y=y.data_ptr(), y_stride=y.stride(0), bias=bias.data_ptr(), s1=0.2, s2=0.5,
                        out=out.data_ptr(), out_stride=out.stride(0), M=M, C=C_RRDB, act=act, slope=0.2)
    if n_res >= 1:
        args.r1, args.r1_stride = r1.data_ptr(), r1.stride(0)
    if n_res == 2:
        args.r2, args.r2_stride = r2.data_ptr(), r2.stride(0)
    if cap:
        k.configure(grid_x_caps={"epilogue_kernel": cap})
    k.run("rrdb_launch_epilogue", DTYPE_CODES[dtype], ctypes.addressof(args))
    v = y.to(a) + bias.to(a)
    if act:
        v = torch.where(v > 0, v, 0.2 * v)
    if n_res >= 1:
        v = r1.to(a) + 0.2 * v
    if n_res == 2:
        v = r2.to(a) + 0.5 * v
    assert outside_slice_untouched(out_buf)
    close(out, v.to(dtype), rtol=RTOL[dtype])


@lib("rrdb")
@pytest.mark.parametrize("dtype", list(DTYPE_CODES))
@pytest.mark.parametrize("M,act,n_res,cap", [(1, True, 0, None), (37, False, 1, None), (61, True, 2, None),
                                             (100, True, 1, 3)])
def test_rrdb_epilogue_kernel_matches_spec(k, M, act, n_res, cap, dtype):
    check_epilogue(k, M, dtype, act, n_res, cap)


def check_gather(k, M, dtype, nsrc, with_act, with_out2, cap=None):
    a = acc(dtype)
    srcs = [rrdb_slice(M, dtype)[1] for _ in range(nsrc)]
    scales = [1.0, 0.2, -0.5][:nsrc]
    act = rrdb_slice(M, dtype)[1]
    (out_buf, out), (out2_buf, out2) = rrdb_slice(M, dtype, values=False), rrdb_slice(M, dtype, values=False)
    bias_grad = Buffer(torch.zeros(C_RRDB, dtype=a))
    args = GatherArgs(nsrc=nsrc, slope=0.2, out=out.data_ptr(), out_stride=out.stride(0), s2=0.2,
                      bias_grad=bias_grad.t.data_ptr(), M=M, C=C_RRDB)
    for i, (s, scale) in enumerate(zip(srcs, scales)):
        args.src[i], args.src_stride[i], args.src_scale[i] = s.data_ptr(), s.stride(0), scale
    if with_act:
        args.act, args.act_stride = act.data_ptr(), act.stride(0)
    if with_out2:
        args.out2, args.out2_stride = out2.data_ptr(), out2.stride(0)
    if cap:
        k.configure(grid_x_caps={"gather_kernel": cap})
    k.run("rrdb_launch_gather", DTYPE_CODES[dtype], ctypes.addressof(args))
    v = sum(scale * s.to(a) for s, scale in zip(srcs, scales))
    if with_act:
        v = torch.where(act.to(a) > 0, v, 0.2 * v)
    assert outside_slice_untouched(out_buf) and bias_grad.guards_intact()
    close(out, v.to(dtype), rtol=RTOL[dtype])
    if with_out2:
        assert outside_slice_untouched(out2_buf)
        close(out2, (0.2 * v).to(dtype), rtol=RTOL[dtype])
    close(bias_grad.t, (0.2 * v if with_out2 else v).sum(0), rtol=RTOL[a] * 10, atol=1e-5)


@lib("rrdb")
@pytest.mark.parametrize("dtype", list(DTYPE_CODES))
@pytest.mark.parametrize("M,nsrc,with_act,with_out2,cap", [(1, 1, False, True, None), (37, 3, True, False, None),
                                                           (100, 2, True, True, 3), (100, 3, False, False, 1)])
def test_rrdb_gather_kernel_matches_spec(k, M, nsrc, with_act, with_out2, cap, dtype):
    check_gather(k, M, dtype, nsrc, with_act, with_out2, cap)


# ---- the harness itself ----------------------------------------------------------------------------

@lib("misuse")
def test_cudasim_shuffles_follow_cuda_semantics(k):
    out = torch.zeros(32 * 4, dtype=torch.int32)
    k.run("misuse_shuffles", out)
    got, expected = out.view(32, 4).tolist(), []
    for t in range(32):
        base, lane = t - t % 8, t % 8
        expected.append([100 + base + 5, 100 + (t - 2 if lane >= 2 else t), 100 + (t + 3 if lane + 3 < 8 else t),
                         100 + (t ^ 1)])
    assert got == expected


@lib("misuse")
@pytest.mark.parametrize("which,message", [
    (0, "exited without reaching it"), (1, "divergent __syncthreads"), (2, "omits the calling lane 0"),
    (3, "waits for lane 3, which exited"), (4, "more than 1024 threads"), (5, "grid beyond"),
    (6, "a dimension is 0")])
def test_cudasim_reports_misuse(k, which, message):
    with pytest.raises(KernelError, match=message):
        k.run("misuse_run", which, torch.zeros(32))


@lib("rrdb")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rrdb_gather_deterministic_bias_rows(k, dtype):
    M, a = 100, acc(dtype)
    rows = (M + 7) // 8  # gather_grid_x(M): one row per block along x, 8 pixels per grid-stride step
    src = rrdb_slice(M, dtype)[1]
    out_buf, out = rrdb_slice(M, dtype, values=False)
    bias_grad, bias_rows = Buffer(torch.zeros(C_RRDB, dtype=a)), Buffer(shape=(rows, C_RRDB), dtype=a)
    args = GatherArgs(nsrc=1, slope=0.2, out=out.data_ptr(), out_stride=out.stride(0), bias_grad=bias_grad.t.data_ptr(),
                      M=M, C=C_RRDB, bias_partial=bias_rows.t.data_ptr(), partial_rows=rows)
    args.src[0], args.src_stride[0], args.src_scale[0] = src.data_ptr(), src.stride(0), 1.0
    k.run("rrdb_launch_gather", DTYPE_CODES[dtype], ctypes.addressof(args))
    v = torch.cat([src.to(a), torch.zeros(rows * 8 - M, C_RRDB, dtype=a)])
    close(bias_rows.t, v.view(rows, 8, C_RRDB).sum(1), rtol=RTOL[a] * 10, atol=1e-5)
    assert bias_rows.guards_intact() and outside_slice_untouched(out_buf)
    assert bool((bias_grad.t == 0).all())  # the atomics path stays off


@lib("rrdb")
def test_thread_mode_runs_the_same_kernels(k):
    """Every CUDA thread on an OS thread (the mode for -fsanitize=thread builds)."""
    k.configure(threads=True, grid_x_caps={"gather_kernel": 2})
    check_gather(k, 40, torch.float32, 2, True, True)
    check_epilogue(k, 20, torch.float16, True, 1)


def test_thread_mode_runs_shuffle_reductions(kernels):
    k = kernels["gradient_penalty"]
    k.configure(threads=True)
    try:
        check_penalty_forward(k, (2, 3, 31, 29), "wgan-gp", torch.float32)
    finally:
        k.configure()


@lib("rrdb")
def test_reverse_schedule_runs_the_same_kernels(k):
    k.configure(reverse=True, grid_x_caps={"gather_kernel": 3})
    check_gather(k, 100, torch.float32, 2, True, True)
    k.configure(reverse=True)
    check_epilogue(k, 61, torch.bfloat16, True, 2)


@lib("rrdb")
def test_rrdb_args_layout_matches_the_header(k):
    sizes = (ctypes.c_int64 * 2)()
    k.run("rrdb_args_sizes", sizes)
    assert list(sizes) == [ctypes.sizeof(EpilogueArgs), ctypes.sizeof(GatherArgs)]


# ---- mutation test: injected bugs must make the checks above fail ----------------------------------

MUTATIONS = {  # name: (op, anchor, old text after the anchor, new text, check that must then fail)
    "fft missing barrier": ("fft_loss", "block_sum3(S* v", "__syncthreads();", "",
                            lambda k: check_fft_forward(k, (1, 3, 9, 8), 2, "magnitude", torch.float64)),
    "fft shuffle mask omits a lane": ("fft_loss", "block_sum3(S* v", "0xffffffffu", "0x7fffffffu",
                                      lambda k: check_fft_forward(k, (1, 1, 4, 4), 2, "complex", torch.float64)),
    "fft mirror row off by one": ("fft_loss", "grad_spectrum_kernel(", "(H - r) % H", "(H - r)",
                                  lambda k: check_fft_backward(k, (2, 2, 6, 8), 2, "complex", need_hr=True)),
    "gp missing barrier": ("gradient_penalty", "A block_sum(A v", "__syncthreads();", "",
                           lambda k: check_penalty_forward(k, (2, 3, 31, 29), "wgan-gp", torch.float32)),
    "gp grid-stride step skips": ("gradient_penalty", "penalty_bwd_kernel(", "i += (int64_t)gridDim.x * blockDim.x",
                                  "i += 2 * (int64_t)gridDim.x * blockDim.x",
                                  lambda k: check_penalty_backward(k, (2, 3, 17, 19), "r1", torch.float32, True, cap=2)),
    "rrdb epilogue bounds check dropped": ("rrdb", "epilogue_kernel(EpilogueArgs", "if (c >= a.C) return;", "",
                                           lambda k: check_epilogue(k, 37, torch.float32, True, 1)),
    "rrdb gather exits before the barrier": ("rrdb", "gather_kernel(GatherArgs", "A bsum = A(0);",
                                             "A bsum = A(0); if (c >= a.C) return;",
                                             lambda k: check_gather(k, 37, torch.float32, 2, True, False)),
    "rrdb gather grid-stride step overlaps": ("rrdb", "gather_kernel(GatherArgs", "m += (int64_t)gridDim.x * kTy",
                                              "m += kTy", lambda k: check_gather(k, 100, torch.float32, 1, False, True)),
}


def mutate(text: str, anchor: str, old: str, new: str) -> str:
    at = text.find(anchor)
    hit = text.find(old, at)
    if at < 0 or hit < 0:
        pytest.fail(f"mutation anchor {anchor!r} / {old!r} is gone from the kernel file: update MUTATIONS")
    return text[:hit] + new + text[hit + len(old):]


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_injected_bug_is_caught(kernels, tmp_path, name):
    op, anchor, old, new, check = MUTATIONS[name]
    kernels[op].configure()
    check(kernels[op])  # the check passes on the real kernel file...
    source = kernels[op].source
    mutant = tmp_path / source.name
    mutant.write_text(mutate(source.read_text(), anchor, old, new))
    k = build(op, source=mutant)
    k.configure()
    with pytest.raises((AssertionError, KernelError)):  # ...and fails on the mutant
        check(k)
