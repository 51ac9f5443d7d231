// mstress: multi-threaded stress with objects that outlive their threads
// (after the stress test described with mimalloc-bench).
//
// The program runs several generations of threads. Each thread keeps a set of
// live items and, in a loop, replaces items, reallocs them, or swaps one with
// a slot of a shared transfer array, so items move between threads and
// generations. Sizes are mostly tiny, sometimes medium and rarely large. When
// a thread ends it frees half of its items and leaves the other half to the
// thread with the same index in the next generation.
#include "bench_common.hpp"

namespace {

// Items start with their tag and size (so a thread that receives an item
// knows what to check); the rest is filled by bench::fill.
constexpr size_t kMinItem = 24;

struct Params {
  size_t items;    // live items per thread
  int64_t ops;     // operations per thread and generation
  size_t max_big;  // largest "large" item
};

void* new_item(bench::Rng& rng, const Params& prm, bench::Ledger& ledger) {
  size_t size;
  const uint64_t kind = rng.below(10000);
  if (kind < 9900) {
    size = rng.log_size(kMinItem, 1024);
  } else if (kind < 9995) {
    size = rng.log_size(1024, 64 * 1024);
  } else {
    size = rng.log_size(64 * 1024, prm.max_big);
  }
  const uint64_t tag = rng.next();
  void* p = bench::xmalloc(size);
  bench::fill(p, size, tag);
  std::memcpy(static_cast<char*>(p) + 8, &size, sizeof size);
  ledger.on_alloc(tag, size);
  return p;
}

void read_header(const void* p, uint64_t& tag, size_t& size) {
  std::memcpy(&tag, p, sizeof tag);
  std::memcpy(&size, static_cast<const char*>(p) + 8, sizeof size);
}

void free_item(void* p, bench::Ledger& ledger) {
  uint64_t tag;
  size_t size;
  read_header(p, tag, size);
  bench::check(p, size, tag);
  ledger.on_free(tag, size);
  std::free(p);
}

void* realloc_item(void* p, bench::Rng& rng, bench::Ledger& ledger) {
  uint64_t tag;
  size_t old_size;
  read_header(p, tag, old_size);
  bench::check(p, old_size, tag);
  ledger.on_free(tag, old_size);
  // Grow most of the time, shrink sometimes.
  const size_t new_size =
      rng.chance(3, 4) ? rng.log_size(kMinItem, 4096) * 2 : rng.log_size(kMinItem, 256);
  const uint64_t new_tag = rng.next();
  void* q = bench::xrealloc(p, new_size);
  bench::check_prefix(q, old_size, new_size, tag);
  bench::fill(q, new_size, new_tag);
  std::memcpy(static_cast<char*>(q) + 8, &new_size, sizeof new_size);
  ledger.on_alloc(new_tag, new_size);
  return q;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv,
                   "[--threads N] [--generations N] [--items N] [--ops N] [--transfer N] "
                   "[--max-big BYTES]");
  const int threads = static_cast<int>(args.get("threads", 2));
  const int generations = static_cast<int>(args.get("generations", 20));
  const size_t items = static_cast<size_t>(args.get("items", 40000));  // in all
  const int64_t ops = args.get("ops", 400000);                         // per generation, in all
  const size_t transfer_len = static_cast<size_t>(args.get("transfer", 1000));
  const size_t max_big = static_cast<size_t>(args.get("max-big", 4 << 20));
  args.finish();
  if (threads < 1 || items < static_cast<size_t>(threads) || transfer_len < 1 ||
      max_big < 64 * 1024)
    bench::die("bad arguments");

  bench::Timer timer;
  const Params prm{items / static_cast<size_t>(threads), ops / threads, max_big};
  bench::SharedLedger total;

  // The transfer array is always full, so a swap never hands back nothing and
  // each thread's sequence of operations depends only on its own RNG.
  std::vector<std::atomic<void*>> transfer(transfer_len);
  {
    bench::Ledger ledger;
    bench::Rng rng(12345);
    for (auto& slot : transfer) slot.store(new_item(rng, prm, ledger));
    total.add(ledger);
  }
  // retained[t]: the items that thread t of a generation leaves to the next.
  std::vector<std::vector<void*>> retained(static_cast<size_t>(threads),
                                           std::vector<void*>(prm.items, nullptr));

  for (int gen = 0; gen < generations; ++gen) {
    bench::run_threads(threads, [&](int t) {
      bench::Ledger ledger;
      bench::Rng rng(static_cast<uint64_t>(gen) * 65537 + static_cast<uint64_t>(t) + 1);
      std::vector<void*>& local = retained[static_cast<size_t>(t)];
      for (auto& p : local)
        if (!p) p = new_item(rng, prm, ledger);
      for (int64_t i = 0; i < prm.ops; ++i) {
        void*& p = local[rng.below(local.size())];
        const uint64_t op = rng.below(100);
        if (op < 70) {
          free_item(p, ledger);
          p = new_item(rng, prm, ledger);
        } else if (op < 90) {
          p = realloc_item(p, rng, ledger);
        } else {
          p = transfer[rng.below(transfer.size())].exchange(p);
        }
      }
      // Free every other item; the rest survive into the next generation.
      for (size_t i = 0; i < local.size(); i += 2) {
        free_item(local[i], ledger);
        local[i] = nullptr;
      }
      total.add(ledger);
    });
  }

  bench::Ledger ledger;
  for (auto& local : retained)
    for (void* p : local)
      if (p) free_item(p, ledger);
  for (auto& slot : transfer) free_item(slot.load(), ledger);
  total.add(ledger);

  total.report("mstress");
  timer.report("mstress");
  return 0;
}
