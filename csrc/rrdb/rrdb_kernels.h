// Launchers of the fused RRDB's CUDA kernels (argument blocks in rrdb_args.h; no torch headers).
#pragma once
#include <cuda_runtime.h>

#include "rrdb_args.h"

namespace gansr {
namespace rrdb {

cudaError_t launch_epilogue(DType t, const EpilogueArgs& a, cudaStream_t stream);
cudaError_t launch_gather(DType t, const GatherArgs& a, cudaStream_t stream);

}  // namespace rrdb
}  // namespace gansr
