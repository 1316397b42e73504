// The Python module `gansr_ext._C`: loading it registers the `gansr::*` operators (their static
// initialisers live in the per-op files); pybind11 exposes the plain helpers below.
#include <ATen/Parallel.h>
#include <pybind11/pybind11.h>

#include <mutex>
#include <set>
#include <thread>

#include "common.h"

namespace py = pybind11;

#ifndef GANSR_VERSION
#define GANSR_VERSION "unknown"
#endif
#ifndef GANSR_TORCH_VERSION
#define GANSR_TORCH_VERSION "unknown"
#endif
#ifndef GANSR_CUDA_VERSION
#define GANSR_CUDA_VERSION ""
#endif
#ifndef GANSR_CUDA_ARCHS
#define GANSR_CUDA_ARCHS ""
#endif

static py::dict build_info() {
  py::dict d;
  d["version"] = GANSR_VERSION;
  d["torch_version"] = GANSR_TORCH_VERSION;
#ifdef GANSR_WITH_CUDA
  d["cuda"] = true;
  d["cuda_version"] = GANSR_CUDA_VERSION;
  d["cuda_archs"] = GANSR_CUDA_ARCHS;
  d["cufft"] = true;
#ifdef GANSR_WITH_CUTLASS
  d["cutlass"] = true;
#else
  d["cutlass"] = false;
#endif
#else
  d["cuda"] = false;
  d["cuda_version"] = py::none();
  d["cuda_archs"] = "";
  d["cufft"] = false;
  d["cutlass"] = false;
#endif
  return d;
}

// How many distinct threads run the chunks of an at::parallel_for over n items (grain 1): what the
// CPU kernels get. 1 whenever the extension is compiled without OpenMP (at::parallel_for is a header
// template: the `omp parallel` region is compiled into this library, not into libtorch).
static int64_t parallel_for_threads(int64_t n) {
  std::mutex m;
  std::set<std::thread::id> ids;
  at::parallel_for(0, n, 1, [&](int64_t, int64_t) {
    std::lock_guard<std::mutex> lock(m);
    ids.insert(std::this_thread::get_id());
  });
  return static_cast<int64_t>(ids.size());
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "gansr_ext compiled ops (registered as torch.ops.gansr.*) and build helpers";
  m.def("build_info", &build_info, "Build facts: version, torch, CUDA kernels compiled, CUDA version, archs, cuFFT, CUTLASS kernels");
  m.def("parallel_for_threads", &parallel_for_threads, py::arg("n"),
        "Distinct threads that ran an at::parallel_for over n items (CPU kernels' parallelism)");
  m.def("set_poison", &gansr::set_poison, py::arg("on"),
        "Fill every op output with NaN before kernels write it (tests use this to catch unwritten elements)");
  m.def("poison_enabled", &gansr::poison_enabled);
}
