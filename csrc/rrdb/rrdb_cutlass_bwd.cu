// CUTLASS 2.x implicit-GEMM dgrad / wgrad for the fused RRDB's backward (bf16 / fp16 in, fp32
// accumulate, Sm80 tensor-op kernels): dgrad reads the dense output gradient and writes, with
// beta = 1, into the channel prefix of the block's NHWC gradient buffer (C and D the same strided
// view), so every conv adds its data gradient in place; wgrad reads the output gradient and the
// strided activation prefix directly (no contiguous copy) and writes the KRSC (channels_last)
// weight gradient. Problems from rrdb_cutlass_problem.h (shared with the CPU check). No torch
// headers; without CUTLASS (GANSR_WITH_CUTLASS) the launchers report "not supported".
#include "rrdb_kernels.h"

#if defined(GANSR_WITH_CUTLASS)
// clang-format off (order matters: the kernel headers define what the device header uses)
#include <cutlass/cutlass.h>
#include <cutlass/bfloat16.h>
#include <cutlass/half.h>
#include <cutlass/conv/kernel/default_conv2d_dgrad.h>
#include <cutlass/conv/kernel/default_conv2d_wgrad.h>
#include <cutlass/epilogue/thread/linear_combination.h>
// clang-format on

#include "rrdb_cutlass_run.cuh"
#endif

namespace gansr {
namespace rrdb {

#if defined(GANSR_WITH_CUTLASS)
namespace {

using cutlass_conv::Layout;
template <typename E>
using Linear = cutlass::epilogue::thread::LinearCombination<E, cutlass_conv::kAlignElements, float, float>;

// dgrad GEMM: M = N*H*W pixels, N = cin (64..160 in ESRGAN), K = 9 cout: 128x64x64 CTA of four
// 64x32x64 warps (128 threads), 3 stages (72 KB shared memory, raised by initialize)
template <typename E>
using DgradKernel = typename cutlass::conv::kernel::DefaultConv2dDgrad<
    E, Layout, E, Layout, E, Layout, float, cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80,
    cutlass::gemm::GemmShape<128, 64, 64>, cutlass::gemm::GemmShape<64, 32, 64>, cutlass::gemm::GemmShape<16, 8, 16>,
    Linear<E>, cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<>, 3, cutlass::arch::OpMultiplyAdd,
    cutlass::conv::IteratorAlgorithm::kOptimized, cutlass::conv::StrideSupport::kUnity>::Kernel;

// wgrad GEMM: M = cout (32 / 64), N = 9 cin, K = N*H*W pixels: 64x64x64 CTA of four 32x32x64 warps.
// dw in the operands' type: one K slice. dw in fp32 (EC = float, 4-float accesses): serial split-K
// over the pixels (cutlass_conv::wgrad_split_k: few CTAs for ESRGAN's sizes otherwise), deterministic
// (slice s adds into dw after slice s - 1, ordered by the semaphores in the caller's workspace).
template <typename E, typename EC, typename Epilogue>
using WgradKernelOf = typename cutlass::conv::kernel::DefaultConv2dWgrad<
    E, Layout, E, Layout, EC, Layout, float, cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80,
    cutlass::gemm::GemmShape<cutlass_conv::kWgradTileM, cutlass_conv::kWgradTileN, cutlass_conv::kWgradTileK>,
    cutlass::gemm::GemmShape<32, 32, 64>, cutlass::gemm::GemmShape<16, 8, 16>, Epilogue,
    cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<>, 3, cutlass::arch::OpMultiplyAdd,
    cutlass::conv::IteratorAlgorithm::kOptimized>::Kernel;
using LinearF32 = cutlass::epilogue::thread::LinearCombination<float, 4, float, float>;
template <typename E>
using WgradKernel = WgradKernelOf<E, E, Linear<E>>;
template <typename E>
using WgradF32Kernel = WgradKernelOf<E, float, LinearF32>;

static_assert(DgradKernel<cutlass::bfloat16_t>::kThreadCount == 128, "4 warps per CTA");
static_assert(WgradKernel<cutlass::bfloat16_t>::kThreadCount == 128, "4 warps per CTA");
static_assert(WgradF32Kernel<cutlass::bfloat16_t>::kThreadCount == 128, "4 warps per CTA");

// the current device's SM count (0 if unknown: no split)
int device_sms() {
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) return 0;
  return sms;
}

template <typename E>
cudaError_t dgrad(const ConvDgradArgs& a, cudaStream_t stream) {
  if (!cutlass_conv::dgrad_supported<E>(a)) return cudaErrorNotSupported;
  const cutlass_conv::Problem<E> p = cutlass_conv::dgrad_problem<E>(a);
  return cutlass_conv::run_conv<DgradKernel<E>>(p, cutlass_conv::linear_params<Linear<E>>(p), stream);
}

template <typename E>
cudaError_t wgrad(const ConvWgradArgs& a, cudaStream_t stream) {
  if (!cutlass_conv::wgrad_supported<E>(a)) return cudaErrorNotSupported;
  if (!a.dw_fp32) {
    const cutlass_conv::Problem<E> p = cutlass_conv::wgrad_problem<E>(a);
    return cutlass_conv::run_conv<WgradKernel<E>>(p, cutlass_conv::linear_params<Linear<E>>(p), stream);
  }
  const auto p = cutlass_conv::wgrad_problem<E, float>(a, cutlass_conv::wgrad_split_k(a, device_sms()));
  // run_conv declines when CUTLASS's workspace (the semaphores) exceeds a.workspace_bytes
  return cutlass_conv::run_conv<WgradF32Kernel<E>>(p, cutlass_conv::linear_params<LinearF32>(p), stream, a.workspace,
                                                   a.workspace_bytes, cutlass::conv::SplitKMode::kSerial);
}

}  // namespace

cudaError_t launch_conv3x3_dgrad(DType t, const ConvDgradArgs& a, cudaStream_t stream) {
  return cutlass_conv::by_dtype(t, [&](auto e) { return dgrad<decltype(e)>(a, stream); });
}

cudaError_t launch_conv3x3_wgrad(DType t, const ConvWgradArgs& a, cudaStream_t stream) {
  return cutlass_conv::by_dtype(t, [&](auto e) { return wgrad<decltype(e)>(a, stream); });
}

size_t conv3x3_wgrad_workspace(DType t, const ConvWgradArgs& a) {
  if (t != DType::kBFloat16 && t != DType::kHalf) return 0;
  return cutlass_conv::wgrad_workspace_bytes(a, device_sms());
}

#else

cudaError_t launch_conv3x3_dgrad(DType, const ConvDgradArgs&, cudaStream_t) { return cudaErrorNotSupported; }
cudaError_t launch_conv3x3_wgrad(DType, const ConvWgradArgs&, cudaStream_t) { return cudaErrorNotSupported; }
size_t conv3x3_wgrad_workspace(DType, const ConvWgradArgs&) { return 0; }

#endif

}  // namespace rrdb
}  // namespace gansr
