// CPU check of the fused RRDB's CUTLASS convs: the problem the GPU launcher builds
// (rrdb_cutlass_problem.h, the same code) computed by CUTLASS's host reference convolution and the
// kernel's own epilogue functor. Not part of the extension (CMake builds *.cpp / *.cu only): g++
// builds it into a shared library for tests/test_rrdb_cutlass.py, which plugs the entry point into
// the sliced algorithm's CPU emulation (gansr::rrdb_sliced_fwd(..., host_conv=address)).
#include <cutlass/cutlass.h>
#include <cutlass/bfloat16.h>
#include <cutlass/half.h>
#include <cutlass/epilogue/thread/linear_combination_leaky_relu.h>
#include <cutlass/util/reference/host/convolution.h>

#include <vector>

#include "rrdb_cutlass_problem.h"

namespace {

namespace rr = gansr::rrdb;
namespace cc = gansr::rrdb::cutlass_conv;

// E: element type; A: accumulation / compute type (float as on the GPU, double for the fp64 check)
template <typename E, typename A>
int fprop(const rr::ConvBiasActArgs& a) {
  if (!cc::fprop_supported<E>(a)) return 1;
  const cc::FpropProblem<E> p = cc::fprop_problem<E>(a);
  // the mainloop: the accumulators alone (alpha 1, beta 0), into a packed A tensor
  const cutlass::Tensor4DCoord out_extent = p.size.output_extent();
  std::vector<A> acc(static_cast<size_t>(out_extent.product()));
  const cutlass::TensorRef<A, cc::Layout> acc_ref(acc.data(), cc::Layout::packed(out_extent));
  cutlass::reference::host::Conv2dFprop<E, cc::Layout, E, cc::Layout, A, cc::Layout, A, A>(p.size, p.x, p.w, acc_ref,
                                                                                            acc_ref, A(1), A(0));
  // the epilogue: the kernel's functor on fragments of kAlignElements channels, source read through C
  using Epilogue = cutlass::epilogue::thread::LinearCombinationLeakyRelu<E, cc::kAlignElements, A, A>;
  const Epilogue op(cc::epilogue_params<Epilogue>(p));
  for (int n = 0; n < p.size.N; ++n)
    for (int h = 0; h < p.size.P; ++h)
      for (int w = 0; w < p.size.Q; ++w)
        for (int k0 = 0; k0 < p.size.K; k0 += Epilogue::kCount) {
          typename Epilogue::FragmentAccumulator frag;
          typename Epilogue::FragmentSource source;
          for (int i = 0; i < Epilogue::kCount; ++i) {
            const auto at = cutlass::make_Coord(n, h, w, k0 + i);
            frag[i] = acc_ref.at(at);
            source[i] = p.c.at(at);
          }
          const typename Epilogue::FragmentOutput out = op.is_source_needed() ? op(frag, source) : op(frag);
          for (int i = 0; i < Epilogue::kCount; ++i) p.d.at(cutlass::make_Coord(n, h, w, k0 + i)) = out[i];
        }
  return 0;
}

}  // namespace

extern "C" {
int rrdb_cutlass_args_size() { return sizeof(rr::ConvBiasActArgs); }

// 0: computed; 1: declined (the launcher would return cudaErrorNotSupported); 2: dtype not handled
int rrdb_cutlass_fprop_host(int dtype, const rr::ConvBiasActArgs* a) {
  switch (static_cast<rr::DType>(dtype)) {
    case rr::DType::kBFloat16: return fprop<cutlass::bfloat16_t, float>(*a);  // the GPU's instantiation
    case rr::DType::kHalf: return fprop<cutlass::half_t, float>(*a);
    case rr::DType::kDouble: return fprop<double, double>(*a);
    default: return 2;
  }
}
}
