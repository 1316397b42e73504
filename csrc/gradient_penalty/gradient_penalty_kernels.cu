// CUDA kernels of the gradient penalty: one elementwise pass for the interpolation, a two-stage
// deterministic reduction (per-chunk sums of squares, then one block for norms, penalty and mean)
// for the forward, one elementwise pass for the backward.
#include "../device_utils.cuh"
#include "gradient_penalty_kernels.h"
#include "gradient_penalty_math.h"

namespace gansr {
namespace gp {
namespace {

constexpr int kThreads = 256;

using dev::acc_t;
using dev::load;
using dev::store_cast;

template <typename A>
__device__ A block_sum(A v, A* smem) {
  // warp reduce, then warp 0 reduces the warp sums: a fixed order, so results are deterministic
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  A r = A(0);
  if (warp == 0) {
    r = lane < (int)(blockDim.x >> 5) ? smem[lane] : A(0);
    for (int o = 16; o > 0; o >>= 1) r += __shfl_down_sync(0xffffffffu, r, o);
  }
  return r;  // valid on thread 0
}

template <typename T>
__global__ void interpolate_kernel(const T* __restrict__ real, const T* __restrict__ fake,
                                   const acc_t<T>* __restrict__ eps, T* __restrict__ out, int64_t n,
                                   int64_t per) {
  using A = acc_t<T>;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const A w = eps[i / per];
    out[i] = store_cast<T, A>(w * load(real, i) + (A(1) - w) * load(fake, i));
  }
}

// grid (B, chunks): sum of squares of one chunk of one sample. The batch is the x dimension:
// gridDim.y stops at 65535, chunks (<= 128) never come near it.
template <typename T>
__global__ void sumsq_partial_kernel(const T* __restrict__ g, int64_t per, acc_t<T>* __restrict__ partial) {
  using A = acc_t<T>;
  __shared__ A smem[kThreads / 32];
  const int64_t b = blockIdx.x, chunks = gridDim.y;
  const int64_t chunk = (per + chunks - 1) / chunks;
  const int64_t lo = blockIdx.y * chunk, hi = min(per, lo + chunk);
  const T* x = g + b * per;
  A v = A(0);
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    const A t = load(x, i);
    v += t * t;
  }
  v = block_sum(v, smem);
  if (threadIdx.x == 0) partial[b * chunks + blockIdx.y] = v;
}

// Samples of at most kSmallSample elements (one chunk): one thread sums each, in order. A block per
// sample would leave most of its threads idle.
constexpr int64_t kSmallSample = 32;

template <typename T>
__global__ void sumsq_small_kernel(const T* __restrict__ g, int64_t B, int64_t per,
                                   acc_t<T>* __restrict__ partial) {
  using A = acc_t<T>;
  for (int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; b < B; b += (int64_t)gridDim.x * blockDim.x) {
    const T* x = g + b * per;
    A v = A(0);
    for (int64_t i = 0; i < per; ++i) {
      const A t = load(x, i);
      v += t * t;
    }
    partial[b] = v;
  }
}

// one block: norms[b] and loss = scale * sum_b f(n_b), every sum in a fixed order
template <typename A>
__global__ void penalty_finish_kernel(const A* __restrict__ partial, int64_t B, int chunks, int kind, A scale,
                                      A* __restrict__ norms, A* __restrict__ loss) {
  __shared__ A smem[kThreads / 32];
  A total = A(0);
  for (int64_t b = threadIdx.x; b < B; b += blockDim.x) {
    A s = A(0);
    for (int c = 0; c < chunks; ++c) s += partial[b * chunks + c];
    const A n = sqrt(s);
    norms[b] = n;
    total += penalty_term<A>(s, n, kind);
  }
  total = block_sum(total, smem);
  if (threadIdx.x == 0) *loss = scale * total;
}

template <typename T>
__global__ void penalty_bwd_kernel(const T* __restrict__ g, const acc_t<T>* __restrict__ norms,
                                   const acc_t<T>* __restrict__ grad_loss,
                                   const acc_t<T>* __restrict__ grad_norms, int64_t n, int64_t per,
                                   int kind, acc_t<T> scale, T* __restrict__ out) {
  using A = acc_t<T>;
  const A gl = *grad_loss;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = i / per;
    const A c = sample_coef<A>(norms[b], kind, scale, gl, grad_norms ? grad_norms[b] : A(0));
    out[i] = store_cast<T, A>(c * load(g, i));
  }
}

}  // namespace

int penalty_chunks(int64_t per) {
  // enough blocks to fill a GPU at batch 16, few enough that the finishing block is trivial
  int64_t c = (per + 8 * kThreads - 1) / (8 * kThreads);
  return (int)(c < 128 ? (c < 1 ? 1 : c) : 128);
}

cudaError_t launch_interpolate(DType dtype, const void* real, const void* fake, const void* eps, void* out, int64_t B,
                               int64_t per, cudaStream_t stream) {
  return dev::dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const int64_t n = B * per;
    interpolate_kernel<T><<<dev::grid_for(n, kThreads), kThreads, 0, stream>>>(
        static_cast<const T*>(real), static_cast<const T*>(fake), static_cast<const A*>(eps), static_cast<T*>(out), n,
        per);
    return cudaGetLastError();
  });
}

cudaError_t launch_penalty_fwd(DType dtype, const void* g, int64_t B, int64_t per, int kind, double scale,
                               void* partial, int chunks, void* norms, void* loss, cudaStream_t stream) {
  return dev::dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    if (chunks == 1 && per <= kSmallSample) {
      sumsq_small_kernel<T><<<dev::grid_for(B, kThreads), kThreads, 0, stream>>>(static_cast<const T*>(g), B, per,
                                                                                 static_cast<A*>(partial));
    } else {
      sumsq_partial_kernel<T><<<dim3((unsigned)B, chunks), kThreads, 0, stream>>>(static_cast<const T*>(g), per,
                                                                                 static_cast<A*>(partial));
    }
    penalty_finish_kernel<A><<<1, kThreads, 0, stream>>>(static_cast<const A*>(partial), B, chunks, kind, A(scale),
                                                         static_cast<A*>(norms), static_cast<A*>(loss));
    return cudaGetLastError();
  });
}

cudaError_t launch_penalty_bwd(DType dtype, const void* g, const void* norms, const void* grad_loss,
                               const void* grad_norms, int64_t B, int64_t per, int kind, double scale, void* out,
                               cudaStream_t stream) {
  return dev::dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const int64_t n = B * per;
    penalty_bwd_kernel<T><<<dev::grid_for(n, kThreads), kThreads, 0, stream>>>(
        static_cast<const T*>(g), static_cast<const A*>(norms), static_cast<const A*>(grad_loss),
        static_cast<const A*>(grad_norms), n, per, kind, A(scale), static_cast<T*>(out));
    return cudaGetLastError();
  });
}

}  // namespace gp
}  // namespace gansr
