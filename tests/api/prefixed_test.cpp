// Only in the prefixed variant: strata_trim and the C++ wrappers of
// strata.hpp (std::pmr memory resource, STL allocator).
#include <strata/strata.hpp>

#include <cstring>
#include <list>
#include <map>
#include <memory_resource>
#include <string>
#include <string_view>
#include <vector>

#include "alloc_api.hpp"
#include "test_support.hpp"

namespace strata_test {
namespace {

TEST(StrataTrim, ReturnsZeroOrOneAndTheHeapStaysUsable) {
  std::vector<void*> blocks;
  for (int i = 0; i < 2000; ++i) {
    void* p = strata_malloc(opaque<std::size_t>(16 * kKiB));
    ASSERT_NE(p, nullptr);
    std::memset(p, 9, 16 * kKiB);
    blocks.push_back(p);
  }
  for (std::size_t i = 0; i < blocks.size(); i += 2) strata_free(blocks[i]);
  for (const std::size_t pad : {std::size_t{0}, kMiB}) {
    const int released = strata_trim(pad);
    EXPECT_TRUE(released == 0 || released == 1) << "strata_trim(" << pad << ") = " << released;
  }
  for (std::size_t i = 1; i < blocks.size(); i += 2) {
    const auto* bytes = static_cast<const unsigned char*>(blocks[i]);
    ASSERT_EQ(bytes[0], 9);
    ASSERT_EQ(bytes[16 * kKiB - 1], 9) << "strata_trim released memory of a live block";
    strata_free(blocks[i]);
  }
}

TEST(MemoryResource, AllocatesAlignedBlocksAndComparesEqual) {
  std::pmr::memory_resource* resource = strata::memory_resource();
  strata::MemoryResource other;
  EXPECT_TRUE(resource->is_equal(other));
  EXPECT_FALSE(resource->is_equal(*std::pmr::new_delete_resource()));
  for (std::size_t alignment = 1; alignment <= 64 * kKiB; alignment *= 2) {
    for (const std::size_t size : {std::size_t{1}, std::size_t{100}, alignment, 5000 + alignment}) {
      void* p = resource->allocate(size, alignment);
      EXPECT_TRUE(aligned_to(p, alignment)) << "allocate(" << size << ", " << alignment << ")";
      fill_pattern(p, size, alignment);
      EXPECT_TRUE(pattern_intact(p, size, alignment));
      resource->deallocate(p, size, alignment);
    }
  }
}

TEST(MemoryResource, ThrowsBadAllocWhenExhausted) {
  std::pmr::memory_resource* resource = strata::memory_resource();
  EXPECT_THROW(escape(resource->allocate(opaque(SIZE_MAX / 2), 16)), std::bad_alloc);
  EXPECT_THROW(escape(resource->allocate(opaque(SIZE_MAX / 2), 4096)), std::bad_alloc);
}

TEST(MemoryResource, BacksPmrContainers) {
  std::pmr::vector<std::pmr::string> strings(strata::memory_resource());
  for (int i = 0; i < 20000; ++i) {
    strings.emplace_back(static_cast<std::size_t>(i % 300), static_cast<char>('a' + i % 26));
  }
  for (int i = 0; i < 20000; ++i) {
    const std::pmr::string& s = strings[static_cast<std::size_t>(i)];
    ASSERT_EQ(std::string_view(s),
              std::string(static_cast<std::size_t>(i % 300), static_cast<char>('a' + i % 26)));
  }
}

TEST(Allocator, BacksStandardContainers) {
  std::vector<int, strata::Allocator<int>> numbers;
  for (int i = 0; i < 100000; ++i) numbers.push_back(i);
  std::map<int, std::uint64_t, std::less<int>,
           strata::Allocator<std::pair<const int, std::uint64_t>>>
      squares;
  std::list<std::uint64_t, strata::Allocator<std::uint64_t>> list;
  for (int i = 0; i < 10000; ++i) {
    squares[i] = static_cast<std::uint64_t>(i) * static_cast<std::uint64_t>(i);
    list.push_back(mix64(static_cast<std::uint64_t>(i)));
  }
  for (int i = 0; i < 100000; ++i) ASSERT_EQ(numbers[static_cast<std::size_t>(i)], i);
  int i = 0;
  for (const auto& [key, value] : squares) {
    ASSERT_EQ(key, i);
    ASSERT_EQ(value, static_cast<std::uint64_t>(i) * static_cast<std::uint64_t>(i));
    ++i;
  }
  i = 0;
  for (const std::uint64_t value : list) ASSERT_EQ(value, mix64(static_cast<std::uint64_t>(i++)));
  EXPECT_TRUE(strata::Allocator<int>() == strata::Allocator<double>());
}

struct alignas(256) Wide {
  unsigned char bytes[256];
};

TEST(Allocator, HonoursOveralignedTypes) {
  strata::Allocator<Wide> allocator;
  for (const std::size_t n : {std::size_t{1}, std::size_t{3}, std::size_t{1000}}) {
    Wide* p = allocator.allocate(n);
    EXPECT_TRUE(aligned_to(p, alignof(Wide))) << n << " elements";
    std::memset(static_cast<void*>(p), 1, n * sizeof(Wide));
    allocator.deallocate(p, n);
  }
  EXPECT_THROW(escape(allocator.allocate(opaque(SIZE_MAX / sizeof(Wide) + 1))),
               std::bad_array_new_length);
  EXPECT_THROW(escape(allocator.allocate(opaque(SIZE_MAX / 2 / sizeof(Wide)))), std::bad_alloc);
}

}  // namespace
}  // namespace strata_test
