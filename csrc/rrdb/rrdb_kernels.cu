// CUDA kernels of the fused RRDB (no torch headers: fast to compile). The convolutions themselves
// are cuDNN calls made by rrdb_cuda.cpp; these kernels are everything around them: the fused
// bias + LeakyReLU (+ residual scaling) epilogues that write conv outputs into their buffer slices,
// and the backward gather that sums a slice's data gradients, applies the LeakyReLU derivative and
// reduces the bias gradient in the same pass.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "rrdb_kernels.h"

namespace gansr {
namespace rrdb {
namespace {

constexpr int kTx = 32;                  // channels per block (threadIdx.x)
constexpr int kTy = kGatherRowsPerStep;  // pixel rows per block step (threadIdx.y)

template <typename T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };

template <typename A> __device__ __forceinline__ A load(const float* p) { return A(*p); }
template <typename A> __device__ __forceinline__ A load(const double* p) { return A(*p); }
template <typename A> __device__ __forceinline__ A load(const __half* p) { return A(__half2float(*p)); }
template <typename A> __device__ __forceinline__ A load(const __nv_bfloat16* p) { return A(__bfloat162float(*p)); }

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(double* p, double v) { *p = v; }
__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

template <typename T>
__global__ void epilogue_kernel(EpilogueArgs a) {
  using A = typename Acc<T>::type;
  const int c = blockIdx.y * kTx + threadIdx.x;
  if (c >= a.C) return;
  const T* y = static_cast<const T*>(a.y);
  const T* r1 = static_cast<const T*>(a.r1);
  const T* r2 = static_cast<const T*>(a.r2);
  T* out = static_cast<T*>(a.out);
  const A b = load<A>(static_cast<const T*>(a.bias) + c);
  const A slope = A(a.slope), s1 = A(a.s1), s2 = A(a.s2);
  for (int64_t m = (int64_t)blockIdx.x * kTy + threadIdx.y; m < a.M; m += (int64_t)gridDim.x * kTy) {
    A v = load<A>(y + m * a.y_stride + c) + b;
    if (a.act) v = v > A(0) ? v : slope * v;
    if (r1) v = load<A>(r1 + m * a.r1_stride + c) + s1 * v;
    if (r2) v = load<A>(r2 + m * a.r2_stride + c) + s2 * v;
    store(out + m * a.out_stride + c, v);
  }
}

template <typename T>
__global__ void gather_kernel(GatherArgs a) {
  using A = typename Acc<T>::type;
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
        v += A(a.src_scale[i]) * load<A>(static_cast<const T*>(a.src[i]) + m * a.src_stride[i] + c);
      // LeakyReLU backward from its output: out > 0 exactly when the pre-activation is > 0
      if (act && !(load<A>(act + m * a.act_stride + c) > A(0))) v *= slope;
      store(out + m * a.out_stride + c, v);
      if (out2) {
        // out2 is what the block's conv5 consumes as its output gradient: its bias gradient sums out2
        const A v2 = s2 * v;
        store(out2 + m * a.out2_stride + c, v2);
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

dim3 grid_for(int64_t M, int C, int64_t max_x) {
  int64_t gx = (M + kTy - 1) / kTy;
  if (gx > max_x) gx = max_x;
  return dim3((unsigned)(gx < 1 ? 1 : gx), (unsigned)((C + kTx - 1) / kTx));
}

template <typename T>
cudaError_t epilogue_t(const EpilogueArgs& a, cudaStream_t stream) {
  epilogue_kernel<T><<<grid_for(a.M, a.C, 65535), dim3(kTx, kTy), 0, stream>>>(a);
  return cudaGetLastError();
}

template <typename T>
cudaError_t gather_t(const GatherArgs& a, cudaStream_t stream) {
  // gather_grid_x(M) blocks along x: the bias_partial rows (rrdb_args.h)
  const dim3 grid((unsigned)gather_grid_x(a.M), (unsigned)((a.C + kTx - 1) / kTx));
  gather_kernel<T><<<grid, dim3(kTx, kTy), 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_epilogue(DType t, const EpilogueArgs& a, cudaStream_t stream) {
  if (a.M == 0 || a.C == 0) return cudaSuccess;
  switch (t) {
    case DType::kFloat: return epilogue_t<float>(a, stream);
    case DType::kDouble: return epilogue_t<double>(a, stream);
    case DType::kHalf: return epilogue_t<__half>(a, stream);
    case DType::kBFloat16: return epilogue_t<__nv_bfloat16>(a, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t launch_gather(DType t, const GatherArgs& a, cudaStream_t stream) {
  if (a.M == 0 || a.C == 0) return cudaSuccess;
  if (a.nsrc < 1 || a.nsrc > kMaxSources) return cudaErrorInvalidValue;
  if (a.bias_partial && a.partial_rows != gather_grid_x(a.M)) return cudaErrorInvalidValue;
  switch (t) {
    case DType::kFloat: return gather_t<float>(a, stream);
    case DType::kDouble: return gather_t<double>(a, stream);
    case DType::kHalf: return gather_t<__half>(a, stream);
    case DType::kBFloat16: return gather_t<__nv_bfloat16>(a, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace rrdb
}  // namespace gansr
