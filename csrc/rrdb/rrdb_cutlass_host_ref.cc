// CPU check of the fused RRDB's CUTLASS convs: the problems the GPU launchers build
// (rrdb_cutlass_problem.h, the same code) computed by CUTLASS's host reference convolutions and the
// kernels' own epilogue functors. Not part of the extension (CMake builds *.cpp / *.cu only): g++
// builds it into a shared library for tests/test_rrdb_cutlass.py, which plugs the entry points into
// the CPU op's sliced algorithm as its fused convs (test-only ops gansr_testing::rrdb_fwd_host_conv /
// rrdb_bwd_host_conv, function addresses) and calls them directly on views of the buffers.
#include <cutlass/cutlass.h>
#include <cutlass/bfloat16.h>
#include <cutlass/half.h>
#include <cutlass/epilogue/thread/linear_combination.h>
#include <cutlass/epilogue/thread/linear_combination_leaky_relu.h>
#include <cutlass/util/reference/host/convolution.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "rrdb_cutlass_problem.h"

namespace {

namespace rr = gansr::rrdb;
namespace cc = gansr::rrdb::cutlass_conv;

// the broadcast epilogue's functor (LinearCombinationResidualBlock) has its own call signature
template <typename Epilogue, typename = void>
constexpr bool kBroadcast = false;
template <typename Epilogue>
constexpr bool kBroadcast<Epilogue, std::void_t<typename Epilogue::FragmentZ>> = true;

// The epilogue: the kernel's functor on fragments of kAlignElements along the last (contiguous)
// coordinate of `extent`, accumulators from `acc`, the source read through the problem's C (the
// broadcast functor: the vector's fragment at the same channels), the result written through D
// (reads of C happen before the write of the same fragment, as on the GPU)
template <typename Epilogue, typename E, typename EC, typename A>
void epilogue(const cc::Problem<E, EC>& p, const Epilogue& op, const cutlass::TensorRef<A, cc::Layout>& acc,
              const cutlass::Tensor4DCoord& extent) {
  for (int i0 = 0; i0 < extent[0]; ++i0)
    for (int i1 = 0; i1 < extent[1]; ++i1)
      for (int i2 = 0; i2 < extent[2]; ++i2)
        for (int k0 = 0; k0 < extent[3]; k0 += Epilogue::kCount) {
          typename Epilogue::FragmentAccumulator frag;
          typename Epilogue::FragmentOutput out;
          if constexpr (kBroadcast<Epilogue>) {
            typename Epilogue::FragmentC source;
            typename Epilogue::FragmentCompute vector;
            typename Epilogue::FragmentT unused_t;
            const E* bias = static_cast<const E*>(p.vector);
            for (int i = 0; i < Epilogue::kCount; ++i) {
              const auto at = cutlass::make_Coord(i0, i1, i2, k0 + i);
              frag[i] = acc.at(at);
              source[i] = p.c.at(at);
              // a null vector reads as zeros (EpilogueWithBroadcast::load_broadcast_fragment_)
              vector[i] = typename Epilogue::ElementCompute(bias ? bias[k0 + i] : E(0));
            }
            op(out, unused_t, frag, source, vector);
          } else {
            typename Epilogue::FragmentSource source;
            for (int i = 0; i < Epilogue::kCount; ++i) {
              const auto at = cutlass::make_Coord(i0, i1, i2, k0 + i);
              frag[i] = acc.at(at);
              if (op.is_source_needed()) source[i] = p.c.at(at);
            }
            out = op.is_source_needed() ? op(frag, source) : op(frag);
          }
          for (int i = 0; i < Epilogue::kCount; ++i) p.d.at(cutlass::make_Coord(i0, i1, i2, k0 + i)) = out[i];
        }
}

// The mainloop's accumulators alone (alpha 1, beta 0) by the host reference `conv`, then the epilogue.
// E: element type; A: accumulation / compute type (float as on the GPU, double for the fp64 check).
template <typename E, typename A, typename Epilogue, typename Conv, typename EC>
void run(const cc::Problem<E, EC>& p, const typename Epilogue::Params& params, const cutlass::Tensor4DCoord& extent,
         Conv conv) {
  std::vector<A> acc(static_cast<size_t>(extent.product()));
  const cutlass::TensorRef<A, cc::Layout> acc_ref(acc.data(), cc::Layout::packed(extent));
  conv(p.size, p.a, p.b, acc_ref, acc_ref, A(1), A(0));
  epilogue(p, Epilogue(params), acc_ref, extent);
}

template <typename E, typename A>
using Linear = cutlass::epilogue::thread::LinearCombination<E, cc::kAlignElements, A, A>;

template <typename E, typename A>
int fprop(const rr::ConvBiasActArgs& a) {
  if (!cc::fprop_supported<E>(a)) return 1;
  using Epilogue = cutlass::epilogue::thread::LinearCombinationLeakyRelu<E, cc::kAlignElements, A, A>;
  const cc::Problem<E> p = cc::fprop_problem<E>(a);
  run<E, A, Epilogue>(p, cc::leaky_relu_params<Epilogue>(p), p.size.output_extent(),
                      cutlass::reference::host::Conv2dFprop<E, cc::Layout, E, cc::Layout, A, cc::Layout, A, A>);
  return 0;
}

template <typename E, typename A>
int dgrad(const rr::ConvDgradArgs& a) {
  if (!cc::dgrad_supported<E>(a)) return 1;
  const cc::Problem<E> p = cc::dgrad_problem<E>(a);
  auto conv = [](auto size, auto dy, auto w, auto c, auto d, A alpha, A beta) {
    cutlass::reference::host::Conv2dDgrad<E, cc::Layout, E, cc::Layout, A, cc::Layout, A, A>(size, dy, w, c, d, alpha,
                                                                                            beta);
  };
  run<E, A, Linear<E, A>>(p, cc::linear_params<Linear<E, A>>(p), p.size.activation_extent(), conv);
  return 0;
}

template <typename E, typename A>
int residual(const rr::ConvBiasResidualArgs& a) {
  if (!cc::residual_supported<E>(a)) return 1;
  using Epilogue = cc::ResidualEpilogue<E, A>;
  const cc::Problem<E> p = cc::residual_problem<E>(a);
  run<E, A, Epilogue>(p, cc::linear_params<Epilogue>(p), p.size.output_extent(),
                      cutlass::reference::host::Conv2dFprop<E, cc::Layout, E, cc::Layout, A, cc::Layout, A, A>);
  return 0;
}

// wgrad into dw of type EC; split_k > 1: CUTLASS's serial split-K as the kernel runs it, slice by
// slice in slice order: slice s sums the GEMM-K (pixel) range the kernel gives it (ceil(K / slices)
// pixels each, Conv2dProblemSize / implicit_gemm_k_iterations), and its epilogue, after
// set_k_partition(s, slices), adds D (as its C) from the slice before
template <typename E, typename EC, typename A>
int wgrad_as(const rr::ConvWgradArgs& a, int split_k) {
  if (!cc::wgrad_supported<E>(a)) return 1;
  const cc::Problem<E, EC> p = cc::wgrad_problem<E, EC>(a, split_k);
  const auto extent = p.size.filter_extent();
  const int64_t K = int64_t(a.N) * a.H * a.W, per = (K + split_k - 1) / split_k;
  std::vector<A> acc(static_cast<size_t>(extent.product()));
  const cutlass::TensorRef<A, cc::Layout> acc_ref(acc.data(), cc::Layout::packed(extent));
  for (int slice = 0; slice < split_k; ++slice) {
    std::fill(acc.begin(), acc.end(), A(0));
    for (int64_t m = slice * per; m < K && m < (slice + 1) * per; ++m) {
      const int n = int(m / (int64_t(a.H) * a.W)), y = int(m / a.W % a.H), x = int(m % a.W);
      for (int r = 0; r < 3; ++r)
        for (int s = 0; s < 3; ++s) {
          const int yy = y + r - 1, xx = x + s - 1;
          if (yy < 0 || yy >= a.H || xx < 0 || xx >= a.W) continue;
          for (int k = 0; k < a.cout; ++k) {
            const A g = A(p.a.at(cutlass::make_Coord(n, y, x, k)));
            for (int c = 0; c < a.cin; ++c)
              acc_ref.at(cutlass::make_Coord(k, r, s, c)) += g * A(p.b.at(cutlass::make_Coord(n, yy, xx, c)));
          }
        }
    }
    Linear<EC, A> op(cc::linear_params<Linear<EC, A>>(p));
    if (split_k > 1) op.set_k_partition(slice, split_k);
    epilogue(p, op, acc_ref, extent);
  }
  return 0;
}

template <typename E, typename A>
int wgrad(const rr::ConvWgradArgs& a) {
  if (!a.dw_fp32) {
    if (!cc::wgrad_supported<E>(a)) return 1;
    const cc::Problem<E> p = cc::wgrad_problem<E>(a);
    run<E, A, Linear<E, A>>(p, cc::linear_params<Linear<E, A>>(p), p.size.filter_extent(),
                            cutlass::reference::host::Conv2dWgrad<E, cc::Layout, E, cc::Layout, A, cc::Layout, A, A>);
    return 0;
  }
  return wgrad_as<E, float, A>(a, 1);
}

// 0: computed; 1: declined (the launcher would return cudaErrorNotSupported); 2: dtype not handled
template <template <typename, typename> class Op, typename Args>
int dispatch(int dtype, const Args& a) {
  switch (static_cast<gansr::DType>(dtype)) {
    case gansr::DType::kBFloat16: return Op<cutlass::bfloat16_t, float>::run(a);  // the GPU's instantiations
    case gansr::DType::kHalf: return Op<cutlass::half_t, float>::run(a);
    case gansr::DType::kDouble: return Op<double, double>::run(a);
    default: return 2;
  }
}
template <typename E, typename A> struct Fprop { static int run(const rr::ConvBiasActArgs& a) { return fprop<E, A>(a); } };
template <typename E, typename A> struct Dgrad { static int run(const rr::ConvDgradArgs& a) { return dgrad<E, A>(a); } };
template <typename E, typename A> struct Wgrad { static int run(const rr::ConvWgradArgs& a) { return wgrad<E, A>(a); } };
template <typename E, typename A> struct Residual {
  static int run(const rr::ConvBiasResidualArgs& a) { return residual<E, A>(a); }
};

}  // namespace

