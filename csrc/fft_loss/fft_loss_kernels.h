// Launchers of the FFT-loss CUDA kernels (plain pointers; complex numbers as interleaved (re, im)).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace gansr {
namespace fftloss {

int norms_chunks(int64_t per);

// spec: (2, B, per) complex, unnormalised R2C output (scale = 1/sqrt(HW) makes it orthonormal) of width-W
// images, Wf = W/2+1 columns per row; partial: (B, chunks, 3); norms: (B, 3); loss: (B,)
template <typename T>
cudaError_t launch_norms(const T* spec, T scale, int64_t B, int64_t per, int64_t Wf, int64_t W, int p, bool cplx,
                         T* partial, int chunks, T* norms, T* loss, cudaStream_t stream);

// z: (need_hr ? 2 : 1, B, C, H, Wf) complex, the C2R input that yields the gradients
template <typename T>
cudaError_t launch_grad_spectrum(const T* spec, T scale, const T* norms, const T* grad_loss, int64_t B, int64_t C, int64_t H,
                                 int64_t Wf, int64_t W, int p, bool cplx, bool need_hr, T* z, cudaStream_t stream);

}  // namespace fftloss
}  // namespace gansr
