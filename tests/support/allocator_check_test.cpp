// Compiled into every test binary that calls malloc itself (all but the
// prefixed ones): fails when the binary does not test the allocator it is
// meant to (a preload that did not take, a static link that did not replace
// malloc), so that no run silently tests glibc instead.
#include <cstdio>

#include "alloc_api.hpp"
#include "test_support.hpp"

namespace strata_test {
namespace {

TEST(Setup, TheAllocatorUnderTestIsTheExpectedOne) {
  const AllocatorKind in_use = allocator_in_use();
  const AllocatorKind expected = allocator_expected();
  std::printf("allocator under test: %s (malloc from %s)\n", allocator_name(in_use),
              symbol_origin("malloc").c_str());
  EXPECT_EQ(in_use, expected) << "expected " << allocator_name(expected)
                              << " but malloc comes from " << symbol_origin("malloc");
}

}  // namespace
}  // namespace strata_test
