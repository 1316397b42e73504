// cudasim's scheduler (see cudasim.h): runs a launch block after block, the threads of a block as
// fibers (default) or OS threads (thread mode), and records the first error with where it happened.
#include "cudasim.h"

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <barrier>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace cudasim {

thread_local ThreadState* t_cur = nullptr;

namespace {

constexpr unsigned kMaxBlockThreads = 1024, kWarp = 32;
constexpr size_t kStackBytes = 64 * 1024;
constexpr size_t kMaxSharedBytes = 48 * 1024;  // static shared memory limit of every architecture
const char* const kShuffleNames[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync"};

struct Options {
  bool threads = false;  // thread mode
  bool reverse = false;  // run blocks and threads in descending order (another deterministic schedule)
  std::map<std::string, unsigned> grid_x_cap;
};
Options g_options;

std::mutex g_error_mutex;
std::string g_error;  // the first error since cudasim_reset()
cudaError_t g_last_error = cudaSuccess;
std::string g_kernel;  // name of the kernel being run
int64_t g_stats[3] = {0, 0, 0};  // launches, blocks, threads
std::mutex g_shared_mutex;
std::vector<std::pair<char*, size_t>> g_shared;  // every __shared__ variable seen so far

std::string site(const char* file, int line) { return std::string(file) + ":" + std::to_string(line); }

std::string who(const ThreadState& s) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "block (%u,%u,%u) thread (%u,%u,%u)", s.block_idx.x, s.block_idx.y, s.block_idx.z,
                s.thread_idx.x, s.thread_idx.y, s.thread_idx.z);
  return buf;
}

void record(cudaError_t code, const std::string& msg) {
  std::lock_guard<std::mutex> lock(g_error_mutex);
  if (g_error.empty()) g_error = g_kernel + ": " + msg;
  g_last_error = code;
}

// ---- fiber mode -------------------------------------------------------------------------------------

enum class Wait { kNone, kBarrier, kShuffle, kDone };

struct Fiber {
  ThreadState state;
  ucontext_t context;
  Wait wait = Wait::kNone;
  const char* file = "";
  int line = 0;
  ShuffleKind kind = kIdx;
  unsigned mask = 0;
  int lane_arg = 0, width = 32;
  uint64_t value = 0, result = 0;
};

struct FiberBlock {
  std::vector<Fiber> fibers;
  char* stacks = nullptr;
  ucontext_t scheduler;
  Fiber* running = nullptr;
  Body body = nullptr;
  const void* context = nullptr;
  size_t at_barrier = 0;
  bool failed = false;
};
FiberBlock g_block;

char* fiber_stacks() {
  if (!g_block.stacks) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void* p = mmap(nullptr, kMaxBlockThreads * kStackBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) std::abort();
    g_block.stacks = static_cast<char*>(p);
    // a guard page at the bottom of every stack: an overflow faults instead of corrupting a neighbour
    for (unsigned i = 0; i < kMaxBlockThreads; ++i) mprotect(g_block.stacks + i * kStackBytes, page, PROT_NONE);
  }
  return g_block.stacks;
}

void yield() {
  Fiber* f = g_block.running;
  swapcontext(&f->context, &g_block.scheduler);
}

[[noreturn]] void fail_in_fiber(const std::string& msg) {
  record(cudaErrorLaunchFailure, msg);
  g_block.failed = true;
  yield();  // the scheduler never resumes a failed block
  std::abort();
}

void fiber_entry() {
  Fiber* f = g_block.running;
  g_block.body(g_block.context);
  f->wait = Wait::kDone;
  yield();
}

void fiber_syncthreads(const char* file, int line) {
  Fiber* f = g_block.running;
  f->wait = Wait::kBarrier;
  f->file = file;
  f->line = line;
  if (++g_block.at_barrier == g_block.fibers.size()) {
    for (const Fiber& o : g_block.fibers)
      if (o.line != line || std::strcmp(o.file, file) != 0)
        fail_in_fiber("divergent __syncthreads: " + who(f->state) + " at " + site(file, line) + ", " + who(o.state) +
                      " at " + site(o.file, o.line));
    g_block.at_barrier = 0;
    for (Fiber& o : g_block.fibers) o.wait = Wait::kNone;
  }
  yield();
}

