// The modes strata chooses at start-up: explicit commit under strict
// overcommit (forced with STRATA_OVERCOMMIT=strict), the data-segment heap
// (STRATA_OPTIONS=brk=1), guard sampling (guard_sample_rate=N), check
// mode (check=3), and the slab map, or frees without it where the address
// space is limited (RLIMIT_AS, set by the test's command). Each test
// applies only to the run that sets its mode (see tests/CMakeLists.txt) and
// skips elsewhere.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <strata/strata.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace {

using strata_test::escape;
using strata_test::kKiB;
using strata_test::kMiB;
using strata_test::opaque;

bool env_is(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strstr(v, value) != nullptr;
}

struct Mapping {
  uintptr_t start = 0;
  uintptr_t end = 0;
  std::string perms;
  std::string name;
};

std::vector<Mapping> read_maps() {
  std::vector<Mapping> maps;
  FILE* f = std::fopen("/proc/self/maps", "r");
  if (f == nullptr) return maps;
  char line[512];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    Mapping m;
    char perms[8] = {};
    char name[256] = {};
    unsigned long start = 0, end = 0;
    if (std::sscanf(line, "%lx-%lx %7s %*s %*s %*s %255s", &start, &end, perms, name) >= 3) {
      m.start = start;
      m.end = end;
      m.perms = perms;
      m.name = name;
      maps.push_back(m);
    }
  }
  std::fclose(f);
  return maps;
}

Mapping mapping_of(const void* p) {
  auto address = reinterpret_cast<uintptr_t>(p);
  for (const Mapping& m : read_maps()) {
    if (address >= m.start && address < m.end) return m;
  }
  return {};
}

// Bytes the kernel charges under strict overcommit: private writable mappings.
size_t charged_bytes() {
  size_t total = 0;
  for (const Mapping& m : read_maps()) {
    if (m.perms.size() == 4 && m.perms[1] == 'w' && m.perms[3] == 'p') total += m.end - m.start;
  }
  return total;
}

// strata's statistics, from the preloaded library (found with dlsym: the
// test binary links no allocator of its own). False without it.
bool read_stats(strata_stats* stats) {
  static auto get =
      reinterpret_cast<int (*)(strata_stats*)>(dlsym(RTLD_DEFAULT, "strata_stats_get"));
  if (get == nullptr) return false;
  stats->size = sizeof *stats;
  return get(stats) == 0 && stats->size == sizeof *stats;
}

constexpr uintptr_t kSegment = 4 * kMiB;

TEST(StrictOvercommit, SmallBlocksCommitTheirSlabNotTheSegment) {
  if (!env_is("STRATA_OVERCOMMIT", "strict")) GTEST_SKIP() << "run with STRATA_OVERCOMMIT=strict";
  void* p = std::malloc(opaque<size_t>(32));
  ASSERT_NE(p, nullptr);
  Mapping m = mapping_of(p);
  EXPECT_EQ(m.perms, "rw-p");
  EXPECT_LE(m.end - m.start, 1 * kMiB) << "the committed range around a small block";
  // The rest of its segment is reserved, not committed.
  uintptr_t segment = reinterpret_cast<uintptr_t>(p) & ~(kSegment - 1);
  bool reserved_seen = false;
  for (const Mapping& r : read_maps()) {
    if (r.start >= segment && r.end <= segment + kSegment && r.perms == "---p")
      reserved_seen = true;
  }
  EXPECT_TRUE(reserved_seen);
  std::free(p);
}

TEST(StrictOvercommit, TrimmedMemoryIsNoLongerCharged) {
  if (!env_is("STRATA_OVERCOMMIT", "strict")) GTEST_SKIP() << "run with STRATA_OVERCOMMIT=strict";
  malloc_trim(0);
  size_t before = charged_bytes();
  std::vector<void*> blocks;
  for (int i = 0; i < 64 * 1024; ++i) {
    void* p = std::malloc(opaque<size_t>(512));
    ASSERT_NE(p, nullptr);
    std::memset(p, 1, 512);
    blocks.push_back(p);
  }
  size_t peak = charged_bytes();
  EXPECT_GE(peak, before + 24 * kMiB) << "32 MiB of blocks must be committed";
  for (void* p : blocks) std::free(p);
  blocks.clear();
  blocks.shrink_to_fit();
  EXPECT_EQ(malloc_trim(0), 1);
  EXPECT_LE(charged_bytes(), before + 4 * kMiB) << "peak was " << (peak - before) / kMiB << " MiB";
}

