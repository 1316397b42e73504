// A bounded LRU cache of FFT plans, free of torch and CUDA so that the CPU tests can compile and run
// it (tests/test_fft_plan_cache.py). fft_loss_cuda.cpp instantiates it with cuFFT handles.
//
// Ownership: a plan belongs to the cache from the moment `create` returns it. If `setup` then throws,
// the cache destroys it before the exception propagates (no leaked handle); an evicted plan is
// destroyed when it leaves the cache.
//
// CUDA graphs: creating a plan allocates device memory, which breaks a stream capture, and a captured
// graph keeps using the plans it was captured with. So a lookup made while capturing never creates a
// plan (it returns nullptr and the caller asks for a warm-up step), and the plan it finds is pinned:
// never evicted, because a graph may replay it at any later time.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <list>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>

namespace gansr {

// Default bound: about the distinct (device, type, H, W, batch) shapes of a run (train and
// validation sizes, forward and backward); each plan holds a little device memory for twiddles.
constexpr std::size_t kDefaultPlanCacheSize = 64;

// The bound from GANSR_FFT_PLAN_CACHE_SIZE (a positive integer), `fallback` when it is unset.
inline std::size_t plan_cache_size_from_env(const char* value, std::size_t fallback = kDefaultPlanCacheSize) {
  if (value == nullptr || *value == '\0') return fallback;
  char* end = nullptr;
  const long long n = std::strtoll(value, &end, 10);
  if (*end != '\0' || n < 1) {
    throw std::invalid_argument(std::string("GANSR_FFT_PLAN_CACHE_SIZE must be a positive integer, got '") +
                                value + "'");
  }
  return static_cast<std::size_t>(n);
}

template <typename Key, typename Plan, typename Destroy>
class PlanCache {
 public:
  PlanCache(std::size_t max_size, Destroy destroy) : max_size_(max_size), destroy_(std::move(destroy)) {
    if (max_size_ < 1) throw std::invalid_argument("PlanCache: max_size must be at least 1");
  }
  PlanCache(const PlanCache&) = delete;
  PlanCache& operator=(const PlanCache&) = delete;
  ~PlanCache() {
    for (Entry& e : lru_) destroy_(e.plan);
  }

  // The plan for `key`, made most recently used. On a miss: nullptr while `capturing`, otherwise a
  // new plan (`create()` then `setup(plan)`), after which unpinned least recently used plans beyond
  // max_size are evicted.
  template <typename Create, typename Setup>
  Plan* get(const Key& key, bool capturing, Create&& create, Setup&& setup) {
    auto it = index_.find(key);
    if (it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      it->second->pinned = it->second->pinned || capturing;
      return &it->second->plan;
    }
    if (capturing) return nullptr;
    Plan plan = create();
    DestroyUnlessReleased guard{destroy_, plan, true};
    setup(plan);
    lru_.push_front(Entry{key, plan, false});
    try {
      index_.emplace(key, lru_.begin());
    } catch (...) {
      lru_.pop_front();  // the guard destroys the plan
      throw;
    }
    guard.armed = false;
    evict_beyond_max();
    return &lru_.front().plan;
  }

  std::size_t size() const { return lru_.size(); }
  std::size_t max_size() const { return max_size_; }

 private:
  struct Entry {
    Key key;
    Plan plan;
    bool pinned;
  };
  // RAII guard: destroys a plan that never made it into the cache (setup or insertion threw).
  struct DestroyUnlessReleased {
    Destroy& destroy;
    Plan& plan;
    bool armed;
    ~DestroyUnlessReleased() {
      if (armed) destroy(plan);
    }
  };

  // Walks from the least recently used end, skipping pinned plans and the newest (front) one.
  void evict_beyond_max() {
    auto it = lru_.end();
    while (lru_.size() > max_size_ && it != std::next(lru_.begin())) {
      --it;
      if (it->pinned) continue;
      index_.erase(it->key);
      destroy_(it->plan);
      it = lru_.erase(it);
    }
  }

  std::size_t max_size_;
  Destroy destroy_;
  std::list<Entry> lru_;  // most recently used first
  std::map<Key, typename std::list<Entry>::iterator> index_;
};

}  // namespace gansr
