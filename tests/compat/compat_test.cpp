// glibc's introspection interface, checked the same way against glibc's
// malloc and against strata: one source, run plainly (glibc), with
// libstrata.so preloaded and linked with libstrata.a, with the same
// expectations. Each check runs in a forked child (isolated()): mallopt
// settings and the dynamic threshold are process-wide and must not leak from
// one check into the next.
#include <dlfcn.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "test_support.hpp"

extern char** environ;
namespace {

using strata_test::kKiB;
using strata_test::kMiB;
using strata_test::opaque;

void* checked_malloc(size_t size) {
  void* p = malloc(opaque(size));
  if (p != nullptr) std::memset(p, 0x11, size);  // make it resident
  return p;
}

bool malloc_is_glibcs() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&malloc), &info) == 0 || info.dli_fname == nullptr)
    return false;
  return std::strstr(info.dli_fname, "libc.so") != nullptr;
}

bool testing_strata() { return !malloc_is_glibcs(); }

// Runs `body` in a forked child and fails if it failed there. The child's
// gtest prints its failures itself.
template <typename Body>
void isolated(Body body) {
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    body();
    std::fflush(stdout);
    _exit(::testing::Test::HasFailure() ? 1 : 0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the check failed in its child process (status " << status << ", messages above)";
}

// Resident memory of the process, from /proc/self/statm.
size_t resident_bytes() {
  char buf[128] = {};
  int fd = open("/proc/self/statm", O_RDONLY);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  unsigned long size = 0, resident = 0;
  if (std::sscanf(buf, "%lu %lu", &size, &resident) != 2) return 0;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// glibc serves any request that fits in its top chunk from there, whatever
// the mmap threshold; keepcost is the top's size. Taking most of it makes the
// next request's fate depend on the threshold alone. Returns the filler (to
// free at the end), or nullptr.
void* exhaust_top() {
  size_t top = mallinfo2().keepcost;
  if (top <= 4 * kKiB) return nullptr;
  return malloc(opaque(top - 4 * kKiB));
}

// mallinfo() is deprecated (its int fields overflow), and under test here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
struct mallinfo legacy_mallinfo() {
  return mallinfo();
}
#pragma GCC diagnostic pop

bool same(const struct mallinfo2& a, const struct mallinfo2& b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

std::string describe(const struct mallinfo2& m) {
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "arena=%zu ordblks=%zu smblks=%zu hblks=%zu hblkhd=%zu usmblks=%zu fsmblks=%zu "
                "uordblks=%zu fordblks=%zu keepcost=%zu",
                m.arena, m.ordblks, m.smblks, m.hblks, m.hblkhd, m.usmblks, m.fsmblks, m.uordblks,
                m.fordblks, m.keepcost);
  return buf;
}

// ---- The allocator under test ---------------------------------------------------------

TEST(Setup, TheAllocatorUnderTestIsTheExpectedOne) {
  const char* expected = std::getenv("STRATA_TEST_ALLOCATOR");
  if (expected == nullptr) GTEST_SKIP() << "STRATA_TEST_ALLOCATOR is not set";
  EXPECT_EQ(std::string(expected), testing_strata() ? "strata" : "glibc")
      << "malloc does not resolve to the allocator this run should test";
}

// ---- mallopt --------------------------------------------------------------------------

TEST(Mallopt, ReturnValuesAreGlibcs) {
  isolated([] {
    struct Case {
      int param, value, result, reset;
    } const cases[] = {
        {M_MXFAST, 0, 1, 128},
        {M_MXFAST, 160, 1, 128},
        {M_MXFAST, 161, 0, 128},
        {M_MXFAST, -1, 0, 128},
        {M_TRIM_THRESHOLD, 0, 1, 128 * 1024},
        {M_TRIM_THRESHOLD, -1, 1, 128 * 1024},
        {M_TOP_PAD, 4096, 1, 128 * 1024},
        {M_MMAP_THRESHOLD, 64 * 1024, 1, 128 * 1024},
        {M_MMAP_THRESHOLD, 64 << 20, 1, 128 * 1024},
        {M_MMAP_THRESHOLD, INT_MAX, 1, 128 * 1024},
        {M_MMAP_MAX, 0, 1, 65536},
        {M_MMAP_MAX, -1, 1, 65536},
        {M_PERTURB, 0x55, 1, 0},
        {M_PERTURB, 300, 1, 0},
        {M_ARENA_TEST, 3, 1, 8},
        {M_ARENA_TEST, 0, 1, 8},
        {M_ARENA_MAX, 4, 1, 4},
        {M_ARENA_MAX, -5, 1, 4},
        {M_CHECK_ACTION, 7, 1, 7},
        // Unknown parameters, including the historical M_NLBLKS, M_GRAIN, M_KEEP.
        {0, 5, 1, 5},
        {2, 5, 1, 5},
        {3, 1, 1, 1},
        {4, 1, 1, 1},
        {100, 1, 1, 1},
        {-100, 1, 1, 1},
        {INT_MIN, 1, 1, 1},
    };
    for (const Case& c : cases) {
      EXPECT_EQ(mallopt(c.param, c.value), c.result)
          << "mallopt(" << c.param << ", " << c.value << ")";
      mallopt(c.param, c.reset);
    }
  });
}

TEST(MmapThreshold, DefaultMapsLargeRequestsOnly) {
  isolated([] {
    void* filler = exhaust_top();
    struct mallinfo2 before = mallinfo2();
    void* small = checked_malloc(64 * kKiB);
    ASSERT_NE(small, nullptr);
    EXPECT_EQ(mallinfo2().hblks, before.hblks) << "a 64 KiB block got its own mapping";
    void* big = checked_malloc(1 * kMiB);
    ASSERT_NE(big, nullptr);
    struct mallinfo2 during = mallinfo2();
    EXPECT_EQ(during.hblks, before.hblks + 1) << describe(during);
    EXPECT_GE(during.hblkhd, before.hblkhd + 1 * kMiB);
    EXPECT_LE(during.hblkhd, before.hblkhd + 1 * kMiB + 64 * kKiB);
    free(big);
    struct mallinfo2 after = mallinfo2();
    EXPECT_EQ(after.hblks, before.hblks);
    EXPECT_EQ(after.hblkhd, before.hblkhd);
    free(small);
    free(filler);
  });
}

TEST(MmapThreshold, LoweringItMapsSmallerRequests) {
  isolated([] {
    ASSERT_EQ(mallopt(M_MMAP_THRESHOLD, 32 * 1024), 1);
    void* filler = exhaust_top();
    struct mallinfo2 before = mallinfo2();
    void* p = checked_malloc(100 * kKiB);
    ASSERT_NE(p, nullptr);
    struct mallinfo2 during = mallinfo2();
    EXPECT_EQ(during.hblks, before.hblks + 1)
        << "a 100 KiB request above a 32 KiB threshold is not mapped: " << describe(during);
    EXPECT_GE(during.hblkhd, before.hblkhd + 100 * kKiB);
    free(p);
    EXPECT_EQ(mallinfo2().hblks, before.hblks);
    void* below = checked_malloc(16 * kKiB);
    EXPECT_EQ(mallinfo2().hblks, before.hblks) << "a 16 KiB request was mapped";
    free(below);
    free(filler);
  });
}

TEST(MmapThreshold, RaisingItKeepsLargerRequestsOffMappings) {
  isolated([] {
    ASSERT_EQ(mallopt(M_MMAP_THRESHOLD, 4 << 20), 1);
    void* filler = exhaust_top();
    struct mallinfo2 before = mallinfo2();
    void* p = checked_malloc(1 * kMiB);
    ASSERT_NE(p, nullptr);
    struct mallinfo2 during = mallinfo2();
    EXPECT_EQ(during.hblks, before.hblks) << describe(during);
    EXPECT_EQ(during.hblkhd, before.hblkhd);
    EXPECT_GE(during.uordblks, before.uordblks + 1 * kMiB) << describe(during);
    EXPECT_GE(during.arena, before.arena + 1 * kMiB) << describe(during);
    void* q = checked_malloc(8 * kMiB);
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(mallinfo2().hblks, before.hblks + 1) << "8 MiB is above the 4 MiB threshold";
    free(q);
    free(p);
    free(filler);
  });
}

TEST(MmapMax, ZeroNeverMaps) {
  isolated([] {
    ASSERT_EQ(mallopt(M_MMAP_MAX, 0), 1);
    struct mallinfo2 before = mallinfo2();
    void* p = checked_malloc(8 * kMiB);
    ASSERT_NE(p, nullptr);
    struct mallinfo2 during = mallinfo2();
    EXPECT_EQ(during.hblks, before.hblks) << describe(during);
    EXPECT_EQ(during.hblkhd, before.hblkhd);
    EXPECT_GE(during.uordblks, before.uordblks + 8 * kMiB) << describe(during);
    free(p);
  });
}

// glibc raises the mmap threshold to the size of a mapped block when it is
// freed, so that the next requests of that size stay off mappings.
void free_a_mapped_megabyte() {
  void* p = checked_malloc(1 * kMiB);
  ASSERT_NE(p, nullptr);
  free(p);
}

// Whether a 512 KiB request gets its own mapping now.
bool half_megabyte_is_mapped() {
  void* filler = exhaust_top();
  size_t before = mallinfo2().hblks;
  void* p = checked_malloc(512 * kKiB);
  bool mapped = mallinfo2().hblks == before + 1;
  free(p);
  free(filler);
  return mapped;
}

TEST(DynamicThreshold, FreeingAMappedBlockRaisesIt) {
  isolated([] {
    EXPECT_TRUE(half_megabyte_is_mapped()) << "512 KiB is above the default threshold";
    free_a_mapped_megabyte();
    EXPECT_FALSE(half_megabyte_is_mapped()) << "the threshold did not rise to 1 MiB";
  });
}

TEST(DynamicThreshold, SettingAnyOfTheFirstFourParametersTurnsItOff) {
  const struct {
    int param, value;
  } params[] = {{M_TRIM_THRESHOLD, 128 * 1024},
                {M_TOP_PAD, 128 * 1024},
                {M_MMAP_THRESHOLD, 128 * 1024},
                {M_MMAP_MAX, 65536}};
  for (const auto& p : params) {
    SCOPED_TRACE(testing::Message() << "mallopt(" << p.param << ", " << p.value << ")");
    isolated([&] {
      ASSERT_EQ(mallopt(p.param, p.value), 1);
      free_a_mapped_megabyte();
      EXPECT_TRUE(half_megabyte_is_mapped()) << "the threshold rose anyway";
    });
  }
}

TEST(DynamicThreshold, OtherParametersLeaveARaisedThresholdAlone) {
  isolated([] {
    free_a_mapped_megabyte();
    EXPECT_EQ(mallopt(M_PERTURB, 0x11), 1);
    EXPECT_EQ(mallopt(M_MXFAST, 64), 1);
    EXPECT_EQ(mallopt(M_ARENA_MAX, 4), 1);
    EXPECT_FALSE(half_megabyte_is_mapped()) << "mallopt reset the raised threshold";
  });
}

TEST(DynamicThreshold, AnExplicitThresholdReplacesARaisedOne) {
  isolated([] {
    free_a_mapped_megabyte();
    // The value the threshold started with: it must apply again.
    ASSERT_EQ(mallopt(M_MMAP_THRESHOLD, 128 * 1024), 1);
    EXPECT_TRUE(half_megabyte_is_mapped());
  });
}

// ---- M_PERTURB ----------------------------------------------------------------------

// Sizes glibc never serves from its thread cache (above 1032 bytes), so that
// every allocation goes through the path that perturbs.
const size_t kPerturbSizes[] = {1100, 5000, 100 * kKiB, 300 * kKiB};

::testing::AssertionResult all_bytes(const void* p, size_t size, unsigned char value) {
  const auto* bytes = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < size; ++i) {
    if (bytes[i] != value) {
      return ::testing::AssertionFailure() << "byte " << i << " of " << size << " is 0x" << std::hex
                                           << int{bytes[i]} << ", not 0x" << int{value};
    }
  }
  return ::testing::AssertionSuccess();
}

void check_perturbed_blocks(unsigned char byte) {
  for (size_t size : kPerturbSizes) {
    SCOPED_TRACE(testing::Message() << "size " << size);
    void* p = malloc(opaque(size));
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(all_bytes(p, size, static_cast<unsigned char>(~byte)));
    free(p);
    void* z = calloc(1, opaque(size));
    ASSERT_NE(z, nullptr);
    EXPECT_TRUE(all_bytes(z, size, 0)) << "calloc is never perturbed";
    free(z);
  }
}

TEST(Perturb, MalloptFillsNewBlocksWithTheComplement) {
  isolated([] {
    ASSERT_EQ(mallopt(M_PERTURB, 0x5a), 1);
    check_perturbed_blocks(0x5a);
  });
}

TEST(Perturb, MallocPerturbEnvironmentVariable) {
  if (std::getenv("COMPAT_PERTURB_CHILD") != nullptr) {
    check_perturbed_blocks(0x5a);  // we are the child started below
    return;
  }
  std::vector<std::string> env_strings = {"MALLOC_PERTURB_=90", "COMPAT_PERTURB_CHILD=1"};
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "MALLOC_PERTURB_=", 16) != 0) env_strings.push_back(*e);
  }
  std::vector<char*> env;
  for (std::string& s : env_strings) env.push_back(s.data());
  env.push_back(nullptr);
  std::string self = "/proc/self/exe";
  std::string filter = "--gtest_filter=Perturb.MallocPerturbEnvironmentVariable";
  char* argv[] = {self.data(), filter.data(), nullptr};
  std::fflush(stdout);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv, env.data()), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "under MALLOC_PERTURB_=90 new blocks are not filled with 0xa5 (messages above)";
}

