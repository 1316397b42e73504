// Argument blocks of the fused RRDB's elementwise kernels (plain pointers; no CUDA or torch headers,
// so the CPU emulation of the CUDA glue can use them too). Every tensor is an NHWC matrix of
// M = N*H*W pixel rows: element (m, c) of a C-channel slice lives at p[m * stride + c], so a slice
// of a wider buffer is its base pointer advanced to the slice's first channel.
//
// T is float, double, half or bfloat16 (passed as void* + its gansr::DType code, kernel_defs.h); A, the
// accumulation type, is double for double and float otherwise.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../kernel_defs.h"

namespace gansr {
namespace rrdb {

// Forward epilogue of one conv (the conv runs without bias):
//   v = y + bias;  v = lrelu(v, slope) if act;  v = r1 + s1 v if r1;  v = r2 + s2 v if r2;  out = v
struct EpilogueArgs {
  const void* y;
  int64_t y_stride;
  const void* bias;
  const void* r1;
  int64_t r1_stride;
  double s1;
  const void* r2;
  int64_t r2_stride;
  double s2;
  void* out;
  int64_t out_stride;
  int64_t M;
  int C;
  bool act;
  double slope;
};

// Backward gather: v = sum_i scale_i src_i (the data gradients of every conv that read this slice,
// plus residual paths), so no separate add kernels ever run;
//   out  = v * lrelu'(act)   (act = the slice's saved LeakyReLU output; no mask when act is null)
//   out2 = s2 * out          (optional)
//   bias_grad[c] += sum_m (out2 if given else out)[m, c]     (A-typed accumulator, zeroed by the caller;
//                                                           float atomics on CUDA: order not fixed)
// Deterministic variant (torch.use_deterministic_algorithms): with bias_partial set, bias_grad is not
// touched; row r < partial_rows = gather_grid_x(M) of bias_partial (A-typed, partial_rows x C) gets
// the sum over the pixels m with (m / kGatherRowsPerStep) % partial_rows == r (what one CUDA block
// along x handles), every element written; the caller reduces the rows in a fixed order.
constexpr int kMaxSources = 8;
constexpr int kGatherRowsPerStep = 8;     // pixels per grid-stride step of a gather block (its blockDim.y)
constexpr int64_t kGatherMaxGridX = 1024;  // few blocks: the bias reduction stays cheap, enough to fill a GPU
inline int64_t gather_grid_x(int64_t M) { return blocks_for(M, kGatherRowsPerStep, kGatherMaxGridX); }
struct GatherArgs {
  const void* src[kMaxSources];
  int64_t src_stride[kMaxSources];
  double src_scale[kMaxSources];
  int nsrc;
  const void* act;
  int64_t act_stride;
  double slope;
  void* out;
  int64_t out_stride;
  void* out2;
  int64_t out2_stride;
  double s2;
  void* bias_grad;
  int64_t M;
  int C;
  void* bias_partial;    // deterministic two-pass bias gradient (see above); null: atomics into bias_grad
  int64_t partial_rows;  // must equal gather_grid_x(M) when bias_partial is set
};

// 3x3 / stride 1 / padding 1 convolution with bias + LeakyReLU fused into its epilogue, reading an
// NHWC channel prefix and writing an NHWC channel slice (the CUTLASS path of convs 1..4):
//   out[m, k] = lrelu(sum_{r,s,c} x[pixel(m) + (r-1, s-1), c] w[k, r, s, c] + bias[k], slope)
struct ConvBiasActArgs {
  const void* x;      // (N, H, W, cin) with pixel stride x_stride
  int64_t x_stride;
  const void* w;      // (cout, 3, 3, cin) packed: the OIHW weight in channels_last
  const void* bias;   // (cout,)
  void* out;          // (N, H, W, cout) with pixel stride out_stride
  int64_t out_stride;
  int N, H, W, cin, cout;
  double slope;
};

// Backward of the same conv through CUTLASS (opt-in), on the same NHWC views:
// data gradient, accumulated in place into the channel prefix it flows to (C and D the same view):
//   dx[m, c] = beta dx[m, c] + sum_{r,s,k} dy[pixel(m) - (r-1, s-1), k] w[k, r, s, c]
struct ConvDgradArgs {
  const void* dy;  // (N, H, W, cout) with pixel stride dy_stride
  int64_t dy_stride;
  const void* w;   // (cout, 3, 3, cin) packed
  void* dx;        // (N, H, W, cin) with pixel stride dx_stride
  int64_t dx_stride;
  int N, H, W, cin, cout;
  double beta;     // 0: overwrite dx, 1: add to it
};
// weight gradient: dw[k, r, s, c] = sum_m dy[m, k] x[pixel(m) + (r-1, s-1), c]
struct ConvWgradArgs {
  const void* dy;  // (N, H, W, cout) with pixel stride dy_stride
  int64_t dy_stride;
  const void* x;   // (N, H, W, cin) with pixel stride x_stride (the channel prefix the conv read)
  int64_t x_stride;
  void* dw;        // (cout, 3, 3, cin) packed: the OIHW gradient in channels_last
  int N, H, W, cin, cout;
  // dw's element type: false = the operands' dtype (one K slice); true = float (fp32 accumulation
  // written as is, deterministic serial split-K over the N*H*W pixels when the grid is small: the
  // slices add their partial sums into dw one after another in slice order, so the bits do not
  // depend on scheduling). The split needs `workspace_bytes` >= conv3x3_wgrad_workspace(dtype, args)
  // bytes of device memory at `workspace` (the caller's allocator: CUDA-graph capturable; zeroed by
  // the launch itself); too small: the launch declines.
  bool dw_fp32;
  void* workspace;
  size_t workspace_bytes;
};

// conv5 of a dense block with bias and the block's residual in its epilogue (the CUTLASS path):
//   v[m, k] = r1[m, k] + s1 (sum_{r,s,c} x[pixel(m) + (r-1, s-1), c] w[k, r, s, c] + bias[k])
//   out[m, k] = r2[m, k] + s2 v[m, k] if r2 else v[m, k]
// Dense blocks 1-2: x = the block's buffer prefix (nf + 4 gc channels), r1 = its channels [0, nf)
// (the block input), s1 = 0.2, out = the next block's buffer prefix; block 3: out = a temporary
// rdb3 (the RRDB's own residual, x0 + 0.2 rdb3, follows as one elementwise kernel). r2 (r2 = the
// RRDB input, s2 = 0.2) is declined by the CUDA kernel (see rrdb_cutlass_problem.h). out must not overlap the x prefix (other CTAs still
// read it); it may be r1 or r2 themselves only if they are not part of x (each element is read
// before the same thread writes it).
struct ConvBiasResidualArgs {
  const void* x;      // (N, H, W, cin) with pixel stride x_stride
  int64_t x_stride;
  const void* w;      // (cout, 3, 3, cin) packed
  const void* bias;   // (cout,)
  const void* r1;     // (N, H, W, cout) with pixel stride r1_stride
  int64_t r1_stride;
  double s1;
  const void* r2;     // optional (null: one residual)
  int64_t r2_stride;
  double s2;
  void* out;          // (N, H, W, cout) with pixel stride out_stride
  int64_t out_stride;
  int N, H, W, cin, cout;
};

}  // namespace rrdb
}  // namespace gansr
