// realloc-growth: buffers grown with realloc, as vectors and strings grow.
//
// 1. Four buffers double in turn from 16 B up to --max bytes (interleaved,
//    so they cannot all simply grow in place).
// 2. Many small strings grow by short appends, round-robin, the way string
//    builders and line buffers do.
// 3. One buffer grows by a factor of 1.5 up to --max bytes.
// Every step checks that realloc kept the contents.
#include "bench_common.hpp"

namespace {

struct Buf {
  void* p = nullptr;
  size_t size = 0;
  uint64_t tag = 0;
};

void grow(Buf& b, size_t new_size, bench::Rng& rng, bench::Ledger& ledger) {
  if (b.p) ledger.on_free(b.tag, b.size);
  void* q = bench::xrealloc(b.p, new_size);
  if (b.p) bench::check_prefix(q, b.size, new_size, b.tag);
  b.p = q;
  b.size = new_size;
  b.tag = rng.next();
  bench::fill(b.p, b.size, b.tag);
  ledger.on_alloc(b.tag, b.size);
}

void release(Buf& b, bench::Ledger& ledger) {
  bench::check(b.p, b.size, b.tag);
  ledger.on_free(b.tag, b.size);
  std::free(b.p);
  b = Buf{};
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv, "[--max BYTES] [--strings N] [--appends N] [--repeat N]");
  const size_t max_size = static_cast<size_t>(args.get("max", 256 << 20));
  const size_t strings = static_cast<size_t>(args.get("strings", 20000));
  const int64_t appends = args.get("appends", 200);  // per string
  const int64_t repeat = args.get("repeat", 2);
  args.finish();
  if (max_size < 64 || strings < 1 || appends < 1 || repeat < 1) bench::die("bad arguments");

  bench::Timer timer;
  bench::Rng rng(31337);
  bench::Ledger ledger;
  for (int64_t r = 0; r < repeat; ++r) {
    // 1. Doubling, four buffers in turn.
    Buf vec[4];
    for (size_t size = 16; size <= max_size; size *= 2)
      for (Buf& b : vec) grow(b, size, rng, ledger);
    for (Buf& b : vec) release(b, ledger);

    // 2. Small appends to many strings.
    std::vector<Buf> strs(strings);
    for (int64_t a = 0; a < appends; ++a)
      for (Buf& s : strs) grow(s, s.size + rng.range(1, 64), rng, ledger);
    for (Buf& s : strs) release(s, ledger);

    // 3. Growth by 1.5.
    Buf one;
    for (size_t size = 64; size <= max_size; size += size / 2) grow(one, size, rng, ledger);
    release(one, ledger);
  }
  bench::SharedLedger total;
  total.add(ledger);
  total.report("realloc-growth");
  timer.report("realloc-growth");
  return 0;
}
