// Gradient penalty: schemas, input checks and the CPU kernels (interpolation, per-sample norm +
// penalty + mean, and the backward's scaling pass).
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../common.h"
#include "gradient_penalty_math.h"
#include "gradient_penalty.h"

namespace gansr {

void check_gp_interpolate_inputs(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& eps,
                                 bool channels_last) {
  constexpr const char* op = "gansr::gp_interpolate";
  TORCH_CHECK_VALUE(real.dim() >= 1, op, ": real must have a batch dim, got shape ", real.sizes());
  TORCH_CHECK_VALUE(real.sizes() == fake.sizes(), op, ": real and fake must have the same shape, got ", real.sizes(),
                    " and ", fake.sizes());
  TORCH_CHECK_TYPE(real.scalar_type() == fake.scalar_type(), op, ": real and fake must have the same dtype, got ",
                   real.scalar_type(), " and ", fake.scalar_type());
  check_floating(real, op, "real");
  check_floating(eps, op, "eps");
  TORCH_CHECK_VALUE(real.numel() > 0, op, ": empty input of shape ", real.sizes());
  TORCH_CHECK_VALUE(eps.dim() == 1 && eps.size(0) == real.size(0), op, ": eps must be (B,) = (", real.size(0),
                    ",), got ", eps.sizes());
  TORCH_CHECK_VALUE(real.device() == fake.device() && real.device() == eps.device(), op,
                    ": real, fake and eps must be on one device");
  TORCH_CHECK_VALUE(!channels_last || real.dim() == 4, op, ": channels_last needs a 4-D input, got ", real.sizes());
}

void check_gp_penalty_inputs(const at::Tensor& g, int64_t kind) {
  constexpr const char* op = "gansr::gp_penalty_fwd";
  TORCH_CHECK_VALUE(kind >= 0 && kind <= 2, op, ": kind must be 0 (wgan-gp), 1 (one-sided) or 2 (r1), got ",
                    kind);
  check_floating(g, op, "grad");
  TORCH_CHECK_VALUE(g.dim() >= 2 && g.numel() > 0, op, ": grad must be a non-empty (B, ...) tensor, got shape ",
                    g.sizes());
}

void check_gp_penalty_bwd_inputs(const at::Tensor& grad_loss, const c10::optional<at::Tensor>& grad_norms,
                                 const at::Tensor& g, const at::Tensor& norms, int64_t kind) {
  constexpr const char* op = "gansr::gp_penalty_bwd";
  check_gp_penalty_inputs(g, kind);
  const int64_t B = g.size(0);
  TORCH_CHECK_VALUE(grad_loss.numel() == 1, op, ": grad_loss must hold one value, got ", grad_loss.sizes());
  TORCH_CHECK_VALUE(norms.dim() == 1 && norms.size(0) == B, op, ": norms must be (B,) = (", B, ",), got ",
                    norms.sizes());
  TORCH_CHECK_TYPE(norms.scalar_type() == compute_type(g.scalar_type()), op, ": norms must be ",
                   compute_type(g.scalar_type()), " (from gp_penalty_fwd), got ", norms.scalar_type());
  TORCH_CHECK_VALUE(grad_loss.device() == g.device() && norms.device() == g.device(), op,
                    ": all inputs must be on one device");
  if (grad_norms.has_value()) {
    TORCH_CHECK_VALUE(grad_norms->dim() == 1 && grad_norms->size(0) == B, op, ": grad_norms must be (B,), got ",
                      grad_norms->sizes());
    TORCH_CHECK_VALUE(grad_norms->device() == g.device(), op, ": all inputs must be on one device");
  }
}

at::Tensor per_sample_blocks(const at::Tensor& g) {
  if (g.is_contiguous()) return g;
  if (g.dim() == 4 && g.is_contiguous(at::MemoryFormat::ChannelsLast)) return g;
  return g.contiguous();
}

at::MemoryFormat grad_output_format(const at::Tensor& g) {
  const bool cl = g.dim() == 4 && !g.is_contiguous() && g.is_contiguous(at::MemoryFormat::ChannelsLast);
  return cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

namespace {

at::Tensor gp_interpolate_cpu(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& eps,
                              bool channels_last) {
  check_gp_interpolate_inputs(real, fake, eps, channels_last);
  const auto fmt = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  auto r = real.contiguous(fmt), f = fake.contiguous(fmt);
  auto e = eps.to(compute_type(real.scalar_type())).contiguous();
  auto out = new_output(real.sizes(), real.options().memory_format(fmt));
  const int64_t n = real.numel(), per = n / real.size(0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, real.scalar_type(), "gp_interpolate_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* R = r.const_data_ptr<scalar_t>();
    const scalar_t* F = f.const_data_ptr<scalar_t>();
    const acc_t* E = e.const_data_ptr<acc_t>();
    scalar_t* O = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, 4096, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const acc_t w = E[i / per];
        O[i] = static_cast<scalar_t>(w * static_cast<acc_t>(R[i]) + (acc_t(1) - w) * static_cast<acc_t>(F[i]));
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> gp_penalty_fwd_cpu(const at::Tensor& grad, int64_t kind, double weight) {
  check_gp_penalty_inputs(grad, kind);
  auto g = per_sample_blocks(grad);
  const int64_t B = g.size(0), per = g.numel() / B;
  const auto ct = compute_type(g.scalar_type());
  auto loss = new_output({}, g.options().dtype(ct).memory_format(at::MemoryFormat::Contiguous));
  auto norms = new_output({B}, g.options().dtype(ct).memory_format(at::MemoryFormat::Contiguous));
  std::vector<double> sumsq(B);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "gp_penalty_fwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* G = g.const_data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        double s = 0;  // double accumulation: deterministic and accurate for any image size
        const scalar_t* x = G + b * per;
        for (int64_t i = 0; i < per; ++i) {
          const double v = static_cast<double>(x[i]);
          s += v * v;
        }
        sumsq[b] = s;
      }
    });
    acc_t* N = norms.data_ptr<acc_t>();
    double total = 0;  // mean over samples in a fixed order
    for (int64_t b = 0; b < B; ++b) {
      const double n = std::sqrt(sumsq[b]);
      N[b] = static_cast<acc_t>(n);
      total += gp::penalty_term<double>(sumsq[b], n, (int)kind);
    }
    *loss.data_ptr<acc_t>() = static_cast<acc_t>(weight * total / (double)B);
  });
  return {loss, norms};
}

