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

// CUTLASS dgrad (accumulating into the gradient prefix with beta) and wgrad of the same convs
// (rrdb_cutlass_bwd.cu), the same dtypes and alignment rules; cudaErrorNotSupported: nothing launched.
cudaError_t launch_conv3x3_dgrad(DType t, const ConvDgradArgs& a, cudaStream_t stream);
cudaError_t launch_conv3x3_wgrad(DType t, const ConvWgradArgs& a, cudaStream_t stream);

}  // namespace rrdb
}  // namespace gansr
