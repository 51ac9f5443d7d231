// alloc-test: random sizes at a steady live-set size (in the style of the
// rpmalloc "rptest" and "alloc-test" benchmarks).
//
// The live set is split between the threads. Each thread keeps its slots and
// replaces a random slot's block at every step, with log-uniform sizes from 16 B to 64 KiB. Every
// so often a thread also passes a handful of its blocks to the next thread's mailbox; each thread
// frees whatever arrives in its own mailbox.
#include <mutex>

#include "bench_common.hpp"

namespace {

struct Block {
  void* p;
  size_t size;
  uint64_t tag;
};

struct Mailbox {
  std::mutex mu;
  std::vector<Block> blocks;
};

void release(const Block& b, bench::Ledger& ledger) {
  bench::check(b.p, b.size, b.tag);
  ledger.on_free(b.tag, b.size);
  std::free(b.p);
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv,
                   "[--threads N] [--live N] [--ops N] [--min BYTES] [--max BYTES] "
                   "[--pass-every N]");
  const int threads = static_cast<int>(args.get("threads", 2));
  const size_t live_total = static_cast<size_t>(args.get("live", 8000));  // slots in all
  const int64_t ops = args.get("ops", 4000000);                           // in all
  const size_t min_size = static_cast<size_t>(args.get("min", 16));
  const size_t max_size = static_cast<size_t>(args.get("max", 65536));
  const int64_t pass_every = args.get("pass-every", 1000);
  args.finish();
  if (threads < 1) bench::die("bad arguments");
  const size_t live = live_total / static_cast<size_t>(threads);
  if (live < 16 || min_size < 1 || max_size < min_size || pass_every < 1)
    bench::die("bad arguments");

  bench::Timer timer;
  std::vector<Mailbox> mailboxes(static_cast<size_t>(threads));
  bench::SharedLedger total;

  bench::run_threads(threads, [&](int t) {
    bench::Ledger ledger;
    bench::Rng rng(static_cast<uint64_t>(t) * 7777 + 3);
    std::vector<Block> slots(live, Block{nullptr, 0, 0});
    std::vector<Block> inbox;
    Mailbox& next = mailboxes[static_cast<size_t>((t + 1) % threads)];
    Mailbox& mine = mailboxes[static_cast<size_t>(t)];
    const int64_t my_ops = ops / threads;
    for (int64_t i = 1; i <= my_ops; ++i) {
      Block& b = slots[rng.below(live)];
      if (b.p) release(b, ledger);
      b.size = rng.log_size(min_size, max_size);
      b.tag = rng.next();
      b.p = bench::xmalloc(b.size);
      bench::fill(b.p, b.size, b.tag);
      ledger.on_alloc(b.tag, b.size);
      if (i % pass_every == 0 && threads > 1) {
        // Hand 16 random blocks to the next thread, then free what arrived.
        std::vector<Block> out;
        for (int k = 0; k < 16; ++k) {
          Block& s = slots[rng.below(live)];
          if (s.p) out.push_back(s);
          s = Block{nullptr, 0, 0};
        }
        {
          std::lock_guard lock(next.mu);
          next.blocks.insert(next.blocks.end(), out.begin(), out.end());
        }
        {
          std::lock_guard lock(mine.mu);
          inbox.swap(mine.blocks);
        }
        for (const Block& in : inbox) release(in, ledger);
        inbox.clear();
      }
    }
    for (const Block& b : slots)
      if (b.p) release(b, ledger);
    total.add(ledger);
  });

  bench::Ledger ledger;
  for (auto& m : mailboxes)
    for (const Block& b : m.blocks) release(b, ledger);
  total.add(ledger);

  total.report("alloc-test");
  timer.report("alloc-test");
  return 0;
}
