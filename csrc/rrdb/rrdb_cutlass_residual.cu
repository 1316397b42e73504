// CUTLASS 2.x implicit-GEMM fprop of a dense block's conv5 with bias and the block's residual in the
// epilogue (bf16 / fp16 in, fp32 accumulate, Sm80 tensor-op kernels): out = r1 + 0.2 (conv(x) + bias),
// x = the block's buffer prefix, r1 = its first nf channels (the C operand), the bias the
// broadcast vector, out = the next block's buffer prefix: the separate epilogue kernel of dense
// blocks 1-2 disappears. Why this epilogue and not the RRDB's second residual: see
// ResidualEpilogue in rrdb_cutlass_problem.h (shared with the CPU check). No torch headers;
// without CUTLASS (GANSR_WITH_CUTLASS) the launcher reports "not supported".
#include "rrdb_kernels.h"

#if defined(GANSR_WITH_CUTLASS)
// clang-format off (order matters: the kernel header defines what the device header uses)
#include <cutlass/conv/kernel/default_conv2d_fprop_with_broadcast.h>
// clang-format on

#include "rrdb_cutlass_run.cuh"
#endif

namespace gansr {
namespace rrdb {

#if defined(GANSR_WITH_CUTLASS)
namespace {

using cutlass_conv::Layout;

// conv5's GEMM: M = N*H*W pixels, N = nf (64), K = 9 (nf + 4 gc): 128x64x64 CTA of four 64x32x64
// warps (the dgrad kernel's shape), 3 stages: 3 x (128 + 64) x 64 x 2 B = 72 KB shared memory
// (raised by initialize; fits sm_86/89's 99 KB)
template <typename E>
using ResidualKernel = typename cutlass::conv::kernel::DefaultConv2dFpropWithBroadcast<
    E, Layout, E, Layout, E, Layout, float, cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80,
    cutlass::gemm::GemmShape<128, 64, 64>, cutlass::gemm::GemmShape<64, 32, 64>, cutlass::gemm::GemmShape<16, 8, 16>,
    cutlass_conv::ResidualEpilogue<E, float>, cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<>, 3,
    cutlass::arch::OpMultiplyAdd, cutlass::conv::IteratorAlgorithm::kOptimized>::Kernel;
static_assert(ResidualKernel<cutlass::bfloat16_t>::kThreadCount == 128, "4 warps per CTA");

template <typename E>
cudaError_t run(const ConvBiasResidualArgs& a, cudaStream_t stream) {
  using Kernel = ResidualKernel<E>;
  if (!cutlass_conv::residual_supported<E>(a)) return cudaErrorNotSupported;
  const cutlass_conv::Problem<E> p = cutlass_conv::residual_problem<E>(a);
  return cutlass_conv::run_conv<Kernel>(p, cutlass_conv::linear_params<typename Kernel::EpilogueOutputOp>(p), stream,
                                        nullptr, 0, cutlass::conv::SplitKMode::kSerial, const_cast<void*>(p.vector));
}

}  // namespace

cudaError_t launch_conv3x3_bias_residual(DType t, const ConvBiasResidualArgs& a, cudaStream_t stream) {
  return cutlass_conv::by_dtype(t, [&](auto e) { return run<decltype(e)>(a, stream); });
}

#else

cudaError_t launch_conv3x3_bias_residual(DType, const ConvBiasResidualArgs&, cudaStream_t) {
  return cudaErrorNotSupported;
}

#endif

}  // namespace rrdb
}  // namespace gansr
