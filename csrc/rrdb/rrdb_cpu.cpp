// Fused RRDB on the CPU: the sliced algorithm of rrdb_sliced.cpp with a CPU backend. Its epilogue and
// gather are the C++ loop twins of the CUDA kernels (same argument blocks, same arithmetic in the
// accumulation type), run over pixel rows with at::parallel_for; with cutlass=True its fused convs
// emulate the CUTLASS argument blocks (raw pointers, pixel strides, KRSC weights, accumulating dgrad)
// with ATen, so the CPU op runs, and CPU tests check, the CUDA path's glue in either mode.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../common.h"
#include "rrdb.h"
#include "rrdb_sliced.h"

namespace gansr {
namespace rrdb {
namespace {

constexpr int64_t kGrainElems = 1 << 15;  // elements per parallel task, at least

// The row loops are compiled for AVX-512 and AVX2 too (picked at load time): ATen's own elementwise
// kernels dispatch the same way, and SSE2 alone made the loops ~3x slower per element than them.
#define RRDB_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
constexpr int64_t kBiasChunks = 256;      // pixel chunks whose bias sums are added in a fixed order

// f(std::bool_constant<b>{}): a runtime flag as a compile-time one, so per-element branches fold away
template <typename F>
void with_flag(bool b, F&& f) {
  b ? f(std::true_type{}) : f(std::false_type{});
}

// epilogue (rrdb_args.h) of pixel rows [m0, m1)
template <typename T, bool kAct, bool kR1, bool kR2>
RRDB_CPU_CLONES void epilogue_rows(const EpilogueArgs& a, int64_t m0, int64_t m1) {
  using A = at::opmath_type<T>;
  const T* bias = static_cast<const T*>(a.bias);
  const A slope = A(a.slope), s1 = A(a.s1), s2 = A(a.s2);
  for (int64_t m = m0; m < m1; ++m) {
    const T* y = static_cast<const T*>(a.y) + m * a.y_stride;
    const T* r1 = kR1 ? static_cast<const T*>(a.r1) + m * a.r1_stride : nullptr;
    const T* r2 = kR2 ? static_cast<const T*>(a.r2) + m * a.r2_stride : nullptr;
    T* out = static_cast<T*>(a.out) + m * a.out_stride;
#pragma omp simd
    for (int c = 0; c < a.C; ++c) {
      A v = A(y[c]) + A(bias[c]);
      if constexpr (kAct) v = v > A(0) ? v : slope * v;
      if constexpr (kR1) v = A(r1[c]) + s1 * v;
      if constexpr (kR2) v = A(r2[c]) + s2 * v;
      out[c] = T(v);
    }
  }
}

template <typename T>
void epilogue(const EpilogueArgs& a) {
  const int64_t grain = std::max<int64_t>(1, kGrainElems / a.C);
  with_flag(a.act, [&](auto act) {
    with_flag(a.r1 != nullptr, [&](auto r1) {
      with_flag(a.r2 != nullptr, [&](auto r2) {
        at::parallel_for(0, a.M, grain, [&](int64_t m0, int64_t m1) {
          epilogue_rows<T, decltype(act)::value, decltype(r1)::value, decltype(r2)::value>(a, m0, m1);
        });
      });
    });
  });
}

// gather (rrdb_args.h) of pixel rows [m0, m1); adds each channel's sum of the bias gradient's
// summand (out2 if given, else out) into bsum[c] when kBias. v: scratch of a.C elements.
template <typename T, bool kAct, bool kOut2, bool kBias>
RRDB_CPU_CLONES void gather_rows(const GatherArgs& a, int64_t m0, int64_t m1, at::opmath_type<T>* bsum, at::opmath_type<T>* v) {
  using A = at::opmath_type<T>;
  const A slope = A(a.slope), s2 = A(a.s2);
  for (int64_t m = m0; m < m1; ++m) {
    // v = sum_i scale_i src_i, in source order
    const A scale0 = A(a.src_scale[0]);
    const T* src0 = static_cast<const T*>(a.src[0]) + m * a.src_stride[0];
#pragma omp simd
    for (int c = 0; c < a.C; ++c) v[c] = scale0 * A(src0[c]);
    for (int i = 1; i < a.nsrc; ++i) {
      const A scale = A(a.src_scale[i]);
      const T* src = static_cast<const T*>(a.src[i]) + m * a.src_stride[i];
#pragma omp simd
      for (int c = 0; c < a.C; ++c) v[c] += scale * A(src[c]);
    }
    const T* act = kAct ? static_cast<const T*>(a.act) + m * a.act_stride : nullptr;
    T* out = static_cast<T*>(a.out) + m * a.out_stride;
    T* out2 = kOut2 ? static_cast<T*>(a.out2) + m * a.out2_stride : nullptr;
#pragma omp simd
    for (int c = 0; c < a.C; ++c) {
      A g = v[c];
      if constexpr (kAct) g = A(act[c]) > A(0) ? g : slope * g;
      out[c] = T(g);
      if constexpr (kOut2) {
        g = s2 * g;
        out2[c] = T(g);
      }
      if constexpr (kBias) bsum[c] += g;
    }
  }
}

// The bias gradient's pixel chunks, each summed into its own row, so the result does not depend on
// the thread count. Deterministic variant (bias_partial): row r = the pixels of CUDA block r's grid-
// stride steps, as the kernel defines it; else kBiasChunks contiguous chunks, whose rows are then
// added to bias_grad in chunk order.
template <typename T>
void gather(const GatherArgs& a) {
  using A = at::opmath_type<T>;
  const bool bias = a.bias_partial || a.bias_grad;
  const bool strided = a.bias_partial != nullptr;
  const int64_t steps = (a.M + kGatherRowsPerStep - 1) / kGatherRowsPerStep;
  const int64_t chunks = strided ? a.partial_rows : std::min(kBiasChunks, steps);
  const int64_t chunk_steps = (steps + chunks - 1) / chunks;  // contiguous chunks: steps per chunk
  std::vector<A> rows(bias && !strided ? chunks * a.C : 0, A(0));
  A* sums = strided ? static_cast<A*>(a.bias_partial) : rows.data();
  if (strided) std::fill(sums, sums + chunks * a.C, A(0));
  const int64_t chunk_elems = std::max<int64_t>(1, a.M / chunks) * a.C * a.nsrc;
  const int64_t grain = std::max<int64_t>(1, kGrainElems / chunk_elems);
  with_flag(a.act != nullptr, [&](auto act) {
    with_flag(a.out2 != nullptr, [&](auto out2) {
      with_flag(bias, [&](auto has_bias) {
        at::parallel_for(0, chunks, grain, [&](int64_t r0, int64_t r1) {
          std::vector<A> v(a.C);
          for (int64_t r = r0; r < r1; ++r) {
            A* bsum = has_bias ? sums + r * a.C : nullptr;
            auto rows_of = [&](int64_t step0, int64_t step1) {
              gather_rows<T, decltype(act)::value, decltype(out2)::value, decltype(has_bias)::value>(
                  a, step0 * kGatherRowsPerStep, std::min(a.M, step1 * kGatherRowsPerStep), bsum, v.data());
            };
            if (strided) {
              for (int64_t s = r; s < steps; s += chunks) rows_of(s, s + 1);
            } else {
              rows_of(std::min(steps, r * chunk_steps), std::min(steps, (r + 1) * chunk_steps));
            }
          }
        });
      });
    });
  });
  if (a.bias_grad) {
    A* out = static_cast<A*>(a.bias_grad);
    for (int64_t r = 0; r < chunks; ++r)
      for (int c = 0; c < a.C; ++c) out[c] += rows[r * a.C + c];
  }
}

// strided NHWC view (N, C, H, W) of raw memory with pixel stride ps
at::Tensor nhwc_view(const void* p, int64_t N, int64_t C, int64_t H, int64_t W, int64_t ps, at::ScalarType st) {
  return at::from_blob(const_cast<void*>(p), {N, C, H, W}, {H * W * ps, 1, W * ps, ps}, at::TensorOptions().dtype(st));
}

struct CpuBackend final : Backend {
  explicit CpuBackend(bool cutlass) : cutlass(cutlass) {}
  const bool cutlass;  // the fused convs' argument blocks, emulated with ATen

