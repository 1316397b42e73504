// Launch of one CUTLASS 2.x implicit-GEMM conv on a problem of rrdb_cutlass_problem.h (the fused
// RRDB's rrdb_cutlass*.cu files): cudaErrorNotSupported, with nothing launched, when CUTLASS cannot
// implement it (the caller then runs the cuDNN path and counts the fallback). Include after the
// kernel headers (DefaultConv2d{Fprop,Dgrad,Wgrad}): they define what the device header uses.
#pragma once
#include <cuda_runtime.h>
#include <cutlass/cutlass.h>
#include <cutlass/conv/device/implicit_gemm_convolution.h>

#include "rrdb_cutlass_problem.h"

namespace gansr {
namespace rrdb {
namespace cutlass_conv {

template <typename Kernel, typename E>
cudaError_t run_conv(const Problem<E>& p, const typename Kernel::EpilogueOutputOp::Params& epilogue,
                     cudaStream_t stream) {
  using Conv = cutlass::conv::device::ImplicitGemmConvolution<Kernel>;
  const typename Conv::Arguments args(p.size, p.a, p.b, p.c, p.d, epilogue);
  Conv op;
  if (op.can_implement(args) != cutlass::Status::kSuccess) return cudaErrorNotSupported;
  if (Conv::get_workspace_size(args) != 0) return cudaErrorNotSupported;  // split-k 1: none expected
  if (op.initialize(args, nullptr, stream) != cutlass::Status::kSuccess) return cudaErrorNotSupported;
  if (op.run(stream) != cutlass::Status::kSuccess) {
    const cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? cudaErrorLaunchFailure : e;
  }
  return cudaGetLastError();
}

}  // namespace cutlass_conv
}  // namespace rrdb
}  // namespace gansr
