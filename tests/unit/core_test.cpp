// White-box tests of the allocator's data structures through the prefixed
// library: slab geometry, alignment by size class, the large-object registry
// and cache, remote frees and slab return, the thread heaps' bins and the
// release of idle classes, and borrowing from the next classes.
#include <gtest/gtest.h>
#include <strata/strata.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "heap/runtime.h"
#include "large/large.h"
#include "slab/segment.h"
#include "slab/slab_pool.h"

namespace strata {
namespace {

TEST(Core, SmallBlocksLiveInRegisteredSegments) {
  void* p = strata_malloc(100);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(g_segment_map.contains(p));
  Slab* slab = slab_of(segment_of(p), p);
  // 112 bytes, or more if the heap had no 112-byte block left (borrowing).
  EXPECT_GE(slab->block_size, 112u);
  EXPECT_EQ(slab->block_size, strata_malloc_usable_size(p));
  EXPECT_TRUE(slab->is_block_start(p));
  EXPECT_FALSE(slab->is_block_start(static_cast<char*>(p) + 16));
  strata_free(p);
  int local = 0;
  EXPECT_FALSE(g_segment_map.contains(&local));
}

TEST(Core, AlignedRequestsUseClassesWhoseBlocksAreMultiples) {
  for (size_t alignment = 32; alignment <= 128 * 1024; alignment *= 2) {
    for (size_t size : {size_t{1}, alignment / 2 + 1, alignment, alignment + 16}) {
      void* p = strata_aligned_alloc(alignment, size);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % alignment, 0u) << alignment << " " << size;
      EXPECT_GE(strata_malloc_usable_size(p), size);
      strata_free(p);
    }
  }
}

TEST(Core, LargeBlocksAreRegisteredAndForgottenOnFree) {
  void* p = strata_malloc(1 << 20);
  ASSERT_NE(p, nullptr);
  EXPECT_FALSE(g_segment_map.contains(p));
  EXPECT_GE(large::usable_size(p), size_t{1} << 20);
  strata_free(p);
  EXPECT_EQ(large::usable_size(p), 0u);
  EXPECT_GE(large::recently_freed_size(p), size_t{1} << 20);
}

TEST(Core, LargeReallocKeepsContentsAcrossMoves) {
  auto* p = static_cast<unsigned char*>(strata_malloc(300 * 1024));
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < 300 * 1024; ++i) p[i] = static_cast<unsigned char>(i * 7);
  p = static_cast<unsigned char*>(strata_realloc(p, 8 << 20));
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < 300 * 1024; ++i) ASSERT_EQ(p[i], static_cast<unsigned char>(i * 7));
  p = static_cast<unsigned char*>(strata_realloc(p, 200 * 1024));
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < 200 * 1024; ++i) ASSERT_EQ(p[i], static_cast<unsigned char>(i * 7));
  strata_free(p);
}

// Blocks freed by another thread come back to their owner: after the owner
// frees its own share and collects, the slabs empty out and return to the pool.
TEST(Core, RemoteFreesAreCollectedAndSlabsReturned) {
  constexpr size_t kBlocks = 20000;
  // Idle classes give their slabs back as others grow: done first, so that
  // what this test allocates is all that moves.
  strata_trim(0);
  size_t before = slab_pool::usage().slab_bytes;
  std::vector<void*> blocks(kBlocks);
  for (auto& b : blocks) b = strata_malloc(48);
  EXPECT_GT(slab_pool::usage().slab_bytes, before);
  std::thread other([&] {
    for (size_t i = 0; i < kBlocks; i += 2) strata_free(blocks[i]);
  });
  other.join();
  for (size_t i = 1; i < kBlocks; i += 2) strata_free(blocks[i]);
  strata_trim(0);
  EXPECT_LE(slab_pool::usage().slab_bytes, before + 64 * 1024);
}

// A thread's next allocation of a class takes the block it freed last, even
// one of another heap's slabs: it is still in the cache.
TEST(Core, AFreedBlockIsHandedOutAgainFirstByTheThreadThatFreedIt) {
  void* theirs = nullptr;
  std::thread other([&] { theirs = strata_malloc(200); });
  other.join();
  void* mine = strata_malloc(200);
  strata_free(theirs);
  void* again = strata_malloc(200);
  EXPECT_EQ(again, theirs);
  strata_free(again);
  strata_free(mine);
}

