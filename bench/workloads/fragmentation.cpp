// fragmentation: how much memory goes back to the system after most of a
// large live set is freed in a scattered pattern.
//
// 1. Allocate blocks (mostly 16 B - 4 KiB, a few up to 256 KiB) until the
//    live set reaches --live bytes.
// 2. Free a random 90% of them (--keep 10 keeps one block in ten), so the
//    survivors are spread across the whole heap.
// 3. Allocate a quarter of the original volume again, in other sizes, to
//    see whether the freed space is reused.
// 4. Free everything.
// RSS is printed after each phase on lines starting with "rss:" (they differ
// between allocators and are not compared); the other lines are checksums.
#include "bench_common.hpp"

namespace {

struct Block {
  void* p;
  size_t size;
  uint64_t tag;
};

void print_rss(const char* phase) {
  std::printf("rss: %s_mib=%.1f\n", phase, static_cast<double>(bench::rss_bytes()) / (1 << 20));
}

size_t fill_to(std::vector<Block>& blocks, size_t target, size_t min_size, size_t max_size,
               bench::Rng& rng, bench::Ledger& ledger) {
  size_t total = 0;
  while (total < target) {
    Block b;
    b.size =
        rng.chance(1, 64) ? rng.log_size(16 * 1024, 256 * 1024) : rng.log_size(min_size, max_size);
    b.tag = rng.next();
    b.p = bench::xmalloc(b.size);
    bench::fill(b.p, b.size, b.tag);
    ledger.on_alloc(b.tag, b.size);
    blocks.push_back(b);
    total += b.size;
  }
  return total;
}

void release(Block& b, bench::Ledger& ledger) {
  bench::check(b.p, b.size, b.tag);
  ledger.on_free(b.tag, b.size);
  std::free(b.p);
  b.p = nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv, "[--live BYTES] [--keep N]");
  const size_t live = static_cast<size_t>(args.get("live", 512 << 20));
  const uint64_t keep = static_cast<uint64_t>(args.get("keep", 10));
  args.finish();
  if (live < 1 || keep < 1) bench::die("bad arguments");

  bench::Timer timer;
  bench::Rng rng(77);
  bench::Ledger ledger;
  std::vector<Block> blocks;
  print_rss("start");

  fill_to(blocks, live, 16, 4096, rng, ledger);
  print_rss("full");

  size_t kept = 0, kept_bytes = 0;
  for (Block& b : blocks) {
    if (rng.chance(1, keep)) {
      ++kept;
      kept_bytes += b.size;
    } else {
      release(b, ledger);
    }
  }
  print_rss("scattered_free");

  std::vector<Block> again;
  fill_to(again, live / 4, 48, 8192, rng, ledger);
  print_rss("reuse");

  for (Block& b : blocks)
    if (b.p) release(b, ledger);
  for (Block& b : again) release(b, ledger);
  print_rss("all_free");

  std::printf("fragmentation: blocks=%zu kept=%zu kept_bytes=%zu reused_blocks=%zu\n",
              blocks.size(), kept, kept_bytes, again.size());
  bench::SharedLedger total;
  total.add(ledger);
  total.report("fragmentation");
  timer.report("fragmentation");
  return 0;
}
