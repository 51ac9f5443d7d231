// Micro-benchmarks of single allocator operations (Google Benchmark). Run the
// binary under each allocator with LD_PRELOAD; bench/run.py --micro does that
// and tabulates the results.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

namespace {

// Argument lists, registered with BENCHMARK(f)->Apply(...).
void SizeClassArgs(benchmark::internal::Benchmark* b) {
  for (int64_t size : {8,   16,   32,   48,   64,   96,    128,   192,   256,    384,
                       512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 262144, 1 << 20})
    b->Arg(size);
}

void AlignmentArgs(benchmark::internal::Benchmark* b) {  // {alignment, size}
  const std::pair<int64_t, int64_t> pairs[] = {{16, 64},     {64, 64},    {256, 256},
                                               {4096, 4096}, {4096, 100}, {65536, 65536}};
  for (auto [alignment, size] : pairs) b->Args({alignment, size});
}

// One malloc and one free of the same size, back to back.
void BM_malloc_free(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* p = std::malloc(size);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_malloc_free)->Apply(SizeClassArgs);

// 1000 allocations of one size, then 1000 frees in allocation order: the
// cost when blocks cannot simply be recycled from one call to the next.
void BM_malloc_free_batch(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  std::vector<void*> blocks(1000);
  for (auto _ : state) {
    for (auto& p : blocks) p = std::malloc(size);
    benchmark::DoNotOptimize(blocks.data());
    for (void* p : blocks) std::free(p);
  }
  state.SetItemsProcessed(state.iterations() * 1000);
}
BENCHMARK(BM_malloc_free_batch)->Arg(16)->Arg(64)->Arg(256)->Arg(1024)->Arg(4096);

void BM_calloc_free(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* p = std::calloc(1, size);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_calloc_free)->Arg(16)->Arg(256)->Arg(4096)->Arg(65536)->Arg(1 << 20);

// Grow one buffer from 16 bytes to range(0) bytes in steps of range(1) bytes.
void BM_realloc_growth(benchmark::State& state) {
  const size_t limit = static_cast<size_t>(state.range(0));
  const size_t step = static_cast<size_t>(state.range(1));
  int64_t steps = 0;
  for (auto _ : state) {
    void* p = nullptr;
    for (size_t size = 16; size <= limit; size += step) {
      p = std::realloc(p, size);
      static_cast<char*>(p)[size - 1] = 1;
      ++steps;
    }
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  state.SetItemsProcessed(steps);
}
BENCHMARK(BM_realloc_growth)->Args({4096, 16})->Args({65536, 256})->Args({1 << 22, 65536});

void BM_realloc_double(benchmark::State& state) {
  const size_t limit = static_cast<size_t>(state.range(0));
  int64_t steps = 0;
  for (auto _ : state) {
    void* p = nullptr;
    for (size_t size = 16; size <= limit; size *= 2) {
      p = std::realloc(p, size);
      static_cast<char*>(p)[size - 1] = 1;
      ++steps;
    }
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  state.SetItemsProcessed(steps);
}
BENCHMARK(BM_realloc_double)->Arg(1 << 16)->Arg(1 << 24);

void BM_aligned_alloc(benchmark::State& state) {
  const size_t align = static_cast<size_t>(state.range(0));
  const size_t size = static_cast<size_t>(state.range(1));
  for (auto _ : state) {
    void* p = std::aligned_alloc(align, size);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_aligned_alloc)->Apply(AlignmentArgs);

void BM_posix_memalign(benchmark::State& state) {
  const size_t align = static_cast<size_t>(state.range(0));
  const size_t size = static_cast<size_t>(state.range(1));
  for (auto _ : state) {
    void* p = nullptr;
    if (posix_memalign(&p, align, size) != 0) state.SkipWithError("posix_memalign failed");
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_posix_memalign)->Args({64, 64})->Args({4096, 4096});

// Cross-thread free: the benchmark thread allocates batches of blocks and
// hands each batch to a helper thread, which frees it. Measures the
// allocating side, including whatever the remote frees cost it.
class Handoff {
 public:
  static constexpr size_t kBatch = 256;
  static constexpr size_t kRing = 64;

  explicit Handoff(size_t size) : size_(size), helper_([this] { drain(); }) {}
  ~Handoff() {
    stop_.store(true, std::memory_order_release);
    helper_.join();
  }
  // Fills a batch and publishes it; spins while the ring is full.
  void send() {
    const uint64_t h = head_.load(std::memory_order_relaxed);
    while (h - tail_.load(std::memory_order_acquire) >= kRing) std::this_thread::yield();
    Batch& b = ring_[h % kRing];
    for (auto& p : b.blocks) p = std::malloc(size_);
    head_.store(h + 1, std::memory_order_release);
  }

 private:
  struct Batch {
    void* blocks[kBatch];
  };
  void drain() {
    for (;;) {
      const uint64_t t = tail_.load(std::memory_order_relaxed);
      if (t == head_.load(std::memory_order_acquire)) {
        if (stop_.load(std::memory_order_acquire) && t == head_.load(std::memory_order_acquire))
          return;
        std::this_thread::yield();
        continue;
      }
      for (void* p : ring_[t % kRing].blocks) std::free(p);
      tail_.store(t + 1, std::memory_order_release);
    }
  }
  size_t size_;
  Batch ring_[kRing];
  alignas(64) std::atomic<uint64_t> head_{0};
  alignas(64) std::atomic<uint64_t> tail_{0};
  std::atomic<bool> stop_{false};
  std::thread helper_;
};

void BM_cross_thread_free(benchmark::State& state) {
  Handoff handoff(static_cast<size_t>(state.range(0)));
  for (auto _ : state) handoff.send();
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(Handoff::kBatch));
}
BENCHMARK(BM_cross_thread_free)->Arg(16)->Arg(64)->Arg(256)->Arg(1024)->UseRealTime();

// Every thread allocates and frees on its own: scaling of the fast path.
void BM_malloc_free_threads(benchmark::State& state) {
  for (auto _ : state) {
    void* p = std::malloc(64);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_malloc_free_threads)->Threads(1)->Threads(2)->Threads(8)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
