// The bf16 tile variants of the fused RRDB's CUTLASS fprop (convs 1..4), chosen at run time by
// set_fprop_tile (rrdb_kernels.h); a GPU sweep (python/gpu_tile_sweep.py) picks the fastest. bf16
// only (the training dtype; fp16 keeps tile 0) and two variants: each costs ~30 s of nvcc for the
// four architectures. Shared memory: both under sm_86/89's 99 KB per CTA.
#include "rrdb_kernels.h"

#if defined(GANSR_WITH_CUTLASS)
// clang-format off (order matters: the kernel header defines what the device header uses)
#include <cutlass/cutlass.h>
#include <cutlass/bfloat16.h>
#include <cutlass/conv/kernel/default_conv2d_fprop.h>
#include <cutlass/epilogue/thread/linear_combination_leaky_relu.h>
// clang-format on

#include "rrdb_cutlass_fprop.cuh"
#endif

namespace gansr {
namespace rrdb {

#if defined(GANSR_WITH_CUTLASS)
namespace cutlass_conv {

// 1: 64x32x64 of four 16x32x64 warps, 3 stages (36 KB): twice tile 0's CTAs (B16 LR32: 256 CTAs
//    where tile 0 has 128, under one wave of an H200's 132 SMs)
// 2: 256x32x32 of four 64x32x32 warps, 3 stages (55 KB): half tile 0's CTAs, more MMAs per loaded
//    B fragment (large images: B16 LR64 = 65536 pixels)
cudaError_t run_fprop_bf16_tile(int tile, const ConvBiasActArgs& a, cudaStream_t stream) {
  using E = cutlass::bfloat16_t;
  switch (tile) {
    case 1: return run_fprop<FpropKernelOf<E, 64, 32, 64, 16, 32, 64, 3>, E>(a, stream);
    case 2: return run_fprop<FpropKernelOf<E, 256, 32, 32, 64, 32, 32, 3>, E>(a, stream);
    default: return cudaErrorNotSupported;
  }
}

}  // namespace cutlass_conv
#endif

}  // namespace rrdb
}  // namespace gansr
