// FFT loss: schema, input checks and the CPU kernel (ATen's pocketfft for the transforms, the rest
// fused into one pass per image for the norms and one pass for the spectrum gradient).
#include <ATen/Parallel.h>
#include <c10/util/complex.h>
#include <torch/library.h>

#include <cmath>
#include <type_traits>
#include <vector>

#include "../common.h"
#include "fft_loss.h"
#include "fft_loss_math.h"

namespace gansr {

void check_fft_loss_inputs(const at::Tensor& sr, const at::Tensor& hr, int64_t p) {
  constexpr const char* op = "gansr::fft_loss";
  TORCH_CHECK_VALUE(p == 1 || p == 2, op, ": p must be 1 or 2, got ", p);
  TORCH_CHECK_VALUE(sr.dim() == 4, op, ": sr must be 4-D (B, C, H, W), got shape ", sr.sizes());
  TORCH_CHECK_VALUE(sr.sizes() == hr.sizes(), op, ": sr and hr must have the same shape, got ", sr.sizes(), " and ",
                    hr.sizes());
  TORCH_CHECK_VALUE(sr.device() == hr.device(), op, ": sr and hr must be on the same device, got ", sr.device(),
                    " and ", hr.device());
  TORCH_CHECK_TYPE(sr.scalar_type() == hr.scalar_type(), op, ": sr and hr must have the same dtype, got ",
                   sr.scalar_type(), " and ", hr.scalar_type());
  check_floating(sr, op, "sr");
  TORCH_CHECK_VALUE(sr.numel() > 0, op, ": empty input of shape ", sr.sizes());
  TORCH_CHECK_VALUE(sr.size(2) >= 2 && sr.size(3) >= 2, op, ": H and W must be >= 2, got ", sr.sizes());
}

void check_fft_loss_bwd_inputs(const at::Tensor& grad_loss, const at::Tensor& spec, const at::Tensor& norms,
                               int64_t p, int64_t W) {
  constexpr const char* op = "gansr::fft_loss_bwd";
  TORCH_CHECK_VALUE(p == 1 || p == 2, op, ": p must be 1 or 2, got ", p);
  TORCH_CHECK_VALUE(spec.dim() == 5 && spec.size(0) == 2 && spec.is_complex(), op,
                    ": spec must be the complex (2, B, C, H, W/2+1) unnormalised spectrum from fft_loss_fwd, got ",
                    spec.sizes(), " ", spec.scalar_type());
  TORCH_CHECK_VALUE(spec.size(4) == W / 2 + 1, op, ": W=", W, " does not match spec width ", spec.size(4));
  const int64_t B = spec.size(1);
  TORCH_CHECK_VALUE(norms.dim() == 2 && norms.size(0) == B && norms.size(1) == 3, op, ": norms must be (B, 3), got ",
                    norms.sizes());
  // the CUDA kernel reads spec as interleaved values of norms' dtype: a mismatch would read out of bounds
  TORCH_CHECK_TYPE(norms.scalar_type() == c10::toRealValueType(spec.scalar_type()), op, ": norms (",
                   norms.scalar_type(), ") must be the real dtype of spec (", spec.scalar_type(), ")");
  TORCH_CHECK_VALUE(grad_loss.dim() == 1 && grad_loss.size(0) == B, op, ": grad_loss must be (B,), got ",
                    grad_loss.sizes());
  TORCH_CHECK_VALUE(grad_loss.device() == spec.device() && norms.device() == spec.device(), op,
                    ": all inputs must be on one device");
}

namespace {

// Loops are templated on the mode and p so the per-element branches fold away and `omp simd`
// (compiled with -fopenmp-simd, no OpenMP runtime) can vectorise them.
template <typename F>
void dispatch_mode(bool complex_mode, int64_t p, F&& f) {
  if (complex_mode) {
    p == 2 ? f(std::true_type{}, std::integral_constant<int, 2>{}) : f(std::true_type{}, std::integral_constant<int, 1>{});
  } else {
    p == 2 ? f(std::false_type{}, std::integral_constant<int, 2>{}) : f(std::false_type{}, std::integral_constant<int, 1>{});
  }
}

constexpr int64_t kChunk = 4096;  // fixed chunking: the same sums whatever the thread count

// Weighted sums of the three p-th-power terms over elements [lo, hi) of one image (interleaved re, im;
// Wf columns per row of the half spectrum of width-W images).
template <typename T, bool CPLX, int P>
void chunk_sums(const T* X, const T* Y, int64_t lo, int64_t hi, int64_t Wf, int64_t W, T scale, double* out) {
  T a = 0, b = 0, c = 0;
#pragma omp simd reduction(+ : a, b, c)
  for (int64_t i = lo; i < hi; ++i) {
    const T w = T(fftloss::half_weight(i % Wf, W));
    const fftloss::Terms<T> t = fftloss::terms<T>(scale * X[2 * i], scale * X[2 * i + 1], scale * Y[2 * i],
                                                  scale * Y[2 * i + 1], CPLX, P, w);
    a += t.d;
    b += t.x;
    c += t.y;
  }
  out[0] = a;
  out[1] = b;
  out[2] = c;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fft_loss_fwd_cpu(const at::Tensor& sr, const at::Tensor& hr,
                                                                int64_t p, bool complex_mode) {
  check_fft_loss_inputs(sr, hr, p);
  const auto ct = compute_type(sr.scalar_type());
  const int64_t B = sr.size(0), W = sr.size(3), Wf = W / 2 + 1;
  auto x = at::stack({sr, hr}).to(ct);
  auto spec = at::fft_rfft2(x, c10::nullopt, {-2, -1}, "backward").contiguous();  // unnormalised, as cuFFT
  const int64_t per = spec.numel() / (2 * B);
  const int64_t chunks = (per + kChunk - 1) / kChunk;
  auto opts = sr.options().dtype(ct);
  auto loss = new_output({B}, opts);
  auto norms = new_output({B, 3}, opts);
  std::vector<double> partial(B * chunks * 3);
  AT_DISPATCH_FLOATING_TYPES(ct, "fft_loss_fwd_cpu", [&] {
    const scalar_t* X = reinterpret_cast<const scalar_t*>(spec.const_data_ptr());
    const scalar_t* Y = X + 2 * B * per;
    const scalar_t scale = scalar_t(1.0 / std::sqrt((double)(sr.size(2) * sr.size(3))));
    dispatch_mode(complex_mode, p, [&](auto cplx, auto pp) {
      at::parallel_for(0, B * chunks, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t b = t / chunks, lo = (t % chunks) * kChunk, hi = std::min(per, lo + kChunk);
          chunk_sums<scalar_t, decltype(cplx)::value, decltype(pp)::value>(X + 2 * b * per, Y + 2 * b * per, lo, hi,
                                                                           Wf, W, scale, &partial[3 * t]);
        }
      });
    });
    scalar_t* L = loss.data_ptr<scalar_t>();
    scalar_t* Nm = norms.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b) {
      double s[3] = {0, 0, 0};  // chunk sums combined in double, in a fixed order
      for (int64_t c = 0; c < chunks; ++c)
        for (int k = 0; k < 3; ++k) s[k] += partial[3 * (b * chunks + c) + k];
      fftloss::finish<scalar_t>(s, (int)p, Nm + 3 * b, L + b);
    }
  });
  return {loss, norms, spec};
}

