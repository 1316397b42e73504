// CUDA kernels of the FFT loss (no torch headers: fast to compile). The transforms are cuFFT calls
// made by fft_loss_cuda.cpp; these kernels do everything between and after them.
#include "../device_utils.cuh"
#include "fft_loss_kernels.h"
#include "fft_loss_math.h"

namespace gansr {
namespace fftloss {
namespace {

constexpr int kThreads = 256;

template <typename S>
__device__ void block_sum3(S* v, S* smem) {
  // warp reduce, then the first warp reduces the warp sums; result in v on thread 0
  for (int k = 0; k < 3; ++k)
    for (int o = 16; o > 0; o >>= 1) v[k] += __shfl_down_sync(0xffffffffu, v[k], o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0)
    for (int k = 0; k < 3; ++k) smem[warp * 3 + k] = v[k];
  __syncthreads();
  if (warp == 0) {
    const int nw = blockDim.x >> 5;
    for (int k = 0; k < 3; ++k) v[k] = lane < nw ? smem[lane * 3 + k] : S(0);
    for (int k = 0; k < 3; ++k)
      for (int o = 16; o > 0; o >>= 1) v[k] += __shfl_down_sync(0xffffffffu, v[k], o);
  }
}

// grid (B, chunks): partial sums of the three p-th-power norms of one chunk of one image. The batch
// is the x dimension: gridDim.y is limited to 65535, chunks (<= 64) never come near it.
template <typename T>
__global__ void norms_partial_kernel(const T* __restrict__ spec, T scale, int64_t B, int64_t per, int64_t Wf,
                                     int64_t W, int p, bool cplx, T* __restrict__ partial) {
  __shared__ T smem[3 * (kThreads / 32)];
  const int64_t b = blockIdx.x, chunks = gridDim.y;
  const int64_t chunk = (per + chunks - 1) / chunks;
  const int64_t lo = blockIdx.y * chunk, hi = min(per, lo + chunk);
  const T* X = spec + 2 * (b * per);
  const T* Y = spec + 2 * ((B + b) * per);
  T v[3] = {T(0), T(0), T(0)};
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    const T w = T(half_weight(i % Wf, W));
    const Terms<T> t =
        terms<T>(scale * X[2 * i], scale * X[2 * i + 1], scale * Y[2 * i], scale * Y[2 * i + 1], cplx, p, w);
    v[0] += t.d;
    v[1] += t.x;
    v[2] += t.y;
  }
  block_sum3(v, smem);
  if (threadIdx.x == 0)
    for (int k = 0; k < 3; ++k) partial[(b * chunks + blockIdx.y) * 3 + k] = v[k];
}

// grid (B): deterministic second stage; writes norms[b, 0..2] and loss[b].
template <typename T>
__global__ void norms_finish_kernel(const T* __restrict__ partial, int chunks, int p, T* __restrict__ norms,
                                    T* __restrict__ loss) {
  __shared__ T smem[3 * (kThreads / 32)];
  const int64_t b = blockIdx.x;
  T v[3] = {T(0), T(0), T(0)};
  for (int c = threadIdx.x; c < chunks; c += blockDim.x)
    for (int k = 0; k < 3; ++k) v[k] += partial[(b * chunks + c) * 3 + k];
  block_sum3(v, smem);
  if (threadIdx.x == 0) finish<T, T>(v, p, norms + 3 * b, loss + b);
}

// One thread per half-spectrum element: Z (input of the C2R) for sr and, if asked, for hr.
template <typename T>
__global__ void grad_spectrum_kernel(const T* __restrict__ spec, T scale, const T* __restrict__ norms,
                                     const T* __restrict__ grad_loss, int64_t B, int64_t C, int64_t H, int64_t Wf,
                                     int64_t W, int p, bool cplx, bool need_hr, T* __restrict__ z) {
  const int64_t n = B * C * H * Wf;
  const int64_t per = C * H * Wf;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t col = i % Wf, r = (i / Wf) % H, plane = i / (H * Wf), b = i / per;
    const int64_t im = (plane * H + (H - r) % H) * Wf + col;
    const bool self_mirror = col == 0 || (W % 2 == 0 && col == W / 2);
    const Coef<T> k = coef<T>(norms + 3 * b, grad_loss[b], p);
    const T* X = spec;
    const T* Y = spec + 2 * B * per;
    T out[4];
    folded_grad<T>(k, cplx, p, self_mirror, scale * X[2 * i], scale * X[2 * i + 1], scale * Y[2 * i],
                   scale * Y[2 * i + 1], scale * X[2 * im], scale * X[2 * im + 1], scale * Y[2 * im],
                   scale * Y[2 * im + 1], out);
    // the C2R is unnormalised: the orthonormal adjoint's 1/sqrt(HW) is applied here
    z[2 * i] = scale * out[0];
    z[2 * i + 1] = scale * out[1];
    if (need_hr) {
      z[2 * (n + i)] = scale * out[2];
      z[2 * (n + i) + 1] = scale * out[3];
    }
  }
}

}  // namespace

int norms_chunks(int64_t per) {
  // enough blocks to fill a GPU at batch 16, few enough that the second stage is trivial
  int64_t c = (per + 4 * kThreads - 1) / (4 * kThreads);
  return (int)(c < 64 ? (c < 1 ? 1 : c) : 64);
}

template <typename T>
cudaError_t launch_norms(const T* spec, T scale, int64_t B, int64_t per, int64_t Wf, int64_t W, int p, bool cplx,
                         T* partial, int chunks, T* norms, T* loss, cudaStream_t stream) {
  norms_partial_kernel<T><<<dim3((unsigned)B, chunks), kThreads, 0, stream>>>(spec, scale, B, per, Wf, W, p, cplx,
                                                                               partial);
  norms_finish_kernel<T><<<(unsigned)B, kThreads, 0, stream>>>(partial, chunks, p, norms, loss);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_grad_spectrum(const T* spec, T scale, const T* norms, const T* grad_loss, int64_t B, int64_t C,
                                 int64_t H, int64_t Wf, int64_t W, int p, bool cplx, bool need_hr, T* z,
                                 cudaStream_t stream) {
  const int64_t n = B * C * H * Wf;
  grad_spectrum_kernel<T><<<dev::grid_for(n, kThreads), kThreads, 0, stream>>>(spec, scale, norms, grad_loss, B, C, H,
                                                                               Wf, W, p, cplx, need_hr, z);
  return cudaGetLastError();
}

template cudaError_t launch_norms<float>(const float*, float, int64_t, int64_t, int64_t, int64_t, int, bool, float*,
                                         int, float*, float*, cudaStream_t);
template cudaError_t launch_norms<double>(const double*, double, int64_t, int64_t, int64_t, int64_t, int, bool,
                                          double*, int, double*, double*, cudaStream_t);
template cudaError_t launch_grad_spectrum<float>(const float*, float, const float*, const float*, int64_t, int64_t,
                                                 int64_t, int64_t, int64_t, int, bool, bool, float*, cudaStream_t);
template cudaError_t launch_grad_spectrum<double>(const double*, double, const double*, const double*, int64_t,
                                                  int64_t, int64_t, int64_t, int64_t, int, bool, bool, double*,
                                                  cudaStream_t);

}  // namespace fftloss
}  // namespace gansr
