// CUTLASS 2.x implicit-GEMM fprop for the fused RRDB's convs 1..4 (bf16 / fp16 in, fp32 accumulate,
// Sm80 tensor-op kernels, which run on sm_80..sm_90): the activation operand is the channel prefix
// of the block's NHWC buffer (pixel stride wider than its channel count), the epilogue computes
// lrelu(acc + bias) with the bias broadcast as the C operand (stride 0) and stores straight into the
// conv's channel slice of the same buffer. The problem and its arguments come from
// rrdb_cutlass_problem.h, which the CPU check against CUTLASS's host reference shares. No torch
// headers; compiled only with CUTLASS available (GANSR_WITH_CUTLASS), otherwise the launcher reports
// "not supported" and the caller uses cuDNN.
#include "rrdb_kernels.h"

#include <atomic>

#if defined(GANSR_WITH_CUTLASS)
// clang-format off (order matters: the kernel header defines what the device header uses)
#include <cutlass/cutlass.h>
#include <cutlass/bfloat16.h>
#include <cutlass/half.h>
#include <cutlass/conv/kernel/default_conv2d_fprop.h>
#include <cutlass/epilogue/thread/linear_combination_leaky_relu.h>
// clang-format on

#include "rrdb_cutlass_fprop.cuh"
#endif

namespace gansr {
namespace rrdb {

namespace {
std::atomic<int> g_fprop_tile{0};
}

int set_fprop_tile(int tile) {
  if (tile < 0 || tile >= kFpropTiles) return -1;
  return g_fprop_tile.exchange(tile);
}
int fprop_tile() { return g_fprop_tile.load(); }

#if defined(GANSR_WITH_CUTLASS)
namespace {

using cutlass_conv::Layout;

// Tile 0 (the default) for every dense-block conv, sized like CUTLASS's own Sm80 16-bit
// configurations (DefaultGemmConfiguration<OpClassTensorOp, Sm80>: K-tile 64, 3 stages, 64-wide warp
// K; its Ampere conv2d fprop example: 128x128x64 CTA of 4 warps). The GEMM N is cout = gc (32 in
// ESRGAN, 16 allowed), so the CTA is 128x32x64 with four 32x32x64 warps: 128 threads (the former
// 128x32x32 / 64x32x32 tile had 2 warps, too few to keep an H100/H200 SM's tensor cores fed).
// Shared memory: 3 x (128 + 32) x 64 x 2 B = 60 KB, above the 48 KB default:
// ImplicitGemmConvolution::initialize raises the kernel's limit (cudaFuncSetAttribute) itself.
// The bf16 variants 1, 2: rrdb_cutlass_tiles.cu.
template <typename E>
using FpropKernel = cutlass_conv::FpropKernelOf<E, 128, 32, 64, 32, 32, 64, 3>;

}  // namespace

cudaError_t launch_conv3x3_bias_lrelu(DType t, const ConvBiasActArgs& a, cudaStream_t stream) {
  switch (t) {
    case DType::kBFloat16: {
      const int tile = g_fprop_tile.load(std::memory_order_relaxed);
      if (tile) return cutlass_conv::run_fprop_bf16_tile(tile, a, stream);
      return cutlass_conv::run_fprop<FpropKernel<cutlass::bfloat16_t>, cutlass::bfloat16_t>(a, stream);
    }
    case DType::kHalf: return cutlass_conv::run_fprop<FpropKernel<cutlass::half_t>, cutlass::half_t>(a, stream);
    default: return cudaErrorNotSupported;
  }
}

#else

cudaError_t launch_conv3x3_bias_lrelu(DType, const ConvBiasActArgs&, cudaStream_t) { return cudaErrorNotSupported; }

#endif

}  // namespace rrdb
}  // namespace gansr

// unmangled for ctypes (python/gpu_tile_sweep.py) until an op binds the setter
extern "C" __attribute__((visibility("default"))) int gansr_rrdb_set_fprop_tile(int tile) {
  return gansr::rrdb::set_fprop_tile(tile);
}
