// Thread exit: thousands of short-lived threads, blocks that outlive the
// thread that allocated them, and allocation during thread teardown
// (thread_local destructors, pthread key destructors).
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "alloc_api.hpp"
#include "test_support.hpp"

namespace strata_test {
namespace {

struct Block {
  void* p;
  std::size_t size;
  std::uint64_t seed;
};

// Blocks handed from one thread to whichever thread comes next.
class Pool {
 public:
  void put(const Block& b) {
    std::lock_guard<std::mutex> lock(mutex_);
    blocks_.push_back(b);
  }
  bool take(Block& out) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (blocks_.empty()) return false;
    out = blocks_.back();
    blocks_.pop_back();
    return true;
  }
  std::size_t size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return blocks_.size();
  }

 private:
  std::mutex mutex_;
  std::vector<Block> blocks_;
};

// Frees a block after checking its content; returns false if corrupted.
bool check_and_free(const Block& b) {
  const bool ok = pattern_mismatch(b.p, b.size, b.seed) == b.size;
  free(b.p);
  return ok;
}

TEST(ThreadExit, ThousandsOfShortThreadsFreeEachOthersBlocks) {
  const std::size_t total_threads = scaled(3000, 100);
  constexpr unsigned kWave = 8;
  Pool pool;
  std::atomic<int> corrupted{0};
  std::atomic<int> failed{0};
  for (std::size_t started = 0; started < total_threads; started += kWave) {
    std::vector<std::thread> wave;
    for (unsigned t = 0; t < kWave; ++t) {
      wave.emplace_back([&, id = started + t] {
        Rng rng(id);
        // Free blocks left behind by threads that have already exited.
        for (int i = 0; i < 24; ++i) {
          Block b;
          if (!pool.take(b)) break;
          if (!check_and_free(b)) corrupted.fetch_add(1);
        }
        for (int i = 0; i < 32; ++i) {
          Block b;
          b.size = rng.chance(95) ? rng.between(1, 1024) : rng.between(1025, 300 * kKiB);
          b.seed = rng.next();
          b.p = malloc(b.size);
          if (b.p == nullptr) {
            failed.fetch_add(1);
            continue;
          }
          fill_pattern(b.p, b.size, b.seed);
          // Leave most blocks to later threads; free the rest here.
          if (i % 4 != 0) {
            pool.put(b);
          } else if (!check_and_free(b)) {
            corrupted.fetch_add(1);
          }
        }
      });
    }
    for (std::thread& t : wave) t.join();
  }
  // The main thread frees what the last threads left.
  Block b;
  while (pool.take(b)) {
    if (!check_and_free(b)) corrupted.fetch_add(1);
  }
  EXPECT_EQ(corrupted.load(), 0);
  EXPECT_EQ(failed.load(), 0);
}

TEST(ThreadExit, BlocksOfExitedThreadsAreFreedLaterAndReused) {
  std::vector<Block> orphans;
  std::thread producer([&] {
    Rng rng(77);
    for (int i = 0; i < 20000; ++i) {
      Block b;
      b.size = rng.chance(97) ? rng.between(1, 2048) : rng.between(2049, kMiB);
      b.seed = rng.next();
      b.p = malloc(b.size);
      ASSERT_NE(b.p, nullptr);
      fill_pattern(b.p, b.size, b.seed);
      orphans.push_back(b);
    }
  });
  producer.join();  // the allocating thread is gone now
  int corrupted = 0;
  // Half freed by the main thread, half by another new thread.
  for (std::size_t i = 0; i < orphans.size(); i += 2) corrupted += !check_and_free(orphans[i]);
  std::thread cleaner([&] {
    for (std::size_t i = 1; i < orphans.size(); i += 2) corrupted += !check_and_free(orphans[i]);
  });
  cleaner.join();
  EXPECT_EQ(corrupted, 0);
  // The freed memory serves new threads.
  std::thread consumer([] {
    std::vector<Block> blocks;
    Rng rng(78);
    for (int i = 0; i < 20000; ++i) {
      Block b{nullptr, rng.between(1, 2048), rng.next()};
      b.p = malloc(b.size);
      ASSERT_NE(b.p, nullptr);
      fill_pattern(b.p, b.size, b.seed);
      blocks.push_back(b);
    }
    for (const Block& b : blocks) EXPECT_TRUE(check_and_free(b));
  });
  consumer.join();
}

// ---- Allocation during thread teardown ---------------------------------------------

std::atomic<int> tls_destructor_runs{0};
std::atomic<int> tls_destructor_failures{0};
std::mutex handoff_mutex;
std::vector<Block> handoff;  // blocks allocated during teardown, freed by main

void allocate_during_teardown(std::uint64_t seed) {
  std::string text(1000, 'x');  // operator new
  text += std::to_string(seed);
  for (const std::size_t size : {std::size_t{16}, std::size_t{700}, 64 * kKiB, 2 * kMiB}) {
    void* p = malloc(size);
    if (p == nullptr) {
      tls_destructor_failures.fetch_add(1);
      continue;
    }
    fill_pattern(p, size, seed);
    if (pattern_mismatch(p, size, seed) != size) tls_destructor_failures.fetch_add(1);
    free(p);
  }
  Block b{malloc(333), 333, seed};
  if (b.p == nullptr) {
    tls_destructor_failures.fetch_add(1);
    return;
  }
  fill_pattern(b.p, b.size, b.seed);
  std::lock_guard<std::mutex> lock(handoff_mutex);
  handoff.push_back(b);
}