// ---- mallinfo2 / mallinfo -----------------------------------------------------------

TEST(Mallinfo2, FieldsAreConsistent) {
  isolated([] {
    std::vector<void*> blocks;
    for (size_t i = 0; i < 200; ++i) blocks.push_back(checked_malloc(24 + i * 40));
    for (size_t i = 0; i < blocks.size(); i += 2) free(blocks[i]);
    void* mapped = checked_malloc(2 * kMiB);
    struct mallinfo2 m = mallinfo2();
    EXPECT_EQ(m.arena, m.uordblks + m.fordblks) << describe(m);
    EXPECT_EQ(m.usmblks, 0u);
    EXPECT_LE(m.fsmblks, m.fordblks) << describe(m);
    EXPECT_EQ(m.smblks == 0, m.fsmblks == 0) << describe(m);
    EXPECT_LE(m.keepcost, m.fordblks) << describe(m);
    EXPECT_GE(m.hblks, 1u);
    EXPECT_GE(m.hblkhd, 2 * kMiB);
    EXPECT_GE(m.uordblks, 100 * 24u);
    free(mapped);
    for (size_t i = 1; i < blocks.size(); i += 2) free(blocks[i]);
  });
}

TEST(Mallinfo2, InUseBytesFollowAllocationsAndFrees) {
  isolated([] {
    constexpr size_t kCount = 1000, kSize = 1000;
    struct mallinfo2 before = mallinfo2();
    std::vector<void*> blocks;
    blocks.reserve(kCount);
    struct mallinfo2 reserved = mallinfo2();  // the vector's own storage
    for (size_t i = 0; i < kCount; ++i) blocks.push_back(checked_malloc(kSize));
    struct mallinfo2 during = mallinfo2();
    EXPECT_GE(during.uordblks, reserved.uordblks + kCount * kSize) << describe(during);
    EXPECT_LE(during.uordblks, reserved.uordblks + kCount * kSize * 6 / 5) << describe(during);
    EXPECT_EQ(during.hblks, before.hblks) << "1000-byte blocks got their own mappings";
    EXPECT_GE(during.arena, during.uordblks);
    for (void* p : blocks) free(p);
    struct mallinfo2 after = mallinfo2();
    EXPECT_LE(after.uordblks, reserved.uordblks + 64 * kKiB)
        << "before " << describe(reserved) << "\nafter  " << describe(after);
  });
}

