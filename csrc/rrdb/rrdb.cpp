// Fused RRDB, device-generic parts: the schemas, the input checks and the ATen convolution helpers
// the sliced algorithm (rrdb_sliced.cpp) runs on either backend (rrdb_cpu.cpp, rrdb_cuda.cpp).
#include <torch/library.h>

#include "../common.h"
#include "rrdb.h"

namespace gansr {
namespace rrdb {

namespace {

void check_params(at::TensorList params, int64_t nf, const at::Tensor& like, const char* op) {
  TORCH_CHECK_VALUE(params.size() == (size_t)kParams, op, ": params must hold the ", kParams,
                    " weights and biases of one RRDB (rdb1.conv1.weight, rdb1.conv1.bias, ..., rdb3.conv5.bias), got ",
                    params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    TORCH_CHECK_VALUE(params[i].defined(), op, ": params[", i, "] is undefined");
    TORCH_CHECK_TYPE(params[i].scalar_type() == like.scalar_type(), op, ": params[", i, "] has dtype ",
                     params[i].scalar_type(), " but the activations are ", like.scalar_type());
    TORCH_CHECK_VALUE(params[i].device() == like.device(), op, ": params[", i, "] is on ", params[i].device(),
                      " but the activations are on ", like.device());
  }
  const at::Tensor& w1 = weight(params, 0, 1);
  TORCH_CHECK_VALUE(w1.dim() == 4 && w1.size(0) > 0, op, ": rdb1.conv1.weight must be (gc, nf, 3, 3), got ",
                    w1.sizes());
  const int64_t gc = w1.size(0);
  for (int b = 0; b < kBlocks; ++b) {
    for (int k = 1; k <= kConvs; ++k) {
      const int64_t cout = k == kConvs ? nf : gc, cin = nf + (k - 1) * gc;
      const at::Tensor& w = weight(params, b, k);
      const at::Tensor& bs = bias(params, b, k);
      TORCH_CHECK_VALUE(w.sizes() == at::IntArrayRef({cout, cin, 3, 3}), op, ": rdb", b + 1, ".conv", k,
                        ".weight must be (", cout, ", ", cin, ", 3, 3) for nf=", nf, ", gc=", gc, ", got ",
                        w.sizes());
      TORCH_CHECK_VALUE(bs.sizes() == at::IntArrayRef({cout}), op, ": rdb", b + 1, ".conv", k, ".bias must be (",
                        cout, ",), got ", bs.sizes());
    }
  }
}

void check_activation(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.dim() == 4, op, ": ", name, " must be 4-D (N, C, H, W), got shape ", t.sizes());
  const auto st = t.scalar_type();
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16, op, ": ", name,
                   " must be float32, float64, float16 or bfloat16, got ", st);
  TORCH_CHECK_VALUE(t.numel() > 0, op, ": ", name, " is empty, shape ", t.sizes());
}

}  // namespace

Dims check_fwd_inputs(const at::Tensor& x, at::TensorList params, const char* op) {
  check_activation(x, op, "x");
  check_params(params, x.size(1), x, op);
  return {x.size(0), x.size(1), weight(params, 0, 1).size(0), x.size(2), x.size(3)};
}

Dims check_bwd_inputs(const at::Tensor& grad_out, const at::Tensor& buf1, const at::Tensor& buf2,
                      const at::Tensor& buf3, at::TensorList params) {
  constexpr const char* op = "gansr::rrdb_bwd";
  check_activation(grad_out, op, "grad_out");
  check_params(params, grad_out.size(1), grad_out, op);
  Dims d{grad_out.size(0), grad_out.size(1), weight(params, 0, 1).size(0), grad_out.size(2), grad_out.size(3)};
  for (const at::Tensor* b : {&buf1, &buf2, &buf3}) {
    TORCH_CHECK_VALUE(b->sizes() == at::IntArrayRef({d.N, d.channels(), d.H, d.W}), op,
                      ": the saved buffers must be (N, nf + 4 gc, H, W) = ", at::IntArrayRef({d.N, d.channels(), d.H, d.W}),
                      ", got ", b->sizes());
    TORCH_CHECK_TYPE(b->scalar_type() == grad_out.scalar_type(), op, ": buffer dtype ", b->scalar_type(),
                     " differs from grad_out's ", grad_out.scalar_type());
    TORCH_CHECK_VALUE(b->device() == grad_out.device(), op, ": buffers and grad_out must be on one device");
  }
  return d;
}

at::Tensor new_nhwc(int64_t N, int64_t C, int64_t H, int64_t W, const at::TensorOptions& opts) {
  return new_output({N, C, H, W}, opts.memory_format(at::MemoryFormat::ChannelsLast));
}

at::Tensor conv3x3(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias) {
  return at::convolution(input, weight, bias, {1, 1}, {1, 1}, {1, 1}, false, {0, 0}, 1);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv3x3_backward(const at::Tensor& grad_out, const at::Tensor& input,
                                                                const at::Tensor& weight, std::array<bool, 3> mask) {
  const std::vector<int64_t> bias_sizes{weight.size(0)};
  return at::convolution_backward(grad_out, input, weight,
                                  mask[2] ? at::OptionalIntArrayRef(bias_sizes) : at::OptionalIntArrayRef(),
                                  {1, 1}, {1, 1}, {1, 1}, false, {0, 0}, 1, mask);
}

TORCH_LIBRARY_FRAGMENT(gansr, m) {
  // cutlass_bwd: not read by the forward; the autograd formula (gansr_ext/ops/rrdb.py) passes it to
  // rrdb_bwd as its `cutlass`, so one call chooses both passes. master: not read by the forward
  // either; positional (autograd differentiates positional inputs only), only saved for backward
  m.def("rrdb_fwd(Tensor x, Tensor[] params, bool cutlass=False, Tensor[]? master=None, *, bool cutlass_bwd=False) "
        "-> (Tensor, Tensor, Tensor, Tensor)");
  m.def("rrdb_bwd(Tensor grad_out, Tensor buf1, Tensor buf2, Tensor buf3, Tensor[] params, bool need_param_grads=True, "
        "bool cutlass=False, bool fp32_param_grads=False) -> (Tensor, Tensor[], Tensor)");
}

}  // namespace rrdb
}  // namespace gansr
