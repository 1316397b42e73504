// Per-sample math of the gradient penalty, shared by the CPU kernel and the CUDA kernels (host+device).
// No torch headers: this file is included from .cu translation units.
//
// kind 0 "wgan-gp": f(n) = (n - 1)^2        h(n) = f'(n)/n = 2 - 2/n     (0 at n = 0)
// kind 1 "one-sided": f(n) = max(0, n - 1)^2  h(n) = 2 - 2/n for n > 1, else 0
// kind 2 "r1": f(n) = n^2 (the sum of squares itself, no sqrt)   h(n) = 2
// NaN in gives NaN out: every branch is written `!(x <= bound) ? formula : 0` so a NaN takes the
// formula (a `x > bound ? ... : 0` test is false for NaN and would turn it into 0).
#pragma once
#include <cmath>

#include "../kernel_defs.h"

namespace gansr {
namespace gp {

enum Kind : int { kWganGp = 0, kOneSided = 1, kR1 = 2 };

// f(n) from the per-sample sum of squares s = n^2
template <typename T>
GANSR_HD T penalty_term(T sumsq, T n, int kind) {
  if (kind == kR1) return sumsq;
  const T d = n - T(1);
  if (kind == kOneSided) return !(d <= T(0)) ? d * d : T(0);
  return d * d;
}

// h(n) = f'(n) / n, with the norm's subgradient 0 at n = 0 (what torch's vector_norm backward gives)
template <typename T>
GANSR_HD T grad_coef(T n, int kind) {
  if (kind == kR1) return T(2);
  const T lo = kind == kOneSided ? T(1) : T(0);
  return !(n <= lo) ? T(2) - T(2) / n : T(0);
}

// d loss / d g_b = c_b * g_b with c_b = scale * grad_loss * h(n_b) + grad_norm_b / n_b (scale = weight / B).
// A zero grad_norm_b (or none) adds nothing, even at a NaN n_b: the r1 derivative 2 scale g_b then
// stays NaN only where g_b is, as torch's sum-of-squares derivative does.
template <typename T>
GANSR_HD T sample_coef(T n, int kind, T scale, T grad_loss, T grad_norm) {
  const T inv = !(n <= T(0)) ? T(1) / n : T(0);
  const T through_norm = grad_norm == T(0) ? T(0) : grad_norm * inv;
  return scale * grad_loss * grad_coef(n, kind) + through_norm;
}

}  // namespace gp
}  // namespace gansr
