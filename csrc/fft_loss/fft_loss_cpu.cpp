// FFT loss: schema, input checks and the CPU kernel (ATen's pocketfft for the transforms, the rest
// fused into one pass per image for the norms and one pass for the spectrum gradient).
#include <ATen/Parallel.h>
#include <c10/util/complex.h>
#include <torch/library.h>

#include <cmath>

#include "../common.h"
#include "fft_loss.h"
#include "fft_loss_math.h"

namespace gansr {

void check_fft_loss_inputs(const at::Tensor& sr, const at::Tensor& hr, int64_t p) {
  constexpr const char* op = "gansr::fft_loss";
  TORCH_CHECK(p == 1 || p == 2, op, ": p must be 1 or 2, got ", p);
  TORCH_CHECK(sr.dim() == 4, op, ": sr must be 4-D (B, C, H, W), got shape ", sr.sizes());
  TORCH_CHECK(sr.sizes() == hr.sizes(), op, ": sr and hr must have the same shape, got ", sr.sizes(), " and ",
              hr.sizes());
  TORCH_CHECK(sr.device() == hr.device(), op, ": sr and hr must be on the same device, got ", sr.device(),
              " and ", hr.device());
  TORCH_CHECK(sr.scalar_type() == hr.scalar_type(), op, ": sr and hr must have the same dtype, got ",
              sr.scalar_type(), " and ", hr.scalar_type());
  check_floating(sr, op, "sr");
  TORCH_CHECK(sr.numel() > 0, op, ": empty input of shape ", sr.sizes());
  TORCH_CHECK(sr.size(2) >= 2 && sr.size(3) >= 2, op, ": H and W must be >= 2, got ", sr.sizes());
}

void check_fft_loss_bwd_inputs(const at::Tensor& grad_loss, const at::Tensor& spec, const at::Tensor& norms,
                               int64_t p, int64_t W) {
  constexpr const char* op = "gansr::fft_loss_bwd";
  TORCH_CHECK(p == 1 || p == 2, op, ": p must be 1 or 2, got ", p);
  TORCH_CHECK(spec.dim() == 5 && spec.size(0) == 2 && spec.is_complex(), op,
              ": spec must be the complex (2, B, C, H, W/2+1) unnormalised spectrum from fft_loss_fwd, got ", spec.sizes(), " ",
              spec.scalar_type());
  TORCH_CHECK(spec.size(4) == W / 2 + 1, op, ": W=", W, " does not match spec width ", spec.size(4));
  const int64_t B = spec.size(1);
  TORCH_CHECK(norms.dim() == 2 && norms.size(0) == B && norms.size(1) == 3, op, ": norms must be (B, 3)");
  // the CUDA kernel reads spec as interleaved values of norms' dtype: a mismatch would read out of bounds
  TORCH_CHECK(norms.scalar_type() == c10::toRealValueType(spec.scalar_type()), op, ": norms (",
              norms.scalar_type(), ") must be the real dtype of spec (", spec.scalar_type(), ")");
  TORCH_CHECK(grad_loss.dim() == 1 && grad_loss.size(0) == B, op, ": grad_loss must be (B,), got ",
              grad_loss.sizes());
  TORCH_CHECK(grad_loss.device() == spec.device() && norms.device() == spec.device(), op,
              ": all inputs must be on one device");
}

namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> fft_loss_fwd_cpu(const at::Tensor& sr, const at::Tensor& hr,
                                                                int64_t p, bool complex_mode) {
  check_fft_loss_inputs(sr, hr, p);
  const auto ct = compute_type(sr.scalar_type());
  const int64_t B = sr.size(0);
  auto x = at::stack({sr, hr}).to(ct);
  auto spec = at::fft_rfft2(x, c10::nullopt, {-2, -1}, "backward").contiguous();  // unnormalised, as cuFFT
  const int64_t per = spec.numel() / (2 * B);
  auto opts = sr.options().dtype(ct);
  auto loss = new_output({B}, opts);
  auto norms = new_output({B, 3}, opts);
  AT_DISPATCH_FLOATING_TYPES(ct, "fft_loss_fwd_cpu", [&] {
    using cplx = c10::complex<scalar_t>;
    const cplx* X = spec.const_data_ptr<cplx>();
    const cplx* Y = X + B * per;
    scalar_t* L = loss.data_ptr<scalar_t>();
    scalar_t* Nm = norms.data_ptr<scalar_t>();
    const double scale = 1.0 / std::sqrt((double)(sr.size(2) * sr.size(3)));
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        double s[3] = {0, 0, 0};  // accumulate in double: up to millions of terms per image
        for (int64_t i = 0; i < per; ++i) {
          const cplx xv = X[b * per + i], yv = Y[b * per + i];
          fftloss::Terms<double> t = fftloss::terms<double>(scale * xv.real(), scale * xv.imag(),
                                                             scale * yv.real(), scale * yv.imag(), complex_mode, p);
          s[0] += t.d;
          s[1] += t.x;
          s[2] += t.y;
        }
        fftloss::finish<scalar_t>(s, p, Nm + 3 * b, L + b);
      }
    });
  });
  return {loss, norms, spec};
}

