// Reports of heap misuse. One function per kind of error; each names the
// error, the function that detected it, the address and (where known) the
// block's size, written to stderr without allocating. Then, following the
// check level (MALLOC_CHECK_ semantics): abort (default), or print and let the
// caller ignore the faulty operation, or ignore it silently.
#ifndef STRATA_CHECK_REPORT_H
#define STRATA_CHECK_REPORT_H

#include <cstddef>

namespace strata::report {

// A pointer that strata never returned (stack, global, foreign mapping,
// interior or misaligned pointer into a block).
void invalid_pointer(const char* function, const void* p);
// A block freed a second time (or realloc'ed / sized after its free).
void double_free(const char* function, const void* p, size_t block_size);
// A free-list link that does not point into its own segment: an overflow or
// a write after free has overwritten allocator metadata.
void corrupted_free_list(const char* function, const void* block, size_t block_size);

// Formats without allocating into a caller-provided buffer.
class Writer {
 public:
  Writer(char* buffer, size_t capacity) : buffer_(buffer), capacity_(capacity) {}
  Writer& text(const char* s);
  Writer& hex(const void* p);
  Writer& number(unsigned long long value);
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
