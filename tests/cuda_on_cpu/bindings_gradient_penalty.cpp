// C entry points (for ctypes) to the gradient-penalty launchers of csrc/gradient_penalty/gradient_penalty_kernels.cu
// (the dtype arrives as its DType code; the stream argument is dropped).
#include "gradient_penalty_kernels.h"

namespace gp = gansr::gp;
using gansr::DType;

extern "C" {
int gp_penalty_chunks(int64_t per) { return gp::penalty_chunks(per); }

int gp_launch_interpolate(int dtype, const void* real, const void* fake, const void* eps, void* out, int64_t B,
                          int64_t per) {
  return gp::launch_interpolate(DType(dtype), real, fake, eps, out, B, per, nullptr);
}

int gp_launch_penalty_fwd(int dtype, const void* g, int64_t B, int64_t per, int kind, double scale, void* partial,
                          int chunks, void* norms, void* loss) {
  return gp::launch_penalty_fwd(DType(dtype), g, B, per, kind, scale, partial, chunks, norms, loss, nullptr);
}

int gp_launch_penalty_bwd(int dtype, const void* g, const void* norms, const void* grad_loss, const void* grad_norms,
                          int64_t B, int64_t per, int kind, double scale, void* out) {
  return gp::launch_penalty_bwd(DType(dtype), g, norms, grad_loss, grad_norms, B, per, kind, scale, out, nullptr);
}
}
