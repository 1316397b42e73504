// Definitions shared by the kernels, their launchers and the CPU code, free of torch and CUDA
// headers: launcher headers, the host+device math headers, the CPU kernels and the CUDA-on-CPU
// tests (tests/cuda_on_cpu/) all include it.
#pragma once
#include <cstdint>

// Functions of the *_math.h headers: compiled for host and device by nvcc, plain inline elsewhere.
#ifndef GANSR_HD
#if defined(__CUDACC__)
#define GANSR_HD __host__ __device__ __forceinline__
#else
#define GANSR_HD inline
#endif
#endif

namespace gansr {

// Element type of a tensor passed to a launcher as void* (gansr::kernel_dtype maps torch's types).
enum class DType : int { kFloat = 0, kDouble = 1, kHalf = 2, kBFloat16 = 3 };

// Blocks of `per_block` items for n items: ceil(n / per_block), at least 1, at most max_blocks (a
// grid-stride loop does the rest).
constexpr int64_t blocks_for(int64_t n, int64_t per_block, int64_t max_blocks) {
  const int64_t blocks = (n + per_block - 1) / per_block;
  return blocks < 1 ? 1 : (blocks < max_blocks ? blocks : max_blocks);
}

}  // namespace gansr
