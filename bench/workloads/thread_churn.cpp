// thread-churn: threads created and ending while others allocate.
//
// --threads workers run at any time. Whenever one ends the main thread joins
// it and starts a new one in its place, until --spawns threads have run. Each
// worker first frees the blocks its predecessor in the same place left
// behind, then allocates and frees blocks of random size, and finally leaves
// a quarter of its blocks for its successor. Exercises per-thread heap setup
// and teardown, and memory freed after its allocating thread has exited.
#include "bench_common.hpp"

namespace {

struct Block {
  void* p;
  size_t size;
  uint64_t tag;
};

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv, "[--threads N] [--spawns N] [--ops N] [--live N]");
  const int threads = static_cast<int>(args.get("threads", 2));
  const int spawns = static_cast<int>(args.get("spawns", 2000));
  const int64_t ops = args.get("ops", 20000);                      // per worker
  const size_t live = static_cast<size_t>(args.get("live", 256));  // blocks per worker
  args.finish();
  if (threads < 1 || spawns < threads || live < 4) bench::die("bad arguments");

  bench::Timer timer;
  bench::SharedLedger total;
  std::vector<std::vector<Block>> left(static_cast<size_t>(threads));  // per place
  std::vector<std::thread> running(static_cast<size_t>(threads));

  auto worker = [&](int place, int serial) {
    bench::Ledger ledger;
    bench::Rng rng(static_cast<uint64_t>(serial) * 31 + 17);
    std::vector<Block>& inherited = left[static_cast<size_t>(place)];
    for (const Block& b : inherited) {
      bench::check(b.p, b.size, b.tag);
      ledger.on_free(b.tag, b.size);
      std::free(b.p);
    }
    inherited.clear();
    std::vector<Block> slots(live, Block{nullptr, 0, 0});
    for (int64_t i = 0; i < ops; ++i) {
      Block& b = slots[rng.below(live)];
      if (b.p) {
        bench::check(b.p, b.size, b.tag);
        ledger.on_free(b.tag, b.size);
        std::free(b.p);
      }
      b.size = rng.log_size(16, 8192);
      b.tag = rng.next();
      b.p = bench::xmalloc(b.size);
      bench::fill(b.p, b.size, b.tag);
      ledger.on_alloc(b.tag, b.size);
    }
    for (size_t i = 0; i < live; ++i) {
      Block& b = slots[i];
      if (!b.p) continue;
      if (i % 4 == 0) {
        inherited.push_back(b);
      } else {
        bench::check(b.p, b.size, b.tag);
        ledger.on_free(b.tag, b.size);
        std::free(b.p);
      }
    }
    total.add(ledger);
  };

  // Worker `serial` runs in place serial % threads, after worker
  // serial - threads (which used the same place) has been joined.
  for (int serial = 0; serial < spawns; ++serial) {
    const int place = serial % threads;
    std::thread& slot = running[static_cast<size_t>(place)];
    if (slot.joinable()) slot.join();
    slot = std::thread(worker, place, serial);
  }
  for (auto& t : running) t.join();

  bench::Ledger ledger;
  for (auto& blocks : left)
    for (const Block& b : blocks) {
      bench::check(b.p, b.size, b.tag);
      ledger.on_free(b.tag, b.size);
      std::free(b.p);
    }
  total.add(ledger);
  total.report("thread-churn");
  timer.report("thread-churn");
  return 0;
}
