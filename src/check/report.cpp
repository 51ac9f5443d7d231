// Reports of heap misuse (see report.h).
#include "check/report.h"

#include <dlfcn.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>

#include "check/stack.h"
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

Writer& Writer::stack(const char* title, uint32_t id) {
  stack::Trace trace;
  if (!stack::lookup(id, &trace)) return *this;
  text("\n  ").text(title).text(":");
  for (uint32_t i = 0; i < trace.depth; ++i) {
    text("\n    #").number(i).text(" ").hex(reinterpret_cast<const void*>(trace.frames[i]));
    // A return address points after the call: look up the byte before it.
    uintptr_t pc = trace.frames[i] - (i == 0 ? 0 : 1);
    Dl_info info;
    if (dladdr(reinterpret_cast<const void*>(pc), &info) == 0) continue;
    if (info.dli_sname != nullptr && info.dli_saddr != nullptr) {
      text(" in ");
      size_t room = 96;
      for (const char* c = info.dli_sname; *c != '\0' && room > 0; ++c, --room) {
        char one[2] = {*c, '\0'};
        text(one);
      }
      text("+").hex(reinterpret_cast<const void*>(trace.frames[i] -
                                                  reinterpret_cast<uintptr_t>(info.dli_saddr)));
    }
    if (info.dli_fname != nullptr && info.dli_fname[0] != '\0') {
      const char* base = info.dli_fname;
      for (const char* c = info.dli_fname; *c != '\0'; ++c) {
        if (*c == '/') base = c + 1;
      }
      text(" (").text(base).text("+").hex(reinterpret_cast<const void*>(
          trace.frames[i] - reinterpret_cast<uintptr_t>(info.dli_fbase)));
      text(")");
    }
  }
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

namespace {

constexpr size_t kLongReport = 6144;

// "block 0x... (48 bytes, allocated by malloc)"
Writer& describe(Writer& w, const BlockDescription& block) {
  w.text("block ").hex(block.address).text(" (").number(block.size).text(" bytes, allocated by ");
  return w.text(block.allocated_by).text(")");
}

void finish_with_stacks(Writer& w, const BlockDescription& block) {
  w.stack("allocated at", block.alloc_stack);
  w.stack("freed at", block.free_stack);
  finish(w);
}

}  // namespace

void double_free(const char* function, const BlockDescription& block) {
  char buffer[kLongReport];
  Writer w(buffer, sizeof buffer);
  w.text("strata: ").text(function).text("(): double free of ").hex(block.address);
  w.text(" (block of ").number(block.size).text(" bytes, already free; allocated by ");
  w.text(block.allocated_by).text(")");
  finish_with_stacks(w, block);
}

void buffer_overflow(const char* function, const BlockDescription& block, size_t offset) {
  char buffer[kLongReport];
  Writer w(buffer, sizeof buffer);
  w.text("strata: ").text(function).text("(): heap buffer overflow after ");
  describe(w, block).text(": byte at offset ").number(offset).text(" (");
  w.number(offset - block.size).text(" past the end) was overwritten");
  finish_with_stacks(w, block);
}

void buffer_underflow(const char* function, const BlockDescription& block, size_t before) {
  char buffer[kLongReport];
  Writer w(buffer, sizeof buffer);
  w.text("strata: ").text(function).text("(): heap buffer underflow before ");
  describe(w, block).text(": byte at offset -").number(before).text(" was overwritten");
  finish_with_stacks(w, block);
}

void write_after_free(const char* function, const BlockDescription& block, size_t offset) {
  char buffer[kLongReport];
  Writer w(buffer, sizeof buffer);
  w.text("strata: ").text(function).text("(): write after free to ");
  describe(w, block).text(": byte at offset ").number(offset);
  w.text(" was overwritten after the block was freed");
  finish_with_stacks(w, block);
}

void mismatched_free(const char* function, const BlockDescription& block, const char* deallocator) {
  char buffer[kLongReport];
  Writer w(buffer, sizeof buffer);
  w.text("strata: ").text(function).text("(): mismatched deallocation of ");
  describe(w, block).text(" with ").text(deallocator);
  finish_with_stacks(w, block);
}

void wrong_size(const char* function, const BlockDescription& block, size_t given) {
  char buffer[kLongReport];
  Writer w(buffer, sizeof buffer);
  w.text("strata: ").text(function).text("(): size ").number(given).text(" passed to free ");
  describe(w, block).text(" is not its size");
  finish_with_stacks(w, block);
}

void guard_fault(const char* what, const BlockDescription& block, long long offset,
                 const void* fault_address, bool freed) {
  char buffer[kLongReport];
  Writer w(buffer, sizeof buffer);
  w.text("strata: ").text(what).text(" at ").hex(fault_address).text(": ");
  w.text(freed ? "freed " : "").text("block ").hex(block.address).text(" (");
  w.number(block.size).text(" bytes, allocated by ").text(block.allocated_by).text("), offset ");
  if (offset < 0) {
    w.text("-").number(static_cast<unsigned long long>(-offset));
  } else {
    w.number(static_cast<unsigned long long>(offset));
  }
  w.stack("allocated at", block.alloc_stack);
  w.stack("freed at", block.free_stack);
  w.text("\n");
  w.flush(STDERR_FILENO);  // the caller re-raises the signal
}

void leak_summary(size_t blocks, size_t bytes, size_t sites) {
  char buffer[256];
  Writer w(buffer, sizeof buffer);
  w.text("strata: leak report: ").number(blocks).text(" blocks (").number(bytes);
  w.text(" bytes) still allocated at exit, from ").number(sites).text(" allocation sites\n");
  w.flush(STDERR_FILENO);
}

void leak_site(size_t blocks, size_t bytes, uint32_t stack_id) {
  char buffer[kLongReport];
  Writer w(buffer, sizeof buffer);
  w.text("strata: ").number(bytes).text(" bytes in ").number(blocks).text(" blocks");
  if (stack_id == 0) w.text(" (allocation site not recorded)");
  w.stack("allocated at", stack_id);
  w.text("\n");
  w.flush(STDERR_FILENO);
}

}  // namespace strata::report