TEST(Mallinfo2, MappedBlocksAreCountedApart) {
  isolated([] {
    struct mallinfo2 before = mallinfo2();
    void* p = checked_malloc(64 * kMiB);
    ASSERT_NE(p, nullptr);
    struct mallinfo2 during = mallinfo2();
    EXPECT_EQ(during.hblks, before.hblks + 1);
    EXPECT_GE(during.hblkhd, before.hblkhd + 64 * kMiB);
    EXPECT_LE(during.hblkhd, before.hblkhd + 64 * kMiB + 64 * kKiB);
    EXPECT_LE(during.uordblks, before.uordblks + 64 * kKiB) << "uordblks counts mapped blocks";
    free(p);
    struct mallinfo2 after = mallinfo2();
    EXPECT_EQ(after.hblks, before.hblks);
    EXPECT_EQ(after.hblkhd, before.hblkhd);
  });
}

TEST(Mallinfo, LegacyFieldsMatchMallinfo2WhileSmall) {
  isolated([] {
    void* p = checked_malloc(3 * kMiB);
    struct mallinfo2 wide = mallinfo2();
    struct mallinfo narrow = legacy_mallinfo();
    EXPECT_EQ(static_cast<size_t>(narrow.arena), wide.arena);
    EXPECT_EQ(static_cast<size_t>(narrow.ordblks), wide.ordblks);
    EXPECT_EQ(static_cast<size_t>(narrow.smblks), wide.smblks);
    EXPECT_EQ(static_cast<size_t>(narrow.hblks), wide.hblks);
    EXPECT_EQ(static_cast<size_t>(narrow.hblkhd), wide.hblkhd);
    EXPECT_EQ(static_cast<size_t>(narrow.usmblks), wide.usmblks);
    EXPECT_EQ(static_cast<size_t>(narrow.fsmblks), wide.fsmblks);
    EXPECT_EQ(static_cast<size_t>(narrow.uordblks), wide.uordblks);
    EXPECT_EQ(static_cast<size_t>(narrow.fordblks), wide.fordblks);
    EXPECT_EQ(static_cast<size_t>(narrow.keepcost), wide.keepcost);
    free(p);
  });
}

