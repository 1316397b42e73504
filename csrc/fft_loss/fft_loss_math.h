// Per-element math of the FFT loss, shared by the CPU kernel and the CUDA kernels (host+device).
// No torch headers: this file is included from .cu translation units.
#pragma once
#include <cmath>
#include <cstdint>

#include "../kernel_defs.h"

namespace gansr {
namespace fftloss {

template <typename T>
struct Terms {
  T d, x, y;  // contributions of one spectrum element to the p-th powers of N_d, N_x, N_y
};

// How many elements of the full fft2 spectrum rfft2 column `col` stands for: columns 1..ceil(W/2)-1
// also stand for their mirror image W-col (the complex conjugate of a row-mirrored element: same
// modulus, same |X - Y|, same |X| - |Y|), which rfft2 drops; column 0 and, for even W, column W/2 are
// their own mirror. Weighting the half-spectrum sums with it makes every norm the full DFT's.
GANSR_HD int half_weight(int64_t col, int64_t W) {
  return (col == 0 || 2 * col == W) ? 1 : 2;
}

template <typename T>
GANSR_HD T safe_inv(T v) {
  return v > T(0) ? T(1) / v : T(0);
}

// max(a, b) that is NaN when either is (a plain `a > b ? a : b` drops a NaN b, and the loss then
// reads a NaN image as the 0/0 case).
template <typename T>
GANSR_HD T nan_max(T a, T b) {
  return (a > b || a != a) ? a : b;
}

template <typename T>
GANSR_HD Terms<T> terms(T xr, T xi, T yr, T yi, bool complex_mode, int p, T w) {
  const T x2 = xr * xr + xi * xi, y2 = yr * yr + yi * yi;
  if (complex_mode) {
    const T dr = xr - yr, di = xi - yi, d2 = dr * dr + di * di;
    if (p == 2) return {w * d2, w * x2, w * y2};
    return {w * sqrt(d2), w * sqrt(x2), w * sqrt(y2)};
  }
  const T xa = sqrt(x2), ya = sqrt(y2), d = xa - ya;
  if (p == 2) return {w * d * d, w * x2, w * y2};
  return {w * fabs(d), w * xa, w * ya};
}

// Weighted sums of the p-th powers -> norms (N_d, N_x, N_y) and the image's loss N_d / max(N_x, N_y).
template <typename T, typename S>
GANSR_HD void finish(const S* s, int p, T* norms, T* loss) {
  const S nd = p == 2 ? sqrt(s[0]) : s[0];
  const S nx = p == 2 ? sqrt(s[1]) : s[1];
  const S ny = p == 2 ? sqrt(s[2]) : s[2];
  const S m = nan_max(nx, ny);
  norms[0] = T(nd);
  norms[1] = T(nx);
  norms[2] = T(ny);
  // both images all zeros (then N_d = 0 too): loss 0; a NaN anywhere makes m or N_d NaN: loss NaN
  *loss = m == S(0) ? T(0) : T(nd / m);
}

// Per-image coefficients of the gradient: dL/dN_d = go / m, dL/dN_x = -go N_d / m^2 * w_x, ...
// (torch.maximum's convention on a tie: half to each side).
template <typename T>
struct Coef {
  T cd, cx, cy, inv_nd, inv_nx, inv_ny;
};

template <typename T>
GANSR_HD Coef<T> coef(const T* norms, T go, int p) {
  const T nd = norms[0], nx = norms[1], ny = norms[2];
  const T m = nan_max(nx, ny);
  if (m == T(0)) return {T(0), T(0), T(0), T(0), T(0), T(0)};  // NaN norms fall through: NaN gradient
  const T cm = -go * nd / (m * m);
  const T wx = nx > ny ? T(1) : (nx == ny ? T(0.5) : T(0));
  return {go / m, cm * wx, cm * (T(1) - wx), safe_inv(nd), safe_inv(nx), safe_inv(ny)};
}

// Gradient (as torch's complex convention dL/dRe + i dL/dIm) of one image's loss with respect to
// one spectrum element of X and of Y.
template <typename T>
GANSR_HD void element_grad(const Coef<T>& k, bool complex_mode, int p, T xr, T xi, T yr, T yi, T* gx, T* gy) {
  const T xa = sqrt(xr * xr + xi * xi), ya = sqrt(yr * yr + yi * yi);
  const T ixa = safe_inv(xa), iya = safe_inv(ya);
  // norm terms: dN_x/dX = X / N_x (p = 2) or X / |X| (p = 1)
  const T sx = k.cx * (p == 2 ? k.inv_nx : ixa);
  const T sy = k.cy * (p == 2 ? k.inv_ny : iya);
  T gxr = sx * xr, gxi = sx * xi, gyr = sy * yr, gyi = sy * yi;
  if (complex_mode) {
    const T dr = xr - yr, di = xi - yi;
    const T s = k.cd * (p == 2 ? k.inv_nd : safe_inv(sqrt(dr * dr + di * di)));
    gxr += s * dr;
    gxi += s * di;
    gyr -= s * dr;
    gyi -= s * di;
  } else {
    const T d = xa - ya;
    const T s = k.cd * (p == 2 ? d * k.inv_nd : T((d > T(0)) - (d < T(0))));
    gxr += s * ixa * xr;
    gxi += s * ixa * xi;
    gyr -= s * iya * yr;
    gyi -= s * iya * yi;
  }
  gx[0] = gxr;
  gx[1] = gxi;
  gy[0] = gyr;
  gy[1] = gyi;
}

// Input of the C2R transform that computes the adjoint of the orthonormal rfft2. With G = w g the
// gradient with respect to the (weighted, see half_weight) half spectrum and g = element_grad:
// Re(ifft2(G zero-padded to the full width)) = irfft2(Z) with Z the Hermitian part of G, i.e.
// Z = G / 2 = g on columns whose mirror lies in the discarded half (w = 2), and
// Z = (g(r) + conj(g(-r))) / 2 on the self-mirrored columns 0 and W/2 (W even, w = 1).
// out = (Zx.re, Zx.im, Zy.re, Zy.im).
template <typename T>
GANSR_HD void folded_grad(const Coef<T>& k, bool complex_mode, int p, bool self_mirror, T xr, T xi, T yr, T yi,
                          T mxr, T mxi, T myr, T myi, T* out) {
  T gx[2], gy[2];
  element_grad(k, complex_mode, p, xr, xi, yr, yi, gx, gy);
  if (self_mirror) {
    T hx[2], hy[2];
    element_grad(k, complex_mode, p, mxr, mxi, myr, myi, hx, hy);
    out[0] = T(0.5) * (gx[0] + hx[0]);
    out[1] = T(0.5) * (gx[1] - hx[1]);
    out[2] = T(0.5) * (gy[0] + hy[0]);
    out[3] = T(0.5) * (gy[1] - hy[1]);
  } else {
    out[0] = gx[0];
    out[1] = gx[1];
    out[2] = gy[0];
    out[3] = gy[1];
  }
}

}  // namespace fftloss
}  // namespace gansr
