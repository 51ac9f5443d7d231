// What a malloc replacement must provide beyond the standard functions: the
// full set of exported symbols, glibc's __libc_* aliases and cfree, and the
// malloc.h extensions (mallopt, mallinfo, mallinfo2, malloc_trim,
// malloc_stats, malloc_info). Not part of the prefixed variant.
#include <dlfcn.h>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "alloc_api.hpp"
#include "test_support.hpp"

namespace strata_test {
namespace {

// Every symbol through which a program or libc can reach the allocator.
const char* const kReplacedSymbols[] = {
    "malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign", "aligned_alloc",
    "memalign", "valloc", "pvalloc", "malloc_usable_size", "cfree", "free_sized",
    "free_aligned_sized", "__libc_malloc", "__libc_free", "__libc_calloc", "__libc_realloc",
    "__libc_memalign", "__libc_valloc", "__libc_pvalloc", "__posix_memalign", "mallopt", "mallinfo",
    "mallinfo2", "malloc_trim", "malloc_stats", "malloc_info",
    // operator new
    "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t", "_ZnwmSt11align_val_t",
    "_ZnamSt11align_val_t", "_ZnwmSt11align_val_tRKSt9nothrow_t",
    "_ZnamSt11align_val_tRKSt9nothrow_t",
    // operator delete
    "_ZdlPv", "_ZdaPv", "_ZdlPvm", "_ZdaPvm", "_ZdlPvSt11align_val_t", "_ZdaPvSt11align_val_t",
    "_ZdlPvmSt11align_val_t", "_ZdaPvmSt11align_val_t", "_ZdlPvRKSt9nothrow_t",
    "_ZdaPvRKSt9nothrow_t", "_ZdlPvSt11align_val_tRKSt9nothrow_t",
    "_ZdaPvSt11align_val_tRKSt9nothrow_t"};

TEST(Exports, StrataDefinesEveryReplacedSymbol) {
  if (!testing_strata()) GTEST_SKIP() << "checks strata's exports only";
  for (const char* name : kReplacedSymbols) {
    EXPECT_TRUE(symbol_is_strata(name))
        << name << " resolves to "
        << (find_symbol(name) == nullptr ? std::string("nothing") : symbol_origin(name))
        << ", not to strata";
  }
}

template <typename Fn>
Fn lookup(const char* name) {
  return reinterpret_cast<Fn>(find_symbol(name));
}

#define REQUIRE_SYMBOL(var, type, name)                                                  \
  const auto var = lookup<type>(name);                                                   \
  do {                                                                                   \
    if (var == nullptr) {                                                                \
      if (testing_strata()) FAIL() << "strata does not export " name;                    \
      GTEST_SKIP() << name " is not exported by " << allocator_name(allocator_in_use()); \
    }                                                                                    \
  } while (0)

TEST(LibcAliases, MallocFamilyInteroperatesWithMallocAndFree) {
  // glibc exports __libc_malloc and friends; programs (and interposers) call
  // them directly and mix them with malloc/free.
  using MallocFn = void* (*)(std::size_t);
  using FreeFn = void (*)(void*);
  using CallocFn = void* (*)(std::size_t, std::size_t);
  using ReallocFn = void* (*)(void*, std::size_t);
  using MemalignFn = void* (*)(std::size_t, std::size_t);
  REQUIRE_SYMBOL(libc_malloc, MallocFn, "__libc_malloc");
  REQUIRE_SYMBOL(libc_free, FreeFn, "__libc_free");
  REQUIRE_SYMBOL(libc_calloc, CallocFn, "__libc_calloc");
  REQUIRE_SYMBOL(libc_realloc, ReallocFn, "__libc_realloc");
  REQUIRE_SYMBOL(libc_memalign, MemalignFn, "__libc_memalign");
  REQUIRE_SYMBOL(libc_valloc, MallocFn, "__libc_valloc");
  REQUIRE_SYMBOL(libc_pvalloc, MallocFn, "__libc_pvalloc");
  const AllocApi& a = api();
  const std::size_t page = page_size();

  for (const std::size_t size : {std::size_t{1}, std::size_t{200}, 40 * kKiB, 3 * kMiB}) {
    void* p = libc_malloc(opaque(size));
    ASSERT_NE(p, nullptr);
    fill_pattern(p, size, 1);
    p = a.realloc(p, size * 2);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(pattern_intact(p, size, 1));
    a.free(p);

    p = a.malloc(opaque(size));
    ASSERT_NE(p, nullptr);
    fill_pattern(p, size, 2);
    p = libc_realloc(p, size + 100);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(pattern_intact(p, size, 2));
    libc_free(p);

    p = libc_calloc(opaque(size), 1);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(all_zero(p, size));
    a.free(p);

    p = libc_memalign(4096, opaque(size));
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(aligned_to(p, 4096));
    EXPECT_GE(a.malloc_usable_size(p), size);
    libc_free(p);

    p = libc_valloc(opaque(size));
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(aligned_to(p, page));
    a.free(p);

    p = libc_pvalloc(opaque(size));
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(aligned_to(p, page));
    EXPECT_GE(a.malloc_usable_size(p), round_up(size, page));
    libc_free(p);
  }
  errno = 0;
  EXPECT_EQ(libc_malloc(opaque(SIZE_MAX)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(LibcAliases, PosixMemalignAlias) {
  using PosixMemalignFn = int (*)(void**, std::size_t, std::size_t);
  REQUIRE_SYMBOL(posix_memalign_alias, PosixMemalignFn, "__posix_memalign");
  void* out = nullptr;
  ASSERT_EQ(posix_memalign_alias(&out, 512, 1000), 0);
  EXPECT_TRUE(aligned_to(out, 512));
  api().free(out);
  void* sentinel = &sentinel;
  out = sentinel;
  EXPECT_EQ(posix_memalign_alias(&out, 24, 1000), EINVAL);
  EXPECT_EQ(out, sentinel);
}

TEST(Cfree, ReleasesBlocks) {
  // glibc keeps cfree only as a compat symbol that new programs cannot link
  // against; a replacement exports it so that old binaries keep working.
  using FreeFn = void (*)(void*);
  REQUIRE_SYMBOL(cfree_fn, FreeFn, "cfree");
  for (const std::size_t size : {std::size_t{8}, 64 * kKiB, 2 * kMiB}) {
    void* p = api().malloc(size);
    ASSERT_NE(p, nullptr);
    std::memset(p, 1, size);
    errno = EDOM;
    cfree_fn(p);
    EXPECT_EQ(errno, EDOM);
  }
  cfree_fn(nullptr);
}

TEST(Mallopt, AcceptsGlibcParameters) {
  // glibc returns 1 for the parameters below (values are glibc's defaults,
  // so the rest of the suite runs with unchanged behaviour).
  EXPECT_EQ(mallopt(M_TRIM_THRESHOLD, 128 * 1024), 1);
  EXPECT_EQ(mallopt(M_TOP_PAD, 128 * 1024), 1);
  EXPECT_EQ(mallopt(M_MMAP_THRESHOLD, 128 * 1024), 1);
  EXPECT_EQ(mallopt(M_MMAP_MAX, 65536), 1);
  EXPECT_EQ(mallopt(M_ARENA_TEST, 8), 1);
  void* p = malloc(opaque<std::size_t>(300 * kKiB));
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, 300 * kKiB);
  free(p);
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
std::size_t mallinfo_in_use() {
  const struct mallinfo info = mallinfo();
  return static_cast<std::size_t>(static_cast<unsigned>(info.uordblks)) +
         static_cast<std::size_t>(static_cast<unsigned>(info.hblkhd));
}
#pragma GCC diagnostic pop

std::size_t mallinfo2_in_use() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

TEST(Mallinfo, CountsALiveBlock) {
  // uordblks (in-use heap bytes) + hblkhd (bytes in mmapped blocks) must grow
  // by at least the size of a live 64 MiB block and shrink when it is freed.
  for (const auto in_use : {&mallinfo2_in_use, &mallinfo_in_use}) {
    const std::size_t before = in_use();
    void* p = malloc(opaque(64 * kMiB));
    ASSERT_NE(p, nullptr);
    std::memset(p, 1, kMiB);
    const std::size_t during = in_use();
    free(p);
    const std::size_t after = in_use();
    EXPECT_GE(during, before + 64 * kMiB)
        << (in_use == &mallinfo2_in_use ? "mallinfo2" : "mallinfo") << ": in use " << before
        << " bytes before and " << during << " bytes with a 64 MiB block";
    EXPECT_LE(after + 64 * kMiB, during)
        << (in_use == &mallinfo2_in_use ? "mallinfo2" : "mallinfo") << ": in use " << during
        << " bytes with the block and " << after << " after freeing it";
  }
}

TEST(MallocTrim, ReturnsZeroOrOneAndTheHeapStaysUsable) {
  std::vector<void*> blocks;
  for (int i = 0; i < 2000; ++i) {
    void* p = malloc(opaque<std::size_t>(16 * kKiB));
    ASSERT_NE(p, nullptr);
    std::memset(p, 5, 16 * kKiB);
    blocks.push_back(p);
  }
  for (std::size_t i = 0; i < blocks.size(); i += 2) free(blocks[i]);
  for (const std::size_t pad : {std::size_t{0}, std::size_t{1} << 20}) {
    const int released = malloc_trim(pad);
    EXPECT_TRUE(released == 0 || released == 1) << "malloc_trim(" << pad << ") = " << released;
  }
  for (std::size_t i = 1; i < blocks.size(); i += 2) {
    const auto* bytes = static_cast<const unsigned char*>(blocks[i]);
    ASSERT_EQ(bytes[0], 5);
    ASSERT_EQ(bytes[16 * kKiB - 1], 5) << "malloc_trim released memory of a live block";
    free(blocks[i]);
  }
  void* p = malloc(opaque<std::size_t>(16 * kKiB));
  ASSERT_NE(p, nullptr);
  free(p);
}

// Runs fn with file descriptor 2 redirected to a memory file; returns what
// was written there.
template <typename Fn>
std::string capture_stderr(Fn fn) {
  std::fflush(stderr);
  const int saved = dup(STDERR_FILENO);
  const int sink = memfd_create("captured-stderr", MFD_CLOEXEC);
  if (saved < 0 || sink < 0) return "<capture failed>";
  dup2(sink, STDERR_FILENO);
  fn();
  std::fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  std::string text;
  char buf[4096];
  lseek(sink, 0, SEEK_SET);
  for (ssize_t got; (got = read(sink, buf, sizeof buf)) > 0;) {
    text.append(buf, static_cast<std::size_t>(got));
  }
  close(sink);
  return text;
}

TEST(MallocStats, WritesAReportToStderr) {
  void* p = malloc(opaque<std::size_t>(1000));
  const std::string report = capture_stderr([] { malloc_stats(); });
  free(p);
  EXPECT_FALSE(report.empty()) << "malloc_stats() wrote nothing to stderr";
}

TEST(MallocInfo, WritesAnXmlDocument) {
  char* text = nullptr;
  std::size_t length = 0;
  FILE* stream = open_memstream(&text, &length);
  ASSERT_NE(stream, nullptr);
  EXPECT_EQ(malloc_info(0, stream), 0);
  std::fclose(stream);
  const std::string xml(text, length);
  std::free(text);
  EXPECT_EQ(xml.rfind("<malloc", 0), 0u) << "malloc_info output: " << xml.substr(0, 200);
  EXPECT_NE(xml.find("</malloc>"), std::string::npos) << "malloc_info output is not closed";
}

TEST(MallocInfo, NonZeroOptionsAreRejected) {
  // glibc documents -1/EINVAL but returns EINVAL; both are non-zero, and
  // nothing is written.
  char* text = nullptr;
  std::size_t length = 0;
  FILE* stream = open_memstream(&text, &length);
  ASSERT_NE(stream, nullptr);
  EXPECT_NE(malloc_info(1, stream), 0);
  std::fclose(stream);
  EXPECT_EQ(length, 0u);
  std::free(text);
}

}  // namespace
}  // namespace strata_test