TEST(Mallinfo, LegacyFieldsSaturateInsteadOfWrapping) {
  // glibc truncates to int (a documented wart); strata saturates.
  if (!testing_strata()) GTEST_SKIP() << "glibc's mallinfo wraps around";
  isolated([] {
    void* p = malloc(opaque(size_t{5} << 30));  // address space only: never touched
    if (p == nullptr) GTEST_SKIP() << "cannot map 5 GiB here";
    EXPECT_EQ(legacy_mallinfo().hblkhd, INT_MAX);
    EXPECT_GE(mallinfo2().hblkhd, size_t{5} << 30);
    free(p);
  });
}

// ---- malloc_trim ----------------------------------------------------------------------

TEST(MallocTrim, GivesFreedSmallBlocksBackToTheKernel) {
  isolated([] {
    constexpr size_t kBlock = 16 * kKiB, kTotal = 64 * kMiB;
    std::vector<void*> blocks;
    blocks.reserve(kTotal / kBlock);
    for (size_t i = 0; i < kTotal / kBlock; ++i) blocks.push_back(checked_malloc(kBlock));
    void* pin = checked_malloc(kBlock);  // keeps glibc's heap from shrinking on free
    size_t peak = resident_bytes();
    for (void* p : blocks) free(p);
    EXPECT_EQ(malloc_trim(0), 1);
    size_t trimmed = resident_bytes();
    EXPECT_LE(trimmed + 48 * kMiB, peak)
        << "resident " << (peak >> 10) << " KiB with the blocks, " << (trimmed >> 10)
        << " KiB after freeing 64 MiB of them and malloc_trim(0)";
    int again = malloc_trim(0);
    EXPECT_TRUE(again == 0 || again == 1) << again;
    free(pin);
  });
}

