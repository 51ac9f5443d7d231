#include "background_load.hpp"

#include <sched.h>

#include "alloc_api.hpp"
#include "test_support.hpp"

namespace strata_test {

BackgroundLoad::BackgroundLoad(unsigned threads) : progress_(threads) {
  for (unsigned i = 0; i < threads; ++i) threads_.emplace_back(&BackgroundLoad::run, this, i);
  for (unsigned i = 0; i < threads; ++i) {
    while (progress_[i].load() < 200) sched_yield();
  }
}

BackgroundLoad::~BackgroundLoad() { stop(); }

void BackgroundLoad::stop() {
  stop_.store(true);
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void BackgroundLoad::detach() {
  for (std::thread& t : threads_) t.detach();
}

void BackgroundLoad::run(unsigned index) {
  const AllocApi& a = api();
  Rng rng(0xB0 + index);
  constexpr std::size_t kRing = 64;
  struct Slot {
    void* p = nullptr;
    std::size_t size = 0;
    std::uint64_t seed = 0;
  };
  Slot ring[kRing];
  for (std::size_t n = 0; !stop_.load(std::memory_order_relaxed); ++n) {
    Slot& slot = ring[n % kRing];
    if (slot.p != nullptr) {
      if (pattern_mismatch(slot.p, slot.size, slot.seed) != slot.size) failures_.fetch_add(1);
      a.free(slot.p);
      slot.p = nullptr;
    }
    const std::size_t r = rng.between(0, 999);
    slot.size = r < 900   ? rng.between(1, 2048)
                : r < 995 ? rng.between(2049, 256 * kKiB)
                          : rng.between(256 * kKiB, 4 * kMiB);
    slot.seed = rng.next();
    if (r % 7 == 0) {
      if (a.posix_memalign(&slot.p, 256, slot.size) != 0) slot.p = nullptr;
    } else {
      slot.p = a.malloc(slot.size);
    }
    progress_[index].fetch_add(1, std::memory_order_relaxed);
    if (slot.p == nullptr) {
      failures_.fetch_add(1);
      continue;
    }
    // Touch only a prefix of big blocks: the load is about allocator
    // traffic, not memory bandwidth.
    if (slot.size > 4096) slot.size = 4096;
    fill_pattern(slot.p, slot.size, slot.seed);
  }
  for (Slot& slot : ring) {
    if (slot.p != nullptr) a.free(slot.p);
  }
}

}  // namespace strata_test