struct AllocatingThreadLocal {
  std::uint64_t seed = 0;
  void* early = nullptr;  // allocated while the thread ran, freed in the destructor
  ~AllocatingThreadLocal() {
    if (early != nullptr) {
      if (pattern_mismatch(early, 5000, seed) != 5000) tls_destructor_failures.fetch_add(1);
      free(early);
    }
    allocate_during_teardown(seed);
    tls_destructor_runs.fetch_add(1);
  }
};

thread_local AllocatingThreadLocal tls_object;

int free_handoff_blocks() {
  std::lock_guard<std::mutex> lock(handoff_mutex);
  int corrupted = 0;
  for (const Block& b : handoff) corrupted += !check_and_free(b);
  handoff.clear();
  return corrupted;
}

TEST(ThreadExit, ThreadLocalDestructorsMayAllocate) {
  tls_destructor_runs = 0;
  tls_destructor_failures = 0;
  constexpr int kThreads = 64;
  for (int round = 0; round < kThreads / 8; ++round) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([seed = static_cast<std::uint64_t>(round * 8 + t)] {
        tls_object.seed = seed;
        tls_object.early = malloc(5000);
        if (tls_object.early != nullptr) fill_pattern(tls_object.early, 5000, seed);
        for (int i = 0; i < 1000; ++i) free(malloc(static_cast<std::size_t>(i) + 1));
      });
    }
    for (std::thread& t : threads) t.join();
  }
  EXPECT_EQ(tls_destructor_runs.load(), kThreads);
  EXPECT_EQ(tls_destructor_failures.load(), 0);
  EXPECT_EQ(free_handoff_blocks(), 0);
}

std::atomic<int> key_destructor_runs{0};
pthread_key_t teardown_key;

void key_destructor(void* value) {
  // The value is a block the thread allocated; each round allocates a new
  // one and sets it again, so the destructor runs again (up to
  // PTHREAD_DESTRUCTOR_ITERATIONS), possibly after the allocator's own
  // per-thread teardown.
  auto* round = static_cast<std::uint64_t*>(value);
  const std::uint64_t next = *round + 1;
  free(round);
  allocate_during_teardown(next);
  key_destructor_runs.fetch_add(1);
  if (next < 3) {
    auto* again = static_cast<std::uint64_t*>(malloc(sizeof(std::uint64_t)));
    if (again == nullptr) {
      tls_destructor_failures.fetch_add(1);
      return;
    }
    *again = next;
    pthread_setspecific(teardown_key, again);
  }
}

TEST(ThreadExit, PthreadKeyDestructorsMayAllocate) {
  ASSERT_EQ(pthread_key_create(&teardown_key, key_destructor), 0);
  key_destructor_runs = 0;
  tls_destructor_failures = 0;
  constexpr int kThreads = 48;
  for (int round = 0; round < kThreads / 8; ++round) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([] {
        auto* value = static_cast<std::uint64_t*>(malloc(sizeof(std::uint64_t)));
        ASSERT_NE(value, nullptr);
        *value = 0;
        pthread_setspecific(teardown_key, value);
        for (int i = 0; i < 500; ++i) free(malloc(static_cast<std::size_t>(i) * 3 + 1));
      });
    }
    for (std::thread& t : threads) t.join();
  }
  EXPECT_EQ(key_destructor_runs.load(), kThreads * 3) << "three destructor rounds per thread";
  EXPECT_EQ(tls_destructor_failures.load(), 0);
  EXPECT_EQ(free_handoff_blocks(), 0);
  pthread_key_delete(teardown_key);
}

TEST(ThreadExit, DetachedThreadsExitWhileOthersAllocate) {
  constexpr int kThreads = 400;
  std::mutex mutex;
  std::condition_variable all_done;
  int done = 0;
  Pool pool;
  for (int i = 0; i < kThreads; ++i) {
    std::thread([&, i] {
      Rng rng(static_cast<std::uint64_t>(i));
      Block b{nullptr, rng.between(1, 4096), rng.next()};
      b.p = malloc(b.size);
      if (b.p != nullptr) {
        fill_pattern(b.p, b.size, b.seed);
        pool.put(b);
      }
      for (int k = 0; k < 200; ++k) free(malloc(rng.between(1, 512)));
      std::lock_guard<std::mutex> lock(mutex);
      ++done;
      all_done.notify_one();
    }).detach();
    if (i % 16 == 15) {
      // Keep the number of live threads bounded.
      std::unique_lock<std::mutex> lock(mutex);
      all_done.wait(lock, [&] { return done > i - 16; });
    }
  }
  {
    std::unique_lock<std::mutex> lock(mutex);
    all_done.wait(lock, [&] { return done == kThreads; });
  }
  EXPECT_EQ(pool.size(), static_cast<std::size_t>(kThreads));
  int corrupted = 0;
  Block b;
  while (pool.take(b)) corrupted += !check_and_free(b);
  EXPECT_EQ(corrupted, 0);
}

}  // namespace
}  // namespace strata_test