// realloc of a small block keeps it while the new size fits and uses at
// least half of it; else it moves, and the old block goes back to this
// thread like any freed block, first in line for its class.
TEST(Core, ReallocKeepsABlockWhileItFitsAndFreesItOnAMove) {
  char* p = static_cast<char*>(strata_malloc(100));
  ASSERT_NE(p, nullptr);
  const size_t have = strata_malloc_usable_size(p);
  std::memset(p, 'a', have);
  ASSERT_EQ(strata_realloc(p, have), p);
  ASSERT_EQ(strata_realloc(p, have / 2), p);
  char* shrunk = static_cast<char*>(strata_realloc(p, have / 2 - 1));
  ASSERT_NE(shrunk, p);
  EXPECT_EQ(std::count(shrunk, shrunk + have / 2 - 1, 'a'), static_cast<long>(have / 2 - 1));
  EXPECT_EQ(strata_malloc(have), p) << "the old block was not handed out again first";
  char* grown = static_cast<char*>(strata_realloc(shrunk, 3 * have));
  ASSERT_NE(grown, shrunk);
  EXPECT_EQ(std::count(grown, grown + have / 2 - 1, 'a'), static_cast<long>(have / 2 - 1));
  EXPECT_EQ(strata_malloc(have / 2 - 1), shrunk) << "the old block was not handed out again first";
  strata_free(shrunk);
  strata_free(grown);
  strata_free(p);
}

// Blocks of another thread, resized here: moved with their contents, and
// their old blocks freed.
TEST(Core, ReallocMovesBlocksOfOtherThreads) {
  std::vector<char*> blocks(64);
  std::vector<size_t> usable(blocks.size());
  std::thread([&] {
    for (size_t i = 0; i < blocks.size(); ++i) {
      blocks[i] = static_cast<char*>(strata_malloc(24 + i));
      std::memset(blocks[i], static_cast<int>(i), 24 + i);
      usable[i] = strata_malloc_usable_size(blocks[i]);
    }
  }).join();
  std::vector<void*> old(blocks.begin(), blocks.end());
  // This thread's bins of those classes in use (a class's bin opens with its
  // first allocation) and empty: the old blocks will be all they hold.
  for (size_t size : usable) strata_free(strata_malloc(size));
  strata_trim(0);
  for (size_t i = 0; i < blocks.size(); ++i) {
    blocks[i] = static_cast<char*>(strata_realloc(blocks[i], 1000 + i));
    ASSERT_NE(blocks[i], nullptr);
    EXPECT_EQ(std::count(blocks[i], blocks[i] + 24 + i, static_cast<char>(i)),
              static_cast<long>(24 + i));
  }
  // The old blocks are free: each is handed out again to a request of its size.
  std::vector<void*> again;
  for (size_t size : usable) again.push_back(strata_malloc(size));
  std::vector<void*> sorted_old(old), sorted_again(again);
  std::sort(sorted_old.begin(), sorted_old.end());
  std::sort(sorted_again.begin(), sorted_again.end());
  EXPECT_EQ(sorted_again, sorted_old);
  for (void* p : again) strata_free(p);
  for (char* p : blocks) strata_free(p);
}

