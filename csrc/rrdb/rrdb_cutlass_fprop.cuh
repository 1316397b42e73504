// The CUTLASS fprop of the fused RRDB's convs 1..4 (bias + LeakyReLU epilogue into the buffer slice)
// for one CTA tile: shared by rrdb_cutlass.cu (the default tile, bf16 + fp16) and
// rrdb_cutlass_tiles.cu (the bf16 variants set_fprop_tile selects). Include after
// <cutlass/conv/kernel/default_conv2d_fprop.h> and the LeakyReLU epilogue header.
#pragma once
#include "rrdb_cutlass_run.cuh"
#include "rrdb_kernels.h"

namespace gansr {
namespace rrdb {
namespace cutlass_conv {

// Tile (TM, TN, TK) of 4 warps (WM, WN, WK), Sm80 16x8x16 bf16/fp16 MMAs, fp32 accumulation,
// optimized iterators reading the strided channel prefix
template <typename E, int TM, int TN, int TK, int WM, int WN, int WK, int Stages>
using FpropKernelOf = typename cutlass::conv::kernel::DefaultConv2dFprop<
    E, Layout, E, Layout, E, Layout, float, cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80,
    cutlass::gemm::GemmShape<TM, TN, TK>, cutlass::gemm::GemmShape<WM, WN, WK>, cutlass::gemm::GemmShape<16, 8, 16>,
    cutlass::epilogue::thread::LinearCombinationLeakyRelu<E, 128 / cutlass::sizeof_bits<E>::value, float, float>,
    cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<>, Stages, cutlass::arch::OpMultiplyAdd,
    cutlass::conv::IteratorAlgorithm::kOptimized>::Kernel;

template <typename Kernel, typename E>
cudaError_t run_fprop(const ConvBiasActArgs& a, cudaStream_t stream) {
  static_assert(Kernel::kThreadCount == 128, "4 warps per CTA");
  static_assert(128 / cutlass::sizeof_bits<E>::value == kAlignElements, "access width");
  if (!fprop_supported<E>(a)) return cudaErrorNotSupported;
  const Problem<E> p = fprop_problem<E>(a);
  return run_conv<Kernel>(p, leaky_relu_params<typename Kernel::EpilogueOutputOp>(p), stream);
}

// bf16 fprop with tile 1..kFpropTiles-1 (rrdb_cutlass_tiles.cu); other values: not supported
cudaError_t run_fprop_bf16_tile(int tile, const ConvBiasActArgs& a, cudaStream_t stream);

}  // namespace cutlass_conv
}  // namespace rrdb
}  // namespace gansr
