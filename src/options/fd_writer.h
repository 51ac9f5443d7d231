// Formatted output without allocation, for code that runs inside malloc: a
// fixed buffer on the stack, flushed with write(2).
#ifndef STRATA_OPTIONS_FD_WRITER_H
#define STRATA_OPTIONS_FD_WRITER_H

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace strata::options_internal {

class FdWriter {
 public:
  // fd < 0 discards everything (used to silence reports).
  explicit FdWriter(int fd) : fd_(fd) {}
  ~FdWriter() { flush(); }
  FdWriter(const FdWriter&) = delete;
  FdWriter& operator=(const FdWriter&) = delete;

  void put(char c);
  void put(std::string_view text);
  void put_unsigned(uint64_t value);
  void put_signed(int64_t value);
  // A byte count with the largest k/m/g suffix that divides it exactly
  // (131072 -> "128k"), which parse_size reads back.
  void put_size(uint64_t value);
  // Untrusted text (an environment value): at most `limit` characters, each
  // byte outside printable ASCII shown as '?', "..." if cut.
  void put_untrusted(std::string_view text, size_t limit);
  // Spaces up to `column` (at least one), for tables.
  void pad_to(size_t column);
  // Characters written since the last newline.
  size_t column() const { return column_; }
  // Writes out what is buffered; errno is left as it was.
  void flush();

 private:
  int fd_;
  size_t len_ = 0;
  size_t column_ = 0;
  char buf_[512];
};

}  // namespace strata::options_internal

#endif  // STRATA_OPTIONS_FD_WRITER_H
