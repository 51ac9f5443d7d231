// glibc-thread: many threads, each freeing and allocating small blocks of
// random size in its own working set (in the style of glibc's
// bench-malloc-thread).
#include "bench_common.hpp"

int main(int argc, char** argv) {
  bench::Args args(argc, argv, "[--threads N] [--ops N] [--slots N] [--max BYTES]");
  const int threads = static_cast<int>(args.get("threads", 2));
  const int64_t ops = args.get("ops", 20000000);  // in all, shared by the threads
  const size_t slots = static_cast<size_t>(args.get("slots", 1024));  // per thread
  const size_t max_size = static_cast<size_t>(args.get("max", 32768));
  args.finish();
  if (threads < 1 || slots < 1 || max_size < 8) bench::die("bad arguments");

  bench::Timer timer;
  std::atomic<uint64_t> total{0};
  bench::run_threads(threads, [&](int t) {
    bench::Rng rng(static_cast<uint64_t>(t) + 99);
    // Sizes and slot choices are drawn up front so the loop measures the
    // allocator, not the RNG.
    std::vector<uint32_t> sizes(4096), picks(4096);
    for (auto& s : sizes) s = static_cast<uint32_t>(rng.log_size(8, max_size));
    for (auto& p : picks) p = static_cast<uint32_t>(rng.below(slots));
    std::vector<unsigned char*> work(slots, nullptr);
    uint64_t sum = 0;
    const int64_t my_ops = ops / threads;
    for (int64_t i = 0; i < my_ops; ++i) {
      const size_t k = static_cast<size_t>(i) & 4095;
      unsigned char*& p = work[picks[k]];
      if (p) {
        sum += p[0];
        std::free(p);
      }
      p = static_cast<unsigned char*>(
          bench::xmalloc(sizes[(k * 7 + static_cast<size_t>(i >> 12)) & 4095]));
      p[0] = static_cast<unsigned char>(i);
    }
    for (auto* p : work)
      if (p) {
        sum += p[0];
        std::free(p);
      }
    total += sum;
  });
  std::printf("glibc-thread: ops=%" PRId64 " sum=%" PRIu64 "\n", ops / threads * threads,
              total.load());
  timer.report("glibc-thread");
  return 0;
}