// One row of Z (see fftloss::folded_grad): the self-mirrored columns 0 and W/2 (W even) scalar, the
// rest vectorised.
template <typename T, bool CPLX, int P, bool HR>
void grad_row(const fftloss::Coef<T>& k, const T* X, const T* Y, const T* Xm, const T* Ym, T* Zx, T* Zy, int64_t Wf,
              int64_t W, T s) {
  auto mirrored = [&](int64_t c) {
    T out[4];
    fftloss::folded_grad<T>(k, CPLX, P, true, s * X[2 * c], s * X[2 * c + 1], s * Y[2 * c], s * Y[2 * c + 1],
                            s * Xm[2 * c], s * Xm[2 * c + 1], s * Ym[2 * c], s * Ym[2 * c + 1], out);
    Zx[2 * c] = s * out[0];
    Zx[2 * c + 1] = s * out[1];
    if (HR) {
      Zy[2 * c] = s * out[2];
      Zy[2 * c + 1] = s * out[3];
    }
  };
  mirrored(0);
  const int64_t hi = W % 2 == 0 ? Wf - 1 : Wf;
  // Z = g on mirrored-pair columns (weight 2 times the Hermitian half), times the orthonormal
  // 1/sqrt(HW) of the unscaled inverse
#pragma omp simd
  for (int64_t c = 1; c < hi; ++c) {
    T gx[2], gy[2];
    fftloss::element_grad<T>(k, CPLX, P, s * X[2 * c], s * X[2 * c + 1], s * Y[2 * c], s * Y[2 * c + 1], gx, gy);
    Zx[2 * c] = s * gx[0];
    Zx[2 * c + 1] = s * gx[1];
    if (HR) {
      Zy[2 * c] = s * gy[0];
      Zy[2 * c + 1] = s * gy[1];
    }
  }
  if (W % 2 == 0) mirrored(Wf - 1);
}

