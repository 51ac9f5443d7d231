// Helpers shared by every test binary: content patterns, optimizer barriers,
// memory measurements and a child-process runner with a deadline.
#ifndef STRATA_TESTS_SUPPORT_TEST_SUPPORT_HPP
#define STRATA_TESTS_SUPPORT_TEST_SUPPORT_HPP

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace strata_test {

// ---- Optimizer barriers ----------------------------------------------------
// Compilers know malloc's contract and may fold or drop calls whose results
// look unused or whose arguments are constant. Tests pass sizes through
// opaque() and results through escape() so every call really happens.
template <typename T>
inline T opaque(T value) {
  asm volatile("" : "+r"(value));
  return value;
}
inline void escape(const void* p) { asm volatile("" : : "g"(p) : "memory"); }

inline constexpr std::size_t kKiB = std::size_t{1} << 10;
inline constexpr std::size_t kMiB = std::size_t{1} << 20;
inline constexpr std::size_t kGiB = std::size_t{1} << 30;

// The minimum alignment glibc guarantees for every block on x86-64.
inline constexpr std::size_t kMallocAlignment = 16;

// ---- Content patterns --------------------------------------------------------
// A pattern is a pseudo-random byte sequence determined by (seed, offset), so a
// block's expected content can be recomputed anywhere from its seed alone.
std::uint64_t mix64(std::uint64_t x);
void fill_pattern(void* p, std::size_t n, std::uint64_t seed);
// Offset of the first byte that differs from the pattern, or n if none does.
std::size_t pattern_mismatch(const void* p, std::size_t n, std::uint64_t seed);
// Offset of the first non-zero byte, or n if all are zero.
std::size_t first_nonzero(const void* p, std::size_t n);

::testing::AssertionResult pattern_intact(const void* p, std::size_t n, std::uint64_t seed);
::testing::AssertionResult all_zero(const void* p, std::size_t n);
::testing::AssertionResult aligned_to(const void* p, std::size_t alignment);

inline bool is_aligned(const void* p, std::size_t alignment) {
  return reinterpret_cast<std::uintptr_t>(p) % alignment == 0;
}
inline std::size_t round_up(std::size_t n, std::size_t multiple) {
  return (n + multiple - 1) / multiple * multiple;
}

// A small deterministic generator (splitmix64) for sizes and choices.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() { return mix64(state_ += 0x9E3779B97F4A7C15ull); }
  // Uniform in [lo, hi].
  std::size_t between(std::size_t lo, std::size_t hi) { return lo + next() % (hi - lo + 1); }
  bool chance(unsigned percent) { return next() % 100 < percent; }

 private:
  std::uint64_t state_;
};

// Every size up to 1 KiB, then sizes around each power of two (2^k - 16,
// -1, +0, +1, +16 and 1.5 * 2^k) up to `max`.
std::vector<std::size_t> interesting_sizes(std::size_t max);

// ---- Sizes that no allocation can satisfy ------------------------------------
// Everything above PTRDIFF_MAX must fail with ENOMEM, and so must sizes that
// exceed the 47-bit user address space.
const std::size_t* impossible_sizes(std::size_t* count);

// ---- Process memory ------------------------------------------------------------
std::size_t page_size();
// Anonymous resident memory (RssAnon in /proc/self/status), in bytes; falls
// back to VmRSS on kernels without RssAnon. Reads without allocating.
std::size_t resident_anon_bytes();
// Virtual address space in use (VmSize), in bytes.
std::size_t address_space_bytes();
// The size of a transparent huge page when the kernel may back anonymous
// memory with them (mode "always" or "madvise"), else 0. A single touched byte
// can make a whole huge page resident.
std::size_t transparent_huge_page_size();
// Sets RLIMIT_AS to the current address-space use plus `headroom` bytes.
// Returns false if the limit could not be set.
bool limit_address_space(std::size_t headroom);

// ---- Child processes ------------------------------------------------------------
// Exit codes a child uses to report its own failures.
inline constexpr int kChildCheckFailed = 90;
inline constexpr int kChildUnexpectedException = 91;

struct ChildStatus {
  enum class Kind { kExited, kSignaled, kTimedOut, kForkFailed };
  Kind kind = Kind::kForkFailed;
  int value = 0;  // exit code, or signal number
  bool ok() const { return kind == Kind::kExited && value == 0; }
  std::string describe() const;
};

// Runs `body` in a forked child and returns how it ended. The child exits with
// body's return value through _exit() (no atexit handlers or static
// destructors run) unless the body exits by itself. The child arms alarm() as
// a backstop and the parent kills it after `timeout_seconds`: a deadlocked
// child is reported as kTimedOut instead of hanging the test.
ChildStatus run_in_child(const std::function<int()>& body, unsigned timeout_seconds);

// Waits for an already forked child with the same deadline rules.
ChildStatus wait_for_child(int pid, unsigned timeout_seconds);

// Reports a failed check inside a child process (stderr, no allocation) and
// ends the child with kChildCheckFailed.
[[noreturn]] void child_check_failed(const char* file, int line, const char* expr,
                                     const char* detail);

// ---- Environment ----------------------------------------------------------------
// Integer from the environment, or `fallback` when unset or malformed.
long env_long(const char* name, long fallback);
// Scale factor for workload sizes (STRATA_TEST_SCALE, default 1.0): sanitizer
// builds run reduced workloads.
double workload_scale();
// n * workload_scale(), at least `minimum`.
std::size_t scaled(std::size_t n, std::size_t minimum = 1);

}  // namespace strata_test

// Check inside a forked child: gtest assertions there would go unseen by the
// parent, so a failure ends the child with a distinctive exit code.
#define CHILD_CHECK(cond)                                                          \
  do {                                                                             \
    if (!(cond)) ::strata_test::child_check_failed(__FILE__, __LINE__, #cond, ""); \
  } while (0)
#define CHILD_CHECK_MSG(cond, detail)                                                  \
  do {                                                                                 \
    if (!(cond)) ::strata_test::child_check_failed(__FILE__, __LINE__, #cond, detail); \
  } while (0)

#define EXPECT_CHILD_OK(status) EXPECT_TRUE((status).ok()) << (status).describe()
#define ASSERT_CHILD_OK(status) ASSERT_TRUE((status).ok()) << (status).describe()

#endif  // STRATA_TESTS_SUPPORT_TEST_SUPPORT_HPP