unsigned source_lane(const Fiber& f, unsigned lane) {
  const unsigned w = (unsigned)f.width, base = lane & ~(w - 1), arg = (unsigned)f.lane_arg;
  switch (f.kind) {
    case kIdx: return base + (arg & (w - 1));
    case kUp: return lane - base >= arg ? lane - arg : lane;
    case kDown: return lane - base + arg < w ? lane + arg : lane;
    case kXor: {
      const unsigned s = lane ^ arg;
      return s < base + w ? s : lane;  // CUDA: a later segment's lane gives the caller's own value
    }
  }
  return lane;
}

uint64_t fiber_shuffle(ShuffleKind kind, const char* file, int line, unsigned mask, uint64_t value, int lane_arg,
                       int width) {
  Fiber* f = g_block.running;
  const unsigned linear = (unsigned)(f - g_block.fibers.data()), lane = linear % kWarp, first = linear - lane;
  const unsigned present = std::min<unsigned>(kWarp, (unsigned)g_block.fibers.size() - first);
  const std::string what = std::string(kShuffleNames[kind]) + " at " + site(file, line) + " by " + who(f->state);
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%08x", mask);
  if (width < 1 || width > (int)kWarp || (width & (width - 1)) != 0)
    fail_in_fiber(what + ": width " + std::to_string(width) + " is not a power of 2 <= 32");
  if (!(mask >> lane & 1u)) fail_in_fiber(what + ": mask " + hex + " omits the calling lane " + std::to_string(lane));
  if (present < kWarp && (mask >> present) != 0)
    fail_in_fiber(what + ": mask " + hex + " names lanes >= " + std::to_string(present) + " that this warp lacks");
  f->wait = Wait::kShuffle;
  f->file = file;
  f->line = line;
  f->kind = kind;
  f->mask = mask;
  f->lane_arg = lane_arg;
  f->width = width;
  f->value = value;
  for (unsigned l = 0; l < kWarp; ++l)
    if ((mask >> l & 1u) && g_block.fibers[first + l].wait != Wait::kShuffle) {
      yield();  // the last lane to arrive exchanges the values
      return f->result;
    }
  for (unsigned l = 0; l < kWarp; ++l) {
    if (!(mask >> l & 1u)) continue;
    Fiber& o = g_block.fibers[first + l];
    if (o.mask != mask || o.kind != kind || o.line != line || std::strcmp(o.file, file) != 0)
      fail_in_fiber(what + ": lane " + std::to_string(l) + " of the mask is at " + kShuffleNames[o.kind] + " at " +
                    site(o.file, o.line) + " (mask differs or a different call)");
    const unsigned src = source_lane(o, l);
    if (!(mask >> src & 1u))
      fail_in_fiber(what + ": lane " + std::to_string(l) + " reads lane " + std::to_string(src) + ", outside mask " + hex);
    o.result = g_block.fibers[first + src].value;
  }
  for (unsigned l = 0; l < kWarp; ++l)
    if (mask >> l & 1u) g_block.fibers[first + l].wait = Wait::kNone;
  yield();
  return f->result;
}

// Nobody can run and somebody has not finished: say who waits for whom.
std::string diagnose_deadlock() {
  const std::vector<Fiber>& fs = g_block.fibers;
  for (const Fiber& f : fs) {
    if (f.wait != Wait::kBarrier) continue;
    for (const Fiber& o : fs)
      if (o.wait == Wait::kDone)
        return "__syncthreads at " + site(f.file, f.line) + " reached by " + std::to_string(g_block.at_barrier) +
               " of " + std::to_string(fs.size()) + " threads: " + who(o.state) + " exited without reaching it";
  }
  for (size_t i = 0; i < fs.size(); ++i) {
    const Fiber& f = fs[i];
    if (f.wait != Wait::kShuffle) continue;
    const size_t first = i - i % kWarp;
    for (unsigned l = 0; l < kWarp; ++l) {
      const Fiber& o = fs[first + l];
      if (!(f.mask >> l & 1u) || o.wait == Wait::kShuffle) continue;
      const std::string state = o.wait == Wait::kDone ? "exited" : "waits at __syncthreads at " + site(o.file, o.line);
      char hex[16];
      std::snprintf(hex, sizeof hex, "0x%08x", f.mask);
      return std::string(kShuffleNames[f.kind]) + " at " + site(f.file, f.line) + " by " + who(f.state) + " (mask " +
             hex + ") waits for lane " + std::to_string(l) + ", which " + state;
    }
  }
  for (const Fiber& f : fs)
    if (f.wait == Wait::kBarrier)
      for (const Fiber& o : fs)
        if (o.wait != Wait::kBarrier)
          return "__syncthreads at " + site(f.file, f.line) + " never reached by " + who(o.state);
  return "deadlock";
}

