// Reports of heap misuse (see report.h).
#include "check/report.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>

#include "options/options.h"
#include "platform/os.h"

namespace strata::report {

Writer& Writer::text(const char* s) {
  while (*s != '\0' && size_ < capacity_) buffer_[size_++] = *s++;
  return *this;
}

Writer& Writer::hex(const void* p) {
  char digits[2 + 16];
  uintptr_t v = reinterpret_cast<uintptr_t>(p);
  size_t n = 0;
  do {
    digits[n++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v != 0);
  text("0x");
  while (n > 0 && size_ < capacity_) buffer_[size_++] = digits[--n];
  return *this;
}

Writer& Writer::number(unsigned long long value) {
  char digits[24];
  size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  while (n > 0 && size_ < capacity_) buffer_[size_++] = digits[--n];
  return *this;
}

void Writer::flush(int fd) {
  os::write_all(fd, buffer_, size_);
  size_ = 0;
}

namespace {

// glibc's MALLOC_CHECK_ levels: bit 0 prints, bit 1 aborts. strata's default
// (no level set) is 3: say what happened and stop before the heap is hurt.
int action() {
  int level = static_cast<int>(g_options.check);
  return level == 0 ? 3 : level;
}

void finish(Writer& w) {
  int act = action();
  if (act & 1) {
    w.text("\n");
    w.flush(STDERR_FILENO);
  }
  if (act & 2) {
    abort();
  }
}

}  // namespace

void invalid_pointer(const char* function, const void* p) {
  char buffer[256];
  Writer w(buffer, sizeof buffer);
  w.text("strata: ").text(function).text("(): invalid pointer ").hex(p);
  w.text(" (not a block returned by this allocator, or not its start)");
  finish(w);
}

void double_free(const char* function, const void* p, size_t block_size) {
  char buffer[256];
  Writer w(buffer, sizeof buffer);
  w.text("strata: ").text(function).text("(): double free of ").hex(p);
  w.text(" (block of ").number(block_size).text(" bytes, already free)");
  finish(w);
}

void corrupted_free_list(const char* function, const void* block, size_t block_size) {
  char buffer[256];
  Writer w(buffer, sizeof buffer);
  w.text("strata: ").text(function).text("(): heap corruption: free block ").hex(block);
  w.text(" (").number(block_size).text(" bytes) was overwritten after it was freed");
  w.text(" (use after free, or an overflow from the block before it)");
  finish(w);
}

}  // namespace strata::report
