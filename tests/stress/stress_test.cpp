// Multi-threaded stress: objects of mixed sizes (bytes to MiB) allocated with
// every allocation function, passed between threads, resized and freed by
// threads other than their allocator. Each block carries a content pattern
// derived from its seed; the pattern is checked on every hand-over, every
// realloc and every free, so lost, overlapping or corrupted blocks fail.
//
// Environment: STRATA_STRESS_THREADS (default 8), STRATA_TEST_SCALE
// (multiplies the operation counts; sanitizer builds use less than 1).
#include <algorithm>
#include <atomic>
#include <barrier>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "alloc_api.hpp"
#include "test_support.hpp"

namespace strata_test {
namespace {

unsigned thread_count() {
  return static_cast<unsigned>(std::max(2L, env_long("STRATA_STRESS_THREADS", 8)));
}

// One live block and what it must contain.
struct Object {
  void* p = nullptr;
  std::size_t size = 0;
  std::size_t alignment = kMallocAlignment;
  std::uint64_t seed = 0;
  unsigned hops = 0;
};

// Collects failures from all threads; the test reports them at the end.
class Failures {
 public:
  void add(const std::string& message) {
    count_.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mutex_);
    if (messages_.size() < 10) messages_.push_back(message);
  }
  int count() const { return count_.load(); }
  std::string summary() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string text;
    for (const std::string& m : messages_) text += "  " + m + "\n";
    return text;
  }

 private:
  std::atomic<int> count_{0};
  mutable std::mutex mutex_;
  std::vector<std::string> messages_;
};

// Sizes: mostly small, some medium, a few large and multi-MiB.
std::size_t pick_size(Rng& rng) {
  const std::size_t r = rng.between(0, 9999);
  if (r < 7000) return rng.between(1, 256);
  if (r < 9500) return rng.between(257, 8 * kKiB);
  if (r < 9980) return rng.between(8 * kKiB, 128 * kKiB);
  if (r < 9998) return rng.between(128 * kKiB, kMiB);
  return rng.between(kMiB, 8 * kMiB);
}

class Worker {
 public:
  Worker(Failures& failures, std::uint64_t seed) : failures_(failures), rng_(seed) {}

  Rng& rng() { return rng_; }

  // Allocates a block with a randomly chosen function and fills it.
  bool allocate(Object& out) {
    const AllocApi& a = api();
    Object o;
    o.size = pick_size(rng_);
    o.seed = rng_.next();
    const std::size_t kind = rng_.between(0, 99);
    if (kind < 50) {
      o.p = a.malloc(o.size);
    } else if (kind < 65) {
      const std::size_t count = rng_.between(1, 4);
      o.size = std::max<std::size_t>(1, o.size / count) * count;
      o.p = a.calloc(count, o.size / count);
      if (o.p != nullptr && !all_zero(o.p, o.size)) {
        report("calloc block is not zeroed", o);
      }
    } else if (kind < 75) {
      o.p = a.realloc(nullptr, o.size);
    } else if (kind < 85) {
      o.alignment = std::size_t{16} << rng_.between(0, 8);
      if (a.posix_memalign(&o.p, o.alignment, o.size) != 0) o.p = nullptr;
    } else if (kind < 95) {
      o.alignment = std::size_t{32} << rng_.between(0, 11);
      o.p = a.aligned_alloc(o.alignment, o.size);
    } else {
      o.alignment = std::size_t{64} << rng_.between(0, 6);
      o.p = a.memalign(o.alignment, o.size);
    }
    if (o.p == nullptr) {
      report("allocation failed", o);
      return false;
    }
    if (!is_aligned(o.p, o.alignment)) report("misaligned block", o);
    fill_pattern(o.p, o.size, o.seed);
    out = o;
    return true;
  }

  // Checks a block's content, alignment and usable size.
  bool verify(const Object& o) {
    if (!is_aligned(o.p, o.alignment)) {
      report("block lost its alignment", o);
      return false;
    }
    if (api().malloc_usable_size(o.p) < o.size) {
      report("usable size below the requested size", o);
      return false;
    }
    const std::size_t bad = pattern_mismatch(o.p, o.size, o.seed);
    if (bad != o.size) {
      report("content corrupted at byte " + std::to_string(bad), o);
      return false;
    }
    return true;
  }

