// cache-thrash: active false sharing (after the Hoard benchmark suite).
//
// Every thread repeatedly allocates a small object, writes to it many times
// and frees it. Nothing is handed between threads: if the allocator gives
// objects from one cache line to different threads, their writes contend for
// that line although the program shares nothing.
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
  const int64_t per_thread = iters / threads;
  std::atomic<uint64_t> total{0};

  bench::run_threads(threads,
                     [&](int) { total += bench::hammer_fresh_objects(size, writes, per_thread); });

  std::printf("cache-thrash: objects=%" PRId64 " sum=%" PRIu64 "\n", per_thread * threads,
              total.load());
  timer.report("cache-thrash");
  return 0;
}
