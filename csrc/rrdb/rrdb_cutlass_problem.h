// The CUTLASS problem of one fused RRDB conv, built from its argument block (rrdb_args.h): problem
// size, the four TensorRefs (pointers and NHWC strides into the shared channel buffer), alpha / beta
// and the LeakyReLU slope. Shared by the CUDA launcher (rrdb_cutlass.cu) and the CPU check against
// CUTLASS's host reference convolution (rrdb_cutlass_host_ref.cc, built by tests/test_rrdb_cutlass.py),
// so the check validates the very arguments the GPU kernel receives. Host-compilable CUTLASS headers
// only (no kernels, no torch).
#pragma once
#include <cutlass/cutlass.h>
#include <cutlass/conv/conv2d_problem_size.h>
#include <cutlass/layout/tensor.h>
#include <cutlass/tensor_ref.h>

#include <cstdint>

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

// Conditions the kernel needs that CUTLASS's can_implement does not see (pointer alignment, the
// int32 strides of its layout); false: the caller runs the cuDNN path
template <typename E>
bool fprop_supported(const ConvBiasActArgs& a) {
  const auto aligned = [](const void* p) {
    return reinterpret_cast<uintptr_t>(p) % (kAlignElements * sizeof(E)) == 0;
  };
  if (a.cin % kAlignElements || a.cout % kAlignElements || a.x_stride % kAlignElements ||
      a.out_stride % kAlignElements)
    return false;
  if (!aligned(a.x) || !aligned(a.w) || !aligned(a.out) || !aligned(a.bias)) return false;
  const int64_t widest = a.x_stride > a.out_stride ? a.x_stride : a.out_stride;
  return int64_t(a.N) * a.H * a.W * widest < (int64_t(1) << 31);
}

// conv3x3 (stride 1, padding 1) + bias + LeakyReLU as a CUTLASS fprop:
//   D = lrelu(alpha * conv(x, w) + beta * C, slope),  C = the bias broadcast over pixels (stride 0)
template <typename E>
struct FpropProblem {
  cutlass::conv::Conv2dProblemSize size;
  cutlass::TensorRef<E, Layout> x, w, c, d;
  double alpha, beta, slope;  // rounded to the epilogue's compute type by epilogue_params
};

template <typename E>
FpropProblem<E> fprop_problem(const ConvBiasActArgs& a) {
  const cutlass::Tensor4DCoord x_extent(a.N, a.H, a.W, a.cin), w_extent(a.cout, 3, 3, a.cin),
      d_extent(a.N, a.H, a.W, a.cout);
  return {cutlass::conv::Conv2dProblemSize(x_extent, w_extent, cutlass::Tensor4DCoord(1, 1, 1, 1),
                                           cutlass::MatrixCoord(1, 1), cutlass::MatrixCoord(1, 1), d_extent,
                                           cutlass::conv::Mode::kCrossCorrelation, 1),
          {const_cast<E*>(static_cast<const E*>(a.x)), nhwc_strided(a.x_stride, a.W, a.H)},
          {const_cast<E*>(static_cast<const E*>(a.w)), Layout::packed(w_extent)},
          {const_cast<E*>(static_cast<const E*>(a.bias)), Layout(cutlass::make_Coord(0, 0, 0))},
          {static_cast<E*>(a.out), nhwc_strided(a.out_stride, a.W, a.H)},
          1.0,
          1.0,
          a.slope};
}

// the parameters of a LinearCombinationLeakyRelu epilogue for this problem
template <typename Epilogue, typename E>
typename Epilogue::Params epilogue_params(const FpropProblem<E>& p) {
  using C = typename Epilogue::ElementCompute;
  return typename Epilogue::Params(C(p.alpha), C(p.beta), C(p.slope));
}

}  // namespace cutlass_conv
}  // namespace rrdb
}  // namespace gansr
