// CPU check of the fused RRDB's CUTLASS convs: the problems the GPU launchers build
// (rrdb_cutlass_problem.h, the same code) computed by CUTLASS's host reference convolutions and the
// kernels' own epilogue functors. Not part of the extension (CMake builds *.cpp / *.cu only): g++
// builds it into a shared library for tests/test_rrdb_cutlass.py, which plugs the fprop entry point
// into the sliced algorithm's CPU emulation (gansr::rrdb_sliced_fwd(..., host_conv=address)) and
// calls the dgrad / wgrad entry points on views of gradient and activation buffers.
#include <cutlass/cutlass.h>
#include <cutlass/bfloat16.h>
#include <cutlass/half.h>
#include <cutlass/epilogue/thread/linear_combination.h>
#include <cutlass/epilogue/thread/linear_combination_leaky_relu.h>
#include <cutlass/util/reference/host/convolution.h>

#include <vector>

#include "rrdb_cutlass_problem.h"

namespace {

namespace rr = gansr::rrdb;
namespace cc = gansr::rrdb::cutlass_conv;

// The epilogue: the kernel's functor on fragments of kAlignElements along the last (contiguous)
// coordinate of `extent`, accumulators from `acc`, the source read through the problem's C, the
// result written through D (reads of C happen before the write of the same fragment, as on the GPU)
template <typename Epilogue, typename E, typename A>
void epilogue(const cc::Problem<E>& p, const Epilogue& op, const cutlass::TensorRef<A, cc::Layout>& acc,
              const cutlass::Tensor4DCoord& extent) {
  for (int i0 = 0; i0 < extent[0]; ++i0)
    for (int i1 = 0; i1 < extent[1]; ++i1)
      for (int i2 = 0; i2 < extent[2]; ++i2)
        for (int k0 = 0; k0 < extent[3]; k0 += Epilogue::kCount) {
          typename Epilogue::FragmentAccumulator frag;
          typename Epilogue::FragmentSource source;
          for (int i = 0; i < Epilogue::kCount; ++i) {
            const auto at = cutlass::make_Coord(i0, i1, i2, k0 + i);
            frag[i] = acc.at(at);
            source[i] = p.c.at(at);
          }
          const typename Epilogue::FragmentOutput out = op.is_source_needed() ? op(frag, source) : op(frag);
          for (int i = 0; i < Epilogue::kCount; ++i) p.d.at(cutlass::make_Coord(i0, i1, i2, k0 + i)) = out[i];
        }
}

// The mainloop's accumulators alone (alpha 1, beta 0) by the host reference `conv`, then the epilogue.
// E: element type; A: accumulation / compute type (float as on the GPU, double for the fp64 check).
template <typename E, typename A, typename Epilogue, typename Conv>
void run(const cc::Problem<E>& p, const typename Epilogue::Params& params, const cutlass::Tensor4DCoord& extent,
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
int wgrad(const rr::ConvWgradArgs& a) {
  if (!cc::wgrad_supported<E>(a)) return 1;
  const cc::Problem<E> p = cc::wgrad_problem<E>(a);
  run<E, A, Linear<E, A>>(p, cc::linear_params<Linear<E, A>>(p), p.size.filter_extent(),
                          cutlass::reference::host::Conv2dWgrad<E, cc::Layout, E, cc::Layout, A, cc::Layout, A, A>);
  return 0;
}

// 0: computed; 1: declined (the launcher would return cudaErrorNotSupported); 2: dtype not handled
template <template <typename, typename> class Op, typename Args>
int dispatch(int dtype, const Args& a) {
  switch (static_cast<rr::DType>(dtype)) {
    case rr::DType::kBFloat16: return Op<cutlass::bfloat16_t, float>::run(a);  // the GPU's instantiations
    case rr::DType::kHalf: return Op<cutlass::half_t, float>::run(a);
    case rr::DType::kDouble: return Op<double, double>::run(a);
    default: return 2;
  }
}
template <typename E, typename A> struct Fprop { static int run(const rr::ConvBiasActArgs& a) { return fprop<E, A>(a); } };
template <typename E, typename A> struct Dgrad { static int run(const rr::ConvDgradArgs& a) { return dgrad<E, A>(a); } };
template <typename E, typename A> struct Wgrad { static int run(const rr::ConvWgradArgs& a) { return wgrad<E, A>(a); } };

}  // namespace

extern "C" {
int rrdb_cutlass_args_size(int which) {
  return which == 0 ? sizeof(rr::ConvBiasActArgs) : which == 1 ? sizeof(rr::ConvDgradArgs) : sizeof(rr::ConvWgradArgs);
}
int rrdb_cutlass_fprop_host(int dtype, const rr::ConvBiasActArgs* a) { return dispatch<Fprop>(dtype, *a); }
int rrdb_cutlass_dgrad_host(int dtype, const rr::ConvDgradArgs* a) { return dispatch<Dgrad>(dtype, *a); }
int rrdb_cutlass_wgrad_host(int dtype, const rr::ConvWgradArgs* a) { return dispatch<Wgrad>(dtype, *a); }
}