TEST(MallocTrim, GivesFreedLargeHeapBlocksBackToTheKernel) {
  isolated([] {
    // Raise the dynamic threshold so that 2 MiB blocks stay off their own
    // mappings (glibc: its heap; strata: retained blocks, cached on free).
    void* big = checked_malloc(8 * kMiB);
    ASSERT_NE(big, nullptr);
    free(big);
    std::vector<void*> blocks;
    for (int i = 0; i < 8; ++i) blocks.push_back(checked_malloc(2 * kMiB));
    void* pin = checked_malloc(64 * kKiB);
    EXPECT_EQ(mallinfo2().hblks, 0u) << "2 MiB blocks are mapped despite the raised threshold";
    size_t peak = resident_bytes();
    for (void* p : blocks) free(p);
    EXPECT_EQ(malloc_trim(0), 1);
    size_t trimmed = resident_bytes();
    EXPECT_LE(trimmed + 12 * kMiB, peak)
        << "resident " << (peak >> 10) << " KiB with the blocks, " << (trimmed >> 10)
        << " KiB after freeing 16 MiB of them and malloc_trim(0)";
    free(pin);
  });
}

// ---- malloc_info ----------------------------------------------------------------------

// A minimal XML reader: elements, attributes in double quotes, whitespace
// between elements; anything else is an error.
struct Element {
  std::string name;
  std::map<std::string, std::string> attributes;
  std::vector<Element> children;
};

