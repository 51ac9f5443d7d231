// FdWriter: buffered write(2) output with number formatting, so that
// reports and help can be printed from inside malloc (no stdio: it allocates).
#include "options/fd_writer.h"

#include <unistd.h>
#include <cerrno>

namespace strata::options_internal {

void FdWriter::put(char c) {
  if (len_ == sizeof(buf_)) flush();
  buf_[len_++] = c;
  column_ = (c == '\n') ? 0 : column_ + 1;
}

void FdWriter::put(std::string_view text) {
  for (char c : text) put(c);
}

void FdWriter::put_unsigned(uint64_t value) {
  char digits[20];
  size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  while (n > 0) put(digits[--n]);
}

void FdWriter::put_signed(int64_t value) {
  if (value < 0) {
    put('-');
    // Negate in unsigned arithmetic: -INT64_MIN does not fit in int64_t.
    put_unsigned(0 - static_cast<uint64_t>(value));
  } else {
    put_unsigned(static_cast<uint64_t>(value));
  }
}

void FdWriter::put_size(uint64_t value) {
  static constexpr struct {
    unsigned shift;
    char suffix;
  } kUnits[] = {{30, 'g'}, {20, 'm'}, {10, 'k'}};
  for (const auto& unit : kUnits) {
    uint64_t mask = (uint64_t{1} << unit.shift) - 1;
    if (value != 0 && (value & mask) == 0) {
      put_unsigned(value >> unit.shift);
      put(unit.suffix);
      return;
    }
  }
  put_unsigned(value);
}

void FdWriter::put_untrusted(std::string_view text, size_t limit) {
  size_t n = 0;
  for (char c : text) {
    if (n == limit) {
      put("...");
      return;
    }
    put((c >= 0x20 && c < 0x7f) ? c : '?');
    ++n;
  }
}

void FdWriter::pad_to(size_t column) {
  do {
    put(' ');
  } while (column_ < column);
}

void FdWriter::flush() {
  if (fd_ < 0 || len_ == 0) {
    len_ = 0;
    return;
  }
  int saved_errno = errno;
  size_t done = 0;
  while (done < len_) {
    ssize_t n = write(fd_, buf_ + done, len_ - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;  // nowhere to report a failing stderr: drop the rest
    }
  }
  len_ = 0;
  errno = saved_errno;
}

}  // namespace strata::options_internal
