// The CUTLASS problems of the fused RRDB's convs (fprop + bias + LeakyReLU, accumulating dgrad,
// wgrad), built from their argument blocks (rrdb_args.h): problem size, the four TensorRefs
// (pointers and NHWC strides into the shared channel buffers), alpha / beta and the LeakyReLU slope.
// Shared by the CUDA launchers (rrdb_cutlass.cu) and the CPU check against CUTLASS's host reference
// convolutions (rrdb_cutlass_host_ref.cc, built by tests/test_rrdb_cutlass.py), so the check
// validates the very arguments the GPU kernels receive. Host-compilable CUTLASS headers
// only (no kernels, no torch).
#pragma once
#include <cutlass/cutlass.h>
#include <cutlass/conv/conv2d_problem_size.h>
#include <cutlass/epilogue/thread/activation.h>
#include <cutlass/epilogue/thread/linear_combination_residual_block.h>
#include <cutlass/functional.h>
#include <cutlass/layout/tensor.h>
#include <cutlass/tensor_ref.h>

#include <cstdint>
#include <initializer_list>

#include "rrdb_args.h"

namespace gansr {
namespace rrdb {
namespace cutlass_conv {

using Layout = cutlass::layout::TensorNHWC;

// The kernels are instantiated for 16-bit elements with 128-bit global accesses: channel counts,
// pixel strides and every pointer's channel offset must be multiples of 8 elements. A check
// instantiated for a wider E (the fp64 CPU check) requires 8 * sizeof(E) bytes, i.e. the same
// channel offsets on buffers allocated 64-byte aligned (PyTorch's CPU and CUDA allocators).
constexpr int kAlignElements = 8;

// NHWC layout of an (N, H, W, C) tensor whose pixels are `pixel_stride` elements apart: a channel
// slice of a wider buffer (its pointer advanced to the slice's first channel)
inline Layout nhwc_strided(int64_t pixel_stride, int W, int H) {
  return Layout(cutlass::make_Coord(static_cast<int32_t>(pixel_stride), static_cast<int32_t>(pixel_stride * W),
                                    static_cast<int32_t>(pixel_stride * W * H)));
}

// Conditions the kernels need that CUTLASS's can_implement does not see (pointer alignment, the
// int32 strides of its layout); false: the caller runs the cuDNN path
template <typename E>
bool supported(std::initializer_list<int64_t> counts, std::initializer_list<const void*> pointers, int64_t pixels) {
  int64_t widest = 0;
  for (const int64_t c : counts) {
    if (c % kAlignElements) return false;
    widest = c > widest ? c : widest;
  }
  for (const void* p : pointers)
    if (reinterpret_cast<uintptr_t>(p) % (kAlignElements * sizeof(E))) return false;
  return pixels * widest < (int64_t(1) << 31);
}

template <typename E>
bool fprop_supported(const ConvBiasActArgs& a) {
  return supported<E>({a.cin, a.cout, a.x_stride, a.out_stride}, {a.x, a.w, a.out, a.bias}, int64_t(a.N) * a.H * a.W);
}
template <typename E>
bool dgrad_supported(const ConvDgradArgs& a) {
  return supported<E>({a.cin, a.cout, a.dy_stride, a.dx_stride}, {a.dy, a.w, a.dx}, int64_t(a.N) * a.H * a.W);
}
template <typename E>
bool wgrad_supported(const ConvWgradArgs& a) {
  return supported<E>({a.cin, a.cout, a.dy_stride, a.x_stride}, {a.dy, a.x, a.dw}, int64_t(a.N) * a.H * a.W);
}

// conv5's residual epilogue (ConvBiasResidualArgs). CUTLASS 2.x's conv kernel with a fused
// broadcast epilogue (DefaultConv2dFpropWithBroadcast -> ImplicitGemmConvolutionWithFusedEpilogue)
// has one source tensor (C) and one broadcast vector; its LinearCombinationResidualBlock functor
// computes unary(binary(activation(alpha acc + vector), beta C)) with stateless functors. With the
// bias as the vector, r1 as C, alpha = beta = 1, activation = "times 0.2", binary = plus and unary
// = identity it is r1 + 0.2 (acc + bias), the dense block's residual, exactly (the 0.2 a
// compile-time constant: s1 must equal kResidualScale). The RRDB's second residual (r2 + s2 v on
// block 3) needs a second source tensor: the conv kernel has none (the two-source form of the
// functor exists for GEMMs only), so r2 is declined: block 3's conv5 writes rdb3 = x + 0.2 (acc + b) to
// a temporary and the sliced algorithm adds the RRDB residual with one elementwise kernel.
constexpr double kResidualScale = 0.2;
template <typename T>
struct ScaleByResidual;
template <typename F, int N>
struct ScaleByResidual<cutlass::Array<F, N>> {
  CUTLASS_HOST_DEVICE cutlass::Array<F, N> operator()(const cutlass::Array<F, N>& v) const {
    cutlass::Array<F, N> y;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < N; ++i) y[i] = v[i] * F(kResidualScale);
    return y;
  }
};
// E: element of x, w, bias, r1 and out; A: accumulation / compute type
template <typename E, typename A>
using ResidualEpilogue = cutlass::epilogue::thread::LinearCombinationResidualBlock<
    E, A, A, E, kAlignElements, ScaleByResidual, cutlass::plus, cutlass::epilogue::thread::Identity>;

template <typename E>
bool residual_supported(const ConvBiasResidualArgs& a) {
  return a.r2 == nullptr && a.s1 == kResidualScale &&
         supported<E>({a.cin, a.cout, a.x_stride, a.r1_stride, a.out_stride}, {a.x, a.w, a.bias, a.r1, a.out},
                      int64_t(a.N) * a.H * a.W);
}

// A CUTLASS conv problem: D = epilogue(alpha * conv + beta * C) on the four TensorRefs; E: the
// operands' element, EC: C's and D's (float for the fp32 weight gradient)
template <typename E, typename EC = E>
struct Problem {
  cutlass::conv::Conv2dProblemSize size;
  cutlass::TensorRef<E, Layout> a, b;
  cutlass::TensorRef<EC, Layout> c, d;
  double alpha, beta, slope;  // rounded to the epilogue's compute type by *_params below; slope: LeakyReLU only
  const void* vector = nullptr;  // the broadcast epilogue's per-output-channel vector (E), residual conv only
};

inline cutlass::conv::Conv2dProblemSize conv3x3_size(int N, int H, int W, int cin, int cout) {
  return cutlass::conv::Conv2dProblemSize(
      cutlass::Tensor4DCoord(N, H, W, cin), cutlass::Tensor4DCoord(cout, 3, 3, cin), cutlass::Tensor4DCoord(1, 1, 1, 1),
      cutlass::MatrixCoord(1, 1), cutlass::MatrixCoord(1, 1), cutlass::Tensor4DCoord(N, H, W, cout),
      cutlass::conv::Mode::kCrossCorrelation, 1);
}

template <typename E>
cutlass::TensorRef<E, Layout> ref(const void* p, Layout layout) {
  return {const_cast<E*>(static_cast<const E*>(p)), layout};
}

// conv3x3 (stride 1, padding 1) + bias + LeakyReLU as a CUTLASS fprop: D = lrelu(conv(A, B) + C),
// A = x (the channel prefix), B = w, C = the bias broadcast over pixels (stride 0), D = the slice
template <typename E>
Problem<E> fprop_problem(const ConvBiasActArgs& a) {
  const auto size = conv3x3_size(a.N, a.H, a.W, a.cin, a.cout);
  return {size,
          ref<E>(a.x, nhwc_strided(a.x_stride, a.W, a.H)),
          ref<E>(a.w, Layout::packed(size.filter_extent())),
          ref<E>(a.bias, Layout(cutlass::make_Coord(0, 0, 0))),
          ref<E>(a.out, nhwc_strided(a.out_stride, a.W, a.H)),
          1.0,
          1.0,
          a.slope};
}

// dgrad: A = dy, B = w, C = D = the gradient prefix (accumulated with beta = 1)
template <typename E>
Problem<E> dgrad_problem(const ConvDgradArgs& a) {
  const auto size = conv3x3_size(a.N, a.H, a.W, a.cin, a.cout);
  const auto dx = ref<E>(a.dx, nhwc_strided(a.dx_stride, a.W, a.H));
  return {size, ref<E>(a.dy, nhwc_strided(a.dy_stride, a.W, a.H)), ref<E>(a.w, Layout::packed(size.filter_extent())),
          dx, dx, 1.0, a.beta, 1.0};
}

// conv + bias + residual: A = x, B = w, C = r1 (beta 1), D = out, vector = bias (alpha 1)
template <typename E>
Problem<E> residual_problem(const ConvBiasResidualArgs& a) {
  const auto size = conv3x3_size(a.N, a.H, a.W, a.cin, a.cout);
  return {size,
          ref<E>(a.x, nhwc_strided(a.x_stride, a.W, a.H)),
          ref<E>(a.w, Layout::packed(size.filter_extent())),
          ref<E>(a.r1, nhwc_strided(a.r1_stride, a.W, a.H)),
          ref<E>(a.out, nhwc_strided(a.out_stride, a.W, a.H)),
          1.0,
          1.0,
          1.0,
          a.bias};
}

// wgrad: A = dy, B = x (the channel prefix), C = D = dw (KRSC packed, EC: E or float), beta 0 (the
// serial split-K slices after the first add into D: LinearCombination::set_k_partition sets beta 1)
template <typename E, typename EC = E>
Problem<E, EC> wgrad_problem(const ConvWgradArgs& a, int split_k = 1) {
  auto size = conv3x3_size(a.N, a.H, a.W, a.cin, a.cout);
  size.split_k_slices = split_k;
  const auto dw = ref<EC>(a.dw, Layout::packed(size.filter_extent()));
  return {size, ref<E>(a.dy, nhwc_strided(a.dy_stride, a.W, a.H)), ref<E>(a.x, nhwc_strided(a.x_stride, a.W, a.H)),
          dw, dw, 1.0, 0.0, 1.0};
}

// Serial split-K of the fp32 wgrad: its GEMM is M = cout x N = 9 cin (a few CTAs: 9..23 of 64x64
// for ESRGAN) over K = N*H*W pixels (16k..64k), so the pixels are split until the grid has about
// two CTAs per SM, every slice keeping >= kWgradMinSliceIters K-tiles of work. The launcher and
// the workspace query both use it with the device's SM count.
constexpr int kWgradTileM = 64, kWgradTileN = 64, kWgradTileK = 64;  // WgradKernel's CTA tile
constexpr int kWgradMinSliceIters = 8, kWgradMaxSplitK = 64;
inline int64_t wgrad_tiles(const ConvWgradArgs& a) {
  return int64_t((a.cout + kWgradTileM - 1) / kWgradTileM) * ((9 * a.cin + kWgradTileN - 1) / kWgradTileN);
}
inline int wgrad_split_k(const ConvWgradArgs& a, int sms) {
  const int64_t tiles = wgrad_tiles(a);
  if (!a.dw_fp32 || sms <= 0 || tiles >= sms) return 1;
  int64_t s = (2 * int64_t(sms) + tiles - 1) / tiles;
  const int64_t most = int64_t(a.N) * a.H * a.W / (int64_t(kWgradMinSliceIters) * kWgradTileK);
  s = s < most ? s : most;
  s = s < kWgradMaxSplitK ? s : kWgradMaxSplitK;
  return s < 1 ? 1 : int(s);
}
// bytes of the serial split-K's semaphores (CUTLASS: one int per output tile; 0 without a split)
inline size_t wgrad_workspace_bytes(const ConvWgradArgs& a, int sms) {
  return wgrad_split_k(a, sms) > 1 ? sizeof(int) * size_t(wgrad_tiles(a)) : 0;
}

// the parameters of the problem's epilogue: LinearCombinationLeakyRelu (fprop) or LinearCombination
template <typename Epilogue, typename E>
typename Epilogue::Params leaky_relu_params(const Problem<E>& p) {
  using C = typename Epilogue::ElementCompute;
  return typename Epilogue::Params(C(p.alpha), C(p.beta), C(p.slope));
}
template <typename Epilogue, typename E, typename EC>
typename Epilogue::Params linear_params(const Problem<E, EC>& p) {
  using C = typename Epilogue::ElementCompute;
  return typename Epilogue::Params(C(p.alpha), C(p.beta));
}

}  // namespace cutlass_conv
}  // namespace rrdb
}  // namespace gansr
