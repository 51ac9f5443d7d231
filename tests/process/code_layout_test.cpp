// Code layout of libstrata.so: what every program runs (the allocation
// calls, threads, fork, exit) lies in the first 64 KiB of its code, so that
// a program keeps one fault-around window of it resident; debugging,
// statistics and the strata_* API come after (see "Code layout" in
// src/CMakeLists.txt). Run under LD_PRELOAD only.
#include <fcntl.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "alloc_api.hpp"
#include "test_support.hpp"

namespace strata_test {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kWindow = 64 * 1024;  // the kernel's default fault-around

struct Mapping {
  uintptr_t start = 0;
  uintptr_t end = 0;
  size_t offset = 0;
  std::string path;
};

// The executable mapping that holds `address`.
Mapping code_mapping_of(const void* address) {
  Mapping found;
  FILE* maps = std::fopen("/proc/self/maps", "r");
  if (maps == nullptr) return found;
  char line[4096];
  auto at = reinterpret_cast<uintptr_t>(address);
  while (std::fgets(line, sizeof line, maps) != nullptr) {
    unsigned long start, end, offset;
    char perms[8];
    int path_at = 0;
    if (std::sscanf(line, "%lx-%lx %7s %lx %*s %*s %n", &start, &end, perms, &offset, &path_at) <
            4 ||
        perms[2] != 'x' || at < start || at >= end) {
      continue;
    }
    found = {start, end, offset, line + path_at};
    found.path.erase(found.path.find_last_not_of('\n') + 1);
  }
  std::fclose(maps);
  return found;
}

// Whether each page of [start, end) is mapped in this process.
std::vector<bool> present_pages(uintptr_t start, uintptr_t end) {
  std::vector<bool> present;
  int fd = open("/proc/self/pagemap", O_RDONLY);
  if (fd < 0) return present;
  for (uintptr_t page = start; page < end; page += kPage) {
    uint64_t entry = 0;
    if (pread(fd, &entry, sizeof entry, static_cast<off_t>(page / kPage * sizeof entry)) !=
        sizeof entry) {
      present.clear();
      break;
    }
    present.push_back((entry >> 63) != 0);
  }
  close(fd);
  return present;
}

// How much of a file the kernel maps on one read fault (fault-around): the
// pages of a fresh mapping of `path` (at least 512 KiB long) mapped after
// reading one byte at a 256 KiB boundary. 0 if it cannot tell.
size_t fault_around_bytes(const std::string& path) {
  constexpr size_t kSpan = 256 * 1024;
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return 0;
  std::vector<char> sink(2 * kSpan);  // reading it puts it in the page cache
  bool cached = pread(fd, sink.data(), sink.size(), 0) == static_cast<ssize_t>(sink.size());
  void* region = cached ? mmap(nullptr, 2 * kSpan, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
  close(fd);
  if (region == MAP_FAILED) return 0;
  auto base = reinterpret_cast<uintptr_t>(region);
  uintptr_t aligned = (base + kSpan - 1) & ~(kSpan - 1);
  size_t bytes = 0;
  volatile char first = *reinterpret_cast<volatile const char*>(aligned);
  (void)first;
  for (bool mapped : present_pages(aligned, aligned + kSpan)) bytes += mapped ? kPage : 0;
  munmap(region, 2 * kSpan);
  return bytes;
}

// What any program does: small and large blocks of every kind, realloc
// growth, threads that free each other's blocks and end, fork.
void run_an_ordinary_program() {
  std::vector<void*> blocks;
  for (size_t size = 1; size <= 256 * 1024; size = size * 5 / 4 + 1) {
    blocks.push_back(std::malloc(size));
    blocks.push_back(std::calloc(1, size));
    std::memset(blocks.back(), 1, size);
  }
  void* aligned = nullptr;
  EXPECT_EQ(posix_memalign(&aligned, 256, 1000), 0);
  blocks.push_back(aligned);
  blocks.push_back(aligned_alloc(4096, 8192));
  blocks.push_back(memalign(64, 100));
  void* grown = nullptr;
  for (size_t size = 16; size <= 8 * 1024 * 1024; size *= 2) {
    grown = std::realloc(grown, size);
    static_cast<char*>(grown)[size - 1] = 1;
  }
  blocks.push_back(grown);
  std::vector<std::string> strings(1000, std::string(100, 'x'));
  auto* over_aligned = new (std::align_val_t{128}) char[300];
  auto* numbers = new std::vector<int>(10000, 1);
  std::vector<void*> handed(2000);
  std::thread producer([&] {
    for (void*& p : handed) p = std::malloc(48);
  });
  producer.join();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = static_cast<size_t>(t); i < handed.size(); i += 4) std::free(handed[i]);
      std::vector<void*> mine;
      for (int i = 0; i < 5000; ++i) mine.push_back(std::malloc(static_cast<size_t>(i % 700 + 1)));
      for (void* p : mine) std::free(p);
    });
  }
  for (auto& thread : threads) thread.join();
  pid_t child = fork();
  if (child == 0) {
    void* p = std::malloc(100);
    std::free(p);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_GT(malloc_usable_size(blocks[0]), 0u);
  delete numbers;
  ::operator delete[](over_aligned, std::align_val_t{128});
  for (void* p : blocks) std::free(p);
}

TEST(CodeLayout, AnOrdinaryProgramKeepsOneWindowOfStrataCodeResident) {
  if (!testing_strata()) GTEST_SKIP() << "libstrata.so is not preloaded";
  run_an_ordinary_program();
  Mapping code = code_mapping_of(find_symbol("malloc"));
  ASSERT_NE(code.start, 0u) << "no executable mapping holds malloc";
  size_t window = fault_around_bytes(code_mapping_of(find_symbol("fopen")).path);  // libc's
  if (window != kWindow) {
    GTEST_SKIP() << "the kernel maps " << window / 1024
                 << " KiB around a fault; the layout is for 64 KiB";
  }
  // The segments are aligned to the window, so the first window is exactly
  // the first 64 KiB of the code.
  EXPECT_EQ(code.start % kWindow, 0u) << "libstrata.so's code is not 64 KiB-aligned";
  std::vector<bool> present = present_pages(code.start, code.end);
  ASSERT_FALSE(present.empty()) << "cannot read /proc/self/pagemap";
  size_t beyond = 0;
  for (size_t page = kWindow / kPage; page < present.size(); ++page) beyond += present[page];
  EXPECT_EQ(beyond, 0u) << beyond << " pages of " << code.path << "'s code past its first "
                        << kWindow / 1024 << " KiB are resident: code every program runs "
                        << "lies beyond the first window (see \"Code layout\" in "
                        << "src/CMakeLists.txt)";
}

}  // namespace
}  // namespace strata_test
