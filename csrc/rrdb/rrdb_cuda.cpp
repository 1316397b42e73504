// Fused RRDB on CUDA: the sliced algorithm of rrdb_sliced.cpp (cuDNN convolutions on channel-prefix
// views of the shared NHWC block buffers) with the epilogue / gather kernels of rrdb_kernels.cu on
// the current stream.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdlib>

#include "rrdb_kernels.h"
#include "rrdb_sliced.h"

namespace gansr {
namespace rrdb {
namespace {

void check_launch(cudaError_t e, const char* what) {
  TORCH_CHECK(e == cudaSuccess, "gansr::rrdb: CUDA error in the ", what, " kernel: ", cudaGetErrorString(e));
}

struct CudaBackend final : Backend {
  void epilogue(DType t, const EpilogueArgs& a) const override {
    check_launch(launch_epilogue(t, a, c10::cuda::getCurrentCUDAStream().stream()), "epilogue");
  }
  void gather(DType t, const GatherArgs& a) const override {
    check_launch(launch_gather(t, a, c10::cuda::getCurrentCUDAStream().stream()), "gradient gather");
  }
  // CUTLASS forward convs are opt-in (GANSR_RRDB_CUTLASS=1)
  bool has_fused_conv(DType t) const override {
    const char* v = std::getenv("GANSR_RRDB_CUTLASS");
    return (t == DType::kBFloat16 || t == DType::kHalf) && v != nullptr && v[0] == '1';
  }
  bool conv_bias_lrelu(DType t, const ConvBiasActArgs& a) const override {
    return launched(launch_conv3x3_bias_lrelu(t, a, c10::cuda::getCurrentCUDAStream().stream()),
                    "CUTLASS conv + bias + LeakyReLU");
  }
  // CUTLASS dgrad / wgrad are opt-in separately (GANSR_RRDB_CUTLASS_BWD=1)
  bool has_fused_bwd(DType t) const override {
    const char* v = std::getenv("GANSR_RRDB_CUTLASS_BWD");
    return (t == DType::kBFloat16 || t == DType::kHalf) && v != nullptr && v[0] == '1';
  }
  bool conv_dgrad(DType t, const ConvDgradArgs& a) const override {
    return launched(launch_conv3x3_dgrad(t, a, c10::cuda::getCurrentCUDAStream().stream()), "CUTLASS dgrad");
  }
  bool conv_wgrad(DType t, const ConvWgradArgs& a) const override {
    return launched(launch_conv3x3_wgrad(t, a, c10::cuda::getCurrentCUDAStream().stream()), "CUTLASS wgrad");
  }

 private:
  static bool launched(cudaError_t e, const char* what) {
    if (e == cudaErrorNotSupported) return false;  // nothing launched: the caller runs ATen
    check_launch(e, what);
    return true;
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rrdb_fwd_cuda(const at::Tensor& x, at::TensorList params) {
  c10::cuda::CUDAGuard guard(x.device());
  return sliced_fwd(x, params, CudaBackend());
}

BwdResult rrdb_bwd_cuda(const at::Tensor& grad_out, const at::Tensor& buf1, const at::Tensor& buf2,
                        const at::Tensor& buf3, at::TensorList params, bool need_param_grads) {
  c10::cuda::CUDAGuard guard(grad_out.device());
  return sliced_bwd(grad_out, buf1, buf2, buf3, params, need_param_grads, CudaBackend());
}

}  // namespace

TORCH_LIBRARY_IMPL(gansr, CUDA, m) {
  m.impl("rrdb_fwd", &rrdb_fwd_cuda);
  m.impl("rrdb_bwd", &rrdb_bwd_cuda);
}

}  // namespace rrdb
}  // namespace gansr
