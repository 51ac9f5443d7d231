// strata's statistics and option API (include/strata/strata.h), through the
// prefixed library: only the strata_* calls below reach strata's heap, so
// the counts move by exactly what the tests do.
#include <errno.h>
#include <gtest/gtest.h>
#include <strata/strata.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"
namespace {

using strata_test::kKiB;
using strata_test::kMiB;
using strata_test::opaque;

strata_stats get() {
  strata_stats s;
  std::memset(&s, 0, sizeof s);
  s.size = sizeof s;
  EXPECT_EQ(strata_stats_get(&s), 0);
  return s;
}

// The class a request of `size` bytes lands in.
size_t class_of(const strata_stats& s, size_t size) {
  for (size_t i = 0; i < s.num_classes; ++i) {
    if (s.classes[i].block_size >= size) return i;
  }
  ADD_FAILURE() << "no class for " << size;
  return 0;
}

// How many of blocks[begin, end) are blocks of `block_size`, and their bytes
// in all. A heap whose slabs of a class are all in use may hand out a free
// block of one of the next classes instead (borrowing): such a block counts
// in its own class.
struct BlockCount {
  size_t in_class = 0;
  unsigned long long bytes = 0;
};
BlockCount count_blocks(const std::vector<void*>& blocks, size_t begin, size_t end,
                        size_t block_size) {
  BlockCount count;
  for (size_t i = begin; i < end; ++i) {
    size_t usable = strata_malloc_usable_size(blocks[i]);
    count.in_class += usable == block_size;
    count.bytes += usable;
  }
  return count;
}

TEST(StatsGet, RejectsNullAndStructsTooSmall) {
  errno = 0;
  EXPECT_EQ(strata_stats_get(nullptr), -1);
  EXPECT_EQ(errno, EINVAL);
  strata_stats s;
  s.size = offsetof(strata_stats, allocated) - 1;
  errno = 0;
  EXPECT_EQ(strata_stats_get(&s), -1);
  EXPECT_EQ(errno, EINVAL);
}

TEST(StatsGet, FillsOnlyWhatTheCallerHasRoomFor) {
  // A caller built against an older, shorter struct.
  strata_stats s;
  std::memset(&s, 0xee, sizeof s);
  const size_t older = offsetof(strata_stats, mallocs);
  s.size = older;
  ASSERT_EQ(strata_stats_get(&s), 0);
  EXPECT_EQ(s.size, older);
  EXPECT_EQ(s.version, unsigned{STRATA_STATS_VERSION});
  const auto* bytes = reinterpret_cast<const unsigned char*>(&s);
  for (size_t i = older; i < sizeof s; ++i) ASSERT_EQ(bytes[i], 0xee) << "byte " << i;
  // A caller built against a longer one gets what this library knows.
  struct Longer {
    strata_stats stats;
    unsigned long long future[4];
  } longer;
  std::memset(&longer, 0xee, sizeof longer);
  longer.stats.size = sizeof longer;
  ASSERT_EQ(strata_stats_get(&longer.stats), 0);
  EXPECT_EQ(longer.stats.size, sizeof(strata_stats));
  EXPECT_EQ(longer.future[0], 0xeeeeeeeeeeeeeeeeull);
}

TEST(StatsGet, DescribesEverySizeClass) {
  strata_stats s = get();
  ASSERT_EQ(s.num_classes, 48u);
  EXPECT_EQ(s.classes[0].block_size, 16u);
  EXPECT_EQ(s.classes[47].block_size, 128 * kKiB);
  for (size_t i = 1; i < s.num_classes; ++i)
    EXPECT_GT(s.classes[i].block_size, s.classes[i - 1].block_size);
  for (size_t i = s.num_classes; i < STRATA_STATS_MAX_CLASSES; ++i) {
    EXPECT_EQ(s.classes[i].block_size, 0u);
    EXPECT_EQ(s.classes[i].allocations, 0u);
  }
}

TEST(StatsGet, CountsSmallBlocksPerClass) {
  constexpr size_t kCount = 1000, kSize = 100, kFreed = 600;
  strata_stats before = get();
  const size_t cls = class_of(before, kSize);
  const unsigned long long block = before.classes[cls].block_size;
  EXPECT_EQ(block, 112u);
  std::vector<void*> blocks;
  for (size_t i = 0; i < kCount; ++i) blocks.push_back(strata_malloc(opaque(kSize)));
  strata_stats during = get();
  const BlockCount all = count_blocks(blocks, 0, kCount, block);
  EXPECT_GT(all.in_class, kCount / 2);
  EXPECT_EQ(during.classes[cls].allocations, before.classes[cls].allocations + all.in_class);
  EXPECT_EQ(during.classes[cls].in_use, before.classes[cls].in_use + all.in_class);
  EXPECT_EQ(during.classes[cls].frees, before.classes[cls].frees);
  EXPECT_GE(during.classes[cls].slabs, 1u);
  EXPECT_GE(during.classes[cls].slab_bytes, during.classes[cls].in_use * block);
  EXPECT_EQ(during.mallocs, before.mallocs + kCount);
  EXPECT_EQ(during.allocated, before.allocated + all.bytes);
  const BlockCount freed = count_blocks(blocks, 0, kFreed, block);
  for (size_t i = 0; i < kFreed; ++i) strata_free(blocks[i]);
  strata_stats after = get();
  EXPECT_EQ(after.classes[cls].allocations, during.classes[cls].allocations);
  EXPECT_EQ(after.classes[cls].frees, during.classes[cls].frees + freed.in_class);
  EXPECT_EQ(after.classes[cls].in_use, during.classes[cls].in_use - freed.in_class);
  EXPECT_EQ(after.frees, during.frees + kFreed);
  EXPECT_EQ(after.allocated, during.allocated - freed.bytes);
  for (size_t i = kFreed; i < kCount; ++i) strata_free(blocks[i]);
  EXPECT_EQ(get().classes[cls].in_use, before.classes[cls].in_use);
}

TEST(StatsGet, CountsLargeBlocks) {
  strata_stats before = get();
  void* blocks[3];
  for (void*& p : blocks) p = strata_malloc(opaque(3 * kMiB));
  strata_stats during = get();
  EXPECT_EQ(during.large_allocations, before.large_allocations + 3);
  EXPECT_EQ(during.large_in_use, before.large_in_use + 3);
  EXPECT_GE(during.large_bytes, before.large_bytes + 9 * kMiB);
  EXPECT_GE(during.allocated, before.allocated + 9 * kMiB);
  EXPECT_EQ(during.mallocs, before.mallocs + 3);
  for (void* p : blocks) strata_free(p);
  strata_stats after = get();
  EXPECT_EQ(after.large_frees, before.large_frees + 3);
  EXPECT_EQ(after.large_in_use, before.large_in_use);
  EXPECT_EQ(after.large_bytes, before.large_bytes);
  EXPECT_GE(after.large_max_mapped_bytes, after.large_mapped_bytes);
  EXPECT_GE(after.large_max_mapped, after.large_mapped);
}

TEST(StatsGet, CountsRemoteFrees) {
  constexpr size_t kCount = 100;
  void* mine = strata_malloc(opaque(size_t{8}));  // this thread has a heap
  strata_trim(0);  // remote frees earlier tests left pending are counted now
  strata_stats before = get();
  const size_t cls = class_of(before, 48);
  std::vector<void*> blocks(kCount);
  std::thread([&] {
    for (void*& p : blocks) p = strata_malloc(opaque(size_t{48}));
  }).join();
  strata_stats during = get();
  const size_t in_class = count_blocks(blocks, 0, kCount, 48).in_class;
  EXPECT_EQ(during.classes[cls].allocations, before.classes[cls].allocations + in_class);
  for (void* p : blocks) strata_free(p);
  // The owner (parked: its thread ended) counts them as it takes them back:
  // the trim empties this thread's bin onto their slab's remote list and
  // has the owner collect them.
  strata_trim(0);
  strata_stats collected = get();
  EXPECT_EQ(collected.remote_frees, before.remote_frees + kCount);
  EXPECT_EQ(collected.classes[cls].in_use, before.classes[cls].in_use);
  EXPECT_EQ(collected.classes[cls].frees, before.classes[cls].frees + in_class);
  EXPECT_GE(collected.heaps, 2u);
  strata_free(mine);
}

// A thread that never allocated has no heap to count in: its frees of
// other threads' blocks are counted by their owner when it takes them back.
TEST(StatsGet, CountsRemoteFreesOfAThreadWithoutAHeap) {
  constexpr size_t kCount = 100;
  std::vector<void*> blocks(kCount);
  for (void*& p : blocks) p = strata_malloc(opaque(size_t{48}));
  strata_trim(0);  // remote frees earlier tests left pending are counted now
  strata_stats before = get();
  std::thread([&] {
    for (void* p : blocks) strata_free(p);  // and nothing else
  }).join();
  strata_trim(0);  // this thread, their owner, collects them
  EXPECT_EQ(get().remote_frees, before.remote_frees + kCount);
}

TEST(StatsGet, SnapshotsWhileOtherThreadsAllocate) {
  // Other threads' counters are read while they run: the snapshot stays
  // sane (and, under ThreadSanitizer, those reads are the accepted races).
  std::atomic<bool> stop{false};
  auto churn = [&] {
    std::vector<void*> blocks(64, nullptr);
    for (unsigned i = 0; !stop.load(std::memory_order_relaxed) || i < 20000; ++i) {
      void*& slot = blocks[i % blocks.size()];
      strata_free(slot);
      slot = strata_malloc(opaque(size_t{16} + (i * 40) % 3000));
    }
    for (void* p : blocks) strata_free(p);
  };
  std::thread a(churn), b(churn);
  for (int i = 0; i < 200; ++i) {
    strata_stats s = get();
    EXPECT_LE(s.frees, s.mallocs);
    for (size_t c = 0; c < s.num_classes; ++c) {
      EXPECT_EQ(s.classes[c].allocations, s.classes[c].frees + s.classes[c].in_use)
          << "class " << c;
    }
    char buf[64];
    EXPECT_GT(strata_stats_json(buf, sizeof buf), sizeof buf);
  }
  stop = true;
  a.join();
  b.join();
}

TEST(StatsGet, FiguresAreConsistent) {
  std::vector<void*> blocks;
  for (size_t i = 0; i < 500; ++i) blocks.push_back(strata_malloc(opaque(16 + i * 24)));
  for (size_t i = 0; i < blocks.size(); i += 2) strata_free(blocks[i]);
  strata_stats s = get();
  EXPECT_EQ(s.version, unsigned{STRATA_STATS_VERSION});
  EXPECT_EQ(s.size, sizeof s);
  EXPECT_EQ(s.mapped, s.active + s.dirty + s.cached + s.metadata);
  EXPECT_LE(s.allocated, s.active);
  EXPECT_GE(s.reserved, s.active);
  EXPECT_GT(s.metadata, 0u);
  EXPECT_GE(s.peak, s.active - s.large_bytes);
  EXPECT_LE(s.frees, s.mallocs);
  EXPECT_GE(s.heaps, s.heaps_in_use);
  EXPECT_GE(s.heaps_in_use, 1u);
  EXPECT_GE(s.segments, 1u);
  EXPECT_GT(s.resident, 0u);
  EXPECT_GE(s.peak_resident, s.resident);
  EXPECT_GT(s.minor_faults, 0u);
  unsigned long long allocations = 0, frees = 0, slabs = 0, small = 0;
  for (size_t i = 0; i < s.num_classes; ++i) {
    const strata_class_stats& c = s.classes[i];
    EXPECT_EQ(c.allocations, c.frees + c.in_use) << "class " << i;
    allocations += c.allocations;
    frees += c.frees;
    slabs += c.slabs;
    small += c.in_use * c.block_size;
  }
  EXPECT_EQ(s.mallocs, allocations + s.large_allocations);
  EXPECT_EQ(s.frees, frees + s.large_frees);
  EXPECT_EQ(s.slabs, slabs);
  EXPECT_EQ(s.allocated, small + s.large_bytes);
  for (size_t i = 1; i < blocks.size(); i += 2) strata_free(blocks[i]);
}

// ---- JSON -----------------------------------------------------------------------------

// A strict reader for the JSON strata writes: objects, arrays, strings
// without escapes, unsigned integers. Values are flattened into paths
// ("memory.allocated", "classes.3.block_size").
class Json {
 public:
  explicit Json(const std::string& text) : text_(text) {}
  bool parse(std::map<std::string, unsigned long long>* values, std::string* error) {
    values_ = values;
    if (!value("") || (skip(), pos_ != text_.size())) {
      *error = "invalid JSON at offset " + std::to_string(pos_) + ": " + text_.substr(pos_, 40);
      return false;
    }
    return true;
  }