  void epilogue(DType t, const EpilogueArgs& a) const override {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scalar_type(t), "rrdb_epilogue",
                                    [&] { rrdb::epilogue<scalar_t>(a); });
  }
  void gather(DType t, const GatherArgs& a) const override {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scalar_type(t), "rrdb_gather",
                                    [&] { rrdb::gather<scalar_t>(a); });
  }
  bool has_fused_conv(DType) const override { return cutlass; }
  bool conv_bias_lrelu(DType t, const ConvBiasActArgs& a) const override {
    const auto st = scalar_type(t);
    const at::Tensor x = nhwc_view(a.x, a.N, a.cin, a.H, a.W, a.x_stride, st);
    const at::Tensor w = nhwc_view(a.w, a.cout, a.cin, 3, 3, a.cin, st);  // KRSC memory = OIHW channels_last
    const at::Tensor b = at::from_blob(const_cast<void*>(a.bias), {a.cout}, at::TensorOptions().dtype(st));
    at::Tensor out = nhwc_view(a.out, a.N, a.cout, a.H, a.W, a.out_stride, st);
    at::leaky_relu_out(out, conv3x3(x, w, b), a.slope);
    return true;
  }
  bool conv_bias_residual(DType t, const ConvBiasResidualArgs& a) const override {
    if (a.r2 != nullptr) return false;  // as the CUDA kernel: one residual source only
    const auto st = scalar_type(t);
    const at::Tensor x = nhwc_view(a.x, a.N, a.cin, a.H, a.W, a.x_stride, st);
    const at::Tensor w = nhwc_view(a.w, a.cout, a.cin, 3, 3, a.cin, st);
    const at::Tensor b = at::from_blob(const_cast<void*>(a.bias), {a.cout}, at::TensorOptions().dtype(st));
    const at::Tensor r1 = nhwc_view(a.r1, a.N, a.cout, a.H, a.W, a.r1_stride, st);
    at::Tensor out = nhwc_view(a.out, a.N, a.cout, a.H, a.W, a.out_stride, st);
    at::add_out(out, r1, conv3x3(x, w, b), a.s1);
    return true;
  }
  bool has_fused_bwd(DType) const override { return cutlass; }
  bool conv_dgrad(DType t, const ConvDgradArgs& a) const override {
    if (!cutlass) return false;
    const auto st = scalar_type(t);
    const at::Tensor dy = nhwc_view(a.dy, a.N, a.cout, a.H, a.W, a.dy_stride, st);
    const at::Tensor w = nhwc_view(a.w, a.cout, a.cin, 3, 3, a.cin, st);
    at::Tensor dx = nhwc_view(a.dx, a.N, a.cin, a.H, a.W, a.dx_stride, st);
    const at::Tensor d = std::get<0>(conv3x3_backward(dy, at::empty_like(dx), w, {true, false, false}));
    a.beta == 0.0 ? dx.copy_(d) : dx.add_(d, a.beta);
    return true;
  }
  bool conv_wgrad(DType t, const ConvWgradArgs& a) const override {
    if (!cutlass) return false;
    const auto st = scalar_type(t);
    const at::Tensor dy = nhwc_view(a.dy, a.N, a.cout, a.H, a.W, a.dy_stride, st);
    const at::Tensor x = nhwc_view(a.x, a.N, a.cin, a.H, a.W, a.x_stride, st);
    at::Tensor dw = nhwc_view(a.dw, a.cout, a.cin, 3, 3, a.cin, a.dw_fp32 ? at::kFloat : st);
    // dw_fp32: as the CUDA kernel, the operands' products summed in float (double stays double) and
    // written as float, never rounded to the operands' type
    const auto ct = a.dw_fp32 && st != at::kDouble ? at::kFloat : st;
    const at::Tensor w_shape = at::empty({a.cout, a.cin, 3, 3}, at::TensorOptions().dtype(ct));
    dw.copy_(std::get<1>(conv3x3_backward(dy.to(ct), x.to(ct), w_shape, {false, true, false})));
    return true;
  }
};

using MasterParams = c10::optional<at::TensorList>;  // rrdb_fwd's `master`: saved by autograd, unused here

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rrdb_fwd_cpu(const at::Tensor& x, at::TensorList params,
                                                                        bool cutlass, const MasterParams& /*master*/,
                                                                        bool /*cutlass_bwd*/) {
  return sliced_fwd(x, params, cpu_backend(cutlass));
}

BwdResult rrdb_bwd_cpu(const at::Tensor& grad_out, const at::Tensor& buf1, const at::Tensor& buf2,
                       const at::Tensor& buf3, at::TensorList params, bool need_param_grads, bool cutlass,
                       bool fp32_param_grads) {
  return sliced_bwd(grad_out, buf1, buf2, buf3, params, need_param_grads, cpu_backend(cutlass), fp32_param_grads);
}

}  // namespace

const Backend& cpu_backend(bool cutlass) {
  static const CpuBackend aten_convs(false), cutlass_shaped(true);
  return cutlass ? cutlass_shaped : aten_convs;
}

TORCH_LIBRARY_IMPL(gansr, CPU, m) {
  m.impl("rrdb_fwd", &rrdb_fwd_cpu);
  m.impl("rrdb_bwd", &rrdb_bwd_cpu);
}

}  // namespace rrdb
}  // namespace gansr