// free finds a block's slab and bin through the slab map, one entry per
// unit: every unit of a slab that spans several must lead to that slab and
// the bin of its class, or a block would go back into another class's bin.
TEST(Core, EveryUnitOfASlabLeadsToItsSlab) {
  constexpr size_t kSize = 12000;  // slabs of four units; a class no other test uses
  const size_t size_class = size_class_of(kSize);
  ASSERT_GT(kSizeClasses[size_class].slab_units, 1u);
  const size_t per_slab = kSizeClasses[size_class].capacity;
  ASSERT_TRUE(g_slab_map.ready());
  // In a thread of its own, so that the main thread's heap keeps no trace,
  // after a trim, so that the parked heap it takes has no free blocks of
  // the next classes to borrow.
  strata_trim(0);
  std::thread([&] {
    std::vector<void*> blocks(2 * per_slab);
    for (auto& b : blocks) b = strata_malloc(kSize);
    void* small = strata_malloc(16);
    const size_t small_bin = slab_of(segment_of(small), small)->bin_offset;
    size_t units_seen = 0;
    for (void* b : blocks) {
      Slab* slab = slab_of(segment_of(b), b);
      ASSERT_EQ(slab->size_class, size_class);
      const SlabMap::Entry& entry = g_slab_map.entry_at(SlabMap::index_of(b));
      const uint64_t magic = block_grid_magic(slab->block_size);
      EXPECT_EQ(entry.start, static_cast<uint32_t>(reinterpret_cast<uintptr_t>(slab->start)));
      EXPECT_EQ(entry.grid_bound, SlabMap::grid_bound_of(slab->carved_bound, slab->bin_offset));
      EXPECT_EQ(entry.bin_offset(), slab->bin_offset);
      EXPECT_TRUE(entry.is_block_start(b, magic));
      EXPECT_FALSE(entry.is_block_start(static_cast<char*>(b) + 16, magic));
      EXPECT_EQ(slab->bin_offset, slab_of(segment_of(blocks[0]), blocks[0])->bin_offset);
      EXPECT_NE(slab->bin_offset, small_bin);
      if (unit_of(b) != slab->first_unit) ++units_seen;
    }
    EXPECT_GT(units_seen, 0u);
    // A block from a slab's last unit goes into this class's bin and comes
    // back first.
    void* last = blocks[per_slab - 1];
    strata_free(last);
    EXPECT_EQ(strata_malloc(kSize), last);
    for (void* b : blocks) strata_free(b);
    strata_free(small);
  }).join();
}

// Every unit of no slab reads as all zero in the slab map, and the block
// grid test of such an entry fails for every address and magic number:
// free's fast path relies on it to pass foreign pointers, large blocks and
// the blocks of released slabs on to the slow path.
TEST(Core, UnitsOfNoSlabHoldNoBlocks) {
  ASSERT_TRUE(g_slab_map.ready());
  int on_stack = 0;
  void* large = strata_malloc(1 << 20);
  void* small = strata_malloc(64);
  ASSERT_NE(large, nullptr);
  ASSERT_NE(small, nullptr);
  const void* elsewhere[] = {&on_stack, large, segment_of(small), &g_no_slab};
  for (const void* p : elsewhere) {
    const SlabMap::Entry& entry = g_slab_map.entry_at(SlabMap::index_of(p));
    EXPECT_FALSE(entry.holds_blocks()) << p;
    for (uint64_t magic : {uint64_t{0}, block_grid_magic(16), block_grid_magic(4096)})
      EXPECT_FALSE(entry.is_block_start(p, magic)) << p;
  }
  strata_free(large);
  strata_free(small);

  // A slab given back to the pool: its units no longer hold any block.
  std::thread([] {
    void* block = strata_malloc(20000);
    ASSERT_NE(block, nullptr);
    const SlabMap::Entry& entry = g_slab_map.entry_at(SlabMap::index_of(block));
    const uint64_t magic = block_grid_magic(slab_of(segment_of(block), block)->block_size);
    EXPECT_TRUE(entry.is_block_start(block, magic));
    strata_free(block);
    strata_trim(0);
    EXPECT_FALSE(entry.holds_blocks());
    EXPECT_FALSE(entry.is_block_start(block, magic));
  }).join();
}

// Blocks waiting in a thread's bins are given back to their slabs when the
// thread exits, where their owner finds them: otherwise they would wait for
// the next thread to take the exited thread's heap.
TEST(Core, BinsOfAnExitingThreadGoBackToTheirSlabs) {
  constexpr size_t kSize = 16 * 1024;  // 16 blocks fill a slab, and a bin
  std::vector<void*> blocks(16);
  for (auto& b : blocks) b = strata_malloc(kSize);
  std::thread other([&] {
    // A heap of its own, whose bin of the class opens with this allocation.
    strata_free(strata_malloc(kSize));
    for (void* b : blocks) strata_free(b);
  });
  other.join();
  std::vector<void*> again(blocks.size());
  for (auto& b : again) b = strata_malloc(kSize);
  std::sort(blocks.begin(), blocks.end());
  std::sort(again.begin(), again.end());
  EXPECT_EQ(again, blocks);
  for (void* b : again) strata_free(b);
}

