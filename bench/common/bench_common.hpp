// Helpers shared by the benchmark workloads: argument parsing, a seeded RNG,
// block tagging and verification, a conservation ledger, RSS reading and a
// thread launcher.
//
// Every workload allocates only through malloc/calloc/realloc/free so that it
// measures whichever allocator is preloaded. Its standard output must be the
// same under every allocator: only deterministic values (checksums, counts)
// are printed there, except lines starting with "rss:", which the runner
// leaves out of the comparison. Timing goes to standard error.
#ifndef STRATA_BENCH_COMMON_HPP
#define STRATA_BENCH_COMMON_HPP

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <unistd.h>

namespace bench {

// ---------------------------------------------------------------------------
// Command line: "--name value" or "--name=value". Unknown names are an error,
// so a typo in the runner's table is caught instead of silently ignored.
class Args {
 public:
  Args(int argc, char** argv, std::string_view usage) : usage_(usage) {
    prog_ = argc > 0 ? argv[0] : "bench";
    for (int i = 1; i < argc; ++i) {
      std::string_view a = argv[i];
      if (a == "-h" || a == "--help") {
        std::printf("usage: %s %s\n", prog_.c_str(), usage_.c_str());
        std::exit(0);
      }
      if (a.substr(0, 2) != "--") fail("unexpected argument", a);
      a.remove_prefix(2);
      const auto eq = a.find('=');
      if (eq != std::string_view::npos) {
        items_.push_back({std::string(a.substr(0, eq)), std::string(a.substr(eq + 1)), false});
      } else {
        if (i + 1 >= argc) fail("missing value for", a);
        items_.push_back({std::string(a), argv[++i], false});
      }
    }
  }

  // Integer option with an optional K/M/G suffix (powers of 1024).
  int64_t get(std::string_view name, int64_t fallback) {
    for (auto& it : items_) {
      if (it.name != name) continue;
      it.used = true;
      char* end = nullptr;
      long long v = std::strtoll(it.value.c_str(), &end, 10);
      if (end == it.value.c_str()) fail("not a number:", it.value);
      switch (*end) {
        case 'k':
        case 'K':
          v <<= 10;
          ++end;
          break;
        case 'm':
        case 'M':
          v <<= 20;
          ++end;
          break;
        case 'g':
        case 'G':
          v <<= 30;
          ++end;
          break;
        default:
          break;
      }
      if (*end != '\0') fail("bad number:", it.value);
      return v;
    }
    return fallback;
  }

  // Call after all get()s: rejects options that no get() asked for.
  void finish() const {
    for (const auto& it : items_)
      if (!it.used) fail("unknown option --", it.name);
  }

