// Launch of one CUTLASS 2.x implicit-GEMM conv on a problem of rrdb_cutlass_problem.h (the fused
// RRDB's rrdb_cutlass*.cu files): cudaErrorNotSupported, with nothing launched, when CUTLASS cannot
// implement it (the caller then runs the cuDNN path and counts the fallback). Include after the
// kernel headers (DefaultConv2d{Fprop,Dgrad,Wgrad}): they define what the device header uses.
#pragma once
#include <cuda_runtime.h>
#include <cutlass/cutlass.h>
#include <cutlass/bfloat16.h>
#include <cutlass/half.h>
#include <cutlass/conv/device/implicit_gemm_convolution.h>

#include "rrdb_cutlass_problem.h"

namespace gansr {
namespace rrdb {
namespace cutlass_conv {

// `workspace` (device memory of `workspace_bytes`): what the kernel's Arguments need
// (ImplicitGemmConvolution::get_workspace_size, e.g. split-K semaphores), declined when too small;
// `extra`: the Arguments' trailing fields (the fused-epilogue kernel: split-K mode, broadcast vector)
template <typename Kernel, typename E, typename EC, typename... Extra>
cudaError_t run_conv(const Problem<E, EC>& p, const typename Kernel::EpilogueOutputOp::Params& epilogue,
                     cudaStream_t stream, void* workspace, size_t workspace_bytes, Extra... extra) {
  using Conv = cutlass::conv::device::ImplicitGemmConvolution<Kernel>;
  const typename Conv::Arguments args(p.size, p.a, p.b, p.c, p.d, epilogue, extra...);
  Conv op;
  if (op.can_implement(args) != cutlass::Status::kSuccess) return cudaErrorNotSupported;
  const size_t need = Conv::get_workspace_size(args);
  if (need > workspace_bytes || (need && !workspace)) return cudaErrorNotSupported;
  const cutlass::Status init = op.initialize(args, need ? workspace : nullptr, stream);
  if (init != cutlass::Status::kSuccess) return cudaErrorNotSupported;
  if (op.run(stream) != cutlass::Status::kSuccess) {
    const cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? cudaErrorLaunchFailure : e;
  }
  return cudaGetLastError();
}
template <typename Kernel, typename E>
cudaError_t run_conv(const Problem<E>& p, const typename Kernel::EpilogueOutputOp::Params& epilogue,
                     cudaStream_t stream) {
  return run_conv<Kernel>(p, epilogue, stream, nullptr, 0);  // split-K 1: no workspace expected
}

// f(E()) for the 16-bit element E of dtype t (the kernels' instantiations); other dtypes: not supported
template <typename F>
cudaError_t by_dtype(DType t, F&& f) {
  switch (t) {
    case DType::kBFloat16: return f(cutlass::bfloat16_t());
    case DType::kHalf: return f(cutlass::half_t());
    default: return cudaErrorNotSupported;
  }
}

}  // namespace cutlass_conv
}  // namespace rrdb
}  // namespace gansr
