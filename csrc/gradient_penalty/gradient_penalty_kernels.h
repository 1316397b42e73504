// Launchers of the gradient-penalty CUDA kernels (plain pointers, no torch headers).
// dtype: the element type of g, real, fake and out; "acc" arrays are double for DType::kDouble and
// float otherwise. Every tensor holds B samples of `per` consecutive elements.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../kernel_defs.h"

namespace gansr {
namespace gp {

// out[i] = eps[i / per] * real[i] + (1 - eps[i / per]) * fake[i]
cudaError_t launch_interpolate(DType dtype, const void* real, const void* fake, const void* eps, void* out, int64_t B,
                               int64_t per, cudaStream_t stream);

int penalty_chunks(int64_t per);

// partial: (B, chunks) acc scratch; norms: (B,) acc; loss: one acc value = scale * sum_b f(n_b), scale = weight/B
cudaError_t launch_penalty_fwd(DType dtype, const void* g, int64_t B, int64_t per, int kind, double scale,
                               void* partial, int chunks, void* norms, void* loss, cudaStream_t stream);

// out[i] = c_b * g[i] (gradient_penalty_math.h sample_coef); grad_loss: one acc value; grad_norms: (B,) acc or null
cudaError_t launch_penalty_bwd(DType dtype, const void* g, const void* norms, const void* grad_loss,
                               const void* grad_norms, int64_t B, int64_t per, int kind, double scale, void* out,
                               cudaStream_t stream);

}  // namespace gp
}  // namespace gansr
