// Allocation outside main: in constructors that run before main, in static
// initializers, in atexit handlers, static destructors and the main thread's
// thread_local destructors at exit, and exit() while other threads allocate.
#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "alloc_api.hpp"
#include "background_load.hpp"
#include "test_support.hpp"

namespace strata_test {
namespace {

// ---- Before main ----------------------------------------------------------------

struct EarlyBlock {
  void* p;
  std::size_t size;
  std::uint64_t seed;
};
EarlyBlock early_blocks[7];
bool early_constructor_ran = false;

__attribute__((constructor(101))) void allocate_before_main() {
  const std::size_t sizes[] = {1, 100, 5000, 300 * kKiB, 4 * kMiB};
  std::size_t n = 0;
  for (const std::size_t size : sizes) {
    early_blocks[n] = {malloc(size), size, 100 + n};
    ++n;
  }
  void* aligned = nullptr;
  if (posix_memalign(&aligned, 4096, 8192) != 0) aligned = nullptr;
  early_blocks[n++] = {aligned, 8192, 200};
  early_blocks[n++] = {calloc(10, 100), 1000, 300};
  for (EarlyBlock& b : early_blocks) {
    if (b.p != nullptr && b.seed != 300) fill_pattern(b.p, b.size, b.seed);
  }
  early_constructor_ran = true;
}

std::map<std::string, std::vector<int>> build_static_map() {
  std::map<std::string, std::vector<int>> m;
  for (int i = 0; i < 500; ++i) m["key-" + std::to_string(i)] = std::vector<int>(i % 50 + 1, i);
  return m;
}
const std::map<std::string, std::vector<int>> static_map = build_static_map();

TEST(Lifecycle, BlocksAllocatedBeforeMainSurvive) {
  ASSERT_TRUE(early_constructor_ran);
  for (const EarlyBlock& b : early_blocks) {
    ASSERT_NE(b.p, nullptr) << "allocation of " << b.size << " bytes before main failed";
    if (b.seed == 300) {
      EXPECT_TRUE(all_zero(b.p, b.size)) << "calloc before main";
    } else {
      EXPECT_TRUE(pattern_intact(b.p, b.size, b.seed));
    }
    EXPECT_GE(malloc_usable_size(b.p), b.size);
  }
  EXPECT_TRUE(aligned_to(early_blocks[5].p, 4096));
  void* grown = realloc(early_blocks[1].p, 100000);
  ASSERT_NE(grown, nullptr);
  EXPECT_TRUE(pattern_intact(grown, 100, early_blocks[1].seed));
  early_blocks[1].p = grown;
  for (EarlyBlock& b : early_blocks) {
    free(b.p);
    b.p = nullptr;
  }
}

TEST(Lifecycle, StaticObjectsBuiltBeforeMainSurvive) {
  ASSERT_EQ(static_map.size(), 500u);
  for (int i = 0; i < 500; ++i) {
    const auto it = static_map.find("key-" + std::to_string(i));
    ASSERT_NE(it, static_map.end());
    ASSERT_EQ(it->second, std::vector<int>(i % 50 + 1, i));
  }
}

// ---- At exit -----------------------------------------------------------------------

int exit_marker_fd = -1;         // where exit-time code reports that it ran
bool exit_checks_armed = false;  // only in the child of the test below
void* exit_block = nullptr;      // allocated in main, freed by the atexit handler

void exit_time_allocations(char marker) {
  for (const std::size_t size : {std::size_t{8}, std::size_t{1000}, 70 * kKiB, 5 * kMiB}) {
    void* p = malloc(size);
    CHILD_CHECK_MSG(p != nullptr, "malloc at exit");
    fill_pattern(p, size, size);
    CHILD_CHECK(pattern_mismatch(p, size, size) == size);
    p = realloc(p, size * 3);
    CHILD_CHECK_MSG(p != nullptr, "realloc at exit");
    CHILD_CHECK(pattern_mismatch(p, size, size) == size);
    free(p);
  }
  std::string text(5000, marker);
  std::vector<std::string> copies(100, text);
  CHILD_CHECK(copies.back() == text);
  const ssize_t written = write(exit_marker_fd, &marker, 1);
  CHILD_CHECK(written == 1);
}

struct StaticDestructorAllocates {
  ~StaticDestructorAllocates() {
    if (exit_checks_armed) exit_time_allocations('D');
  }
};
StaticDestructorAllocates static_destructor_allocates;

struct ThreadLocalDestructorAllocates {
  bool used = false;
  ~ThreadLocalDestructorAllocates() {
    if (exit_checks_armed && used) exit_time_allocations('T');
  }
};
thread_local ThreadLocalDestructorAllocates main_thread_local;

void atexit_handler() {
  CHILD_CHECK(exit_block != nullptr);
  CHILD_CHECK_MSG(pattern_mismatch(exit_block, 3000, 3) == 3000, "block corrupted before exit");
  free(exit_block);
  exit_time_allocations('A');
}

TEST(Lifecycle, AtexitHandlersAndDestructorsMayAllocate) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const ChildStatus status = run_in_child(
      [&] {
        close(fds[0]);
        exit_marker_fd = fds[1];
        exit_checks_armed = true;
        exit_block = malloc(3000);
        CHILD_CHECK(exit_block != nullptr);
        fill_pattern(exit_block, 3000, 3);
        main_thread_local.used = true;
        CHILD_CHECK(atexit(atexit_handler) == 0);
        std::exit(0);
        return 1;
      },
      60);
  close(fds[1]);
  std::string markers;
  char buf[16];
  for (ssize_t got; (got = read(fds[0], buf, sizeof buf)) > 0;) {
    markers.append(buf, static_cast<std::size_t>(got));
  }
  close(fds[0]);
  EXPECT_CHILD_OK(status);
  EXPECT_NE(markers.find('T'), std::string::npos) << "thread_local destructor did not finish";
  EXPECT_NE(markers.find('A'), std::string::npos) << "atexit handler did not finish";
  EXPECT_NE(markers.find('D'), std::string::npos) << "static destructor did not finish";
}

TEST(Lifecycle, ExitWhileOtherThreadsAllocate) {
  // exit() runs destructors (possibly the allocator's own) while threads are
  // still allocating; the process must end cleanly with the exit status.
  for (int i = 0; i < 10; ++i) {
    const ChildStatus status = run_in_child(
        [] {
          auto* load = new BackgroundLoad(4);  // never destroyed: threads outlive main
          load->detach();
          for (int k = 0; k < 1000; ++k) free(malloc(static_cast<std::size_t>(k) * 7 + 1));
          std::exit(0);
          return 1;
        },
        60);
    ASSERT_CHILD_OK(status) << " (iteration " << i << ")";
  }
}

// The test process itself also allocates in an atexit handler.
void process_exit_allocation() {
  void* p = malloc(opaque<std::size_t>(12345));
  if (p == nullptr) _exit(kChildCheckFailed);
  std::memset(p, 1, 12345);
  free(p);
}
const int process_exit_handler_registered = std::atexit(process_exit_allocation);

}  // namespace
}  // namespace strata_test
