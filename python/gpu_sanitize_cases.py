"""Small CUDA cases of every fused op, forward + backward, for compute-sanitizer (gpu_check.sh)."""

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


CASES = [fft_loss_cases, gradient_penalty_cases]

if __name__ == "__main__":
    for case in CASES:
        case()
        torch.cuda.synchronize()
        print(f"{case.__name__}: ok")
