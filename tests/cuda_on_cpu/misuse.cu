// Kernels for the harness's own tests (tests/test_kernels_on_cpu.py): shuffle semantics that a
// correct kernel relies on, and misuse that cudasim must report. Never part of the extension.
#include <cuda_runtime.h>

namespace {

// out[4 * t + k]: what thread t gets from __shfl_sync(src lane 5), __shfl_up_sync(2),
// __shfl_down_sync(3) and __shfl_xor_sync(1), width 8, each thread offering 100 + t
__global__ void shuffles_kernel(int* out) {
  const int t = threadIdx.x, v = 100 + t;
  out[4 * t + 0] = __shfl_sync(0xffffffffu, v, 5, 8);
  out[4 * t + 1] = __shfl_up_sync(0xffffffffu, v, 2, 8);
  out[4 * t + 2] = __shfl_down_sync(0xffffffffu, v, 3, 8);
  out[4 * t + 3] = __shfl_xor_sync(0xffffffffu, v, 1, 8);
}

__global__ void barrier_skipped_kernel() {
  if (threadIdx.x < 16) __syncthreads();
}

__global__ void barrier_split_kernel() {
  if (threadIdx.x % 2)
    __syncthreads();
  else
    __syncthreads();
}

__global__ void mask_omits_caller_kernel(float* out) { out[threadIdx.x] = __shfl_down_sync(0xfffffffeu, 1.0f, 1); }

__global__ void mask_names_exited_kernel(float* out) {
  if (threadIdx.x == 3) return;
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1.0f, 1);
}

__global__ void empty_kernel() {}

}  // namespace

extern "C" {
int misuse_shuffles(int* out) {
  shuffles_kernel<<<1, 32>>>(out);
  return cudaGetLastError();
}
// which: 0 barrier skipped, 1 barrier split, 2 mask omits caller, 3 mask names an exited lane,
// 4 block of 2048 threads, 5 grid.y of 70000, 6 a grid dimension of 0
int misuse_run(int which, float* out) {
  switch (which) {
    case 0: barrier_skipped_kernel<<<1, 64>>>(); break;
    case 1: barrier_split_kernel<<<1, 64>>>(); break;
    case 2: mask_omits_caller_kernel<<<1, 32>>>(out); break;
    case 3: mask_names_exited_kernel<<<1, 32>>>(out); break;
    case 4: empty_kernel<<<1, 2048>>>(); break;
    case 5: empty_kernel<<<dim3(1, 70000), 32>>>(); break;
    case 6: empty_kernel<<<dim3(0, 1), 32>>>(); break;
  }
  return cudaGetLastError();
}
}
