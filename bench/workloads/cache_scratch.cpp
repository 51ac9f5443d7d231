// cache-scratch: passive false sharing (after the Hoard benchmark suite).
//
// The main thread allocates one small object per thread, back to back, and
// hands object t to thread t. Each thread frees the object it was given, then
// repeatedly allocates an object of the same size, writes to it many times
// and frees it. An allocator that reuses the freed neighbour's memory for the
// new objects leaves different threads writing to one cache line.
#include "bench_common.hpp"

int main(int argc, char** argv) {
  bench::Args args(argc, argv, "[--threads N] [--iters N] [--writes N] [--size BYTES]");
  const int threads = static_cast<int>(args.get("threads", 2));
  const int64_t iters = args.get("iters", 20000);   // objects in all, shared by the threads
  const int64_t writes = args.get("writes", 1000);  // passes over each object
  const size_t size = static_cast<size_t>(args.get("size", 8));
  args.finish();
  if (threads < 1 || size < 1) bench::die("bad arguments");

  bench::Timer timer;
  std::vector<void*> handed(static_cast<size_t>(threads));
  for (auto& p : handed) {
    p = bench::xmalloc(size);
    std::memset(p, 1, size);
  }
  const int64_t per_thread = iters / threads;
  std::atomic<uint64_t> total{0};

  bench::run_threads(threads, [&](int t) {
    std::free(handed[static_cast<size_t>(t)]);
    total += bench::hammer_fresh_objects(size, writes, per_thread);
  });

  std::printf("cache-scratch: objects=%" PRId64 " sum=%" PRIu64 "\n", per_thread * threads,
              total.load());
  timer.report("cache-scratch");
  return 0;
}