bool run_block_fibers(Body body, const void* context, dim3 grid, dim3 block, uint3 block_idx) {
  const unsigned n = block.x * block.y * block.z;
  char* stacks = fiber_stacks();
  g_block.fibers.assign(n, Fiber{});
  for (unsigned i = 0; i < n; ++i) {
    Fiber& f = g_block.fibers[i];
    f.state = {{i % block.x, i / block.x % block.y, i / (block.x * block.y)}, block_idx, block, grid};
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = stacks + i * kStackBytes;
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = nullptr;
    makecontext(&f.context, fiber_entry, 0);
  }
  g_block.body = body;
  g_block.context = context;
  g_block.at_barrier = 0;
  g_block.failed = false;
  for (;;) {
    bool ran = false, all_done = true;
    for (unsigned k = 0; k < n; ++k) {
      Fiber& f = g_block.fibers[g_options.reverse ? n - 1 - k : k];
      if (f.wait != Wait::kNone) continue;
      g_block.running = &f;
      t_cur = &f.state;
      swapcontext(&g_block.scheduler, &f.context);
      t_cur = nullptr;
      if (g_block.failed) return false;
      ran = true;
    }
    for (const Fiber& f : g_block.fibers) all_done = all_done && f.wait == Wait::kDone;
    if (all_done) return true;
    if (!ran) {
      record(cudaErrorLaunchFailure, diagnose_deadlock());
      return false;
    }
  }
}

// ---- thread mode (for -fsanitize=thread: few checks, real concurrency) -------------------------------

struct ThreadBlock {
  std::unique_ptr<std::barrier<>> block_barrier;
  std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
  std::vector<uint64_t> slots;
  unsigned n = 0;
};
ThreadBlock g_tblock;

uint64_t thread_shuffle(ShuffleKind kind, const char* file, int line, unsigned mask, uint64_t value, int lane_arg,
                        int width) {
  const ThreadState& s = *t_cur;
  const unsigned linear = s.thread_idx.x + s.block_dim.x * (s.thread_idx.y + s.block_dim.y * s.thread_idx.z);
  const unsigned lane = linear % kWarp, first = linear - lane;
  const unsigned present = std::min<unsigned>(kWarp, g_tblock.n - first);
  if (mask != (present == kWarp ? 0xffffffffu : (1u << present) - 1u))
    record(cudaErrorLaunchFailure, std::string(kShuffleNames[kind]) + " at " + site(file, line) +
                                       ": thread mode runs full-warp shuffles only");
  Fiber f;  // only for source_lane()
  f.kind = kind;
  f.lane_arg = lane_arg;
  f.width = width;
  std::barrier<>& warp = *g_tblock.warp_barriers[first / kWarp];
  std::atomic_ref<uint64_t>(g_tblock.slots[linear]).store(value);
  warp.arrive_and_wait();
  const unsigned src = std::min(source_lane(f, lane), present - 1);
  const uint64_t r = std::atomic_ref<uint64_t>(g_tblock.slots[first + src]).load();
  warp.arrive_and_wait();  // nobody overwrites a slot before every lane has read it
  return r;
}

bool run_block_threads(Body body, const void* context, dim3 grid, dim3 block, uint3 block_idx) {
  const unsigned n = block.x * block.y * block.z;
  g_tblock.n = n;
  g_tblock.block_barrier = std::make_unique<std::barrier<>>(n);
  g_tblock.warp_barriers.clear();
  for (unsigned w = 0; w < n; w += kWarp) g_tblock.warp_barriers.push_back(std::make_unique<std::barrier<>>(std::min(kWarp, n - w)));
  g_tblock.slots.assign(n, 0);
  std::vector<ThreadState> states(n);
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < n; ++i) {
    states[i] = {{i % block.x, i / block.x % block.y, i / (block.x * block.y)}, block_idx, block, grid};
    threads.emplace_back([&, i] {
      t_cur = &states[i];
      body(context);
      // an exited thread no longer holds up barriers (what the hardware does; fiber mode reports it)
      g_tblock.warp_barriers[i / kWarp]->arrive_and_drop();
      g_tblock.block_barrier->arrive_and_drop();
    });
  }
  for (std::thread& t : threads) t.join();
  return g_last_error == cudaSuccess;
}

// ---- launches ----------------------------------------------------------------------------------------

