// cudasim: enough of the CUDA device language for g++ to compile the project's .cu kernel files for
// the host and run them on the CPU (tests only; see DEVELOPING.md "CUDA kernels on the CPU").
//
// - __global__ / __device__ / __host__ vanish; threadIdx, blockIdx, blockDim, gridDim read the state
//   of the CUDA thread being run.
// - __shared__ variables are function-local statics: one copy, used by one block at a time (blocks
//   run one after another). rewrite_launches.py registers each one where it is declared, so that it
//   is filled with 0xff bytes (NaN for floats) before every block: a read before a write shows up.
// - Fiber mode (default): the threads of a block are fibers on one OS thread, each run until it
//   blocks at __syncthreads / __syncwarp / __shfl_*_sync; deterministic. Misuse is an error: a
//   barrier not reached by every thread of the block, threads waiting at different barriers, a
//   shuffle mask that omits the caller or names a lane that exited or does not exist, grid or block
//   dimensions beyond the hardware limits.
// - Thread mode (CUDASIM_THREADS=1 in the environment): every CUDA thread of a block is an OS thread,
//   so that -fsanitize=thread sees the kernel's shared-memory and global-memory races.
// Errors are recorded (cudasim_error()) and the launch stops; cudaGetLastError() then returns
// cudaErrorLaunchFailure (or cudaErrorInvalidConfiguration for bad launch dimensions).
#pragma once
#include <math.h>  // float overloads of sqrt, fabs... in the global namespace, as in device code

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotSupported = 801,
};
typedef struct CUstream_st* cudaStream_t;

namespace cudasim {

struct ThreadState {
  uint3 thread_idx, block_idx;
  dim3 block_dim, grid_dim;
};
extern thread_local ThreadState* t_cur;  // the CUDA thread running on this OS thread

enum ShuffleKind : int { kIdx = 0, kUp = 1, kDown = 2, kXor = 3 };

void syncthreads(const char* file, int line);
uint64_t shuffle_raw(ShuffleKind kind, const char* file, int line, unsigned mask, uint64_t value, int lane_arg,
                     int width);

template <typename T>
T shuffle(ShuffleKind kind, const char* file, int line, unsigned mask, T value, int lane_arg, int width = 32) {
  static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable_v<T>, "shuffle of a large type");
  uint64_t raw = 0;
  std::memcpy(&raw, &value, sizeof(T));
  raw = shuffle_raw(kind, file, line, mask, raw, lane_arg, width);
  std::memcpy(&value, &raw, sizeof(T));
  return value;
}

inline unsigned warp_mask(unsigned mask = 0xffffffffu) { return mask; }

// Called (by rewritten code) where a __shared__ variable is declared.
void shared_region(void* address, size_t bytes);

// Runs body(context) once per CUDA thread of the grid; name is the kernel's name as written at the launch.
using Body = void (*)(const void* context);
void launch_raw(const char* name, dim3 grid, dim3 block, size_t shared_bytes, Body body, const void* context);

// `kernel<<<grid, block, shared, stream>>>(args...)`, as rewritten by rewrite_launches.py. The
// arguments are converted to the parameter types once, like CUDA's kernel parameter copy; every
// thread then gets its own copy of them. (No <functional> or <tuple>: this header is compiled with
// every kernel file, often.)
template <typename... P, typename... A>
void launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t,
            A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
  const auto call = [kernel, ... params = std::decay_t<P>(std::forward<A>(args))] { kernel(params...); };
  using Call = decltype(call);
  launch_raw(name, grid, block, shared_bytes, [](const void* c) { (*static_cast<const Call*>(c))(); }, &call);
}

}  // namespace cudasim

#define threadIdx (::cudasim::t_cur->thread_idx)
#define blockIdx (::cudasim::t_cur->block_idx)
#define blockDim (::cudasim::t_cur->block_dim)
#define gridDim (::cudasim::t_cur->grid_dim)

#define __syncthreads() ::cudasim::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...) \
  ::cudasim::shuffle<int>(::cudasim::kXor, __FILE__, __LINE__, ::cudasim::warp_mask(__VA_ARGS__), 0, 0)
#define __shfl_sync(...) ::cudasim::shuffle(::cudasim::kIdx, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) ::cudasim::shuffle(::cudasim::kUp, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) ::cudasim::shuffle(::cudasim::kDown, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) ::cudasim::shuffle(::cudasim::kXor, __FILE__, __LINE__, __VA_ARGS__)

template <typename T>
inline T atomicAdd(T* address, T value) {  // a compare-and-swap loop, as CUDA documents for missing types
  T old, sum;
  __atomic_load(address, &old, __ATOMIC_RELAXED);
  do sum = old + value;
  while (!__atomic_compare_exchange(address, &old, &sum, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
  return old;
}

template <typename A, typename B>
inline std::common_type_t<A, B> min(A a, B b) {
  return b < a ? b : a;
}
template <typename A, typename B>
inline std::common_type_t<A, B> max(A a, B b) {
  return a < b ? b : a;
}

cudaError_t cudaGetLastError();
const char* cudaGetErrorString(cudaError_t error);