 private:
  struct Item {
    std::string name, value;
    bool used;
  };
  [[noreturn]] void fail(const char* what, std::string_view detail) const {
    std::fprintf(stderr, "%s: %s %.*s\nusage: %s %s\n", prog_.c_str(), what,
                 static_cast<int>(detail.size()), detail.data(), prog_.c_str(), usage_.c_str());
    std::exit(2);
  }
  std::string prog_, usage_;
  std::vector<Item> items_;
};

// ---------------------------------------------------------------------------
// Deterministic RNG (xoshiro256**, seeded through splitmix64).
inline uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// A 64-bit mixing function, for checksums and tags.
inline uint64_t mix64(uint64_t x) { return splitmix64(x); }

class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (auto& w : s_) w = splitmix64(seed);
  }
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, n).
  uint64_t below(uint64_t n) { return n ? next() % n : 0; }
  // Uniform in [lo, hi].
  uint64_t range(uint64_t lo, uint64_t hi) { return lo + below(hi - lo + 1); }
  // True with probability num/den.
  bool chance(uint64_t num, uint64_t den) { return below(den) < num; }
  // Log-uniform in [lo, hi]: as many sizes in 16..32 as in 32K..64K, which
  // is closer to real programs (mostly small, a long tail of large) than a
  // uniform draw.
  size_t log_size(size_t lo, size_t hi) {
    const int lo_bit = 63 - __builtin_clzll(lo);
    const int hi_bit = 63 - __builtin_clzll(hi);
    const int bit = static_cast<int>(range(lo_bit, hi_bit));
    const uint64_t base = 1ULL << bit;
    uint64_t s = base + below(base);
    if (s < lo) s = lo;
    if (s > hi) s = hi;
    return s;
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

// ---------------------------------------------------------------------------
// Blocks carry a tag so that corruption or a lost block is noticed. fill()
// writes the tag in the first 8 bytes (one byte of it in smaller blocks), a
// byte derived from it at every page boundary and in the last byte; check()
// reads the same places back. Blocks must be at least 1 byte long.
[[noreturn]] inline void die(const char* what) {
  std::fprintf(stderr, "fatal: %s\n", what);
  std::fflush(stdout);
  std::_Exit(1);
}

inline void* xmalloc(size_t size) {
  void* p = std::malloc(size);
  if (!p) die("malloc returned NULL");
  return p;
}

inline void* xrealloc(void* p, size_t size) {
  void* q = std::realloc(p, size);
  if (!q) die("realloc returned NULL");
  return q;
}

inline unsigned char tag_byte(uint64_t tag, size_t offset) {
  return static_cast<unsigned char>((tag >> ((offset >> 12) & 56)) ^ (offset >> 12) ^ 0x5a);
}

inline void fill(void* p, size_t size, uint64_t tag) {
  auto* b = static_cast<unsigned char*>(p);
  if (size >= sizeof(uint64_t)) {
    std::memcpy(b, &tag, sizeof tag);
  } else {
    b[0] = tag_byte(tag, 0);
  }
  for (size_t off = 4096; off < size; off += 4096) b[off] = tag_byte(tag, off);
  if (size != sizeof(uint64_t)) b[size - 1] = tag_byte(tag, size - 1);  // else: inside the tag
}

inline void check(const void* p, size_t size, uint64_t tag) {
  const auto* b = static_cast<const unsigned char*>(p);
  bool ok;
  if (size >= sizeof(uint64_t)) {
    uint64_t t;
    std::memcpy(&t, b, sizeof t);
    ok = t == tag;
  } else {
    ok = b[0] == tag_byte(tag, 0);
  }
  for (size_t off = 4096; ok && off < size; off += 4096) ok = b[off] == tag_byte(tag, off);
  if (ok && size != sizeof(uint64_t)) ok = b[size - 1] == tag_byte(tag, size - 1);
  if (!ok) die("block contents changed");
}

// Like check(), but after a realloc from old_size: only what survives the
// move (the first min(old, new) bytes) is compared.
inline void check_prefix(const void* p, size_t old_size, size_t new_size, uint64_t tag) {
  const size_t keep = old_size < new_size ? old_size : new_size;
  const auto* b = static_cast<const unsigned char*>(p);
  bool ok;
  if (old_size >= sizeof(uint64_t)) {
    ok = std::memcmp(b, &tag, keep < sizeof tag ? keep : sizeof tag) == 0;
  } else {
    ok = b[0] == tag_byte(tag, 0);
  }
  for (size_t off = 4096; ok && off < keep; off += 4096) ok = b[off] == tag_byte(tag, off);
  if (ok && keep == old_size && old_size != sizeof(uint64_t))
    ok = b[old_size - 1] == tag_byte(tag, old_size - 1);
  if (!ok) die("realloc did not preserve the block contents");
}

// ---------------------------------------------------------------------------
// Conservation ledger: every allocation adds mix(tag, size) to `allocated`,
// every free adds the same value of the block it frees to `freed`. When all
// blocks are gone the two must match whichever thread freed what, so the
// allocated sum is a checksum that does not depend on thread scheduling.
struct Ledger {
  uint64_t allocated = 0, freed = 0, allocs = 0, frees = 0;
  static uint64_t value(uint64_t tag, size_t size) { return mix64(tag * 31 + size); }
  void on_alloc(uint64_t tag, size_t size) {
    allocated += value(tag, size);
    ++allocs;
  }
  void on_free(uint64_t tag, size_t size) {
    freed += value(tag, size);
    ++frees;
  }
};

// Sums per-thread ledgers (atomically, from the threads themselves).
struct SharedLedger {
  std::atomic<uint64_t> allocated{0}, freed{0}, allocs{0}, frees{0};
  void add(const Ledger& l) {
    allocated += l.allocated;
    freed += l.freed;
    allocs += l.allocs;
    frees += l.frees;
  }
  // Prints the result line (or fails if a block was lost or freed twice).
  void report(const char* name) const {
    if (allocated.load() != freed.load() || allocs.load() != frees.load()) {
      std::printf("%s: MISMATCH allocs=%" PRIu64 " frees=%" PRIu64 "\n", name, allocs.load(),
                  frees.load());
      die("allocation ledger does not balance");
    }
    std::printf("%s: allocs=%" PRIu64 " checksum=%016" PRIx64 "\n", name, allocs.load(),
                allocated.load());
  }
};

// Writes every byte of a small object `passes` times (read-modify-write, so
// nothing can be elided) and returns the sum of its final bytes. Used by the
// false-sharing workloads, whose cost is in these writes.
inline uint64_t hammer(void* object, size_t size, int64_t passes) {
  volatile unsigned char* p = static_cast<unsigned char*>(object);
  for (size_t k = 0; k < size; ++k) p[k] = 0;
  for (int64_t w = 0; w < passes; ++w)
    for (size_t k = 0; k < size; ++k) p[k] = static_cast<unsigned char>(p[k] + 1);
  uint64_t sum = 0;
  for (size_t k = 0; k < size; ++k) sum += p[k];
  return sum;
}

// The loop of the false-sharing workloads: `count` times, allocate a small
// object, hammer it, free it. Returns the sum of the hammer results.
inline uint64_t hammer_fresh_objects(size_t size, int64_t passes, int64_t count) {
  uint64_t sum = 0;
  for (int64_t i = 0; i < count; ++i) {
    void* p = xmalloc(size);
    sum += hammer(p, size, passes);
    std::free(p);
  }
  return sum;
}

// ---------------------------------------------------------------------------
// Resident set size of this process in bytes (from /proc/self/statm).
inline size_t rss_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  if (std::fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
  std::fclose(f);
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// ---------------------------------------------------------------------------
// Runs fn(0) .. fn(n-1) on n threads and waits for them.
inline void run_threads(int n, const std::function<void(int)>& fn) {
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) threads.emplace_back(fn, i);
  for (auto& t : threads) t.join();
}

// Wall-clock timer; workloads report elapsed time on standard error.
class Timer {
 public:
  Timer() : start_(std::chrono::steady_clock::now()) {}
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  void report(const char* name) const { std::fprintf(stderr, "%s: %.3f s\n", name, seconds()); }

 private:
  std::chrono::steady_clock::time_point start_;
};

}  // namespace bench

#endif  // STRATA_BENCH_COMMON_HPP
