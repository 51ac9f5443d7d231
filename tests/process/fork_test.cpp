// fork() while other threads allocate: the child must be able to allocate
// (glibc resets its malloc locks in the child) and exit; nothing may
// deadlock. Children end through their own alarm() or the parent's deadline
// if they hang, which fails the test instead of hanging it.
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>
#include <vector>

#include "alloc_api.hpp"
#include "background_load.hpp"
#include "test_support.hpp"

namespace strata_test {
namespace {

constexpr unsigned kChildTimeout = 30;

// What a child does after fork: allocate every kind of block, from the
// forking thread and from a new thread.
int allocate_in_child() {
  for (const std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{24}, std::size_t{500},
                                 std::size_t{4096}, 100 * kKiB, 3 * kMiB, 9 * kMiB}) {
    void* p = malloc(size);
    CHILD_CHECK(p != nullptr);
    fill_pattern(p, size, size);
    void* q = calloc(1, size + 1);
    CHILD_CHECK(q != nullptr);
    CHILD_CHECK(first_nonzero(q, size + 1) == size + 1);
    p = realloc(p, size * 2 + 8);
    CHILD_CHECK(p != nullptr);
    CHILD_CHECK(pattern_mismatch(p, size, size) == size);
    void* aligned = nullptr;
    CHILD_CHECK(posix_memalign(&aligned, 4096, size) == 0);
    free(aligned);
    free(q);
    free(p);
    char* array = new char[size + 1];
    array[size] = 1;
    delete[] array;
  }
  std::atomic<bool> thread_ok{false};
  std::thread worker([&] {
    std::vector<void*> blocks;
    for (int i = 0; i < 1000; ++i) blocks.push_back(malloc(static_cast<std::size_t>(i % 300) + 1));
    bool ok = true;
    for (void* p : blocks) {
      ok = ok && p != nullptr;
      free(p);
    }
    thread_ok = ok;
  });
  worker.join();
  CHILD_CHECK(thread_ok.load());
  return 0;
}

TEST(Fork, ChildAllocatesWhileParentThreadsAllocate) {
  BackgroundLoad load(4);
  const std::size_t forks = scaled(30, 5);
  for (std::size_t i = 0; i < forks; ++i) {
    const ChildStatus status = run_in_child(allocate_in_child, kChildTimeout);
    ASSERT_CHILD_OK(status) << " (fork number " << i << ")";
  }
  load.stop();
  EXPECT_EQ(load.failures(), 0);
}

TEST(Fork, ForkFromASecondaryThread) {
  BackgroundLoad load(3);
  std::vector<ChildStatus> statuses;
  std::thread forker([&] {
    for (std::size_t i = 0; i < scaled(20, 3); ++i) {
      statuses.push_back(run_in_child(allocate_in_child, kChildTimeout));
    }
  });
  // The main thread allocates too while the forks happen.
  for (int i = 0; i < 20000; ++i) free(malloc(static_cast<std::size_t>(i % 5000) + 1));
  forker.join();
  load.stop();
  for (std::size_t i = 0; i < statuses.size(); ++i) {
    EXPECT_CHILD_OK(statuses[i]) << " (fork number " << i << ")";
  }
  EXPECT_EQ(load.failures(), 0);
}

TEST(Fork, ChildStartsThreadsAndForksAgain) {
  BackgroundLoad load(4);
  const ChildStatus status = run_in_child(
      [] {
        // The child builds its own multi-threaded load, then forks a grandchild.
        BackgroundLoad child_load(3);
        for (int i = 0; i < 5; ++i) {
          const ChildStatus grandchild = run_in_child(allocate_in_child, kChildTimeout);
          CHILD_CHECK_MSG(grandchild.ok(), grandchild.describe().c_str());
        }
        child_load.stop();
        CHILD_CHECK(child_load.failures() == 0);
        return allocate_in_child();
      },
      2 * kChildTimeout);
  EXPECT_CHILD_OK(status);
  load.stop();
  EXPECT_EQ(load.failures(), 0);
}

std::atomic<int> atfork_calls{0};

void allocate_briefly() {
  void* p = malloc(opaque<std::size_t>(333));
  if (p != nullptr) std::memset(p, 1, 333);
  free(p);
  atfork_calls.fetch_add(1);
}

TEST(Fork, AtforkHandlersMayAllocate) {
  // User handlers run before the allocator's prepare step and after its
  // parent/child steps; allocating in them must neither deadlock nor fail.
  static bool registered = false;
  if (!registered) {
    ASSERT_EQ(pthread_atfork(allocate_briefly, allocate_briefly, allocate_briefly), 0);
    registered = true;
  }
  BackgroundLoad load(3);
  atfork_calls = 0;
  for (int i = 0; i < 10; ++i) {
    const ChildStatus status = run_in_child(
        [] {
          // prepare and child handlers ran in this process.
          CHILD_CHECK(atfork_calls.load() >= 2);
          return allocate_in_child();
        },
        kChildTimeout);
    ASSERT_CHILD_OK(status);
  }
  EXPECT_EQ(atfork_calls.load(), 20) << "prepare and parent handlers run once per fork";
  load.stop();
  EXPECT_EQ(load.failures(), 0);
}

TEST(Fork, ChildExecsAProgram) {
  // posix_spawn/system paths: fork, allocate, exec.
  BackgroundLoad load(3);
  for (int i = 0; i < 5; ++i) {
    std::fflush(nullptr);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(kChildTimeout);
      free(malloc(1000));
      execl("/bin/sh", "sh", "-c", "exit 0", static_cast<char*>(nullptr));
      _exit(127);
    }
    EXPECT_CHILD_OK(wait_for_child(pid, kChildTimeout));
  }
  load.stop();
}

}  // namespace
}  // namespace strata_test