at::Tensor fft_loss_bwd_cpu(const at::Tensor& grad_loss, const at::Tensor& spec, const at::Tensor& norms, int64_t p,
                            bool complex_mode, int64_t W, bool need_hr) {
  check_fft_loss_bwd_inputs(grad_loss, spec, norms, p, W);
  const int64_t B = spec.size(1), C = spec.size(2), H = spec.size(3), Wf = spec.size(4);
  const int64_t nz = need_hr ? 2 : 1;
  auto spec_c = spec.contiguous();
  auto norms_c = norms.contiguous();
  auto go = grad_loss.to(norms.scalar_type()).contiguous();
  auto z = new_output({nz, B, C, H, Wf}, spec.options());
  AT_DISPATCH_FLOATING_TYPES(norms.scalar_type(), "fft_loss_bwd_cpu", [&] {
    const int64_t plane = H * Wf, per = C * plane;
    const scalar_t* X = reinterpret_cast<const scalar_t*>(spec_c.const_data_ptr());
    const scalar_t* Y = X + 2 * B * per;
    const scalar_t* Nm = norms_c.const_data_ptr<scalar_t>();
    const scalar_t* G = go.const_data_ptr<scalar_t>();
    scalar_t* Z = reinterpret_cast<scalar_t*>(z.data_ptr());
    const scalar_t s = scalar_t(1.0 / std::sqrt((double)(H * W)));
    dispatch_mode(complex_mode, p, [&](auto cplx, auto pp) {
      constexpr bool CPLX = decltype(cplx)::value;
      constexpr int P = decltype(pp)::value;
      at::parallel_for(0, B * C * H, 16, [&](int64_t r0, int64_t r1) {
        for (int64_t row = r0; row < r1; ++row) {
          const int64_t b = row / (C * H), r = row % H;
          const int64_t base = row / H * plane;  // (b, c) plane offset
          const int64_t i = base + r * Wf, im = base + ((H - r) % H) * Wf;  // row and mirrored row
          const fftloss::Coef<scalar_t> k = fftloss::coef<scalar_t>(Nm + 3 * b, G[b], p);
          if (need_hr) {
            grad_row<scalar_t, CPLX, P, true>(k, X + 2 * i, Y + 2 * i, X + 2 * im, Y + 2 * im, Z + 2 * i,
                                              Z + 2 * (B * per + i), Wf, W, s);
          } else {
            grad_row<scalar_t, CPLX, P, false>(k, X + 2 * i, Y + 2 * i, X + 2 * im, Y + 2 * im, Z + 2 * i, nullptr,
                                               Wf, W, s);
          }
        }
      });
    });
  });
  return at::fft_irfft2(z, c10::IntArrayRef({H, W}), {-2, -1}, "forward");  // "forward": inverse unscaled
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gansr, m) {
  m.def("fft_loss_fwd(Tensor sr, Tensor hr, int p, bool complex_mode) -> (Tensor, Tensor, Tensor)");
  m.def(
      "fft_loss_bwd(Tensor grad_loss, Tensor spec, Tensor norms, int p, bool complex_mode, int W, bool need_hr) "
      "-> Tensor");
}

TORCH_LIBRARY_IMPL(gansr, CPU, m) {
  m.impl("fft_loss_fwd", &fft_loss_fwd_cpu);
  m.impl("fft_loss_bwd", &fft_loss_bwd_cpu);
}

}  // namespace gansr
