#include "test_support.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

namespace strata_test {

std::uint64_t mix64(std::uint64_t x) {
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

namespace {

std::uint64_t pattern_word(std::uint64_t seed, std::size_t index) {
  return mix64(seed * 0x9E3779B97F4A7C15ull + index + 1);
}

std::string hex_byte(unsigned value) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", value & 0xFFu);
  return buf;
}

}  // namespace

void fill_pattern(void* p, std::size_t n, std::uint64_t seed) {
  auto* bytes = static_cast<unsigned char*>(p);
  const std::size_t words = n / 8;
  for (std::size_t k = 0; k < words; ++k) {
    const std::uint64_t w = pattern_word(seed, k);
    __builtin_memcpy(bytes + 8 * k, &w, 8);
  }
  if (n % 8 != 0) {
    const std::uint64_t w = pattern_word(seed, words);
    const auto* src = reinterpret_cast<const unsigned char*>(&w);
    for (std::size_t i = 0; i < n % 8; ++i) bytes[8 * words + i] = src[i];
  }
}

std::size_t pattern_mismatch(const void* p, std::size_t n, std::uint64_t seed) {
  const auto* bytes = static_cast<const unsigned char*>(p);
  const std::size_t words = (n + 7) / 8;
  for (std::size_t k = 0; k < words; ++k) {
    const std::uint64_t w = pattern_word(seed, k);
    const auto* expected = reinterpret_cast<const unsigned char*>(&w);
    const std::size_t len = k + 1 < words || n % 8 == 0 ? 8 : n % 8;
    if (len == 8) {
      std::uint64_t actual = 0;
      __builtin_memcpy(&actual, bytes + 8 * k, 8);
      if (actual == w) continue;
    }
    for (std::size_t i = 0; i < len; ++i) {
      if (bytes[8 * k + i] != expected[i]) return 8 * k + i;
    }
  }
  return n;
}

std::size_t first_nonzero(const void* p, std::size_t n) {
  const auto* bytes = static_cast<const unsigned char*>(p);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    __builtin_memcpy(&w, bytes + i, 8);
    if (w != 0) break;
  }
  for (; i < n; ++i) {
    if (bytes[i] != 0) return i;
  }
  return n;
}

::testing::AssertionResult pattern_intact(const void* p, std::size_t n, std::uint64_t seed) {
  const std::size_t bad = pattern_mismatch(p, n, seed);
  if (bad == n) return ::testing::AssertionSuccess();
  const auto* bytes = static_cast<const unsigned char*>(p);
  unsigned char expected[8];
  const std::uint64_t w = pattern_word(seed, bad / 8);
  __builtin_memcpy(expected, &w, 8);
  return ::testing::AssertionFailure()
         << "content of the " << n << "-byte block at " << p << " changed: byte " << bad << " is "
         << hex_byte(bytes[bad]) << ", expected " << hex_byte(expected[bad % 8]);
}

::testing::AssertionResult all_zero(const void* p, std::size_t n) {
  const std::size_t bad = first_nonzero(p, n);
  if (bad == n) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "the " << n << "-byte block at " << p << " is not zeroed: byte " << bad << " is "
         << hex_byte(static_cast<const unsigned char*>(p)[bad]);
}

