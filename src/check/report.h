// Reports of heap misuse. One function per kind of error; each names the
// error, the function that detected it, the address and (where known) the
// block's size, written to stderr without allocating. Then, following the
// check level (MALLOC_CHECK_ semantics): abort (default), or print and let the
// caller ignore the faulty operation, or ignore it silently.
#ifndef STRATA_CHECK_REPORT_H
#define STRATA_CHECK_REPORT_H

#include <cstddef>
#include <cstdint>

namespace strata::report {

// A pointer that strata never returned (stack, global, foreign mapping,
// interior or misaligned pointer into a block).
void invalid_pointer(const char* function, const void* p);
// A block freed a second time (or realloc'ed / sized after its free).
void double_free(const char* function, const void* p, size_t block_size);
// A free-list link that does not point into its own segment: an overflow or
// a write after free has overwritten allocator metadata.
void corrupted_free_list(const char* function, const void* block, size_t block_size);

// What the check mode knows of a block, for the reports below.
struct BlockDescription {
  const void* address = nullptr;  // the pointer the program holds
  size_t size = 0;                // bytes requested
  const char* allocated_by = "";  // "malloc", "operator new", "operator new[]"
  uint32_t alloc_stack = 0;       // stack ids (check/stack.h), 0 if none
  uint32_t free_stack = 0;
};

// A block freed a second time while it was still held in the quarantine.
void double_free(const char* function, const BlockDescription& block);
// Bytes after the end of a block were overwritten; `offset` is that of the
// first bad byte from the block's start (>= its size).
void buffer_overflow(const char* function, const BlockDescription& block, size_t offset);
// Bytes before the start of a block were overwritten; `before` is how far
// before the start the last bad byte lies (1 = the byte just before).
void buffer_underflow(const char* function, const BlockDescription& block, size_t before);
// A freed block (held in the quarantine) was written to.
void write_after_free(const char* function, const BlockDescription& block, size_t offset);
// A block released by the wrong family (new[] with delete or free, malloc
// with delete, new with free...). `deallocator` names the call used.
void mismatched_free(const char* function, const BlockDescription& block, const char* deallocator);
// A sized deallocation (sized delete, free_sized) with a size that is not
// the block's.
void wrong_size(const char* function, const BlockDescription& block, size_t given);

// A fault in a guarded (sampled) block. `what` is "heap buffer overflow",
// "heap buffer underflow" or "use after free"; `offset` is the faulting
// address's offset from the block's start (negative: before it).
void guard_fault(const char* what, const BlockDescription& block, long long offset,
                 const void* fault_address, bool freed);

// Live blocks at exit (leaks=1): header line, then one entry per site.
void leak_summary(size_t blocks, size_t bytes, size_t sites);
void leak_site(size_t blocks, size_t bytes, uint32_t stack_id);

// Formats without allocating into a caller-provided buffer.
class Writer {
 public:
  Writer(char* buffer, size_t capacity) : buffer_(buffer), capacity_(capacity) {}
  Writer& text(const char* s);
  Writer& hex(const void* p);
  Writer& number(unsigned long long value);
  // The stack stored under `id` (check/stack.h), one "    #n address
  // symbol+offset (module)" line per frame, after `title` on a line of its own.
  Writer& stack(const char* title, uint32_t id);
  const char* data() const { return buffer_; }
  size_t size() const { return size_; }
  void flush(int fd);

 private:
  char* buffer_;
  size_t capacity_;
  size_t size_ = 0;
};

}  // namespace strata::report

#endif  // STRATA_CHECK_REPORT_H