  void release(const Object& o) {
    verify(o);
    api().free(o.p);
  }

  // Resizes a block, checking the preserved prefix.
  void resize(Object& o) {
    if (!verify(o)) return;
    const std::size_t new_size = pick_size(rng_);
    void* q = api().realloc(o.p, new_size);
    if (q == nullptr) {
      report("realloc to " + std::to_string(new_size) + " failed", o);
      return;
    }
    const std::size_t kept = std::min(o.size, new_size);
    o.p = q;
    o.alignment = kMallocAlignment;  // realloc guarantees only malloc's alignment
    if (!is_aligned(q, kMallocAlignment)) report("realloc result misaligned", o);
    if (pattern_mismatch(q, kept, o.seed) != kept) report("realloc lost content", o);
    o.size = new_size;
    fill_pattern(q, o.size, o.seed);
  }

 private:
  void report(const std::string& what, const Object& o) {
    char where[128];
    std::snprintf(where, sizeof where, " (block %p, size %zu, alignment %zu)", o.p, o.size,
                  o.alignment);
    failures_.add(what + where);
  }

  Failures& failures_;
  Rng rng_;
};

// A bounded mailbox of objects for one thread.
class Inbox {
 public:
  static constexpr std::size_t kCapacity = 512;
  bool push(const Object& o) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (items_.size() >= kCapacity) return false;
    items_.push_back(o);
    return true;
  }
  void drain(std::vector<Object>& out, std::size_t max) {
    std::lock_guard<std::mutex> lock(mutex_);
    while (!items_.empty() && max-- > 0) {
      out.push_back(items_.front());
      items_.pop_front();
    }
  }

 private:
  std::mutex mutex_;
  std::deque<Object> items_;
};

TEST(Stress, ObjectsTravelBetweenThreads) {
  const unsigned threads = thread_count();
  const std::size_t ops = scaled(60000, 500);
  Failures failures;
  std::vector<Inbox> inboxes(threads);

  auto body = [&](unsigned self) {
    Worker w(failures, 1000 + self);
    Rng& rng = w.rng();
    std::vector<Object> local;
    std::vector<Object> received;
    auto take_random = [&]() {
      const std::size_t i = rng.between(0, local.size() - 1);
      const Object o = local[i];
      local[i] = local.back();
      local.pop_back();
      return o;
    };
    for (std::size_t op = 0; op < ops; ++op) {
      const std::size_t action = rng.between(0, 99);
      if (action < 40 || local.empty()) {
        Object o;
        if (w.allocate(o)) local.push_back(o);
        if (local.size() > 128) w.release(take_random());
      } else if (action < 60) {
        const Object o = take_random();
        const unsigned to =
            (self + 1 + static_cast<unsigned>(rng.between(0, threads - 2))) % threads;
        if (!inboxes[to].push(o)) w.release(o);
      } else if (action < 80) {
        received.clear();
        inboxes[self].drain(received, 16);
        for (Object& o : received) {
          if (!w.verify(o)) continue;  // reported; leave the block alone
          const std::size_t fate = rng.between(0, 9);
          if (fate < 3) {
            w.resize(o);
            local.push_back(o);
          } else if (fate < 6) {
            w.release(o);
          } else if (fate < 8 && o.hops < 8) {
            ++o.hops;
            const unsigned to = static_cast<unsigned>(rng.between(0, threads - 1));
            if (!inboxes[to].push(o)) w.release(o);
          } else {
            local.push_back(o);
          }
        }
      } else if (action < 90) {
        w.resize(local[rng.between(0, local.size() - 1)]);
      } else {
        w.release(take_random());
      }
    }
    for (const Object& o : local) w.release(o);
  };

  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) pool.emplace_back(body, t);
  for (std::thread& t : pool) t.join();

  // Blocks still in mailboxes were allocated by threads that have exited.
  Worker main_worker(failures, 1);
  std::vector<Object> rest;
  for (Inbox& inbox : inboxes) inbox.drain(rest, SIZE_MAX);
  for (const Object& o : rest) main_worker.release(o);
  EXPECT_EQ(failures.count(), 0) << failures.summary();
}