class XmlReader {
 public:
  explicit XmlReader(const std::string& text) : text_(text) {}

  bool parse(Element* root, std::string* error) {
    skip_space();
    if (!element(root)) {
      *error = error_ + " at offset " + std::to_string(pos_);
      return false;
    }
    skip_space();
    if (pos_ != text_.size()) {
      *error = "text after the root element at offset " + std::to_string(pos_);
      return false;
    }
    return true;
  }

 private:
  void skip_space() {
    while (pos_ < text_.size() && std::strchr(" \n\t\r", text_[pos_]) != nullptr) ++pos_;
  }
  bool fail(const std::string& message) {
    error_ = message;
    return false;
  }
  bool name(std::string* out) {
    size_t start = pos_;
    while (pos_ < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[pos_])) ||
                                   text_[pos_] == '_' || text_[pos_] == '-'))
      ++pos_;
    *out = text_.substr(start, pos_ - start);
    return !out->empty() || fail("expected a name");
  }
  bool element(Element* e) {
    if (pos_ >= text_.size() || text_[pos_] != '<') return fail("expected '<'");
    ++pos_;
    if (!name(&e->name)) return false;
    for (;;) {
      skip_space();
      if (pos_ >= text_.size()) return fail("unterminated tag");
      if (text_.compare(pos_, 2, "/>") == 0) {
        pos_ += 2;
        return true;
      }
      if (text_[pos_] == '>') {
        ++pos_;
        break;
      }
      std::string key;
      if (!name(&key)) return false;
      if (text_.compare(pos_, 2, "=\"") != 0) return fail("expected =\" after " + key);
      pos_ += 2;
      size_t end = text_.find('"', pos_);
      if (end == std::string::npos) return fail("unterminated attribute");
      if (!e->attributes.emplace(key, text_.substr(pos_, end - pos_)).second)
        return fail("attribute " + key + " twice");
      pos_ = end + 1;
    }
    for (;;) {
      skip_space();
      if (text_.compare(pos_, 2, "</") == 0) {
        pos_ += 2;
        std::string closing;
        if (!name(&closing)) return false;
        if (closing != e->name) return fail("</" + closing + "> closes <" + e->name + ">");
        if (pos_ >= text_.size() || text_[pos_] != '>') return fail("expected '>'");
        ++pos_;
        return true;
      }
      e->children.emplace_back();
      if (!element(&e->children.back())) return false;
    }
  }

  const std::string& text_;
  size_t pos_ = 0;
  std::string error_;
};

bool is_number(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

size_t number(const Element& e, const char* attribute) {
  auto it = e.attributes.find(attribute);
  if (it == e.attributes.end() || !is_number(it->second)) {
    ADD_FAILURE() << "<" << e.name << "> has no numeric " << attribute;
    return 0;
  }
  return std::stoull(it->second);
}

std::string type_of(const Element& e) {
  auto it = e.attributes.find("type");
  return e.name + "/" + (it == e.attributes.end() ? "" : it->second);
}

// Checks glibc's summary elements (malloc/malloc.c, __malloc_info) in order,
// starting at children[*next]; returns them by type.
std::map<std::string, const Element*> summary(const Element& parent, size_t* next,
                                              const std::vector<std::string>& expected) {
  std::map<std::string, const Element*> found;
  for (const std::string& want : expected) {
    if (*next >= parent.children.size()) {
      ADD_FAILURE() << "<" << parent.name << "> ends before " << want;
      break;
    }
    const Element& e = parent.children[*next];
    EXPECT_EQ(type_of(e), want) << "in <" << parent.name << ">, child " << *next;
    EXPECT_TRUE(e.children.empty());
    if (e.name == "total") {
      EXPECT_EQ(e.attributes.size(), 3u);
      number(e, "count");
      number(e, "size");
    } else {
      EXPECT_EQ(e.attributes.size(), 2u);
      number(e, "size");
    }
    found[want] = &e;
    ++*next;
  }
  return found;
}

std::string read_all(FILE* f) {
  std::string text;
  std::rewind(f);
  char chunk[4096];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) text.append(chunk, n);
  return text;
}