std::string check_config(dim3 grid, dim3 block, size_t shared_bytes) {
  char buf[200];
  const uint64_t threads = (uint64_t)block.x * block.y * block.z;
  const uint64_t shared = shared_bytes;  // dynamic; static __shared__ sizes are checked in shared_region
  std::snprintf(buf, sizeof buf, "grid (%u,%u,%u) block (%u,%u,%u) shared %llu bytes: ", grid.x, grid.y, grid.z,
                block.x, block.y, block.z, (unsigned long long)shared);
  if (!grid.x || !grid.y || !grid.z || !threads) return buf + std::string("a dimension is 0");
  if (grid.x > 2147483647u || grid.y > 65535u || grid.z > 65535u)
    return buf + std::string("grid beyond (2^31-1, 65535, 65535)");
  if (block.x > 1024u || block.y > 1024u || block.z > 64u || threads > kMaxBlockThreads)
    return buf + std::string("block beyond (1024, 1024, 64) or more than 1024 threads");
  if (shared > kMaxSharedBytes) return buf + std::string("more than 48 KiB of shared memory");
  return "";
}

void poison_shared() {
  for (auto& [address, bytes] : g_shared) std::memset(address, 0xff, bytes);
}

}  // namespace

void shared_region(void* address, size_t bytes) {
  std::lock_guard<std::mutex> lock(g_shared_mutex);
  for (auto& region : g_shared)
    if (region.first == address) return;
  if (bytes > kMaxSharedBytes) record(cudaErrorLaunchFailure, "more than 48 KiB of static shared memory");
  g_shared.emplace_back(static_cast<char*>(address), bytes);
  std::memset(address, 0xff, bytes);  // first sight, inside the first block that uses it
}

void syncthreads(const char* file, int line) {
  if (g_options.threads)
    g_tblock.block_barrier->arrive_and_wait();
  else
    fiber_syncthreads(file, line);
}

uint64_t shuffle_raw(ShuffleKind kind, const char* file, int line, unsigned mask, uint64_t value, int lane_arg,
                     int width) {
  if (g_options.threads) return thread_shuffle(kind, file, line, mask, value, lane_arg, width);
  return fiber_shuffle(kind, file, line, mask, value, lane_arg, width);
}

void launch_raw(const char* name, dim3 grid, dim3 block, size_t shared_bytes, Body body, const void* context) {
  const std::string full(name), base = full.substr(0, full.find('<'));
  g_kernel = full;
  ++g_stats[0];
  const std::string bad = check_config(grid, block, shared_bytes);
  if (!bad.empty()) return record(cudaErrorInvalidConfiguration, bad);
  // a test may shrink a grid-stride kernel's grid, so that small inputs take the clamped-grid path
  auto cap = g_options.grid_x_cap.find(base);
  if (cap != g_options.grid_x_cap.end() && grid.x > cap->second) grid.x = cap->second;
  const uint64_t nblocks = (uint64_t)grid.x * grid.y * grid.z;
  for (uint64_t k = 0; k < nblocks; ++k) {
    const uint64_t b = g_options.reverse ? nblocks - 1 - k : k;
    const uint3 idx{(unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y), (unsigned)(b / ((uint64_t)grid.x * grid.y))};
    poison_shared();
    ++g_stats[1];
    g_stats[2] += block.x * block.y * block.z;
    const bool ok = g_options.threads ? run_block_threads(body, context, grid, block, idx)
                                       : run_block_fibers(body, context, grid, block, idx);
    if (!ok) return;
  }
}

}  // namespace cudasim

cudaError_t cudaGetLastError() {
  const cudaError_t e = cudasim::g_last_error;
  cudasim::g_last_error = cudaSuccess;
  return e;
}

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNotSupported: return "operation not supported";
  }
  return "unknown error";
}

// ---- control, for the Python side (ctypes) -----------------------------------------------------------
extern "C" {
const char* cudasim_error() { return cudasim::g_error.c_str(); }
void cudasim_clear_error() {
  cudasim::g_error.clear();
  cudasim::g_last_error = cudaSuccess;
}
// Schedule of the next launches; also forgets every grid cap.
void cudasim_configure(int threads, int reverse) {
  cudasim::g_options = cudasim::Options{threads != 0, reverse != 0, {}};
}
void cudasim_cap_grid_x(const char* kernel, unsigned cap) { cudasim::g_options.grid_x_cap[kernel] = cap; }
void cudasim_stats(int64_t* out) {
  for (int i = 0; i < 3; ++i) out[i] = cudasim::g_stats[i];
}
}
