// Error checks of the CUDA glue (*_cuda.cpp): a failed CUDA call or launch is a c10::Error naming the
// call. The launchers of the kernel files return cudaError_t (cudaGetLastError after their launches).
#pragma once
#include <c10/util/Exception.h>
#include <cuda_runtime.h>

#define GANSR_CUDA_CHECK(expr)                                                             \
  do {                                                                                     \
    const cudaError_t _gansr_e = (expr);                                                   \
    TORCH_CHECK(_gansr_e == cudaSuccess, "CUDA error in ", #expr, ": ",                    \
                cudaGetErrorString(_gansr_e));                                             \
  } while (0)
