// Launchers of the gradient-penalty CUDA kernels (plain pointers, no torch headers).
// Element dtype codes: 0 float, 1 double, 2 half, 3 bfloat16; "acc" arrays are double for code 1
// and float otherwise. Every tensor holds B samples of `per` consecutive elements.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace gansr {
namespace gp {

enum DType : int { kF32 = 0, kF64 = 1, kF16 = 2, kBF16 = 3 };

// out[i] = eps[i / per] * real[i] + (1 - eps[i / per]) * fake[i]
cudaError_t launch_interpolate(int dtype, const void* real, const void* fake, const void* eps, void* out, int64_t B,
                               int64_t per, cudaStream_t stream);

int penalty_chunks(int64_t per);

// partial: (B, chunks) acc scratch; norms: (B,) acc; loss: one acc value = scale * sum_b f(n_b), scale = weight/B
cudaError_t launch_penalty_fwd(int dtype, const void* g, int64_t B, int64_t per, int kind, double scale,
                               void* partial, int chunks, void* norms, void* loss, cudaStream_t stream);

// out[i] = c_b * g[i] (gp_math.h sample_coef); grad_loss: one acc value; grad_norms: (B,) acc or null
cudaError_t launch_penalty_bwd(int dtype, const void* g, const void* norms, const void* grad_loss,
                               const void* grad_norms, int64_t B, int64_t per, int kind, double scale, void* out,
                               cudaStream_t stream);

}  // namespace gp
}  // namespace gansr
