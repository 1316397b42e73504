// Gradient penalty ops: shared declarations of the CPU and CUDA implementations.
//
//   gp_interpolate(real, fake, eps[B], channels_last) -> xhat,  xhat_b = eps_b real_b + (1 - eps_b) fake_b
//   gp_penalty_fwd(g, kind, weight) -> (loss = weight * mean_b f(||g_b||), norms[B])
//   gp_penalty_bwd(grad_loss, grad_norms?, g, norms, kind, weight) -> c_b * g_b  (gradient_penalty_math.h)
// Computed in fp32 (fp64 for fp64 inputs). Kernels need each sample's elements in one contiguous
// block: contiguous and channels_last tensors both qualify, anything else is made contiguous.
#pragma once
#include <ATen/ATen.h>

namespace gansr {

void check_gp_interpolate_inputs(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& eps,
                                 bool channels_last);
void check_gp_penalty_inputs(const at::Tensor& g, int64_t kind);
void check_gp_penalty_bwd_inputs(const at::Tensor& grad_loss, const c10::optional<at::Tensor>& grad_norms,
                                 const at::Tensor& g, const at::Tensor& norms, int64_t kind);

// g itself when each sample is one contiguous block (contiguous or channels_last), else a contiguous copy
at::Tensor per_sample_blocks(const at::Tensor& g);
// layout of gp_penalty_bwd's output for this g (same rule as the Python fake kernel)
at::MemoryFormat grad_output_format(const at::Tensor& g);

}  // namespace gansr
