// C entry points (for ctypes) to the fused RRDB's epilogue and gather launchers of
// csrc/rrdb/rrdb_kernels.cu; the argument blocks of rrdb_args.h are passed as ctypes structures
// (tests/cuda_on_cpu/harness.py mirrors them field by field).
#include "rrdb_kernels.h"

namespace rr = gansr::rrdb;

extern "C" {
int rrdb_args_sizes(int64_t* out) {  // lets the Python mirror check its layout
  out[0] = sizeof(rr::EpilogueArgs);
  out[1] = sizeof(rr::GatherArgs);
  return 0;
}
int rrdb_launch_epilogue(int dtype, const rr::EpilogueArgs* a) {
  return rr::launch_epilogue(static_cast<gansr::DType>(dtype), *a, nullptr);
}
int rrdb_launch_gather(int dtype, const rr::GatherArgs* a) {
  return rr::launch_gather(static_cast<gansr::DType>(dtype), *a, nullptr);
}
}
