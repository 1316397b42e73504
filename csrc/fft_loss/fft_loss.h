// FFT loss of the seed, ||F(SR) - F(HR)|| / max(||F(SR)||, ||F(HR)||): shared declarations of the CPU
// and CUDA implementations.
//
// Per image b (spectra X = rfft2(sr_b), Y = rfft2(hr_b), orthonormal, half spectrum (C, H, W/2+1)):
//   d   = X - Y   (mode "complex", the seed's formula)   or   |X| - |Y|   (mode "magnitude", phase ignored)
//   N_d = (sum w |d|^p)^(1/p), N_x = (sum w |X|^p)^(1/p), N_y likewise, loss_b = N_d / max(N_x, N_y)
//   w = fftloss::half_weight(column): 2 for the columns standing for their dropped mirror image, else 1,
//   so every norm equals the one over the full fft2 spectrum (Parseval for p = 2).
//   Both images all zeros: loss 0; any NaN in sr_b or hr_b: loss_b NaN.
//
// Ops (schemas in fft_loss_cpu.cpp):
//   fft_loss_fwd(sr, hr, p, complex_mode) -> (loss[B], norms[B,3] = (N_d, N_x, N_y), spec[2,B,C,H,Wf])
//     spec = unnormalised rfft2 of (sr, hr) (the orthonormal one times sqrt(HW)), as cuFFT gives it
//   fft_loss_bwd(grad_loss[B], spec, norms, p, complex_mode, W, need_hr) -> grads[need_hr ? 2 : 1, B, C, H, W]
//     (grads[0] for sr, grads[1] for hr; one tensor so the outputs never alias)
// Both compute in fp32 (fp64 for fp64 inputs); spec is saved for backward so it needs no second FFT.
#pragma once
#include <ATen/ATen.h>

namespace gansr {

void check_fft_loss_inputs(const at::Tensor& sr, const at::Tensor& hr, int64_t p);
void check_fft_loss_bwd_inputs(const at::Tensor& grad_loss, const at::Tensor& spec, const at::Tensor& norms,
                               int64_t p, int64_t W);

}  // namespace gansr