// Slabs of `size_class` owned by `heap` (by any heap if nullptr).
size_t slabs_of(const ThreadHeap* heap, size_t size_class) {
  struct Count {
    const ThreadHeap* heap;
    size_t size_class;
    size_t slabs;
  } count{heap, size_class, 0};
  slab_pool::for_each_slab(
      [](const Slab* slab, void* context) {
        auto* c = static_cast<Count*>(context);
        if ((c->heap == nullptr || slab->owner == c->heap) && slab->size_class == c->size_class)
          ++c->slabs;
      },
      &count);
  return count.slabs;
}

// A class the program has stopped using gives back its bin and its empty
// slabs when the heap next needs a new slab for another class, instead of
// keeping them for a size that may never come back.
TEST(Core, AnIdleClassGivesItsMemoryBackWhenAnotherGrows) {
  constexpr size_t kIdleSize = 20000;
  const size_t idle_class = size_class_of(kIdleSize);
  size_t held_before = 0, held_after = 0;
  std::thread worker([&] {
    std::vector<void*> blocks(40);
    for (auto& b : blocks) b = strata_malloc(kIdleSize);
    for (void* b : blocks) strata_free(b);
    held_before = slabs_of(tls_heap, idle_class);
    // 48-byte blocks: over a thousand refills, several dozen new slabs.
    std::vector<void*> others(100000);
    for (auto& b : others) b = strata_malloc(48);
    held_after = slabs_of(tls_heap, idle_class);
    for (void* b : others) strata_free(b);
  });
  worker.join();
  EXPECT_GE(held_before, 1u);
  EXPECT_EQ(held_after, 0u);
}

// Borrowing (ThreadHeap::borrow): a class whose slabs are all in use takes a
// free block of the next class before it takes a new slab. kBorrower's class
// is followed by one whose blocks are less aligned (1536 = 3 x 512, 1792 =
// 7 x 256), which aligned requests must not borrow.
constexpr size_t kBorrower = 1536;
constexpr size_t kLender = 1792;

// Runs test(last_lent) in a thread of its own, after a trim has emptied the
// parked heaps it may take, once the thread has filled a slab of kBorrower's
// class, its only one, and then freed `lent` blocks of the next class (into
// its bin first, then onto its slabs' free lists; last_lent is the last of
// them, the first a borrower gets, or nullptr). The class's blocks are freed
// after the test.
template <typename Test>
void with_borrower_class_full(size_t lent, Test test) {
  ASSERT_EQ(kSizeClasses[size_class_of(kBorrower) + 1].block_size, kLender);
  strata_trim(0);
  std::thread([&] {
    std::vector<void*> own(kSizeClasses[size_class_of(kBorrower)].capacity);
    for (auto& b : own) b = strata_malloc(kBorrower);
    EXPECT_EQ(slabs_of(tls_heap, size_class_of(kBorrower)), 1u);
    std::vector<void*> lender(lent);
    for (auto& b : lender) b = strata_malloc(kLender);
    for (void* b : lender) strata_free(b);
    test(lender.empty() ? nullptr : lender.back());
    for (void* b : own) strata_free(b);
  }).join();
}

TEST(Core, AClassThatRanOutBorrowsAFreeBlockOfTheNextClass) {
  with_borrower_class_full(1, [](void* lent) {
    // The block just freed, not a new slab.
    void* p = strata_malloc(kBorrower);
    EXPECT_EQ(p, lent);
    EXPECT_EQ(strata_malloc_usable_size(p), kLender);
    EXPECT_EQ(slabs_of(tls_heap, size_class_of(kBorrower)), 1u);
    // Freed, it goes back to its own class's bin, where that class finds it.
    strata_free(p);
    p = strata_malloc(kLender);
    EXPECT_EQ(p, lent);
    strata_free(p);
  });
}

