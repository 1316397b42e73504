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

// A CUTLASS conv problem: D = epilogue(alpha * conv + beta * C) on the four TensorRefs
template <typename E>
struct Problem {
  cutlass::conv::Conv2dProblemSize size;
  cutlass::TensorRef<E, Layout> a, b, c, d;
  double alpha, beta, slope;  // rounded to the epilogue's compute type by *_params below; slope: LeakyReLU only
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

// wgrad: A = dy, B = x (the channel prefix), C = D = dw (KRSC packed), beta 0
template <typename E>
Problem<E> wgrad_problem(const ConvWgradArgs& a) {
  const auto size = conv3x3_size(a.N, a.H, a.W, a.cin, a.cout);
  const auto dw = ref<E>(a.dw, Layout::packed(size.filter_extent()));
  return {size, ref<E>(a.dy, nhwc_strided(a.dy_stride, a.W, a.H)), ref<E>(a.x, nhwc_strided(a.x_stride, a.W, a.H)),
          dw, dw, 1.0, 0.0, 1.0};
}

// the parameters of the problem's epilogue: LinearCombinationLeakyRelu (fprop) or LinearCombination
template <typename Epilogue, typename E>
typename Epilogue::Params leaky_relu_params(const Problem<E>& p) {
  using C = typename Epilogue::ElementCompute;
  return typename Epilogue::Params(C(p.alpha), C(p.beta), C(p.slope));
}
template <typename Epilogue, typename E>
typename Epilogue::Params linear_params(const Problem<E>& p) {
  using C = typename Epilogue::ElementCompute;
  return typename Epilogue::Params(C(p.alpha), C(p.beta));
}

}  // namespace cutlass_conv
}  // namespace rrdb
}  // namespace gansr