// A blocking queue shared by producers and consumers.
class SharedQueue {
 public:
  explicit SharedQueue(std::size_t capacity) : capacity_(capacity) {}
  void push(const Object& o) {
    std::unique_lock<std::mutex> lock(mutex_);
    not_full_.wait(lock, [&] { return items_.size() < capacity_; });
    items_.push_back(o);
    not_empty_.notify_one();
  }
  // Returns false once the queue is closed and empty.
  bool pop(Object& out) {
    std::unique_lock<std::mutex> lock(mutex_);
    not_empty_.wait(lock, [&] { return !items_.empty() || closed_; });
    if (items_.empty()) return false;
    out = items_.front();
    items_.pop_front();
    not_full_.notify_one();
    return true;
  }
  void close() {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    not_empty_.notify_all();
  }

 private:
  const std::size_t capacity_;
  std::mutex mutex_;
  std::condition_variable not_full_;
  std::condition_variable not_empty_;
  std::deque<Object> items_;
  bool closed_ = false;
};

TEST(Stress, ProducersAndConsumersWithReallocChains) {
  const unsigned threads = thread_count();
  const unsigned producers = threads / 2;
  const unsigned consumers = threads - producers;
  const std::size_t per_producer = scaled(40000, 300);
  Failures failures;
  SharedQueue queue(256);

  std::vector<std::thread> pool;
  for (unsigned t = 0; t < producers; ++t) {
    pool.emplace_back([&, t] {
      Worker w(failures, 2000 + t);
      for (std::size_t i = 0; i < per_producer; ++i) {
        Object o;
        if (w.allocate(o)) queue.push(o);
      }
    });
  }
  std::vector<std::thread> consumer_pool;
  for (unsigned t = 0; t < consumers; ++t) {
    consumer_pool.emplace_back([&, t] {
      Worker w(failures, 3000 + t);
      Object o;
      while (queue.pop(o)) {
        // Small -> large -> small chains cross every size-class boundary.
        const std::size_t steps = w.rng().between(0, 4);
        for (std::size_t s = 0; s < steps; ++s) w.resize(o);
        w.release(o);
      }
    });
  }
  for (std::thread& t : pool) t.join();
  queue.close();
  for (std::thread& t : consumer_pool) t.join();
  EXPECT_EQ(failures.count(), 0) << failures.summary();
}

TEST(Stress, EveryThreadFreesAnotherThreadsBlocks) {
  // Rounds of: every thread allocates a batch of one size, all wait, every
  // thread frees the batch of a neighbour, all wait.
  const unsigned threads = thread_count();
  const std::size_t rounds = scaled(40, 4);
  const std::size_t sizes[] = {16, 48, 100, 256, 1000, 4096, 10000, 40000, 200000, 2 * kMiB};
  Failures failures;
  std::vector<std::vector<Object>> batches(threads);
  std::barrier sync(static_cast<std::ptrdiff_t>(threads));

  auto body = [&](unsigned self) {
    Worker w(failures, 4000 + self);
    for (std::size_t round = 0; round < rounds; ++round) {
      const std::size_t size = sizes[round % (sizeof sizes / sizeof sizes[0])];
      const std::size_t count =
          std::max<std::size_t>(4, std::min<std::size_t>(2000, 4 * kMiB / size));
      std::vector<Object>& mine = batches[self];
      for (std::size_t i = 0; i < count; ++i) {
        Object o;
        o.size = size;
        o.seed = w.rng().next();
        o.p = api().malloc(size);
        if (o.p == nullptr) {
          failures.add("malloc(" + std::to_string(size) + ") failed");
          continue;
        }
        fill_pattern(o.p, o.size, o.seed);
        mine.push_back(o);
      }
      sync.arrive_and_wait();
      const unsigned victim = (self + 1 + static_cast<unsigned>(round) % (threads - 1)) % threads;
      for (const Object& o : batches[victim]) w.release(o);
      batches[victim].clear();
      sync.arrive_and_wait();
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) pool.emplace_back(body, t);
  for (std::thread& t : pool) t.join();
  EXPECT_EQ(failures.count(), 0) << failures.summary();
}

}  // namespace
}  // namespace strata_test