at::Tensor fft_loss_bwd_cpu(const at::Tensor& grad_loss, const at::Tensor& spec,
                                                    const at::Tensor& norms, int64_t p, bool complex_mode,
                                                    int64_t W, bool need_hr) {
  check_fft_loss_bwd_inputs(grad_loss, spec, norms, p, W);
  const int64_t B = spec.size(1), C = spec.size(2), H = spec.size(3), Wf = spec.size(4);
  const int64_t nz = need_hr ? 2 : 1;
  auto spec_c = spec.contiguous();
  auto norms_c = norms.contiguous();
  auto go = grad_loss.to(norms.scalar_type()).contiguous();
  auto z = new_output({nz, B, C, H, Wf}, spec.options());
  AT_DISPATCH_FLOATING_TYPES(norms.scalar_type(), "fft_loss_bwd_cpu", [&] {
    using cplx = c10::complex<scalar_t>;
    const cplx* X = spec_c.const_data_ptr<cplx>();
    const int64_t plane = H * Wf, per = C * plane;
    const cplx* Y = X + B * per;
    const scalar_t* Nm = norms_c.const_data_ptr<scalar_t>();
    const scalar_t* G = go.const_data_ptr<scalar_t>();
    cplx* Z = z.data_ptr<cplx>();
    const scalar_t s = scalar_t(1.0 / std::sqrt((double)(H * W)));
    at::parallel_for(0, B * C * H, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; ++row) {
        const int64_t b = row / (C * H), r = row % H;
        const int64_t base = row / H * plane;  // (b, c) plane offset
        const int64_t rm = (H - r) % H;        // mirrored row
        const fftloss::Coef<scalar_t> k = fftloss::coef<scalar_t>(Nm + 3 * b, G[b], p);
        for (int64_t col = 0; col < Wf; ++col) {
          const int64_t i = base + r * Wf + col, im = base + rm * Wf + col;
          const bool self_mirror = col == 0 || (W % 2 == 0 && col == W / 2);
          scalar_t out[4];
          fftloss::folded_grad<scalar_t>(k, complex_mode, p, self_mirror, s * X[i].real(), s * X[i].imag(),
                                         s * Y[i].real(), s * Y[i].imag(), s * X[im].real(), s * X[im].imag(),
                                         s * Y[im].real(), s * Y[im].imag(), need_hr, out);
          // unnormalised inverse below: the orthonormal adjoint's 1/sqrt(HW) is applied here
          Z[i] = cplx(s * out[0], s * out[1]);
          if (need_hr) Z[B * per + i] = cplx(s * out[2], s * out[3]);
        }
      }
    });
  });
  auto g = at::fft_irfft2(z, c10::IntArrayRef({H, W}), {-2, -1}, "forward");  // "forward": inverse unscaled
  return g;
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