 private:
  void skip() {
    while (pos_ < text_.size() && std::strchr(" \n\t\r", text_[pos_]) != nullptr) ++pos_;
  }
  bool eat(char c) {
    skip();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool string(std::string* out) {
    if (!eat('"')) return false;
    size_t end = text_.find('"', pos_);
    if (end == std::string::npos) return false;
    *out = text_.substr(pos_, end - pos_);
    if (out->find('\\') != std::string::npos) return false;
    pos_ = end + 1;
    return true;
  }
  bool value(const std::string& path) {
    skip();
    if (pos_ >= text_.size()) return false;
    std::string prefix = path.empty() ? "" : path + ".";
    if (eat('{')) {
      if (eat('}')) return true;
      do {
        std::string key;
        if (!string(&key) || !eat(':') || !value(prefix + key)) return false;
      } while (eat(','));
      return eat('}');
    }
    if (eat('[')) {
      if (eat(']')) return true;
      size_t index = 0;
      do {
        if (!value(prefix + std::to_string(index++))) return false;
      } while (eat(','));
      return eat(']');
    }
    size_t start = pos_;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
    if (pos_ == start) return false;
    (*values_)[path] = std::stoull(text_.substr(start, pos_ - start));
    return true;
  }

  const std::string& text_;
  size_t pos_ = 0;
  std::map<std::string, unsigned long long>* values_ = nullptr;
};

std::string json() {
  std::string text(strata_stats_json(nullptr, 0) + 256, '\0');
  size_t n = strata_stats_json(text.data(), text.size());
  EXPECT_LT(n, text.size());
  text.resize(std::strlen(text.c_str()));
  EXPECT_EQ(text.size(), n);
  return text;
}

TEST(StatsJson, FollowsSnprintfsContract) {
  size_t needed = strata_stats_json(nullptr, 0);
  EXPECT_GT(needed, 100u);
  char sentinel[4] = {'x', 'x', 'x', 'x'};
  EXPECT_GT(strata_stats_json(sentinel, 0), 100u);
  EXPECT_EQ(sentinel[0], 'x') << "wrote into a buffer of length 0";
  char small[10];
  std::memset(small, 'x', sizeof small);
  EXPECT_GT(strata_stats_json(small, sizeof small), sizeof small);
  EXPECT_EQ(std::strlen(small), sizeof small - 1);
  EXPECT_EQ(std::string(small), "{\"version");
  std::string whole = json();
  EXPECT_EQ(whole.front(), '{');
  EXPECT_EQ(whole.back(), '}');
}

TEST(StatsJson, IsValidAndCarriesTheStatistics) {
  std::vector<void*> blocks;
  for (int i = 0; i < 300; ++i) blocks.push_back(strata_malloc(opaque(size_t{700})));
  void* large = strata_malloc(opaque(2 * kMiB));
  strata_stats s = get();
  const size_t cls = class_of(s, 700);
  const size_t in_class =
      count_blocks(blocks, 0, blocks.size(), s.classes[cls].block_size).in_class;
  std::string text = json();
  std::map<std::string, unsigned long long> v;
  std::string error;
  ASSERT_TRUE(Json(text).parse(&v, &error)) << error;
  EXPECT_EQ(v["version"], unsigned{STRATA_STATS_VERSION});
  for (const char* key : {"memory.allocated",
                          "memory.active",
                          "memory.dirty",
                          "memory.cached",
                          "memory.metadata",
                          "memory.mapped",
                          "memory.reserved",
                          "memory.purged",
                          "memory.peak",
                          "calls.mallocs",
                          "calls.frees",
                          "calls.remote_frees",
                          "calls.refills",
                          "large.allocations",
                          "large.frees",
                          "large.in_use",
                          "large.bytes",
                          "large.mapped",
                          "large.mapped_bytes",
                          "large.max_mapped",
                          "large.max_mapped_bytes",
                          "large.cached",
                          "large.cached_bytes",
                          "large.mmap_threshold",
                          "structure.heaps",
                          "structure.heaps_in_use",
                          "structure.segments",
                          "structure.slabs",
                          "process.resident",
                          "process.peak_resident",
                          "process.minor_faults",
                          "process.major_faults"}) {
    EXPECT_EQ(v.count(key), 1u) << key;
  }
  // Nothing was allocated between the two snapshots.
  EXPECT_EQ(v["memory.allocated"], s.allocated);
  EXPECT_EQ(v["calls.mallocs"], s.mallocs);
  EXPECT_EQ(v["large.in_use"], s.large_in_use);
  EXPECT_EQ(v["memory.mapped"],
            v["memory.active"] + v["memory.dirty"] + v["memory.cached"] + v["memory.metadata"]);
  // One entry per class used, with the struct's numbers.
  bool found = false;
  for (size_t i = 0; v.count("classes." + std::to_string(i) + ".class") != 0; ++i) {
    std::string prefix = "classes." + std::to_string(i) + ".";
    size_t index = v[prefix + "class"];
    ASSERT_LT(index, s.num_classes);
    const strata_class_stats& c = s.classes[index];
    EXPECT_EQ(v[prefix + "block_size"], c.block_size);
    EXPECT_EQ(v[prefix + "allocations"], c.allocations);
    EXPECT_EQ(v[prefix + "frees"], c.frees);
    EXPECT_EQ(v[prefix + "in_use"], c.in_use);
    EXPECT_EQ(v[prefix + "in_use_bytes"], c.in_use * c.block_size);
    EXPECT_EQ(v[prefix + "slabs"], c.slabs);
    EXPECT_EQ(v[prefix + "slab_bytes"], c.slab_bytes);
    if (index == cls) {
      found = true;
      EXPECT_GE(c.in_use, in_class);
    }
  }
  EXPECT_TRUE(found) << "no entry for the class of 700-byte blocks:\n" << text;
  strata_free(large);
  for (void* p : blocks) strata_free(p);
}

// ---- The table ------------------------------------------------------------------------

std::string print_to_string() {
  FILE* f = tmpfile();
  if (f == nullptr) return {};
  strata_stats_print(fileno(f));
  std::string text;
  std::rewind(f);
  char chunk[4096];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) text.append(chunk, n);
  std::fclose(f);
  return text;
}

// 1234567 -> "1,234,567", as the table writes counts.
std::string grouped(unsigned long long n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

TEST(StatsPrint, WritesTheTable) {
  std::vector<void*> blocks;
  for (int i = 0; i < 1234; ++i) blocks.push_back(strata_malloc(opaque(size_t{3000})));
  void* large = strata_malloc(opaque(5 * kMiB));
  strata_stats s = get();
  std::string table = print_to_string();
  EXPECT_EQ(table.rfind("strata statistics for pid " + std::to_string(getpid()), 0), 0u) << table;
  for (const char* label :
       {"\n  allocated ", "\n  active ", "\n  dirty ", "\n  cached ", "\n  metadata ",
        "\n  mapped ", "\n  reserved ", "\n  purged ", "\n  resident ", "\n  page faults ",
        "\n  mallocs ", "\n  heaps ", "\n  class     block   allocations", "\n  large "}) {
    EXPECT_NE(table.find(label), std::string::npos) << "no \"" << label + 1 << "\" in\n" << table;
  }
  // The row of the class of 3000-byte blocks: index, block size, allocations.
  const size_t cls = class_of(s, 3000);
  const strata_class_stats& c = s.classes[cls];
  char start[64];
  std::snprintf(start, sizeof start, "\n  %5zu%10llu", cls, c.block_size);
  size_t at = table.find(start);
  ASSERT_NE(at, std::string::npos) << "no row for class " << cls << " in\n" << table;
  std::string row = table.substr(at + 1, table.find('\n', at + 1) - at - 1);
  EXPECT_NE(row.find(" " + grouped(c.allocations) + " "), std::string::npos) << row;
  EXPECT_NE(row.find(" " + grouped(c.in_use) + " "), std::string::npos) << row;
  // Every row is a class that was used.
  for (size_t i = 0; i < s.num_classes; ++i) {
    std::snprintf(start, sizeof start, "\n  %5zu%10llu", i, s.classes[i].block_size);
    bool used = s.classes[i].allocations != 0 || s.classes[i].slabs != 0;
    EXPECT_EQ(table.find(start) != std::string::npos, used) << "class " << i << "\n" << table;
  }
  strata_free(large);
  for (void* p : blocks) strata_free(p);
}

// ---- Options --------------------------------------------------------------------------

std::string option(const char* name) {
  char buf[64];
  EXPECT_EQ(strata_option_get(name, buf, sizeof buf), 0) << name;
  return buf;
}

TEST(Options, SetAndGetByName) {
  // Options the allocator does not read from other threads (glibc's tcache
  // and huge-page settings are accepted and kept, not acted upon).
  const std::string saved = option("tcache_count");
  EXPECT_EQ(strata_option_set("tcache_count", "2500"), 0);
  EXPECT_EQ(option("tcache_count"), "2500");
  EXPECT_EQ(strata_option_set("tcache_count", saved.c_str()), 0);
  EXPECT_EQ(option("tcache_count"), saved);
  EXPECT_EQ(strata_option_set("hugetlb", "2m"), 0);
  EXPECT_EQ(option("hugetlb"), std::to_string(2 * kMiB));
  EXPECT_EQ(strata_option_set("hugetlb", "0"), 0);
  EXPECT_EQ(strata_option_set("verbose", "on"), 0);
  EXPECT_EQ(option("verbose"), "true");
  EXPECT_EQ(strata_option_set("verbose", "false"), 0);
  EXPECT_EQ(option("verbose"), "false");
}

TEST(Options, RejectsUnknownNamesAndBadValues) {
  const std::string saved = option("tcache_count");
  const struct {
    const char* name;
    const char* value;
  } bad[] = {{"no_such_option", "1"}, {"tcache_count", "soon"},
             {"tcache_count", "-1"},  {"tcache_count", "65536"},
             {"perturb", "256"},      {"brk", "maybe"},
             {nullptr, "1"},          {"tcache_count", nullptr}};
  for (const auto& b : bad) {
    errno = 0;
    EXPECT_EQ(strata_option_set(b.name, b.value), -1)
        << (b.name ? b.name : "(null)") << "=" << (b.value ? b.value : "(null)");
    EXPECT_EQ(errno, EINVAL);
  }
  EXPECT_EQ(option("tcache_count"), saved);
  char buf[64];
  errno = 0;
  EXPECT_EQ(strata_option_get("no_such_option", buf, sizeof buf), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(strata_option_get("tcache_count", buf, 1), -1) << "the value does not fit";
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(strata_option_get(nullptr, buf, sizeof buf), -1);
  EXPECT_EQ(errno, EINVAL);
}

TEST(Options, ChangesTakeEffectAtOnce) {
  // perturb: every new block is filled with its complement.
  ASSERT_EQ(strata_option_set("perturb", "90"), 0);
  auto* p = static_cast<unsigned char*>(strata_malloc(opaque(size_t{200})));
  ASSERT_NE(p, nullptr);
  for (int i = 0; i < 200; ++i) ASSERT_EQ(p[i], 0xa5) << "byte " << i;
  strata_free(p);
  ASSERT_EQ(strata_option_set("perturb", "0"), 0);

  // mmap_threshold: a 100000-byte request gets its own mapping.
  const std::string saved = option("mmap_threshold");
  ASSERT_EQ(strata_option_set("mmap_threshold", "64k"), 0);
  EXPECT_EQ(option("mmap_threshold"), "65536");
  EXPECT_EQ(option("mmap_threshold_dynamic"), "false") << "as mallopt(M_MMAP_THRESHOLD)";
  strata_stats before = get();
  void* q = strata_malloc(opaque(size_t{100000}));
  strata_stats during = get();
  EXPECT_EQ(during.mmap_threshold, 64 * kKiB);
  EXPECT_EQ(during.large_mapped, before.large_mapped + 1);
  strata_free(q);
  ASSERT_EQ(strata_option_set("mmap_threshold", saved.c_str()), 0);
  void* r = strata_malloc(opaque(size_t{100000}));
  EXPECT_EQ(get().large_in_use, before.large_in_use) << "back to a small block";
  strata_free(r);
}

}  // namespace
