// Fused RRDB: schemas, input checks, ATen conv helpers and the CPU kernel (the "CPU twin" of the CUDA
// op: the same shared NHWC buffers, slice writes and in-place gradient accumulation, with ATen's
// convolution primitives on channel-prefix views doing the GEMMs).
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

namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rrdb_fwd_cpu(const at::Tensor& x,
                                                                        at::TensorList params) {
  const Dims d = check_fwd_inputs(x, params, "gansr::rrdb_fwd");
  const auto opts = x.options();
  at::Tensor bufs[kBlocks];
  for (auto& b : bufs) b = new_nhwc(d.N, d.channels(), d.H, d.W, opts);
  at::Tensor out = new_nhwc(d.N, d.nf, d.H, d.W, opts);
  bufs[0].narrow(1, 0, d.nf).copy_(x);
  for (int b = 0; b < kBlocks; ++b) {
    const at::Tensor& buf = bufs[b];
    for (int k = 1; k < kConvs; ++k) {
      // conv_k reads the channel prefix, LeakyReLU writes its own slice
      at::Tensor y = conv3x3(buf.narrow(1, 0, d.cin(k)), weight(params, b, k), bias(params, b, k));
      at::Tensor xk = buf.narrow(1, d.cin(k), d.gc);
      at::leaky_relu_out(xk, y, kSlope);
    }
    at::Tensor y5 = conv3x3(buf, weight(params, b, kConvs), bias(params, b, kConvs));
    const at::Tensor xin = buf.narrow(1, 0, d.nf);
    if (b + 1 < kBlocks) {
      at::Tensor next_in = bufs[b + 1].narrow(1, 0, d.nf);
      at::add_out(next_in, xin, y5, kResScale);  // next block's input, in place
    } else {
      at::Tensor rdb3 = y5.mul_(kResScale).add_(xin);
      at::add_out(out, bufs[0].narrow(1, 0, d.nf), rdb3, kResScale);  // the RRDB's own residual
    }
  }
  return {out, bufs[0], bufs[1], bufs[2]};
}

BwdResult rrdb_bwd_cpu(const at::Tensor& grad_out, const at::Tensor& buf1, const at::Tensor& buf2,
                       const at::Tensor& buf3, at::TensorList params, bool need_param_grads) {
  const Dims d = check_bwd_inputs(grad_out, buf1, buf2, buf3, params);
  const at::Tensor* bufs[kBlocks] = {&buf1, &buf2, &buf3};
  const std::array<bool, 3> mask{true, need_param_grads, need_param_grads};
  std::vector<at::Tensor> grad_w(need_param_grads ? kBlocks * kConvs : 0);
  at::Tensor grad_b = need_param_grads ? new_output({kBlocks * (d.nf + 4 * d.gc)}, grad_out.options())
                                       : no_bias_grads(grad_out.options());
  at::Tensor gy = grad_out * kResScale;  // gradient of rdb3's output
  for (int b = kBlocks - 1; b >= 0; --b) {
    const at::Tensor& buf = *bufs[b];
    // one gradient buffer per block, laid out like the activation buffer
    at::Tensor G = at::empty_like(buf, at::MemoryFormat::ChannelsLast);
    auto [d5, dw5, db5] = conv3x3_backward(gy * kResScale, buf, weight(params, b, kConvs), mask);
    G.copy_(d5);
    G.narrow(1, 0, d.nf).add_(gy);  // the block's residual
    if (need_param_grads) {
      grad_w[kConvs * b + kConvs - 1] = weight_grad_like(dw5, weight(params, b, kConvs));
      grad_b.narrow(0, bias_offset(d, b, kConvs), d.nf).copy_(db5);
    }
    for (int k = kConvs - 1; k >= 1; --k) {
      // slice k's gradient is complete (only convs > k read it): LeakyReLU backward in place
      at::Tensor gk = G.narrow(1, d.cin(k), d.gc);
      at::leaky_relu_backward_out(gk, gk, buf.narrow(1, d.cin(k), d.gc), kSlope, /*self_is_result=*/true);
      auto [dk, dwk, dbk] = conv3x3_backward(gk, buf.narrow(1, 0, d.cin(k)), weight(params, b, k), mask);
      G.narrow(1, 0, d.cin(k)).add_(dk);  // accumulate into the prefix conv_k read
      if (need_param_grads) {
        grad_w[kConvs * b + k - 1] = weight_grad_like(dwk, weight(params, b, k));
        grad_b.narrow(0, bias_offset(d, b, k), d.gc).copy_(dbk);
      }
    }
    gy = G.narrow(1, 0, d.nf);
  }
  at::Tensor grad_x = new_nhwc(d.N, d.nf, d.H, d.W, grad_out.options());
  at::add_out(grad_x, gy, grad_out);  // + the RRDB's residual
  return {grad_x, grad_w, grad_b};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gansr, m) {
  m.def("rrdb_fwd(Tensor x, Tensor[] params) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("rrdb_bwd(Tensor grad_out, Tensor buf1, Tensor buf2, Tensor buf3, Tensor[] params, bool need_param_grads=True) "
        "-> (Tensor, Tensor[], Tensor)");
}

TORCH_LIBRARY_IMPL(gansr, CPU, m) {
  m.impl("rrdb_fwd", &rrdb_fwd_cpu);
  m.impl("rrdb_bwd", &rrdb_bwd_cpu);
}

}  // namespace rrdb
}  // namespace gansr
