// Allocation-free number and bool parsing: the strict syntax of
// STRATA_OPTIONS (parse_size, parse_bool, parse_number) and a replica of
// glibc's lenient _dl_strtoul for its own variables.
#include <cstdint>
#include <string_view>

#include "options/option_table.h"
#include "options/options.h"

namespace strata {
namespace options_internal {
namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool equals_nocase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

}  // namespace

uint64_t glibc_strtoul(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
  bool positive = true;
  if (i < text.size() && text[i] == '-') {
    positive = false;
    ++i;
  } else if (i < text.size() && text[i] == '+') {
    ++i;
  }
  if (i >= text.size() || text[i] < '0' || text[i] > '9') return 0;

  // Like glibc, a leading 0 means octal and 0x hex; the x is consumed even if
  // no hex digit follows ("0x" is 0).
  unsigned base = 10;
  int max_digit = 9;
  if (text[i] == '0') {
    if (i + 1 < text.size() && (text[i + 1] == 'x' || text[i + 1] == 'X')) {
      base = 16;
      i += 2;
    } else {
      base = 8;
      max_digit = 7;
    }
  }

  uint64_t result = 0;
  for (; i < text.size(); ++i) {
    int digit;
    if (text[i] >= '0' && text[i] <= '0' + max_digit) {
      digit = text[i] - '0';
    } else if (base == 16) {
      digit = hex_digit(text[i]);
      if (digit < 0) break;
    } else {
      break;
    }
    // glibc's overflow test, conservative as it is: it gives UINT64_MAX for
    // some values just below the limit too (18446744073709551614).
    if (result >= (UINT64_MAX - static_cast<uint64_t>(digit)) / base) return UINT64_MAX;
    result = result * base + static_cast<uint64_t>(digit);
  }
  return positive ? result : 0 - result;
}

bool parse_number(std::string_view text, bool allow_suffix, bool allow_negative, Wide* out) {
  bool negative = false;
  if (allow_negative && !text.empty() && text.front() == '-') {
    negative = true;
    text.remove_prefix(1);
  }
  unsigned shift = 0;
  if (allow_suffix && !text.empty()) {
    switch (lower(text.back())) {
      case 'k':
        shift = 10;
        break;
      case 'm':
        shift = 20;
        break;
      case 'g':
        shift = 30;
        break;
      default:
        break;
    }
    if (shift != 0) text.remove_suffix(1);
  }
  unsigned base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
    text.remove_prefix(2);
  }
  if (text.empty()) return false;

  uint64_t value = 0;
  for (char c : text) {
    int digit = hex_digit(c);
    if (digit < 0 || static_cast<unsigned>(digit) >= base) return false;
    if (value > (UINT64_MAX - static_cast<uint64_t>(digit)) / base) return false;
    value = value * base + static_cast<uint64_t>(digit);
  }
  if (shift != 0 && value > (UINT64_MAX >> shift)) return false;
  value <<= shift;
  *out = negative ? -static_cast<Wide>(value) : static_cast<Wide>(value);
  return true;
}

}  // namespace options_internal

bool parse_size(std::string_view text, size_t* out) {
  options_internal::Wide value;
  if (!options_internal::parse_number(text, true, false, &value)) return false;
  if (value > static_cast<options_internal::Wide>(SIZE_MAX)) return false;
  *out = static_cast<size_t>(value);
  return true;
}

bool parse_bool(std::string_view text, bool* out) {
  using options_internal::equals_nocase;
  static constexpr std::string_view kTrue[] = {"1", "true", "yes", "on"};
  static constexpr std::string_view kFalse[] = {"0", "false", "no", "off"};
  for (std::string_view word : kTrue) {
    if (equals_nocase(text, word)) {
      *out = true;
      return true;
    }
  }
  for (std::string_view word : kFalse) {
    if (equals_nocase(text, word)) {
      *out = false;
      return true;
    }
  }
  return false;
}

}  // namespace strata
