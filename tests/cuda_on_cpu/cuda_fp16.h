// Stand-in for CUDA's cuda_fp16.h (cudasim): IEEE half as 16 bits, converted with round-to-nearest-even.
#pragma once
#include "cudasim.h"

struct __half {
  uint16_t bits;
};

inline float __half2float(__half h) {
  _Float16 f;
  std::memcpy(&f, &h.bits, sizeof f);
  return static_cast<float>(f);
}

inline __half __float2half_rn(float v) {
  const _Float16 f = static_cast<_Float16>(v);
  __half h;
  std::memcpy(&h.bits, &f, sizeof f);
  return h;
}