TEST(BrkHeap, SmallBlocksComeFromTheDataSegment) {
  if (!env_is("STRATA_OPTIONS", "brk=1")) GTEST_SKIP() << "run with STRATA_OPTIONS=brk=1";
  void* p = std::malloc(opaque<size_t>(48));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(mapping_of(p).name, "[heap]");
  std::free(p);
}

TEST(BrkHeap, TheBreakComesDownWhenTheTopIsFree) {
  if (!env_is("STRATA_OPTIONS", "brk=1")) GTEST_SKIP() << "run with STRATA_OPTIONS=brk=1";
  malloc_trim(0);
  auto start = reinterpret_cast<uintptr_t>(sbrk(0));
  std::vector<void*> blocks;
  for (int i = 0; i < 32 * 1024; ++i) {
    void* p = std::malloc(opaque<size_t>(1000));
    ASSERT_NE(p, nullptr);
    escape(p);
    blocks.push_back(p);
  }
  auto peak = reinterpret_cast<uintptr_t>(sbrk(0));
  EXPECT_GE(peak, start + 16 * kMiB) << "32 MiB of blocks must move the break";
  for (void* p : blocks) std::free(p);
  blocks.clear();
  blocks.shrink_to_fit();
  malloc_trim(0);
  EXPECT_LT(reinterpret_cast<uintptr_t>(sbrk(0)), peak - 16 * kMiB);
}

// Sampling counts every small allocation, fast path included: with
// guard_sample_rate=100, a loop of malloc/free and new/delete pairs (which
// never leaves the fast path otherwise) guards one block in about 100.
TEST(Sampling, GuardsOneSmallAllocationInN) {
  if (!env_is("STRATA_OPTIONS", "guard_sample_rate=100"))
    GTEST_SKIP() << "run with STRATA_OPTIONS=guard_sample_rate=100";
  strata_stats stats;
  ASSERT_TRUE(read_stats(&stats)) << "run under LD_PRELOAD of libstrata.so";
  auto guarded = [&stats] {
    EXPECT_TRUE(read_stats(&stats));
    return stats.guarded;
  };
  constexpr int kPairs = 100000;
  unsigned long long before = guarded();
  for (int i = 0; i < kPairs; ++i) {
    void* p = std::malloc(opaque<size_t>(48));
    escape(p);
    std::free(p);
  }
  for (int i = 0; i < kPairs; ++i) {
    char* p = new char[opaque<size_t>(200)];
    escape(p);
    delete[] p;
  }
  unsigned long long sampled = guarded() - before;
  // Periods are uniform in [1, 199]: 2000 expected, within a few percent.
  EXPECT_GT(sampled, 1700u);
  EXPECT_LT(sampled, 2300u);
}

// Check mode gives every live block a slot in a table; a thread keeps a few
// free slots of its own and hands them back when it exits. Threads that
// come and go must not keep slots out of use: 400 short-lived threads, each
// allocating and freeing 20 blocks, would otherwise leave at least 64 slots
// each behind (25,600), where the table needs a few hundred.
TEST(CheckMode, ExitedThreadsGiveTheirTableSlotsBack) {
  if (!env_is("STRATA_OPTIONS", "check=3")) GTEST_SKIP() << "run with STRATA_OPTIONS=check=3";
  strata_stats stats;
  ASSERT_TRUE(read_stats(&stats)) << "run under LD_PRELOAD of libstrata.so";
  auto slots = [&stats] {
    EXPECT_TRUE(read_stats(&stats));
    return stats.check_slots;
  };
  unsigned long long before = slots();
  EXPECT_GT(before, 0u) << "check mode is off";
  for (int wave = 0; wave < 100; ++wave) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([] {
        void* blocks[20];
        for (void*& p : blocks) p = std::malloc(opaque<size_t>(32));
        for (void* p : blocks) std::free(p);
      });
    }
    for (std::thread& t : threads) t.join();
  }
  EXPECT_LT(slots() - before, 2048u);
}

