// C entry points (for ctypes) to the FFT-loss launchers of csrc/fft_loss/fft_loss_kernels.cu.
#include "fft_loss_kernels.h"

namespace fl = gansr::fftloss;

extern "C" {
int fft_norms_chunks(int64_t per) { return fl::norms_chunks(per); }

#define GANSR_FFT_BINDINGS(T, SUFFIX)                                                                           \
  int fft_launch_norms_##SUFFIX(const T* spec, double scale, int64_t B, int64_t per, int64_t Wf, int64_t W, int p, \
                                int cplx, T* partial, int chunks, T* norms, T* loss) {                          \
    return fl::launch_norms<T>(spec, T(scale), B, per, Wf, W, p, cplx != 0, partial, chunks, norms, loss,       \
                               nullptr);                                                                        \
  }                                                                                                             \
  int fft_launch_grad_spectrum_##SUFFIX(const T* spec, double scale, const T* norms, const T* grad_loss,         \
                                        int64_t B, int64_t C, int64_t H, int64_t Wf, int64_t W, int p, int cplx,  \
                                        int need_hr, T* z) {                                                    \
    return fl::launch_grad_spectrum<T>(spec, T(scale), norms, grad_loss, B, C, H, Wf, W, p, cplx != 0,          \
                                       need_hr != 0, z, nullptr);                                               \
  }
GANSR_FFT_BINDINGS(float, f32)
GANSR_FFT_BINDINGS(double, f64)
}
