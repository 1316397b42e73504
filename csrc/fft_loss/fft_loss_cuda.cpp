// FFT loss on CUDA: cuFFT called directly (one batched R2C for sr and hr together, one C2R for the
// gradients), plans in a bounded LRU cache per (device, type, H, W, batch) (plan_cache.h; size from
// GANSR_FFT_PLAN_CACHE_SIZE, default 64), workspace from PyTorch's caching allocator, everything on
// the current stream with no host synchronisation (CUDA-graph capturable once an eager step has
// created the plans).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cufft.h>
#include <torch/library.h>

#include <cstdlib>
#include <mutex>
#include <tuple>

#include "../common.h"
#include "../cuda_check.h"
#include "fft_loss.h"
#include "fft_loss_kernels.h"
#include "plan_cache.h"

namespace gansr {
namespace {

const char* cufft_error_name(cufftResult r) {
  switch (r) {
    case CUFFT_SUCCESS: return "CUFFT_SUCCESS";
    case CUFFT_INVALID_PLAN: return "CUFFT_INVALID_PLAN";
    case CUFFT_ALLOC_FAILED: return "CUFFT_ALLOC_FAILED";
    case CUFFT_INVALID_VALUE: return "CUFFT_INVALID_VALUE";
    case CUFFT_INTERNAL_ERROR: return "CUFFT_INTERNAL_ERROR";
    case CUFFT_EXEC_FAILED: return "CUFFT_EXEC_FAILED";
    case CUFFT_SETUP_FAILED: return "CUFFT_SETUP_FAILED";
    case CUFFT_INVALID_SIZE: return "CUFFT_INVALID_SIZE";
    default: return "cuFFT error";
  }
}

#define GANSR_CUFFT_CHECK(expr)                                                                      \
  do {                                                                                               \
    cufftResult _r = (expr);                                                                         \
    TORCH_CHECK(_r == CUFFT_SUCCESS, "cuFFT call failed: ", #expr, ": ", cufft_error_name(_r), " (", \
                (int)_r, ")");                                                                       \
  } while (0)

struct Plan {
  cufftHandle handle = 0;
  size_t work_size = 0;
};

using PlanKey = std::tuple<int, int, int64_t, int64_t, int64_t>;

void destroy_plan(Plan& plan) {
  cufftDestroy(plan.handle);  // result ignored: this runs on eviction and error paths, which must not throw
}

using CufftPlanCache = PlanCache<PlanKey, Plan, void (*)(Plan&)>;

// The mutex also serialises SetStream/SetWorkArea/Exec on a shared handle.
std::mutex g_plan_mutex;

CufftPlanCache& plan_cache() {
  // Never destroyed: at process exit the CUDA context may already be gone, so cufftDestroy is not called.
  static CufftPlanCache* cache =
      new CufftPlanCache(plan_cache_size_from_env(std::getenv("GANSR_FFT_PLAN_CACHE_SIZE")), &destroy_plan);
  return *cache;
}

bool is_capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  GANSR_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
  return status != cudaStreamCaptureStatusNone;
}

Plan& get_plan(int device, cufftType type, int64_t H, int64_t W, int64_t batch, cudaStream_t stream) {
  const bool capturing = is_capturing(stream);
  Plan* plan = plan_cache().get(
      std::make_tuple(device, (int)type, H, W, batch), capturing,
      [] {
        Plan p;
        GANSR_CUFFT_CHECK(cufftCreate(&p.handle));
        return p;
      },
      [&](Plan& p) {  // a throw here destroys p.handle (plan_cache.h)
        GANSR_CUFFT_CHECK(cufftSetAutoAllocation(p.handle, 0));
        long long n[2] = {H, W};
        GANSR_CUFFT_CHECK(
            cufftMakePlanMany64(p.handle, 2, n, nullptr, 1, 0, nullptr, 1, 0, type, batch, &p.work_size));
      });
  TORCH_CHECK(plan != nullptr, "fft_loss: no cuFFT plan for a ", H, "x", W, " batch of ", batch,
              " exists, and creating one during CUDA graph capture would break the capture; run one eager "
              "step with the same shapes (a warm-up) before capturing");
  return *plan;
}

template <typename Fn>
void exec_plan(const at::Tensor& like, cufftType type, int64_t H, int64_t W, int64_t batch, Fn&& exec) {
  const int device = like.get_device();
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device).stream();
  std::lock_guard<std::mutex> lock(g_plan_mutex);
  Plan& plan = get_plan(device, type, H, W, batch, stream);
  at::Tensor work;
  if (plan.work_size > 0) {
    work = at::empty({(int64_t)plan.work_size}, like.options().dtype(at::kByte));
    GANSR_CUFFT_CHECK(cufftSetWorkArea(plan.handle, work.data_ptr()));
  }
  GANSR_CUFFT_CHECK(cufftSetStream(plan.handle, stream));
  exec(plan.handle);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fft_loss_fwd_cuda(const at::Tensor& sr, const at::Tensor& hr,
                                                                 int64_t p, bool complex_mode) {
  check_fft_loss_inputs(sr, hr, p);
  c10::cuda::CUDAGuard guard(sr.device());
  const auto ct = compute_type(sr.scalar_type());
  const int64_t B = sr.size(0), C = sr.size(1), H = sr.size(2), W = sr.size(3), Wf = W / 2 + 1;
  auto opts = sr.options().dtype(ct);
  // (2, B, C, H, W) real input of one batched R2C; copy_ handles dtype and channels_last
  auto x = at::empty({2, B, C, H, W}, opts);
  x[0].copy_(sr);
  x[1].copy_(hr);
  const bool dbl = ct == at::kDouble;
  auto spec = new_output({2, B, C, H, Wf}, opts.dtype(dbl ? at::kComplexDouble : at::kComplexFloat));
  exec_plan(x, dbl ? CUFFT_D2Z : CUFFT_R2C, H, W, 2 * B * C, [&](cufftHandle h) {
    if (dbl) {
      GANSR_CUFFT_CHECK(cufftExecD2Z(h, x.data_ptr<double>(), reinterpret_cast<cufftDoubleComplex*>(spec.data_ptr())));
    } else {
      GANSR_CUFFT_CHECK(cufftExecR2C(h, x.data_ptr<float>(), reinterpret_cast<cufftComplex*>(spec.data_ptr())));
    }
  });
  const int64_t per = C * H * Wf;
  const int chunks = fftloss::norms_chunks(per);
  auto partial = at::empty({B, chunks, 3}, opts);
  auto loss = new_output({B}, opts);
  auto norms = new_output({B, 3}, opts);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(ct, "fft_loss_fwd_cuda", [&] {
    const scalar_t scale = scalar_t(1.0 / std::sqrt((double)(H * W)));
    GANSR_CUDA_CHECK(fftloss::launch_norms<scalar_t>(reinterpret_cast<const scalar_t*>(spec.const_data_ptr()), scale, B,
                                                     per, Wf, W, (int)p, complex_mode, partial.data_ptr<scalar_t>(), chunks,
                                                     norms.data_ptr<scalar_t>(), loss.data_ptr<scalar_t>(), stream));
  });
  return {loss, norms, spec};
}

at::Tensor fft_loss_bwd_cuda(const at::Tensor& grad_loss, const at::Tensor& spec,
                                                     const at::Tensor& norms, int64_t p, bool complex_mode,
                                                     int64_t W, bool need_hr) {
  check_fft_loss_bwd_inputs(grad_loss, spec, norms, p, W);
  c10::cuda::CUDAGuard guard(spec.device());
  const int64_t B = spec.size(1), C = spec.size(2), H = spec.size(3), Wf = spec.size(4);
  const int64_t nz = need_hr ? 2 : 1;
  const auto ct = norms.scalar_type();
  const bool dbl = ct == at::kDouble;
  auto spec_c = spec.contiguous();
  auto norms_c = norms.contiguous();
  auto go = grad_loss.to(ct).contiguous();
  auto z = at::empty({nz, B, C, H, Wf}, spec.options());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(ct, "fft_loss_bwd_cuda", [&] {
    const scalar_t scale = scalar_t(1.0 / std::sqrt((double)(H * W)));
    GANSR_CUDA_CHECK(fftloss::launch_grad_spectrum<scalar_t>(
        reinterpret_cast<const scalar_t*>(spec_c.const_data_ptr()), scale, norms_c.const_data_ptr<scalar_t>(),
        go.const_data_ptr<scalar_t>(), B, C, H, Wf, W, (int)p, complex_mode, need_hr,
        reinterpret_cast<scalar_t*>(z.data_ptr()), stream));
  });
  auto g = new_output({nz, B, C, H, W}, norms.options());
  exec_plan(z, dbl ? CUFFT_Z2D : CUFFT_C2R, H, W, nz * B * C, [&](cufftHandle h) {
    if (dbl) {
      GANSR_CUFFT_CHECK(cufftExecZ2D(h, reinterpret_cast<cufftDoubleComplex*>(z.data_ptr()), g.data_ptr<double>()));
    } else {
      GANSR_CUFFT_CHECK(cufftExecC2R(h, reinterpret_cast<cufftComplex*>(z.data_ptr()), g.data_ptr<float>()));
    }
  });
  return g;
}

}  // namespace

TORCH_LIBRARY_IMPL(gansr, CUDA, m) {
  m.impl("fft_loss_fwd", &fft_loss_fwd_cuda);
  m.impl("fft_loss_bwd", &fft_loss_bwd_cuda);
}

}  // namespace gansr