constexpr size_t kSlabMapBytes = size_t{32} << 30;  // 16 bytes per 64 KiB of 2^47 bytes

bool address_space_limited() {
  rlimit limit{};
  return getrlimit(RLIMIT_AS, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY;
}

// Read-only anonymous mappings of 32 GiB or more in all (the kernel merges
// the map with read-only neighbours, and splits it where it is writable).
bool slab_map_present() {
  size_t read_only = 0;
  for (const Mapping& m : read_maps()) {
    if (m.perms == "r--p" && m.name.empty()) read_only += m.end - m.start;
  }
  return read_only >= kSlabMapBytes - 64 * kMiB;
}

// Bytes of anonymous mappings of at least `size` that core dumps would
// carry (no "dd" in their VmFlags).
size_t dumped_large_bytes(size_t size) {
  size_t total = 0;
  FILE* f = std::fopen("/proc/self/smaps", "r");
  if (f == nullptr) return 0;
  char line[512];
  unsigned long start = 0, end = 0;
  bool anonymous = false;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    char name[256] = {};
    unsigned long from = 0, to = 0;
    if (std::sscanf(line, "%lx-%lx %*s %*s %*s %*s %255s", &from, &to, name) >= 2) {
      start = from;
      end = to;
      anonymous = name[0] == '\0';
    } else if (std::strncmp(line, "VmFlags:", 8) == 0 && anonymous && end - start >= size &&
               std::strstr(line, " dd") == nullptr) {
      total += end - start;
    }
  }
  std::fclose(f);
  return total;
}

// The slab map is address space, not memory: 32 GiB mapped read-only, which
// strict overcommit does not charge; only the pages describing segments
// become writable (a page for each 16 MiB of address space that holds one).
// Core dumps leave it out: piped to a handler, they would carry every page.
TEST(SlabMap, IsAddressSpaceNotMemory) {
  if (address_space_limited()) GTEST_SKIP() << "the address space is limited";
  strata_stats stats;
  ASSERT_TRUE(read_stats(&stats)) << "run under LD_PRELOAD of libstrata.so";
  std::vector<void*> blocks;
  for (int i = 0; i < 4096; ++i) blocks.push_back(std::malloc(opaque<size_t>(4000)));
  EXPECT_TRUE(slab_map_present());
  EXPECT_LT(charged_bytes(), kSlabMapBytes / 16);
  EXPECT_EQ(dumped_large_bytes(kSlabMapBytes / 4), 0u);
  for (void* p : blocks) std::free(p);
}

// Without room for the slab map, every free takes the slow path, which
// finds live blocks through the segment map and puts them in the bin as the
// fast path would: the block just freed is the next one handed out, a block
// freed by another thread is taken in, and misuse is still caught there.
TEST(SlabMap, FreesWorkWithoutIt) {
  if (!address_space_limited()) GTEST_SKIP() << "run with RLIMIT_AS below 32 GiB";
  EXPECT_FALSE(slab_map_present());
  for (size_t size : {1, 32, 500, 1024, 1025, 5000, 100000}) {
    void* p = std::malloc(opaque(size));
    ASSERT_NE(p, nullptr);
    std::memset(p, 1, size);
    std::free(p);
    EXPECT_EQ(std::malloc(opaque(size)), p) << size;
    EXPECT_GE(malloc_usable_size(p), size);
    std::free(p);
  }
  std::vector<void*> blocks(10000);
  std::thread([&blocks] {
    for (void*& p : blocks) p = std::malloc(opaque<size_t>(64));
  }).join();
  std::set<void*> distinct(blocks.begin(), blocks.end());
  EXPECT_EQ(distinct.size(), blocks.size());
  for (void* p : blocks) std::free(p);
  void* p = std::malloc(opaque<size_t>(64));
  EXPECT_TRUE(distinct.count(p) == 1) << "a block freed here comes back first";
  std::free(p);
  EXPECT_DEATH(std::free(p), "double free");
}

}  // namespace