TEST(MallocInfo, WritesGlibcsXmlConsistentWithMallinfo2) {
  isolated([] {
    std::vector<void*> blocks;
    for (size_t i = 0; i < 300; ++i) blocks.push_back(checked_malloc(16 + (i % 40) * 48));
    for (size_t i = 0; i < blocks.size(); i += 3) free(blocks[i]);
    void* mapped = checked_malloc(1 * kMiB);

    // A buffer of our own so that writing allocates nothing between the
    // three calls: both mallinfo2 snapshots must then agree with the XML.
    static char buffer[1 << 18];
    FILE* f = tmpfile();
    ASSERT_NE(f, nullptr);
    setvbuf(f, buffer, _IOFBF, sizeof buffer);
    struct mallinfo2 m = mallinfo2();
    ASSERT_EQ(malloc_info(0, f), 0);
    struct mallinfo2 m_after = mallinfo2();
    std::fflush(f);
    std::string xml = read_all(f);
    std::fclose(f);
    ASSERT_TRUE(same(m, m_after)) << describe(m) << "\n" << describe(m_after);

    Element root;
    std::string error;
    ASSERT_TRUE(XmlReader(xml).parse(&root, &error)) << error << "\n" << xml;
    EXPECT_EQ(root.name, "malloc");
    EXPECT_EQ(root.attributes, (std::map<std::string, std::string>{{"version", "1"}}));
    size_t next = 0;
    size_t heaps = 0;
    size_t heap_fast = 0, heap_rest = 0, heap_system = 0;
    while (next < root.children.size() && root.children[next].name == "heap") {
      const Element& heap = root.children[next++];
      SCOPED_TRACE("heap " + std::to_string(heaps));
      EXPECT_EQ(heap.attributes,
                (std::map<std::string, std::string>{{"nr", std::to_string(heaps)}}));
      ASSERT_FALSE(heap.children.empty());
      const Element& sizes = heap.children[0];
      EXPECT_EQ(sizes.name, "sizes");
      EXPECT_TRUE(sizes.attributes.empty());
      size_t listed = 0;
      for (const Element& size : sizes.children) {
        EXPECT_TRUE(size.name == "size" || size.name == "unsorted") << size.name;
        EXPECT_EQ(size.attributes.size(), 4u);
        size_t from = number(size, "from"), to = number(size, "to");
        size_t total = number(size, "total"), count = number(size, "count");
        EXPECT_LE(from, to);
        EXPECT_GT(count, 0u) << "glibc lists only sizes with free chunks";
        EXPECT_GE(total, count * from);
        listed += total;
      }
      size_t child = 1;
      auto totals = summary(heap, &child,
                            {"total/fast", "total/rest", "system/current", "system/max",
                             "aspace/total", "aspace/mprotect"});
      if (child < heap.children.size()) {  // arenas other than the main one
        summary(heap, &child, {"aspace/subheaps"});
      }
      EXPECT_EQ(child, heap.children.size()) << "unexpected elements at the end of <heap>";
      if (totals.size() == 6) {
        size_t fast = number(*totals["total/fast"], "size");
        size_t rest = number(*totals["total/rest"], "size");
        EXPECT_LE(listed, fast + rest) << "the sizes list more than the totals";
        EXPECT_LE(number(*totals["system/current"], "size"), number(*totals["system/max"], "size"));
        heap_fast += fast;
        heap_rest += rest;
        heap_system += number(*totals["system/current"], "size");
      }
      ++heaps;
    }
    EXPECT_GE(heaps, 1u);
    auto totals = summary(root, &next,
                          {"total/fast", "total/rest", "total/mmap", "system/current", "system/max",
                           "aspace/total", "aspace/mprotect"});
    EXPECT_EQ(next, root.children.size()) << "unexpected elements at the end of <malloc>";
    ASSERT_EQ(totals.size(), 7u);
    // The process-wide totals are the heaps' sums, and mallinfo2's fields.
    const Element& fast = *totals["total/fast"];
    const Element& rest = *totals["total/rest"];
    const Element& mmap = *totals["total/mmap"];
    EXPECT_EQ(number(fast, "size"), heap_fast);
    EXPECT_EQ(number(rest, "size"), heap_rest);
    EXPECT_EQ(number(*totals["system/current"], "size"), heap_system);
    EXPECT_EQ(number(fast, "count"), m.smblks) << describe(m);
    EXPECT_EQ(number(fast, "size"), m.fsmblks) << describe(m);
    EXPECT_EQ(number(rest, "count"), m.ordblks) << describe(m);
    // glibc adds each binned chunk's size word, flag bits included (1 for
    // PREV_INUSE): up to one byte per chunk more than mallinfo2 counts.
    EXPECT_GE(number(fast, "size") + number(rest, "size"), m.fordblks) << describe(m);
    EXPECT_LE(number(fast, "size") + number(rest, "size"), m.fordblks + m.ordblks) << describe(m);
    EXPECT_EQ(number(mmap, "count"), m.hblks) << describe(m);
    EXPECT_EQ(number(mmap, "size"), m.hblkhd) << describe(m);
    EXPECT_GE(m.hblks, 1u);
    EXPECT_EQ(number(*totals["system/current"], "size"), m.arena) << describe(m);
    free(mapped);
    for (size_t i = 1; i < blocks.size(); ++i)
      if (i % 3 != 0) free(blocks[i]);
  });
}