::testing::AssertionResult aligned_to(const void* p, std::size_t alignment) {
  if (is_aligned(p, alignment)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << p << " is not aligned to " << alignment << " (offset "
                                       << reinterpret_cast<std::uintptr_t>(p) % alignment << ")";
}

std::vector<std::size_t> interesting_sizes(std::size_t max) {
  std::vector<std::size_t> sizes;
  for (std::size_t n = 0; n <= 1024 && n <= max; ++n) sizes.push_back(n);
  for (std::size_t power = 1024; power <= max; power *= 2) {
    for (const std::size_t n :
         {power - 16, power - 1, power, power + 1, power + 16, power + power / 2}) {
      if (n > 1024 && n <= max) sizes.push_back(n);
    }
  }
  return sizes;
}

const std::size_t* impossible_sizes(std::size_t* count) {
  static const std::size_t sizes[] = {
      std::size_t{1} << 62,                       // beyond any user address space
      static_cast<std::size_t>(PTRDIFF_MAX),      // likewise
      static_cast<std::size_t>(PTRDIFF_MAX) + 1,  // first size above PTRDIFF_MAX
      SIZE_MAX / 2 + 4096,
      SIZE_MAX - 4095,  // rounding up to a page would wrap
      SIZE_MAX - 1,
      SIZE_MAX,
  };
  *count = sizeof sizes / sizeof sizes[0];
  return sizes;
}

std::size_t page_size() {
  static const std::size_t size = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

namespace {

// Reads a small file into buf without allocating; returns the length read.
std::size_t read_small_file(const char* path, char* buf, std::size_t cap) {
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  std::size_t len = 0;
  while (len + 1 < cap) {
    const ssize_t got = read(fd, buf + len, cap - 1 - len);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    len += static_cast<std::size_t>(got);
  }
  close(fd);
  buf[len] = '\0';
  return len;
}

// The value of a "Name:   1234 kB" line of /proc/self/status, in bytes, or -1.
long long status_field_bytes(const char* name) {
  char buf[8192];
  if (read_small_file("/proc/self/status", buf, sizeof buf) == 0) return -1;
  const std::size_t name_len = std::strlen(name);
  for (const char* line = buf; *line != '\0';) {
    if (std::strncmp(line, name, name_len) == 0 && line[name_len] == ':') {
      return std::strtoll(line + name_len + 1, nullptr, 10) * 1024;
    }
    const char* next = std::strchr(line, '\n');
    if (next == nullptr) break;
    line = next + 1;
  }
  return -1;
}

}  // namespace

std::size_t resident_anon_bytes() {
  long long value = status_field_bytes("RssAnon");
  if (value < 0) value = status_field_bytes("VmRSS");
  return value < 0 ? 0 : static_cast<std::size_t>(value);
}

std::size_t address_space_bytes() {
  const long long value = status_field_bytes("VmSize");
  return value < 0 ? 0 : static_cast<std::size_t>(value);
}

std::size_t transparent_huge_page_size() {
  char buf[256];
  if (read_small_file("/sys/kernel/mm/transparent_hugepage/enabled", buf, sizeof buf) == 0) {
    return 0;
  }
  if (std::strstr(buf, "[never]") != nullptr) return 0;
  if (read_small_file("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", buf, sizeof buf) > 0) {
    const long long size = std::strtoll(buf, nullptr, 10);
    if (size > 0) return static_cast<std::size_t>(size);
  }
  return 2 * kMiB;
}

bool limit_address_space(std::size_t headroom) {
  struct rlimit limit;
  if (getrlimit(RLIMIT_AS, &limit) != 0) return false;
  const std::size_t in_use = address_space_bytes();
  if (in_use == 0) return false;
  const rlim_t wanted = static_cast<rlim_t>(in_use + headroom);
  if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < wanted) return false;
  limit.rlim_cur = wanted;
  return setrlimit(RLIMIT_AS, &limit) == 0;
}

std::string ChildStatus::describe() const {
  char buf[256];
  switch (kind) {
    case Kind::kExited:
      if (value == kChildCheckFailed) {
        std::snprintf(buf, sizeof buf,
                      "child exited with code %d: a CHILD_CHECK failed (its message is on stderr)",
                      value);
      } else if (value == kChildUnexpectedException) {
        std::snprintf(buf, sizeof buf, "child exited with code %d: an exception escaped", value);
      } else {
        std::snprintf(buf, sizeof buf, "child exited with code %d", value);
      }
      break;
    case Kind::kSignaled:
      std::snprintf(buf, sizeof buf, "child was killed by signal %d (%s)%s", value,
                    strsignal(value),
                    value == SIGALRM ? ": its alarm fired, it hung or deadlocked" : "");
      break;
    case Kind::kTimedOut:
      std::snprintf(buf, sizeof buf, "child did not finish within %d s: it hung or deadlocked",
                    value);
      break;
    case Kind::kForkFailed:
      std::snprintf(buf, sizeof buf, "fork failed: %s", std::strerror(value));
      break;
  }
  return buf;
}

ChildStatus wait_for_child(int pid, unsigned timeout_seconds) {
  ChildStatus status;
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  // The child's own alarm fires first; the parent's deadline is a backstop
  // for a child that blocks SIGALRM or never armed it.
  const long long deadline_ns = (static_cast<long long>(timeout_seconds) + 10) * 1000000000ll;
  for (;;) {
    int wstatus = 0;
    const pid_t done = waitpid(pid, &wstatus, WNOHANG);
    if (done == pid) {
      if (WIFEXITED(wstatus)) {
        status.kind = ChildStatus::Kind::kExited;
        status.value = WEXITSTATUS(wstatus);
      } else {
        status.kind = ChildStatus::Kind::kSignaled;
        status.value = WTERMSIG(wstatus);
      }
      return status;
    }
    if (done < 0 && errno != EINTR) {
      status.kind = ChildStatus::Kind::kForkFailed;
      status.value = errno;
      return status;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    const long long elapsed =
        (now.tv_sec - start.tv_sec) * 1000000000ll + (now.tv_nsec - start.tv_nsec);
    if (elapsed > deadline_ns) {
      kill(pid, SIGKILL);
      waitpid(pid, &wstatus, 0);
      status.kind = ChildStatus::Kind::kTimedOut;
      status.value = static_cast<int>(timeout_seconds);
      return status;
    }
    struct timespec pause = {0, 2000000};
    nanosleep(&pause, nullptr);
  }
}

ChildStatus run_in_child(const std::function<int()>& body, unsigned timeout_seconds) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    ChildStatus status;
    status.kind = ChildStatus::Kind::kForkFailed;
    status.value = errno;
    return status;
  }
  if (pid == 0) {
    alarm(timeout_seconds);
    int code = kChildUnexpectedException;
    try {
      code = body();
    } catch (const std::exception& e) {
      const char* what = e.what();
      const ssize_t ignored = write(STDERR_FILENO, what, std::strlen(what));
      (void)ignored;
    } catch (...) {
    }
    std::fflush(nullptr);
    _exit(code);
  }
  return wait_for_child(pid, timeout_seconds);
}

void child_check_failed(const char* file, int line, const char* expr, const char* detail) {
  char buf[512];
  const int len = std::snprintf(buf, sizeof buf, "%s:%d: child check failed: %s%s%s (errno %d)\n",
                                file, line, expr, detail[0] != '\0' ? ": " : "", detail, errno);
  if (len > 0) {
    const ssize_t ignored =
        write(STDERR_FILENO, buf, std::min(static_cast<std::size_t>(len), sizeof buf - 1));
    (void)ignored;
  }
  _exit(kChildCheckFailed);
}

long env_long(const char* name, long fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  return end != nullptr && *end == '\0' ? value : fallback;
}

double workload_scale() {
  const char* text = std::getenv("STRATA_TEST_SCALE");
  if (text == nullptr || *text == '\0') return 1.0;
  const double value = std::strtod(text, nullptr);
  return value > 0.0 ? value : 1.0;
}

std::size_t scaled(std::size_t n, std::size_t minimum) {
  const auto value = static_cast<std::size_t>(static_cast<double>(n) * workload_scale());
  return value < minimum ? minimum : value;
}

}  // namespace strata_test
