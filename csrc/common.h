// Helpers shared by every op: output allocation (optionally poisoned), input checks, the kernels'
// dtype codes. Bad input is a ValueError (TORCH_CHECK_VALUE) or TypeError (TORCH_CHECK_TYPE) in Python.
#pragma once
#include <ATen/ATen.h>

#include "kernel_defs.h"

namespace gansr {

// When poisoning is on (tests turn it on through `_C.set_poison(True)`), every output tensor an op
// allocates is filled with NaN first, so a kernel that forgets to write an element is caught.
bool poison_enabled();
void set_poison(bool on);
at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options);

// fp64 stays fp64, every other floating type is computed in fp32.
inline at::ScalarType compute_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_floating(const at::Tensor& t, const char* op, const char* name) {
  const auto st = t.scalar_type();
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16, op, ": ", name,
                   " must be float32/float64/float16/bfloat16, got ", st);
}

// The launchers' code for a floating dtype that check_floating accepted.
inline DType kernel_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return DType::kFloat;
    case at::kDouble: return DType::kDouble;
    case at::kHalf: return DType::kHalf;
    case at::kBFloat16: return DType::kBFloat16;
    default: TORCH_CHECK_TYPE(false, "gansr: no kernel for dtype ", t);
  }
}

// ... and back (the CPU twins of the launchers dispatch on it).
inline at::ScalarType scalar_type(DType t) {
  switch (t) {
    case DType::kFloat: return at::kFloat;
    case DType::kDouble: return at::kDouble;
    case DType::kHalf: return at::kHalf;
    case DType::kBFloat16: return at::kBFloat16;
  }
  return at::kFloat;
}

}  // namespace gansr
