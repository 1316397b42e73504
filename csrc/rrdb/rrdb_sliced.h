// The fused RRDB's sliced algorithm (rrdb_sliced.cpp), generic over the backend that runs its
// elementwise kernels and fused convolutions: CUDA (rrdb_cuda.cpp) or CPU (rrdb_cpu.cpp).
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "rrdb.h"
#include "rrdb_args.h"

namespace gansr {
namespace rrdb {

struct Backend {
  virtual ~Backend() = default;
  virtual void epilogue(DType t, const EpilogueArgs& a) const = 0;
  virtual void gather(DType t, const GatherArgs& a) const = 0;
  // conv + bias + LeakyReLU into the slice in one kernel (convs 1..4), when the backend has one for
  // dtype t; conv_bias_lrelu returns false when it cannot take this case (the caller then runs the
  // ATen conv + epilogue)
  virtual bool has_fused_conv(DType t) const { return false; }
  virtual bool conv_bias_lrelu(DType t, const ConvBiasActArgs& a) const { return false; }
  // conv5 + bias + the dense block's residual into the next block's buffer prefix in one kernel
  // (blocks 1-2; block 3 writes rdb3 to a temporary: the RRDB's own residual is a second source)
  virtual bool conv_bias_residual(DType t, const ConvBiasResidualArgs& a) const { return false; }
  // backward convs on the buffers' views (accumulating dgrad, wgrad reading the prefix), when the
  // backend has them for dtype t; false from conv_dgrad / conv_wgrad: declined (ATen runs that one)
  virtual bool has_fused_bwd(DType t) const { return false; }
  virtual bool conv_dgrad(DType t, const ConvDgradArgs& a) const { return false; }
  virtual bool conv_wgrad(DType t, const ConvWgradArgs& a) const { return false; }
  // device bytes conv_wgrad needs at a.workspace (a.dw_fp32: the serial split-K's semaphores), 0: none
  virtual size_t wgrad_workspace(DType t, const ConvWgradArgs& a) const { return 0; }
};

// The CPU backend (rrdb_cpu.cpp): loop kernels over pixel rows; with `cutlass`, the fused convs'
// argument blocks emulated with ATen for every dtype.
const Backend& cpu_backend(bool cutlass);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sliced_fwd(const at::Tensor& x, at::TensorList params,
                                                                      const Backend& be);
BwdResult sliced_bwd(const at::Tensor& grad_out, const at::Tensor& buf1, const at::Tensor& buf2,
                     const at::Tensor& buf3, at::TensorList params, bool need_param_grads, const Backend& be,
                     bool fp32_param_grads = false);

}  // namespace rrdb
}  // namespace gansr
