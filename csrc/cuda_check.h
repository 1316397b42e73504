// Error checks of the CUDA glue (*_cuda.cpp): a failed CUDA call or launch is a c10::Error naming the
// call. The launchers of the kernel files return cudaError_t (cudaGetLastError after their launches).
#pragma once
#include <c10/util/Exception.h>
#include <cuda_runtime.h>

#define GANSR_CUDA_CHECK(expr)                                                             \
  do {                                                                                     \
    const cudaError_t _gansr_e = (expr);                                                   \
    GANSR_CUDA_CHECK_CODE(_gansr_e, #expr);                                                \
  } while (0)

// The same check of an error code already taken (e.g. after handling one code specially); `what`
// names the call in the message.
#define GANSR_CUDA_CHECK_CODE(e, what) \
  TORCH_CHECK((e) == cudaSuccess, "CUDA error in ", what, ": ", cudaGetErrorString(e))
