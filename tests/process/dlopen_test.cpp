// dlopen/dlsym/dlclose: the dynamic loader allocates through the process's
// malloc, and a loaded library shares the allocator with the program.
#include <dlfcn.h>
#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "alloc_api.hpp"
#include "test_support.hpp"

#ifndef STRATA_TEST_DLOPEN_HELPER
#error "STRATA_TEST_DLOPEN_HELPER must name the helper library"
#endif

namespace strata_test {
namespace {

struct Helper {
  void* handle = nullptr;
  void* (*malloc_fn)(std::size_t) = nullptr;
  void (*free_fn)(void*) = nullptr;
  void* (*new_fn)(std::size_t) = nullptr;
  void (*delete_fn)(void*) = nullptr;
  void* (*malloc_address)() = nullptr;
  int (*table_intact)() = nullptr;

  bool open() {
    handle = dlopen(STRATA_TEST_DLOPEN_HELPER, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) return false;
    malloc_fn = reinterpret_cast<void* (*)(std::size_t)>(dlsym(handle, "helper_malloc"));
    free_fn = reinterpret_cast<void (*)(void*)>(dlsym(handle, "helper_free"));
    new_fn = reinterpret_cast<void* (*)(std::size_t)>(dlsym(handle, "helper_new"));
    delete_fn = reinterpret_cast<void (*)(void*)>(dlsym(handle, "helper_delete"));
    malloc_address = reinterpret_cast<void* (*)()>(dlsym(handle, "helper_malloc_address"));
    table_intact = reinterpret_cast<int (*)()>(dlsym(handle, "helper_table_intact"));
    return malloc_fn && free_fn && new_fn && delete_fn && malloc_address && table_intact;
  }
  int close() { return dlclose(handle); }
};

TEST(Dlopen, LibraryUsesTheProcessAllocator) {
  Helper helper;
  ASSERT_TRUE(helper.open()) << dlerror();
  EXPECT_EQ(helper.malloc_address(), find_symbol("malloc"))
      << "the loaded library's malloc is " << helper.malloc_address() << ", the process's is "
      << find_symbol("malloc");
  EXPECT_EQ(helper.close(), 0);
}

TEST(Dlopen, BlocksCrossTheLibraryBoundaryOverLoadCycles) {
  for (int cycle = 0; cycle < 50; ++cycle) {
    Helper helper;
    ASSERT_TRUE(helper.open()) << "cycle " << cycle << ": " << dlerror();
    ASSERT_EQ(helper.table_intact(), 1);
    std::vector<std::pair<void*, std::size_t>> from_library;
    for (const std::size_t size : {std::size_t{10}, std::size_t{1000}, 100 * kKiB, 2 * kMiB}) {
      // Allocated in the library, freed by the program...
      void* p = helper.malloc_fn(size);
      ASSERT_NE(p, nullptr);
      fill_pattern(p, size, size);
      EXPECT_GE(malloc_usable_size(p), size);
      p = realloc(p, size + 1);
      ASSERT_NE(p, nullptr);
      EXPECT_TRUE(pattern_intact(p, size, size));
      free(p);
      // ...and the other way round, also across operator new/delete.
      void* q = malloc(size);
      ASSERT_NE(q, nullptr);
      helper.free_fn(q);
      void* n = helper.new_fn(size);
      fill_pattern(n, size, 1);
      ::operator delete(n);
      n = ::operator new(size);
      helper.delete_fn(n);
      // Blocks that outlive the library.
      void* kept = helper.malloc_fn(size);
      ASSERT_NE(kept, nullptr);
      fill_pattern(kept, size, cycle);
      from_library.emplace_back(kept, size);
    }
    ASSERT_EQ(helper.close(), 0);
    for (const auto& [p, size] : from_library) {
      EXPECT_TRUE(pattern_intact(p, size, static_cast<std::uint64_t>(cycle)));
      free(p);
    }
  }
}

TEST(Dlopen, ErrorsAreReportedThroughDlerror) {
  for (int i = 0; i < 200; ++i) {
    const std::string name = "libstrata-test-missing-" + std::to_string(i) + ".so";
    EXPECT_EQ(dlopen(name.c_str(), RTLD_NOW), nullptr);
    const char* error = dlerror();  // the loader allocated this message
    ASSERT_NE(error, nullptr);
    EXPECT_NE(std::strstr(error, name.c_str()), nullptr) << error;
  }
  EXPECT_EQ(dlsym(RTLD_DEFAULT, "strata_test_no_such_symbol"), nullptr);
  EXPECT_NE(dlerror(), nullptr);
}

TEST(Dlopen, ConcurrentLoadAndUnload) {
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int cycle = 0; cycle < 25; ++cycle) {
        Helper helper;
        if (!helper.open() || helper.table_intact() != 1) {
          failures.fetch_add(1);
          continue;
        }
        void* p = helper.malloc_fn(static_cast<std::size_t>(t * 1000 + cycle + 1));
        if (p == nullptr) failures.fetch_add(1);
        free(p);
        if (helper.close() != 0) failures.fetch_add(1);
        for (int k = 0; k < 200; ++k) free(malloc(static_cast<std::size_t>(k) * 13 + 1));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace strata_test
