// Fused RRDB on CUDA: the sliced algorithm of rrdb_sliced.cpp (cuDNN convolutions on channel-prefix
// views of the shared NHWC block buffers) with the epilogue / gather kernels of rrdb_kernels.cu on
// the current stream; with cutlass=True, the bf16 / fp16 convs through CUTLASS (rrdb_cutlass*.cu).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../cuda_check.h"
#include "rrdb_kernels.h"
#include "rrdb_sliced.h"

namespace gansr {
namespace rrdb {
namespace {

struct CudaBackend final : Backend {
  explicit CudaBackend(bool cutlass) : cutlass(cutlass) {}
  const bool cutlass;  // CUTLASS convs where built for the dtype (bf16 / fp16)

  void epilogue(DType t, const EpilogueArgs& a) const override {
    GANSR_CUDA_CHECK(launch_epilogue(t, a, c10::cuda::getCurrentCUDAStream().stream()));
  }
  void gather(DType t, const GatherArgs& a) const override {
    GANSR_CUDA_CHECK(launch_gather(t, a, c10::cuda::getCurrentCUDAStream().stream()));
  }
  bool has_fused_conv(DType t) const override { return cutlass && (t == DType::kBFloat16 || t == DType::kHalf); }
  bool conv_bias_lrelu(DType t, const ConvBiasActArgs& a) const override {
    return launched(launch_conv3x3_bias_lrelu(t, a, c10::cuda::getCurrentCUDAStream().stream()),
                    "CUTLASS conv + bias + LeakyReLU");
  }
  bool conv_bias_residual(DType t, const ConvBiasResidualArgs& a) const override {
    return launched(launch_conv3x3_bias_residual(t, a, c10::cuda::getCurrentCUDAStream().stream()),
                    "CUTLASS conv + bias + residual");
  }
  bool has_fused_bwd(DType t) const override { return has_fused_conv(t); }
  bool conv_dgrad(DType t, const ConvDgradArgs& a) const override {
    return launched(launch_conv3x3_dgrad(t, a, c10::cuda::getCurrentCUDAStream().stream()), "CUTLASS dgrad");
  }
  bool conv_wgrad(DType t, const ConvWgradArgs& a) const override {
    return launched(launch_conv3x3_wgrad(t, a, c10::cuda::getCurrentCUDAStream().stream()), "CUTLASS wgrad");
  }
  size_t wgrad_workspace(DType t, const ConvWgradArgs& a) const override {
    return has_fused_bwd(t) ? conv3x3_wgrad_workspace(t, a) : 0;
  }

 private:
  static bool launched(cudaError_t e, const char* what) {
    if (e == cudaErrorNotSupported) return false;  // nothing launched: the caller runs ATen
    GANSR_CUDA_CHECK_CODE(e, what);
    return true;
  }
};

using MasterParams = c10::optional<at::TensorList>;  // rrdb_fwd's `master`: saved by autograd, unused here

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rrdb_fwd_cuda(const at::Tensor& x, at::TensorList params,
                                                                         bool cutlass, const MasterParams& /*master*/,
                                                                         bool /*cutlass_bwd*/) {
  c10::cuda::CUDAGuard guard(x.device());
  return sliced_fwd(x, params, CudaBackend(cutlass));
}

BwdResult rrdb_bwd_cuda(const at::Tensor& grad_out, const at::Tensor& buf1, const at::Tensor& buf2,
                        const at::Tensor& buf3, at::TensorList params, bool need_param_grads, bool cutlass,
                        bool fp32_param_grads) {
  c10::cuda::CUDAGuard guard(grad_out.device());
  return sliced_bwd(grad_out, buf1, buf2, buf3, params, need_param_grads, CudaBackend(cutlass), fp32_param_grads);
}

}  // namespace

TORCH_LIBRARY_IMPL(gansr, CUDA, m) {
  m.impl("rrdb_fwd", &rrdb_fwd_cuda);
  m.impl("rrdb_bwd", &rrdb_bwd_cuda);
}

}  // namespace rrdb
}  // namespace gansr
