// CUDA kernels of the fused RRDB (no torch headers: fast to compile). The convolutions themselves
// are cuDNN calls made by rrdb_cuda.cpp; these kernels are everything around them: the fused
// bias + LeakyReLU (+ residual scaling) epilogues that write conv outputs into their buffer slices,
// and the backward gather that sums a slice's data gradients, applies the LeakyReLU derivative and
// reduces the bias gradient in the same pass.
#include "../device_utils.cuh"
#include "rrdb_kernels.h"

namespace gansr {
namespace rrdb {
namespace {

constexpr int kTx = 32;                  // channels per block (threadIdx.x)
constexpr int kTy = kGatherRowsPerStep;  // pixel rows per block step (threadIdx.y)

using dev::load;
using dev::store_cast;

template <typename T>
__global__ void epilogue_kernel(EpilogueArgs a) {
  using A = dev::acc_t<T>;
  const int c = blockIdx.y * kTx + threadIdx.x;
  if (c >= a.C) return;
  const T* y = static_cast<const T*>(a.y);
  const T* r1 = static_cast<const T*>(a.r1);
  const T* r2 = static_cast<const T*>(a.r2);
  T* out = static_cast<T*>(a.out);
  const A b = load(static_cast<const T*>(a.bias), c);
  const A slope = A(a.slope), s1 = A(a.s1), s2 = A(a.s2);
  for (int64_t m = (int64_t)blockIdx.x * kTy + threadIdx.y; m < a.M; m += (int64_t)gridDim.x * kTy) {
    A v = load(y, m * a.y_stride + c) + b;
    if (a.act) v = v > A(0) ? v : slope * v;
    if (r1) v = load(r1, m * a.r1_stride + c) + s1 * v;
    if (r2) v = load(r2, m * a.r2_stride + c) + s2 * v;
    out[m * a.out_stride + c] = store_cast<T>(v);
  }
}

template <typename T>
__global__ void gather_kernel(GatherArgs a) {
  using A = dev::acc_t<T>;
  __shared__ A partial[kTy][kTx];
  const int c = blockIdx.y * kTx + threadIdx.x;
  A bsum = A(0);
  if (c < a.C) {
    const T* act = static_cast<const T*>(a.act);
    T* out = static_cast<T*>(a.out);
    T* out2 = static_cast<T*>(a.out2);
    const A slope = A(a.slope), s2 = A(a.s2);
    for (int64_t m = (int64_t)blockIdx.x * kTy + threadIdx.y; m < a.M; m += (int64_t)gridDim.x * kTy) {
      A v = A(0);
      for (int i = 0; i < a.nsrc; ++i)
        v += A(a.src_scale[i]) * load(static_cast<const T*>(a.src[i]), m * a.src_stride[i] + c);
      // LeakyReLU backward from its output: out > 0 exactly when the pre-activation is > 0
      if (act && !(load(act, m * a.act_stride + c) > A(0))) v *= slope;
      out[m * a.out_stride + c] = store_cast<T>(v);
      if (out2) {
        // out2 is what the block's conv5 consumes as its output gradient: its bias gradient sums out2
        const A v2 = s2 * v;
        out2[m * a.out2_stride + c] = store_cast<T>(v2);
        bsum += v2;
      } else {
        bsum += v;
      }
    }
  }
  if (!a.bias_grad && !a.bias_partial) return;  // uniform over the grid: no divergent barrier
  partial[threadIdx.y][threadIdx.x] = bsum;
  __syncthreads();
  if (threadIdx.y == 0 && c < a.C) {
    A s = A(0);
    for (int r = 0; r < kTy; ++r) s += partial[r][threadIdx.x];
    if (a.bias_partial)  // deterministic: one row per block, reduced in a fixed order by the caller
      static_cast<A*>(a.bias_partial)[(int64_t)blockIdx.x * a.C + c] = s;
    else
      atomicAdd(static_cast<A*>(a.bias_grad) + c, s);
  }
}

}  // namespace

cudaError_t launch_epilogue(DType t, const EpilogueArgs& a, cudaStream_t stream) {
  if (a.M == 0 || a.C == 0) return cudaSuccess;
  return dev::dispatch_dtype(t, [&](auto tag) {
    using T = decltype(tag);
    epilogue_kernel<T><<<dev::grid_2d(a.M, kTy, 65535, a.C, kTx), dim3(kTx, kTy), 0, stream>>>(a);
    return cudaGetLastError();
  });
}

cudaError_t launch_gather(DType t, const GatherArgs& a, cudaStream_t stream) {
  if (a.M == 0 || a.C == 0) return cudaSuccess;
  if (a.nsrc < 1 || a.nsrc > kMaxSources) return cudaErrorInvalidValue;
  if (a.bias_partial && a.partial_rows != gather_grid_x(a.M)) return cudaErrorInvalidValue;
  return dev::dispatch_dtype(t, [&](auto tag) {
    using T = decltype(tag);
    // gather_grid_x(M) blocks along x (the same blocks_for): the bias_partial rows (rrdb_args.h)
    gather_kernel<T><<<dev::grid_2d(a.M, kTy, kGatherMaxGridX, a.C, kTx), dim3(kTx, kTy), 0, stream>>>(a);
    return cudaGetLastError();
  });
}

}  // namespace rrdb
}  // namespace gansr