TEST(MallocInfo, RejectsNonzeroOptionsWritingNothing) {
  isolated([] {
    FILE* f = tmpfile();
    ASSERT_NE(f, nullptr);
    // glibc 2.36 returns EINVAL itself; malloc_info(3) documents -1 and
    // errno EINVAL. Either way: not 0, and nothing written.
    EXPECT_NE(malloc_info(1, f), 0);
    std::fflush(f);
    EXPECT_EQ(std::ftell(f), 0L);
    std::fclose(f);
  });
}

// ---- malloc_stats ---------------------------------------------------------------------

// What malloc_stats writes to stderr, and mallinfo2 just before and after
// (nothing allocates in between).
std::string capture_malloc_stats(struct mallinfo2* before, struct mallinfo2* after) {
  FILE* f = tmpfile();
  if (f == nullptr) return {};
  std::fflush(stderr);
  int saved = dup(STDERR_FILENO);
  dup2(fileno(f), STDERR_FILENO);
  *before = mallinfo2();
  malloc_stats();
  *after = mallinfo2();
  std::fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  std::string text = read_all(f);
  std::fclose(f);
  return text;
}

// "label = %10u": the value right-aligned in ten columns (or wider).
size_t field(const std::string& line, const std::string& label) {
  std::string prefix = label + " = ";
  if (line.compare(0, prefix.size(), prefix) != 0) {
    ADD_FAILURE() << "expected \"" << prefix << "...\", got \"" << line << "\"";
    return 0;
  }
  std::string value = line.substr(prefix.size());
  EXPECT_GE(value.size(), 10u) << "not %10u: \"" << line << "\"";
  size_t digits = value.find_first_not_of(' ');
  EXPECT_TRUE(digits != std::string::npos && is_number(value.substr(digits))) << line;
  return digits == std::string::npos ? 0 : std::stoull(value.substr(digits));
}

TEST(MallocStats, PrintsGlibcsReportConsistentWithMallinfo2) {
  isolated([] {
    void* small = checked_malloc(5000);
    void* first = checked_malloc(1 * kMiB);
    void* second = checked_malloc(2 * kMiB);
    free(first);  // at most two mapped at once, one now
    struct mallinfo2 m, m_after;
    std::string report = capture_malloc_stats(&m, &m_after);
    ASSERT_TRUE(same(m, m_after)) << "malloc_stats changed the heap";
    std::vector<std::string> lines;
    for (size_t start = 0; start < report.size();) {
      size_t end = report.find('\n', start);
      ASSERT_NE(end, std::string::npos) << "last line not terminated:\n" << report;
      lines.push_back(report.substr(start, end - start));
      start = end + 1;
    }
    ASSERT_EQ(lines.size(), 8u) << report;
    EXPECT_EQ(lines[0], "Arena 0:");
    EXPECT_EQ(field(lines[1], "system bytes    "), m.arena) << report;
    EXPECT_EQ(field(lines[2], "in use bytes    "), m.uordblks) << report;
    EXPECT_EQ(lines[3], "Total (incl. mmap):");
    EXPECT_EQ(field(lines[4], "system bytes    "), m.arena + m.hblkhd) << report;
    EXPECT_EQ(field(lines[5], "in use bytes    "), m.uordblks + m.hblkhd) << report;
    EXPECT_GE(field(lines[6], "max mmap regions"), 2u) << report;
    EXPECT_GE(field(lines[7], "max mmap bytes  "), 3 * kMiB) << report;
    EXPECT_EQ(m.hblks, 1u);
    free(second);
    free(small);
  });
}

}  // namespace
