// CUTLASS 2.x implicit-GEMM fprop for the fused RRDB's convs 1..4 (bf16 / fp16 in, fp32 accumulate,
// Sm80 tensor-op kernels, which run on sm_80..sm_90): the activation operand is the channel prefix
// of the block's NHWC buffer (pixel stride wider than its channel count), the epilogue computes
// lrelu(acc + bias) with the bias broadcast as the C operand (stride 0) and stores straight into the
// conv's channel slice of the same buffer. The problem and its arguments come from
// rrdb_cutlass_problem.h, which the CPU check against CUTLASS's host reference shares. No torch
// headers; compiled only with CUTLASS available (GANSR_WITH_CUTLASS), otherwise the launcher reports
// "not supported" and the caller uses cuDNN.
#include "rrdb_kernels.h"

#if defined(GANSR_WITH_CUTLASS)
// clang-format off (order matters: the kernel header defines what the device header uses)
#include <cutlass/cutlass.h>
#include <cutlass/bfloat16.h>
#include <cutlass/half.h>
#include <cutlass/conv/kernel/default_conv2d_fprop.h>
#include <cutlass/epilogue/thread/linear_combination_leaky_relu.h>
// clang-format on

#include "rrdb_cutlass_run.cuh"
#endif

namespace gansr {
namespace rrdb {

#if defined(GANSR_WITH_CUTLASS)
namespace {

using cutlass_conv::Layout;

// One tile shape for every dense-block conv, sized like CUTLASS's own Sm80 16-bit configurations
// (DefaultGemmConfiguration<OpClassTensorOp, Sm80>: K-tile 64, 3 stages, 64-wide warp K; its
// Ampere conv2d fprop example: 128x128x64 CTA of 4 warps). The GEMM N is cout = gc (32 in ESRGAN,
// 16 allowed), so the CTA is 128x32x64 with four 32x32x64 warps: 128 threads (the former
// 128x32x32 / 64x32x32 tile had 2 warps, too few to keep an H100/H200 SM's tensor cores fed).
// Shared memory: 3 x (128 + 32) x 64 x 2 B = 60 KB, above the 48 KB default:
// ImplicitGemmConvolution::initialize raises the kernel's limit (cudaFuncSetAttribute) itself.
constexpr int kStages = 3;
template <typename E>
using FpropKernel = typename cutlass::conv::kernel::DefaultConv2dFprop<
    E, Layout, E, Layout, E, Layout, float, cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80,
    cutlass::gemm::GemmShape<128, 32, 64>, cutlass::gemm::GemmShape<32, 32, 64>, cutlass::gemm::GemmShape<16, 8, 16>,
    cutlass::epilogue::thread::LinearCombinationLeakyRelu<E, 128 / cutlass::sizeof_bits<E>::value, float, float>,
    cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<>, kStages, cutlass::arch::OpMultiplyAdd,
    cutlass::conv::IteratorAlgorithm::kOptimized>::Kernel;
static_assert(FpropKernel<cutlass::bfloat16_t>::kThreadCount == 128, "4 warps per CTA");

template <typename E>
cudaError_t run(const ConvBiasActArgs& a, cudaStream_t stream) {
  using Kernel = FpropKernel<E>;
  static_assert(128 / cutlass::sizeof_bits<E>::value == cutlass_conv::kAlignElements, "access width");
  if (!cutlass_conv::fprop_supported<E>(a)) return cudaErrorNotSupported;
  const cutlass_conv::Problem<E> p = cutlass_conv::fprop_problem<E>(a);
  return cutlass_conv::run_conv<Kernel>(p, cutlass_conv::leaky_relu_params<typename Kernel::EpilogueOutputOp>(p),
                                        stream);
}

}  // namespace

cudaError_t launch_conv3x3_bias_lrelu(DType t, const ConvBiasActArgs& a, cudaStream_t stream) {
  switch (t) {
    case DType::kBFloat16: return run<cutlass::bfloat16_t>(a, stream);
    case DType::kHalf: return run<cutlass::half_t>(a, stream);
    default: return cudaErrorNotSupported;
  }
}

#else

cudaError_t launch_conv3x3_bias_lrelu(DType, const ConvBiasActArgs&, cudaStream_t) { return cudaErrorNotSupported; }

#endif

}  // namespace rrdb
}  // namespace gansr
