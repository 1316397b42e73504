// Launchers of the fused RRDB's CUDA kernels (argument blocks in rrdb_args.h; no torch headers).
#pragma once
#include <cuda_runtime.h>

#include "rrdb_args.h"

namespace gansr {
namespace rrdb {

cudaError_t launch_epilogue(DType t, const EpilogueArgs& a, cudaStream_t stream);
cudaError_t launch_gather(DType t, const GatherArgs& a, cudaStream_t stream);

// CUTLASS implicit-GEMM conv (bf16 / fp16, Sm80 tensor-op kernels) with the bias + LeakyReLU epilogue
// writing the output slice in place (rrdb_cutlass.cu). Returns cudaErrorNotSupported (nothing
// launched) when CUTLASS was not compiled in or cannot implement the problem (dtype, alignment:
// cin, cout and the pixel strides must be multiples of 8 with 16-byte aligned pointers).
cudaError_t launch_conv3x3_bias_lrelu(DType t, const ConvBiasActArgs& a, cudaStream_t stream);
// Its CTA tile (process-wide, atomic; read at each launch): 0 = 128x32x64 (the default, bf16 and
// fp16), bf16 only: 1 = 64x32x64 (more CTAs: small images), 2 = 256x32x32 (fewer: large images);
// fp16 always runs tile 0. set_fprop_tile returns the previous tile, or -1 (nothing changed) for a
// tile out of [0, kFpropTiles). Unmangled twin for ctypes: gansr_rrdb_set_fprop_tile.
constexpr int kFpropTiles = 3;
int set_fprop_tile(int tile);
int fprop_tile();

// conv5 of a dense block: bias + the block's residual in the epilogue, out = r1 + 0.2 (conv + bias)
// (rrdb_cutlass_residual.cu). Declined (cudaErrorNotSupported, nothing launched): s1 != 0.2, a second
// residual (r2 set: the conv kernel's epilogue has a single source tensor; run conv5 + the epilogue
// kernel instead), the alignment rules above, or CUTLASS not compiled in.
cudaError_t launch_conv3x3_bias_residual(DType t, const ConvBiasResidualArgs& a, cudaStream_t stream);

// CUTLASS dgrad (accumulating into the gradient prefix with beta) and wgrad of the same convs
// (rrdb_cutlass_bwd.cu), the same dtypes and alignment rules; cudaErrorNotSupported: nothing launched.
cudaError_t launch_conv3x3_dgrad(DType t, const ConvDgradArgs& a, cudaStream_t stream);
cudaError_t launch_conv3x3_wgrad(DType t, const ConvWgradArgs& a, cudaStream_t stream);
// device bytes the wgrad needs at a.workspace (a.dw_fp32: the serial split-K's semaphores on the
// current device; 0: none), for the caller to allocate (PyTorch's caching allocator: graph capturable)
size_t conv3x3_wgrad_workspace(DType t, const ConvWgradArgs& a);

}  // namespace rrdb
}  // namespace gansr
