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


CASES = [fft_loss_cases]

if __name__ == "__main__":
    for case in CASES:
        case()
        torch.cuda.synchronize()
        print(f"{case.__name__}: ok")
