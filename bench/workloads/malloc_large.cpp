// malloc-large: large blocks (5 to 25 MiB by default) allocated, touched and
// freed in a loop, with a few of them live at a time. Measures the large
// allocation path: mapping, unmapping, page faults and any caching of large
// regions.
#include "bench_common.hpp"

int main(int argc, char** argv) {
  bench::Args args(argc, argv, "[--iters N] [--live N] [--min BYTES] [--max BYTES]");
  const int64_t iters = args.get("iters", 500);
  const size_t live = static_cast<size_t>(args.get("live", 2));
  const size_t min_size = static_cast<size_t>(args.get("min", 5 << 20));
  const size_t max_size = static_cast<size_t>(args.get("max", 25 << 20));
  args.finish();
  if (iters < 1 || live < 1 || min_size < 1 || max_size < min_size) bench::die("bad arguments");

  bench::Timer timer;
  struct Big {
    void* p = nullptr;
    size_t size = 0;
    uint64_t tag = 0;
  };
  std::vector<Big> ring(live);
  bench::Rng rng(5);
  bench::Ledger ledger;
  for (int64_t i = 0; i < iters; ++i) {
    Big& b = ring[static_cast<size_t>(i) % live];
    if (b.p) {
      bench::check(b.p, b.size, b.tag);
      ledger.on_free(b.tag, b.size);
      std::free(b.p);
    }
    b.size = rng.range(min_size, max_size);
    b.tag = rng.next();
    b.p = bench::xmalloc(b.size);
    bench::fill(b.p, b.size, b.tag);  // writes one byte per page: touches all of it
    ledger.on_alloc(b.tag, b.size);
  }
  for (Big& b : ring)
    if (b.p) {
      bench::check(b.p, b.size, b.tag);
      ledger.on_free(b.tag, b.size);
      std::free(b.p);
    }
  bench::SharedLedger total;
  total.add(ledger);
  total.report("malloc-large");
  timer.report("malloc-large");
  return 0;
}
