// Out of memory: each test runs in a child whose address space is capped
// with RLIMIT_AS. Allocation functions must fail cleanly (NULL + ENOMEM,
// std::bad_alloc, nullptr for nothrow), keep existing blocks intact, and work
// again once memory is freed.
#include <malloc.h>
#include <sys/resource.h>

#include <atomic>
#include <barrier>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>
#include <vector>

#include "alloc_api.hpp"
#include "test_support.hpp"

namespace strata_test {
namespace {

constexpr unsigned kTimeout = 120;

struct Block {
  void* p;
  std::size_t size;
};

// Allocates `size`-byte blocks into `held` until malloc fails, filling their
// first and last byte. `held` is reserved before the limit is set, so that
// the test's own bookkeeping never allocates; running out of that capacity
// means the limit was never reached. Checks that the failure is ENOMEM.
void exhaust(std::size_t size, std::vector<Block>& held) {
  while (held.size() < held.capacity()) {
    errno = 0;
    void* p = malloc(size);
    if (p == nullptr) {
      CHILD_CHECK_MSG(errno == ENOMEM, "a failed malloc must set errno to ENOMEM");
      return;
    }
    const auto mark = static_cast<unsigned char>(held.size());
    static_cast<unsigned char*>(p)[0] = mark;
    static_cast<unsigned char*>(p)[size - 1] = mark;
    held.push_back({p, size});
  }
  CHILD_CHECK_MSG(false, "the address-space limit was never reached");
}

void check_and_free(const std::vector<Block>& blocks, std::size_t from, std::size_t step) {
  for (std::size_t i = from; i < blocks.size(); i += step) {
    const auto* bytes = static_cast<const unsigned char*>(blocks[i].p);
    CHILD_CHECK_MSG(bytes[0] == static_cast<unsigned char>(i) &&
                        bytes[blocks[i].size - 1] == static_cast<unsigned char>(i),
                    "a block allocated before the failure was corrupted");
    free(blocks[i].p);
  }
}

// A short workload verifying that the heap is consistent.
void check_heap_works() {
  Rng rng(5);
  std::vector<std::pair<void*, std::size_t>> blocks;
  for (int i = 0; i < 2000; ++i) {
    const std::size_t size = rng.chance(95) ? rng.between(1, 4096) : rng.between(4097, kMiB);
    void* p = malloc(size);
    if (p == nullptr) {
      char detail[128];
      std::snprintf(detail, sizeof detail,
                    "malloc(%zu) failed after everything was freed (%d blocks live)", size, i);
      CHILD_CHECK_MSG(p != nullptr, detail);
    }
    fill_pattern(p, size, static_cast<std::uint64_t>(i));
    blocks.emplace_back(p, size);
  }
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    CHILD_CHECK(pattern_mismatch(blocks[i].first, blocks[i].second, i) == blocks[i].second);
    free(blocks[i].first);
  }
}

TEST(OutOfMemory, MallocFamilyFailsCleanlyAndRecovers) {
  const ChildStatus status = run_in_child(
      [] {
        std::vector<Block> held;
        held.reserve(4096);
        CHILD_CHECK(limit_address_space(512 * kMiB));
        exhaust(kMiB, held);
        CHILD_CHECK_MSG(held.size() >= 128, "fewer than 128 MiB allocated under a 512 MiB limit");
        void* small = malloc(64);  // may still succeed from cached memory
        free(small);

        // Every allocation function fails with the documented error.
        const std::size_t big = 64 * kMiB;
        errno = 0;
        CHILD_CHECK(malloc(opaque(big)) == nullptr && errno == ENOMEM);
        errno = 0;
        CHILD_CHECK(calloc(opaque(big / 16), 16) == nullptr && errno == ENOMEM);
        errno = 0;
        CHILD_CHECK(aligned_alloc(4096, opaque(big)) == nullptr && errno == ENOMEM);
        errno = 0;
        CHILD_CHECK(memalign(64, opaque(big)) == nullptr && errno == ENOMEM);
        errno = 0;
        CHILD_CHECK(valloc(opaque(big)) == nullptr && errno == ENOMEM);
        void* sentinel = &sentinel;
        void* out = sentinel;
        CHILD_CHECK(posix_memalign(&out, 4096, opaque(big)) == ENOMEM && out == sentinel);

        // A failed realloc keeps the block.
        void* keep = held.front().p;
        errno = 0;
        CHILD_CHECK(realloc(keep, opaque(big)) == nullptr && errno == ENOMEM);
        CHILD_CHECK(static_cast<unsigned char*>(keep)[kMiB - 1] == 0);
        errno = 0;
        CHILD_CHECK(reallocarray(keep, opaque(big / 8), 8) == nullptr && errno == ENOMEM);
        CHILD_CHECK(static_cast<unsigned char*>(keep)[0] == 0);

        // Freeing every other block makes room for blocks of the same size
        // (the holes need not merge into larger ones).
        check_and_free(held, 0, 2);
        std::vector<Block> refill;
        refill.reserve(held.size());
        for (std::size_t i = 0; i < held.size() / 4; ++i) {
          void* p = malloc(kMiB);
          CHILD_CHECK_MSG(p != nullptr, "malloc(1 MiB) failed after freeing half of the blocks");
          std::memset(p, 1, kMiB);
          refill.push_back({p, kMiB});
        }
        for (const Block& b : refill) free(b.p);
        check_and_free(held, 1, 2);
        // With everything freed, most of the blocks fit again.
        const std::size_t first_round = held.size();
        held.clear();
        exhaust(kMiB, held);
        CHILD_CHECK_MSG(held.size() >= first_round * 9 / 10,
                        "far fewer 1 MiB blocks fit after freeing all of them");
        check_and_free(held, 0, 1);
        check_heap_works();
        return 0;
      },
      kTimeout);
  EXPECT_CHILD_OK(status);
}

TEST(OutOfMemory, SmallObjectsExhaustAndRecover) {
  const ChildStatus status = run_in_child(
      [] {
        std::vector<Block> held;
        held.reserve(4 * 1024 * 1024);
        CHILD_CHECK(limit_address_space(256 * kMiB));
        exhaust(200, held);
        const std::size_t first_round = held.size();
        CHILD_CHECK(first_round > 100000);
        check_and_free(held, 0, 1);
        held.clear();
        // The freed memory can be allocated again, at least for the most part.
        exhaust(200, held);
        CHILD_CHECK_MSG(held.size() >= first_round / 2,
                        "far fewer small blocks fit after freeing all of them");
        check_and_free(held, 0, 1);
        held.clear();
        check_heap_works();
        return 0;
      },
      kTimeout);
  EXPECT_CHILD_OK(status);
}

TEST(OutOfMemory, OperatorNewThrowsAndNothrowReturnsNull) {
  const ChildStatus status = run_in_child(
      [] {
        std::vector<Block> held;
        held.reserve(4096);
        CHILD_CHECK(limit_address_space(512 * kMiB));
        exhaust(kMiB, held);
        const std::size_t big = 64 * kMiB;
        bool threw = false;
        try {
          escape(::operator new(opaque(big)));
        } catch (const std::bad_alloc&) {
          threw = true;
        }
        CHILD_CHECK_MSG(threw, "operator new did not throw std::bad_alloc");
        threw = false;
        try {
          escape(::operator new[](opaque(big), std::align_val_t{4096}));
        } catch (const std::bad_alloc&) {
          threw = true;
        }
        CHILD_CHECK_MSG(threw, "aligned operator new[] did not throw std::bad_alloc");
        CHILD_CHECK(::operator new(opaque(big), std::nothrow) == nullptr);
        CHILD_CHECK(::operator new[](opaque(big), std::nothrow) == nullptr);
        CHILD_CHECK(::operator new (opaque(big), std::align_val_t{64}, std::nothrow) == nullptr);
        check_and_free(held, 0, 1);
        for (int i = 0; i < 16; ++i) {
          char* p = new char[kMiB];
          std::memset(p, 2, kMiB);
          delete[] p;
        }
        check_heap_works();
        return 0;
      },
      kTimeout);
  EXPECT_CHILD_OK(status);
}

TEST(OutOfMemory, ThreadsHitTheLimitTogether) {
  const ChildStatus status = run_in_child(
      [] {
        constexpr unsigned kThreads = 4;
        std::barrier sync(kThreads + 1);
        std::atomic<int> failures{0};
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < kThreads; ++t) {
          threads.emplace_back([&, t] {
            std::vector<Block> held;
            held.reserve(4096);
            sync.arrive_and_wait();  // the limit is set now
            for (int round = 0; round < 3; ++round) {
              const std::size_t size = (t % 2 == 0 ? 256 : 64) * kKiB + 8 * t;
              while (held.size() < held.capacity()) {
                errno = 0;
                void* p = malloc(size);
                if (p == nullptr) {
                  if (errno != ENOMEM) failures.fetch_add(1);
                  break;
                }
                std::memset(p, static_cast<int>(t), 64);
                held.push_back({p, size});
              }
              for (const Block& b : held) {
                if (static_cast<unsigned char*>(b.p)[63] != t) failures.fetch_add(1);
                free(b.p);
              }
              held.clear();
              sync.arrive_and_wait();  // everyone freed; next round
            }
          });
        }
        CHILD_CHECK(limit_address_space(384 * kMiB));
        sync.arrive_and_wait();
        for (int round = 0; round < 3; ++round) sync.arrive_and_wait();
        for (std::thread& t : threads) t.join();
        CHILD_CHECK(failures.load() == 0);
        check_heap_works();
        return 0;
      },
      kTimeout);
  EXPECT_CHILD_OK(status);
}

}  // namespace
}  // namespace strata_test
