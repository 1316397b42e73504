// Gradient penalty on CUDA: torch glue around gradient_penalty_kernels.cu. Everything runs on the current stream
// without host synchronisation (grad_loss is read on the device), so it is CUDA-graph capturable.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common.h"
#include "../cuda_check.h"
#include "gradient_penalty.h"
#include "gradient_penalty_kernels.h"

namespace gansr {
namespace {

at::Tensor gp_interpolate_cuda(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& eps,
                               bool channels_last) {
  check_gp_interpolate_inputs(real, fake, eps, channels_last);
  c10::cuda::CUDAGuard guard(real.device());
  const auto fmt = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  auto r = real.contiguous(fmt), f = fake.contiguous(fmt);
  auto e = eps.to(compute_type(real.scalar_type())).contiguous();
  auto out = new_output(real.sizes(), real.options().memory_format(fmt));
  const int64_t B = real.size(0), per = real.numel() / B;
  GANSR_CUDA_CHECK(gp::launch_interpolate(kernel_dtype(real.scalar_type()), r.const_data_ptr(), f.const_data_ptr(),
                                          e.const_data_ptr(), out.data_ptr(), B, per,
                                          c10::cuda::getCurrentCUDAStream().stream()));
  return out;
}

std::tuple<at::Tensor, at::Tensor> gp_penalty_fwd_cuda(const at::Tensor& grad, int64_t kind, double weight) {
  check_gp_penalty_inputs(grad, kind);
  c10::cuda::CUDAGuard guard(grad.device());
  auto g = per_sample_blocks(grad);
  const int64_t B = g.size(0), per = g.numel() / B;
  auto opts = g.options().dtype(compute_type(g.scalar_type())).memory_format(at::MemoryFormat::Contiguous);
  const int chunks = gp::penalty_chunks(per);
  auto partial = at::empty({B, chunks}, opts);
  auto loss = new_output({}, opts);
  auto norms = new_output({B}, opts);
  GANSR_CUDA_CHECK(gp::launch_penalty_fwd(kernel_dtype(g.scalar_type()), g.const_data_ptr(), B, per, (int)kind,
                                          weight / (double)B, partial.data_ptr(), chunks, norms.data_ptr(),
                                          loss.data_ptr(), c10::cuda::getCurrentCUDAStream().stream()));
  return {loss, norms};
}

at::Tensor gp_penalty_bwd_cuda(const at::Tensor& grad_loss, const c10::optional<at::Tensor>& grad_norms,
                               const at::Tensor& grad, const at::Tensor& norms, int64_t kind, double weight) {
  check_gp_penalty_bwd_inputs(grad_loss, grad_norms, grad, norms, kind);
  c10::cuda::CUDAGuard guard(grad.device());
  auto g = per_sample_blocks(grad);
  const int64_t B = g.size(0), per = g.numel() / B;
  const auto ct = norms.scalar_type();
  auto gl = grad_loss.to(ct).contiguous();
  auto gn = grad_norms.has_value() ? grad_norms->to(ct).contiguous() : at::Tensor();
  auto nm = norms.contiguous();
  auto out = new_output(g.sizes(), g.options().memory_format(grad_output_format(g)));
  GANSR_CUDA_CHECK(gp::launch_penalty_bwd(kernel_dtype(g.scalar_type()), g.const_data_ptr(), nm.const_data_ptr(),
                                          gl.const_data_ptr(), gn.defined() ? gn.const_data_ptr() : nullptr, B, per,
                                          (int)kind, weight / (double)B, out.data_ptr(),
                                          c10::cuda::getCurrentCUDAStream().stream()));
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(gansr, CUDA, m) {
  m.impl("gp_interpolate", &gp_interpolate_cuda);
  m.impl("gp_penalty_fwd", &gp_penalty_fwd_cuda);
  m.impl("gp_penalty_bwd", &gp_penalty_bwd_cuda);
}

}  // namespace gansr
