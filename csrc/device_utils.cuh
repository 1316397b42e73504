// Device helpers shared by the kernel files (*.cu): the accumulation type, fp16/bf16 loads and
// rounded stores, the switch from a DType code to its C++ type, and grid sizes of grid-stride loops.
// No torch headers: the kernel files compile without them, and the CUDA-on-CPU tests compile them
// with g++.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernel_defs.h"

namespace gansr {
namespace dev {

// fp64 accumulates in fp64, every other type in fp32 (gansr::compute_type on the torch side).
template <typename T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };
template <typename T> using acc_t = typename Acc<T>::type;

template <typename T> __device__ __forceinline__ acc_t<T> load(const T* p, int64_t i) {
  return static_cast<acc_t<T>>(p[i]);
}
template <> __device__ __forceinline__ float load<__half>(const __half* p, int64_t i) { return __half2float(p[i]); }
template <> __device__ __forceinline__ float load<__nv_bfloat16>(const __nv_bfloat16* p, int64_t i) {
  return __bfloat162float(p[i]);
}

// v rounded to nearest in T
template <typename T, typename A> __device__ __forceinline__ T store_cast(A v) { return static_cast<T>(v); }
template <> __device__ __forceinline__ __half store_cast<__half, float>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 store_cast<__nv_bfloat16, float>(float v) {
  return __float2bfloat16_rn(v);
}

// fn(T{}) with T the element type `dtype` names; cudaErrorInvalidValue for a code that names none.
template <typename Fn>
cudaError_t dispatch_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat: return fn(float{});
    case DType::kDouble: return fn(double{});
    case DType::kHalf: return fn(__half{});
    case DType::kBFloat16: return fn(__nv_bfloat16{});
  }
  return cudaErrorInvalidValue;
}

// Blocks of `threads` threads for a grid-stride loop over n items: enough to give each item a thread,
// at most 65535 * 8 (the loop does the rest: beyond that more blocks only add scheduling), at least 1.
inline int grid_for(int64_t n, int threads) { return (int)blocks_for(n, threads, 65535 * 8); }

// 2-D grid of blocks of (bx, by) threads over `rows` x `cols` items, rows along y of the block and x of
// the grid (grid-stride beyond max_x blocks), cols along x of the block and y of the grid.
inline dim3 grid_2d(int64_t rows, int by, int64_t max_x, int64_t cols, int bx) {
  return dim3((unsigned)blocks_for(rows, by, max_x), (unsigned)((cols + bx - 1) / bx));
}

}  // namespace dev
}  // namespace gansr
