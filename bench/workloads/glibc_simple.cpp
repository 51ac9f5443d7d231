// glibc-simple: tight single-threaded malloc/free loops of small fixed sizes
// (in the style of glibc's bench-malloc-simple).
//
// For each size and batch length, allocate a batch of blocks and free them
// all, many times over: the cost of the allocator's fastest paths.
#include "bench_common.hpp"

int main(int argc, char** argv) {
  bench::Args args(argc, argv, "[--iters N]");
  const int64_t iters = args.get("iters", 2000);
  args.finish();
  if (iters < 1) bench::die("bad arguments");

  bench::Timer timer;
  const size_t sizes[] = {16, 32, 64, 128, 256, 512, 1024};
  const size_t batches[] = {25, 100, 400, 1600};
  std::vector<unsigned char*> blocks(1600);
  uint64_t sum = 0, pairs = 0;
  for (size_t size : sizes) {
    for (size_t batch : batches) {
      // Same number of pairs for every batch length.
      const int64_t reps = iters * 1600 / static_cast<int64_t>(batch) / 16;
      for (int64_t r = 0; r < reps; ++r) {
        for (size_t i = 0; i < batch; ++i) {
          blocks[i] = static_cast<unsigned char*>(bench::xmalloc(size));
          blocks[i][0] = static_cast<unsigned char>(i);
        }
        for (size_t i = 0; i < batch; ++i) {
          sum += blocks[i][0];
          std::free(blocks[i]);
        }
        pairs += batch;
      }
    }
  }
  std::printf("glibc-simple: pairs=%" PRIu64 " sum=%" PRIu64 "\n", pairs, sum);
  timer.report("glibc-simple");
  return 0;
}
