// Upkeep that allocates: the first time a process has several threads,
// strata's slow path starts its purge thread, and pthread_create calls malloc
// from inside the allocator. Whatever size class that inner call uses, the
// allocation in progress must not be disturbed. Each size runs in a fresh
// child, so that the purge thread starts during its loop.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "test_support.hpp"

namespace {

using strata_test::opaque;

void* idle(void*) { return nullptr; }

// In a child: become multi-threaded, then run enough allocations of one
// size through the refill path that upkeep runs many times.
int churn(size_t size) {
  pthread_t thread;
  if (pthread_create(&thread, nullptr, idle, nullptr) != 0) return 2;
  pthread_join(thread, nullptr);
  std::vector<char*> blocks;
  for (int round = 0; round < 40; ++round) {
    for (int i = 0; i < 2000; ++i) {
      char* p = static_cast<char*>(std::malloc(opaque(size)));
      if (p == nullptr) return 3;
      std::memset(p, round, size);
      blocks.push_back(p);
    }
    for (size_t i = 0; i < blocks.size(); i += 2) std::free(blocks[i]);
    std::vector<char*> kept;
    for (size_t i = 1; i < blocks.size(); i += 2) kept.push_back(blocks[i]);
    blocks.swap(kept);
  }
  for (char* p : blocks) std::free(p);
  return 0;
}

TEST(Upkeep, StartingThePurgeThreadDoesNotDisturbARefill) {
  for (size_t size = 16; size <= 1024; size += 16) {
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) _exit(churn(size));
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status))
        << "size " << size << ": killed by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    ASSERT_EQ(WEXITSTATUS(status), 0) << "size " << size;
  }
}

}  // namespace
