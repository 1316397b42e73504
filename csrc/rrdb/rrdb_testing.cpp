// Test-only ops (namespace gansr_testing, never used by gansr_ext): the fused RRDB with its fused
// convs run by other code on the host through C function pointers, e.g. CUTLASS's host reference
// convolutions on the problems the GPU launchers build (rrdb_cutlass_host_ref.cc, loaded by
// tests/test_rrdb_cutlass.py). Everything else runs on the CPU backend.
#include <torch/library.h>

#include <cstdint>

#include "rrdb.h"
#include "rrdb_sliced.h"

namespace gansr {
namespace rrdb {
namespace {

// extern "C" int f(int dtype, const Args*): 0 done, else declined (the ATen conv runs and is counted)
template <typename Args>
using HostConv = int (*)(int, const Args*);
template <typename Args>
HostConv<Args> host_conv_ptr(int64_t address) {
  return reinterpret_cast<HostConv<Args>>(static_cast<intptr_t>(address));
}

struct HostConvBackend final : Backend {
  const Backend& cpu = cpu_backend(false);  // epilogue, gather, and the convs without a host function
  HostConv<ConvBiasActArgs> fprop = nullptr;
  HostConv<ConvBiasResidualArgs> residual = nullptr;  // conv5 of blocks 1-2; null: the ATen emulation
  HostConv<ConvDgradArgs> dgrad = nullptr;
  HostConv<ConvWgradArgs> wgrad = nullptr;

  void epilogue(DType t, const EpilogueArgs& a) const override { cpu.epilogue(t, a); }
  void gather(DType t, const GatherArgs& a) const override { cpu.gather(t, a); }
  bool has_fused_conv(DType) const override { return fprop != nullptr; }
  bool conv_bias_lrelu(DType t, const ConvBiasActArgs& a) const override { return fprop(int(t), &a) == 0; }
  bool conv_bias_residual(DType t, const ConvBiasResidualArgs& a) const override {
    return residual ? residual(int(t), &a) == 0 : cpu_backend(true).conv_bias_residual(t, a);
  }
  bool has_fused_bwd(DType) const override { return dgrad || wgrad; }
  bool conv_dgrad(DType t, const ConvDgradArgs& a) const override {
    return dgrad ? dgrad(int(t), &a) == 0 : cpu.conv_dgrad(t, a);
  }
  bool conv_wgrad(DType t, const ConvWgradArgs& a) const override {
    return wgrad ? wgrad(int(t), &a) == 0 : cpu.conv_wgrad(t, a);
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rrdb_fwd_host_conv(const at::Tensor& x,
                                                                              at::TensorList params, int64_t fprop,
                                                                              int64_t residual) {
  HostConvBackend be;
  be.fprop = host_conv_ptr<ConvBiasActArgs>(fprop);
  be.residual = host_conv_ptr<ConvBiasResidualArgs>(residual);
  return sliced_fwd(x, params, be);
}

BwdResult rrdb_bwd_host_conv(const at::Tensor& grad_out, const at::Tensor& buf1, const at::Tensor& buf2,
                             const at::Tensor& buf3, at::TensorList params, int64_t dgrad, int64_t wgrad,
                             bool need_param_grads, bool fp32_param_grads) {
  HostConvBackend be;
  be.dgrad = host_conv_ptr<ConvDgradArgs>(dgrad);
  be.wgrad = host_conv_ptr<ConvWgradArgs>(wgrad);
  return sliced_bwd(grad_out, buf1, buf2, buf3, params, need_param_grads, be, fp32_param_grads);
}

}  // namespace

TORCH_LIBRARY(gansr_testing, m) {
  m.def("rrdb_fwd_host_conv(Tensor x, Tensor[] params, int fprop, int residual=0) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("rrdb_bwd_host_conv(Tensor grad_out, Tensor buf1, Tensor buf2, Tensor buf3, Tensor[] params, int dgrad, "
        "int wgrad, bool need_param_grads=True, bool fp32_param_grads=False) -> (Tensor, Tensor[], Tensor)");
}

TORCH_LIBRARY_IMPL(gansr_testing, CPU, m) {
  m.impl("rrdb_fwd_host_conv", &rrdb_fwd_host_conv);
  m.impl("rrdb_bwd_host_conv", &rrdb_bwd_host_conv);
}

}  // namespace rrdb
}  // namespace gansr
