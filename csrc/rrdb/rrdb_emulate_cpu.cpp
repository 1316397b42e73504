// C++ loop twins of the CUDA epilogue / gather kernels (same argument blocks, same arithmetic in
// the accumulation type), plugged into the device-generic sliced algorithm as the CPU-registered
// test ops `gansr::rrdb_sliced_fwd` / `rrdb_sliced_bwd`. They let CPU tests check the CUDA path's
// glue (which slices, offsets, strides, scales and residual paths) against the reference; only the
// kernels' thread indexing and cuDNN remain for GPU tests. Not used by `gansr_ext.ops.rrdb`.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "rrdb.h"
#include "rrdb_sliced.h"

namespace gansr {
namespace rrdb {
namespace {

template <typename T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };

template <typename T>
void epilogue_loop(const EpilogueArgs& a) {
  using A = typename Acc<T>::type;
  const T* y = static_cast<const T*>(a.y);
  const T* r1 = static_cast<const T*>(a.r1);
  const T* r2 = static_cast<const T*>(a.r2);
  const T* bias = static_cast<const T*>(a.bias);
  T* out = static_cast<T*>(a.out);
  for (int64_t m = 0; m < a.M; ++m)
    for (int c = 0; c < a.C; ++c) {
      A v = A(y[m * a.y_stride + c]) + A(bias[c]);
      if (a.act) v = v > A(0) ? v : A(a.slope) * v;
      if (r1) v = A(r1[m * a.r1_stride + c]) + A(a.s1) * v;
      if (r2) v = A(r2[m * a.r2_stride + c]) + A(a.s2) * v;
      out[m * a.out_stride + c] = T(v);
    }
}

template <typename T>
void gather_loop(const GatherArgs& a) {
  using A = typename Acc<T>::type;
  const T* act = static_cast<const T*>(a.act);
  T* out = static_cast<T*>(a.out);
  T* out2 = static_cast<T*>(a.out2);
  // one accumulator row per CUDA block along x when deterministic (rrdb_args.h), else one row
  const int64_t rows = a.bias_partial ? a.partial_rows : 1;
  std::vector<A> bsum(rows * a.C, A(0));
  for (int64_t m = 0; m < a.M; ++m)
    for (int c = 0; c < a.C; ++c) {
      A& acc = bsum[(m / kGatherRowsPerStep) % rows * a.C + c];
      A v = A(0);
      for (int i = 0; i < a.nsrc; ++i) v += A(a.src_scale[i]) * A(static_cast<const T*>(a.src[i])[m * a.src_stride[i] + c]);
      if (act && !(A(act[m * a.act_stride + c]) > A(0))) v *= A(a.slope);
      out[m * a.out_stride + c] = T(v);
      if (out2) {
        const A v2 = A(a.s2) * v;
        out2[m * a.out2_stride + c] = T(v2);
        acc += v2;
      } else {
        acc += v;
      }
    }
  if (a.bias_partial)
    std::copy(bsum.begin(), bsum.end(), static_cast<A*>(a.bias_partial));
  else if (a.bias_grad)
    for (int c = 0; c < a.C; ++c) static_cast<A*>(a.bias_grad)[c] += bsum[c];
}

template <template <typename> class F, typename Args>
void dispatch(DType t, const Args& a) {
  switch (t) {
    case DType::kFloat: return F<float>::run(a);
    case DType::kDouble: return F<double>::run(a);
    case DType::kHalf: return F<c10::Half>::run(a);
    case DType::kBFloat16: return F<c10::BFloat16>::run(a);
  }
}
template <typename T> struct Epi { static void run(const EpilogueArgs& a) { epilogue_loop<T>(a); } };
template <typename T> struct Gat { static void run(const GatherArgs& a) { gather_loop<T>(a); } };

at::ScalarType scalar_type(DType t) {
  switch (t) {
    case DType::kFloat: return at::kFloat;
    case DType::kDouble: return at::kDouble;
    case DType::kHalf: return at::kHalf;
    case DType::kBFloat16: return at::kBFloat16;
  }
  return at::kFloat;
}

// strided NHWC view (N, C, H, W) of raw memory with pixel stride ps
at::Tensor nhwc_view(const void* p, int64_t N, int64_t C, int64_t H, int64_t W, int64_t ps, at::ScalarType st) {
  return at::from_blob(const_cast<void*>(p), {N, C, H, W}, {H * W * ps, 1, W * ps, ps}, at::TensorOptions().dtype(st));
}

// extern "C" int f(int dtype, const Args*): a fused conv run by other code on the host (tests:
// CUTLASS's host reference convolutions, rrdb_cutlass_host_ref.cc); 0: done, else declined
template <typename Args>
using HostConv = int (*)(int, const Args*);
template <typename Args>
HostConv<Args> host_conv_ptr(int64_t address) {
  return reinterpret_cast<HostConv<Args>>(static_cast<intptr_t>(address));
}

struct LoopBackend final : Backend {
  // emulate the CUTLASS convs' argument blocks (pointers, strides, KRSC weights) with ATen, or run
  // them through host_* when given
  bool fused_conv = false;
  HostConv<ConvBiasActArgs> host_fprop = nullptr;
  HostConv<ConvDgradArgs> host_dgrad = nullptr;
  HostConv<ConvWgradArgs> host_wgrad = nullptr;
  void epilogue(DType t, const EpilogueArgs& a) const override { dispatch<Epi>(t, a); }
  void gather(DType t, const GatherArgs& a) const override { dispatch<Gat>(t, a); }
  bool has_fused_conv(DType) const override { return fused_conv || host_fprop; }
  bool conv_bias_lrelu(DType t, const ConvBiasActArgs& a) const override {
    if (host_fprop) return host_fprop(static_cast<int>(t), &a) == 0;
    const auto st = scalar_type(t);
    const at::Tensor x = nhwc_view(a.x, a.N, a.cin, a.H, a.W, a.x_stride, st);
    const at::Tensor w = nhwc_view(a.w, a.cout, a.cin, 3, 3, a.cin, st);  // KRSC memory = OIHW channels_last
    const at::Tensor b = at::from_blob(const_cast<void*>(a.bias), {a.cout}, at::TensorOptions().dtype(st));
    at::Tensor out = nhwc_view(a.out, a.N, a.cout, a.H, a.W, a.out_stride, st);
    at::leaky_relu_out(out, conv3x3(x, w, b), a.slope);
    return true;
  }
  bool has_fused_bwd(DType) const override { return fused_conv || host_dgrad || host_wgrad; }
  bool conv_dgrad(DType t, const ConvDgradArgs& a) const override {
    if (host_dgrad) return host_dgrad(static_cast<int>(t), &a) == 0;
    if (!fused_conv) return false;
    const auto st = scalar_type(t);
    const at::Tensor dy = nhwc_view(a.dy, a.N, a.cout, a.H, a.W, a.dy_stride, st);
    const at::Tensor w = nhwc_view(a.w, a.cout, a.cin, 3, 3, a.cin, st);
    at::Tensor dx = nhwc_view(a.dx, a.N, a.cin, a.H, a.W, a.dx_stride, st);
    const at::Tensor d = std::get<0>(conv3x3_backward(dy, at::empty_like(dx), w, {true, false, false}));
    a.beta == 0.0 ? dx.copy_(d) : dx.add_(d, a.beta);
    return true;
  }
  bool conv_wgrad(DType t, const ConvWgradArgs& a) const override {
    if (host_wgrad) return host_wgrad(static_cast<int>(t), &a) == 0;
    if (!fused_conv) return false;
    const auto st = scalar_type(t);
    const at::Tensor dy = nhwc_view(a.dy, a.N, a.cout, a.H, a.W, a.dy_stride, st);
    const at::Tensor x = nhwc_view(a.x, a.N, a.cin, a.H, a.W, a.x_stride, st);
    at::Tensor dw = nhwc_view(a.dw, a.cout, a.cin, 3, 3, a.cin, st);
    const at::Tensor w_shape = at::empty({a.cout, a.cin, 3, 3}, at::TensorOptions().dtype(st));
    dw.copy_(std::get<1>(conv3x3_backward(dy, x, w_shape, {false, true, false})));
    return true;
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sliced_fwd_cpu(const at::Tensor& x, at::TensorList params,
                                                                          bool fused_conv, int64_t host_conv) {
  LoopBackend be;
  be.fused_conv = fused_conv;
  be.host_fprop = host_conv_ptr<ConvBiasActArgs>(host_conv);
  return sliced_fwd(x, params, be);
}

BwdResult sliced_bwd_cpu(const at::Tensor& grad_out, const at::Tensor& buf1, const at::Tensor& buf2,
                         const at::Tensor& buf3, at::TensorList params, bool need_param_grads, bool fused_conv,
                         int64_t host_dgrad, int64_t host_wgrad) {
  LoopBackend be;
  be.fused_conv = fused_conv;
  be.host_dgrad = host_conv_ptr<ConvDgradArgs>(host_dgrad);
  be.host_wgrad = host_conv_ptr<ConvWgradArgs>(host_wgrad);
  return sliced_bwd(grad_out, buf1, buf2, buf3, params, need_param_grads, be);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gansr, m) {
  m.def("rrdb_sliced_fwd(Tensor x, Tensor[] params, bool fused_conv=False, int host_conv=0) -> "
        "(Tensor, Tensor, Tensor, Tensor)");
  m.def("rrdb_sliced_bwd(Tensor grad_out, Tensor buf1, Tensor buf2, Tensor buf3, Tensor[] params, "
        "bool need_param_grads=True, bool fused_conv=False, int host_dgrad=0, int host_wgrad=0) "
        "-> (Tensor, Tensor[], Tensor)");
}

TORCH_LIBRARY_IMPL(gansr, CPU, m) {
  m.impl("rrdb_sliced_fwd", &sliced_fwd_cpu);
  m.impl("rrdb_sliced_bwd", &sliced_bwd_cpu);
}

}  // namespace rrdb
}  // namespace gansr