extern "C" {
int rrdb_cutlass_args_size(int which) {
  switch (which) {
    case 0: return sizeof(rr::ConvBiasActArgs);
    case 1: return sizeof(rr::ConvDgradArgs);
    case 2: return sizeof(rr::ConvWgradArgs);
    default: return sizeof(rr::ConvBiasResidualArgs);
  }
}
int rrdb_cutlass_residual_host(int dtype, const rr::ConvBiasResidualArgs* a) { return dispatch<Residual>(dtype, *a); }
// the fp32 wgrad's split and workspace for a device of `sms` SMs (what the launcher and
// conv3x3_wgrad_workspace compute), and the fp32 wgrad run as that serial split-K
int rrdb_cutlass_wgrad_split(const rr::ConvWgradArgs* a, int sms) { return cc::wgrad_split_k(*a, sms); }
int64_t rrdb_cutlass_wgrad_workspace(const rr::ConvWgradArgs* a, int sms) {
  return int64_t(cc::wgrad_workspace_bytes(*a, sms));
}
int rrdb_cutlass_wgrad_split_host(int dtype, const rr::ConvWgradArgs* a, int split_k) {
  switch (static_cast<gansr::DType>(dtype)) {
    case gansr::DType::kBFloat16: return wgrad_as<cutlass::bfloat16_t, float, float>(*a, split_k);
    case gansr::DType::kHalf: return wgrad_as<cutlass::half_t, float, float>(*a, split_k);
    case gansr::DType::kDouble: return wgrad_as<double, float, double>(*a, split_k);
    default: return 2;
  }
}
int rrdb_cutlass_fprop_host(int dtype, const rr::ConvBiasActArgs* a) { return dispatch<Fprop>(dtype, *a); }
int rrdb_cutlass_dgrad_host(int dtype, const rr::ConvDgradArgs* a) { return dispatch<Dgrad>(dtype, *a); }
int rrdb_cutlass_wgrad_host(int dtype, const rr::ConvWgradArgs* a) { return dispatch<Wgrad>(dtype, *a); }
}
