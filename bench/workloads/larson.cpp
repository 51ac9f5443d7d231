// larson: a server simulation after Larson and Krishnan's benchmark.
//
// A shared array of slots holds live blocks. In every round each thread takes
// one slice of the array and replaces random blocks in it: free the old block,
// allocate a new one of random size. Slices rotate between threads from round
// to round, so most frees release a block that another thread allocated, the
// pattern of a server whose requests are handled on whichever thread is free.
#include <barrier>

#include "bench_common.hpp"

namespace {

struct Slot {
  void* p;
  size_t size;
  uint64_t tag;
};

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv,
                   "[--threads N] [--slots N] [--rounds N] [--ops N] [--min BYTES] [--max BYTES]");
  const int threads = static_cast<int>(args.get("threads", 2));
  const size_t slots = static_cast<size_t>(args.get("slots", 8000));  // in all
  const int rounds = static_cast<int>(args.get("rounds", 50));
  const int64_t round_ops = args.get("ops", 100000);  // replacements per round, in all
  const size_t min_size = static_cast<size_t>(args.get("min", 16));
  const size_t max_size = static_cast<size_t>(args.get("max", 1024));
  args.finish();
  if (threads < 1 || slots < static_cast<size_t>(threads) || min_size < 1 || max_size < min_size)
    bench::die("bad arguments");
  // Work is split between the threads, so every thread count does the same.
  const size_t slots_per_thread = slots / static_cast<size_t>(threads);
  const int64_t ops = round_ops / threads;

  bench::Timer timer;
  std::vector<Slot> array(slots_per_thread * static_cast<size_t>(threads));
  std::barrier sync(threads);
  bench::SharedLedger total;

  bench::run_threads(threads, [&](int t) {
    bench::Ledger ledger;
    auto slice = [&](int round) {
      return &array[static_cast<size_t>((t + round) % threads) * slots_per_thread];
    };
    // Round 0: every thread fills its own slice.
    {
      Slot* s = slice(0);
      bench::Rng rng(static_cast<uint64_t>(t) * 1000003 + 7);
      for (size_t i = 0; i < slots_per_thread; ++i) {
        const size_t size = rng.range(min_size, max_size);
        const uint64_t tag = rng.next();
        s[i] = {bench::xmalloc(size), size, tag};
        bench::fill(s[i].p, size, tag);
        ledger.on_alloc(tag, size);
      }
    }
    sync.arrive_and_wait();
    // Rounds 1..R: work on the slice that another thread filled last round.
    for (int round = 1; round <= rounds; ++round) {
      const int index = (t + round) % threads;
      Slot* s = slice(round);
      bench::Rng rng(static_cast<uint64_t>(index) * 1000003 + static_cast<uint64_t>(round) * 7919);
      for (int64_t i = 0; i < ops; ++i) {
        Slot& slot = s[rng.below(slots_per_thread)];
        bench::check(slot.p, slot.size, slot.tag);
        ledger.on_free(slot.tag, slot.size);
        std::free(slot.p);
        slot.size = rng.range(min_size, max_size);
        slot.tag = rng.next();
        slot.p = bench::xmalloc(slot.size);
        bench::fill(slot.p, slot.size, slot.tag);
        ledger.on_alloc(slot.tag, slot.size);
      }
      sync.arrive_and_wait();
    }
    // Release the slice this thread would work on next.
    Slot* s = slice(rounds + 1);
    for (size_t i = 0; i < slots_per_thread; ++i) {
      bench::check(s[i].p, s[i].size, s[i].tag);
      ledger.on_free(s[i].tag, s[i].size);
      std::free(s[i].p);
    }
    total.add(ledger);
  });

  total.report("larson");
  timer.report("larson");
  return 0;
}