TEST(Core, ABorrowedBlockIsClearedForCalloc) {
  with_borrower_class_full(0, [](void*) {
    // A block of the next class, written all over before it is freed.
    auto* lent = static_cast<unsigned char*>(strata_malloc(kLender));
    std::memset(lent, 0xAB, kLender);
    strata_free(lent);
    auto* p = static_cast<unsigned char*>(strata_calloc(1, kBorrower));
    EXPECT_EQ(p, lent);
    size_t nonzero = 0;
    for (size_t i = 0; i < kBorrower; ++i) nonzero += p[i] != 0;
    EXPECT_EQ(nonzero, 0u);
    strata_free(p);
  });
}

TEST(Core, AlignedRequestsNeverBorrow) {
  static_assert(kBorrower % 512 == 0 && kLender % 512 != 0);
  with_borrower_class_full(8, [](void*) {
    void* p = strata_aligned_alloc(512, kBorrower);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 512, 0u);
    EXPECT_EQ(strata_malloc_usable_size(p), kBorrower);
    EXPECT_EQ(slabs_of(tls_heap, size_class_of(kBorrower)), 2u);
    strata_free(p);
  });
}

// Each borrowed block is a trip through the slow path: a class that keeps
// running out takes a slab of its own after a few, though blocks are left
// to borrow.
TEST(Core, AClassThatKeepsRunningOutTakesASlabAgain) {
  // Two slabs' worth of the next class freed: a full bin, and the rest on
  // the free lists of its slabs, the current one's full.
  const size_t per_slab = kSizeClasses[size_class_of(kLender)].capacity;
  with_borrower_class_full(2 * per_slab, [per_slab](void*) {
    std::vector<void*> more(2 * per_slab);
    size_t borrowed = 0;
    for (auto& b : more) {
      b = strata_malloc(kBorrower);
      if (strata_malloc_usable_size(b) == kLender) ++borrowed;
    }
    // It stopped before it had borrowed a slab's worth.
    EXPECT_GT(borrowed, 0u);
    EXPECT_LT(borrowed, per_slab);
    EXPECT_EQ(slabs_of(tls_heap, size_class_of(kBorrower)), 2u);
    for (void* b : more) strata_free(b);
  });
}

// The largest classes live in shared slabs (heap/central_heap.h): blocks one
// thread freed in the middle of its slabs serve another thread's requests,
// where slabs of its own per thread made the second thread map new ones.
TEST(Core, SharedClassesReuseBlocksOtherThreadsFreed) {
  constexpr size_t kSize = 60000;
  const size_t size_class = size_class_of(kSize);
  ASSERT_TRUE(is_shared_class(size_class));
  const size_t per_slab = kSizeClasses[size_class].capacity;
  const size_t before = slabs_of(nullptr, size_class);
  std::vector<void*> first(8 * per_slab);
  std::vector<void*> second(4 * per_slab);
  std::atomic<int> step{0};
  // The first thread stays alive (a thread that exits hands its heap, slabs
  // and all, to the next new thread).
  std::thread owner([&] {
    for (auto& b : first) b = strata_malloc(kSize);
    // Every other block: no slab empties.
    for (size_t i = 0; i < first.size(); i += 2) strata_free(first[i]);
    step = 1;
    while (step != 2) std::this_thread::yield();
  });
  while (step != 1) std::this_thread::yield();
  size_t grown = 0;
  std::thread([&] {
    for (auto& b : second) b = strata_malloc(kSize);
    grown = slabs_of(nullptr, size_class) - before;
  }).join();
  step = 2;
  owner.join();
  // Own slabs per thread: 8 + 4. Shared: the first thread's 8, and one more
  // for the blocks its bin held while it ran (and the spare it kept).
  EXPECT_LE(grown, 9u);
  for (size_t i = 1; i < first.size(); i += 2) strata_free(first[i]);
  for (void* b : second) strata_free(b);
}

