#include "common.h"

#include <atomic>
#include <limits>

namespace gansr {

static std::atomic<bool> g_poison{false};

bool poison_enabled() { return g_poison.load(); }
void set_poison(bool on) { g_poison.store(on); }

at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  auto t = at::empty(sizes, options);
  if (g_poison.load() && t.numel() > 0) {
    if (t.is_floating_point() || t.is_complex()) {
      t.fill_(std::numeric_limits<double>::quiet_NaN());
    } else {
      t.fill_(-1);
    }
  }
  return t;
}

}  // namespace gansr
