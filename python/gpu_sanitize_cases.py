"""Small CUDA cases of every fused op, forward + backward, for compute-sanitizer (gpu_check.sh:
memcheck, racecheck, synccheck, initcheck)."""

import torch

from gansr_ext.ops import fft_loss


def fft_loss_cases():
    for shape in [(2, 3, 8, 8), (1, 2, 7, 5), (3, 1, 6, 9)]:
        for p in (1, 2):
            for mode in ("magnitude", "complex"):
                sr = torch.randn(shape, device="cuda", requires_grad=True)
                hr = torch.randn(shape, device="cuda", requires_grad=True)
                fft_loss(sr, hr, p, mode, fused=True).backward()
    x = torch.randn(2, 3, 8, 8, device="cuda", dtype=torch.float64, requires_grad=True)
    fft_loss(x, torch.randn_like(x), fused=True).backward()


def gradient_penalty_cases():
    from gansr_ext.losses.penalty import gradient_penalty
    from gansr_ext.models import VGGDiscriminator128

    D = VGGDiscriminator128(nf=4).cuda()
    for kind in ("wgan-gp", "one-sided", "r1"):
        real = torch.rand(3, 3, 128, 128, device="cuda")
        fake = torch.rand(3, 3, 128, 128, device="cuda")
        gradient_penalty(D, real, fake, kind=kind, fused=True).backward()
        gradient_penalty(D, real.to(memory_format=torch.channels_last), fake, kind=kind, fused=True,
                         channels_last=True, autocast_dtype=torch.bfloat16).backward()


def rrdb_cases():
    """Fused RRDB fwd + bwd: channel counts below / not a multiple of the 32-lane x dimension, odd
    H/W, every dtype, and the CUTLASS convs (bf16/fp16, cin/gc multiples of 8): forward, then forward
    with dgrad / wgrad."""
    from gansr_ext._ext import require_extension
    from gansr_ext.ops import rrdb as R

    require_extension()

    def run(nf, gc, shape, dtype, cutlass=(False, False)):
        n, h, w = shape
        params = []
        for _ in range(R.N_BLOCKS):
            for k in range(1, R.N_CONVS + 1):
                cout = nf if k == R.N_CONVS else gc
                params.append(torch.randn(cout, nf + (k - 1) * gc, 3, 3, device="cuda", dtype=dtype) * 0.1)
                params.append(torch.randn(cout, device="cuda", dtype=dtype) * 0.1)
        x = torch.randn(n, nf, h, w, device="cuda", dtype=dtype)
        out, *bufs = torch.ops.gansr.rrdb_fwd(x, params, cutlass[0])
        torch.ops.gansr.rrdb_bwd(torch.randn_like(out), *bufs, params, cutlass=cutlass[1])

    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        run(12, 8, (2, 7, 5), dtype)
    run(40, 24, (1, 3, 9), torch.float32)
    # deterministic bias gradients: partial rows per gather block instead of atomics (more than 1024
    # blocks' worth of pixels: the clamped grid's rows)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        run(12, 8, (2, 7, 5), torch.float32)
        run(40, 24, (1, 90, 97), torch.bfloat16)
    finally:
        torch.use_deterministic_algorithms(False)
    for dtype in (torch.bfloat16, torch.float16):
        run(32, 16, (2, 9, 7), dtype, cutlass=(True, False))
        run(32, 16, (2, 9, 7), dtype, cutlass=(True, True))  # + CUTLASS dgrad (accumulating) and wgrad


CASES = [fft_loss_cases, gradient_penalty_cases, rrdb_cases]

if __name__ == "__main__":
    for case in CASES:
        case()
        torch.cuda.synchronize()
        print(f"{case.__name__}: ok")