// glibc's tcache_count=0 (GLIBC_TUNABLES=glibc.malloc.tcache_count=0) turns
// the bins off for heaps taken into use afterwards: a block freed by another
// thread then goes back to its owner instead of to that thread's next
// allocation.
TEST(Core, TcacheCountZeroTurnsTheBinsOff) {
  // This thread's heap is taken into use first, with the bins on: a heap
  // taken into use while the option is 0 keeps its bins off for good, and
  // the tests after this one expect them on. The trim first empties its
  // bins: `mine` must not be a borrowed block of the heap the other thread
  // takes.
  strata_trim(0);
  void* mine = strata_malloc(200);
  char old[32];
  ASSERT_EQ(strata_option_get("tcache_count", old, sizeof old), 0);
  ASSERT_EQ(strata_option_set("tcache_count", "0"), 0);
  void* theirs = nullptr;
  std::thread other([&] {
    // A heap of its own, taken into use now; with bins, its bin of the class
    // would open here and take `mine` next.
    strata_free(strata_malloc(200));
    strata_free(mine);
    theirs = strata_malloc(200);
  });
  other.join();
  ASSERT_EQ(strata_option_set("tcache_count", old), 0);
  EXPECT_NE(theirs, mine);
  strata_free(theirs);
}

// A heap built on zeroed memory writes a class's bin only once the class
// allocates: a thread using a few classes leaves the pages holding only the
// other classes' bins untouched.
TEST(Core, AHeapWritesOnlyTheBinsOfTheClassesItUses) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t bytes = (sizeof(ThreadHeap) + page - 1) & ~(page - 1);
  const size_t last = bytes / page - 1;
  ASSERT_GE(last, 3u);  // two pages of nothing but bins at least
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(memory, MAP_FAILED);
  auto* heap = new (memory) ThreadHeap(ThreadHeap::OnZeroedMemory{});
  heap->adopt_secrets();
  heap->start_sampling(0, 0);
  heap->start_bins(true);
  auto resident = [&] {
    std::vector<unsigned char> pages(last + 1);
    EXPECT_EQ(mincore(memory, bytes, pages.data()), 0);
    std::vector<bool> out;
    for (unsigned char p : pages) out.push_back((p & 1) != 0);
    return out;
  };
  // The constructor writes the fields around the bins, on the first and last
  // pages, and none between.
  std::vector<bool> before = resident();
  for (size_t i = 1; i < last; ++i) EXPECT_FALSE(before[i]) << "page " << i;

  // A class in the middle: its bin lies on a page of bins only.
  const size_t size_class = kNumClasses / 2;
  FreeBlock* block = heap->allocate_slow(size_class, ThreadHeap::Fit::kExact);
  ASSERT_NE(block, nullptr);
  const size_t bin_offset = slab_of(segment_of(block), block)->bin_offset;
  const size_t first_bin_page = bin_offset / page;
  const size_t last_bin_page = (bin_offset + 255) / page;
  ASSERT_GT(first_bin_page, 0u);
  ASSERT_LT(last_bin_page, last);
  std::vector<bool> after = resident();
  for (size_t i = 1; i < last; ++i) {
    EXPECT_EQ(after[i], i >= first_bin_page && i <= last_bin_page) << "page " << i;
  }
  // Its bin opened: the block goes back into it.
  EXPECT_TRUE(heap->push_bin(bin_offset, block));

  heap->release_unused();
  EXPECT_EQ(slabs_of(heap, size_class), 0u);
  munmap(memory, bytes);
}

// A calloc served from a fresh slab must read as zero everywhere even though
// strata does not clear it; one served from reused memory must be cleared.
TEST(Core, CallocIsZeroOnFreshAndReusedBlocks) {
  for (int round = 0; round < 2; ++round) {
    std::vector<unsigned char*> blocks;
    for (int i = 0; i < 64; ++i) {
      auto* p = static_cast<unsigned char*>(strata_calloc(1, 100 * 1024));
      ASSERT_NE(p, nullptr);
      for (size_t k = 0; k < 100 * 1024; k += 97) ASSERT_EQ(p[k], 0) << round;
      std::memset(p, 0xAB, 100 * 1024);
      blocks.push_back(p);
    }
    for (auto* p : blocks) strata_free(p);
  }
}

}  // namespace
}  // namespace strata