at::Tensor gp_penalty_bwd_cpu(const at::Tensor& grad_loss, const c10::optional<at::Tensor>& grad_norms,
                              const at::Tensor& grad, const at::Tensor& norms, int64_t kind, double weight) {
  check_gp_penalty_bwd_inputs(grad_loss, grad_norms, grad, norms, kind);
  auto g = per_sample_blocks(grad);
  const int64_t B = g.size(0), n = g.numel(), per = n / B;
  const auto ct = norms.scalar_type();
  const double gl = grad_loss.to(at::kDouble).item<double>();
  auto gn = grad_norms.has_value() ? grad_norms->to(ct).contiguous() : at::Tensor();
  auto nm = norms.contiguous();
  auto out = new_output(g.sizes(), g.options().memory_format(grad_output_format(g)));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "gp_penalty_bwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t* N = nm.const_data_ptr<acc_t>();
    const acc_t* GN = gn.defined() ? gn.const_data_ptr<acc_t>() : nullptr;
    std::vector<acc_t> coef(B);
    for (int64_t b = 0; b < B; ++b)
      coef[b] = gp::sample_coef<acc_t>(N[b], (int)kind, acc_t(weight / (double)B), acc_t(gl), GN ? GN[b] : acc_t(0));
    const scalar_t* G = g.const_data_ptr<scalar_t>();
    scalar_t* O = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, 4096, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) O[i] = static_cast<scalar_t>(coef[i / per] * static_cast<acc_t>(G[i]));
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gansr, m) {
  m.def("gp_interpolate(Tensor real, Tensor fake, Tensor eps, bool channels_last) -> Tensor");
  m.def("gp_penalty_fwd(Tensor grad, int kind, float weight) -> (Tensor, Tensor)");
  m.def(
      "gp_penalty_bwd(Tensor grad_loss, Tensor? grad_norms, Tensor grad, Tensor norms, int kind, float weight) "
      "-> Tensor");
}

TORCH_LIBRARY_IMPL(gansr, CPU, m) {
  m.impl("gp_interpolate", &gp_interpolate_cpu);
  m.impl("gp_penalty_fwd", &gp_penalty_fwd_cpu);
  m.impl("gp_penalty_bwd", &gp_penalty_bwd_cpu);
}

}  // namespace gansr
