// Fused RRDB (residual-in-residual dense block): declarations shared by the sliced algorithm and its
// CPU and CUDA backends.
//
// One RRDB = three dense blocks; dense block with input x (N, nf, H, W):
//   x_k = lrelu(conv_k(cat(x, x_1..x_{k-1})), 0.2)   k = 1..4 (gc channels each)
//   y   = conv_5(cat(x, x_1..x_4)) * 0.2 + x         (nf channels)
//   RRDB(x) = rdb3(rdb2(rdb1(x))) * 0.2 + x
// Every block keeps ONE channels_last buffer (N, nf + 4 gc, H, W): its input in channels [0, nf),
// x_k in [nf + (k-1) gc, nf + k gc). conv_k reads the channel prefix it needs (no cat), block b's
// conv_5 epilogue writes straight into block b+1's buffer prefix. The three buffers are all that
// backward needs (the LeakyReLU derivative comes from the sign of the saved output).
//
// Ops (schemas in rrdb.cpp; one algorithm, rrdb_sliced.cpp, on a CPU and a CUDA backend):
//   rrdb_fwd(x, params[30], cutlass=False, master=None, *, cutlass_bwd=False) -> (out, buf1, buf2, buf3)
//     cutlass_bwd: the `cutlass` of the rrdb_bwd that autograd runs for this call (unused here)
//     params: rdb1.conv1.weight, rdb1.conv1.bias, ..., rdb3.conv5.weight, rdb3.conv5.bias (x's dtype)
//     master: None or the 30 fp32 master parameters params were cast from (unused here: the autograd
//       formula returns their gradients, from rrdb_bwd(fp32_param_grads=True), and none for params)
//   rrdb_bwd(grad_out, buf1, buf2, buf3, params[30], need_param_grads=True, cutlass=False,
//            fp32_param_grads=False) -> (grad_x, grad_weights[15], grad_biases)
//     fp32_param_grads: weight and bias gradients in float32 whatever the activations' dtype (the
//     CUTLASS wgrad writes its fp32 accumulation as is; declined / ATen wgrads are cast)
//     grad_biases: the 15 bias gradients concatenated in params order (one tensor: one fill / cast
//     for all of them; the Python side splits it into views)
//     need_param_grads=False (no parameter needs a gradient, e.g. a frozen generator): no weight
//     gradient convolutions, no bias reductions; grad_weights is [] and grad_biases has 0 elements
//   cutlass: the convolutions through the backend's fused-conv argument blocks (rrdb_args.h): CUDA runs
//     CUTLASS kernels for bf16 / fp16 (other dtypes: cuDNN), the CPU emulates the same blocks with ATen
//     for every dtype (so CPU tests run the CUTLASS-shaped path: accumulating dgrad, strided wgrad)
//   Bias gradients are deterministic when torch.use_deterministic_algorithms(True) is on (CUDA: a
//   two-pass reduction instead of float atomics; the CPU backend sums fixed pixel chunks in a fixed
//   order, so it is deterministic anyway).
// out, buf*, grad_x are channels_last; each weight gradient has its weight's layout (channels_last
// when the weight is, e.g. after model.to(memory_format=torch.channels_last), else contiguous).
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <vector>

namespace gansr {
namespace rrdb {

constexpr int kBlocks = 3;
constexpr int kConvs = 5;
constexpr int kParams = 2 * kConvs * kBlocks;  // weight + bias per conv
constexpr double kSlope = 0.2;                 // LeakyReLU negative slope
constexpr double kResScale = 0.2;              // residual scaling of dense blocks and of the RRDB

struct Dims {
  int64_t N, nf, gc, H, W;
  int64_t channels() const { return nf + 4 * gc; }
  int64_t cin(int k) const { return nf + (k - 1) * gc; }  // input channels of conv_k, k = 1..5
};

// Checks x / params (shapes, dtypes, devices) and returns the dims; `op` names the caller in errors.
Dims check_fwd_inputs(const at::Tensor& x, at::TensorList params, const char* op);
Dims check_bwd_inputs(const at::Tensor& grad_out, const at::Tensor& buf1, const at::Tensor& buf2,
                      const at::Tensor& buf3, at::TensorList params);

using BwdResult = std::tuple<at::Tensor, std::vector<at::Tensor>, at::Tensor>;

// grad_biases of rrdb_bwd(..., need_param_grads=False)
inline at::Tensor no_bias_grads(const at::TensorOptions& opts) { return at::empty({0}, opts); }

inline const at::Tensor& weight(at::TensorList p, int block, int k) { return p[2 * (kConvs * block + k - 1)]; }
inline const at::Tensor& bias(at::TensorList p, int block, int k) { return p[2 * (kConvs * block + k - 1) + 1]; }

// offset of conv_k's bias gradient in the concatenated grad_biases
inline int64_t bias_offset(const Dims& d, int block, int k) { return block * (d.nf + 4 * d.gc) + (k - 1) * d.gc; }

// a weight gradient in the layout of its weight (the op's documented output layout)
inline at::Tensor weight_grad_like(const at::Tensor& dw, const at::Tensor& w) {
  const bool cl = w.is_contiguous(at::MemoryFormat::ChannelsLast) && !w.is_contiguous();
  return dw.contiguous(cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
}

// channels_last (N, C, H, W) output allocated through gansr::new_output (poisoned when asked).
at::Tensor new_nhwc(int64_t N, int64_t C, int64_t H, int64_t W, const at::TensorOptions& opts);

// 3x3, stride 1, padding 1 convolution forward / backward through ATen (any device).
at::Tensor conv3x3(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias);
// mask: which of (grad_input, grad_weight, grad_bias) to compute; the others come back undefined
std::tuple<at::Tensor, at::Tensor, at::Tensor> conv3x3_backward(const at::Tensor& grad_out, const at::Tensor& input,
                                                                const at::Tensor& weight, std::array<bool, 3> mask);

}  // namespace rrdb
}  // namespace gansr
