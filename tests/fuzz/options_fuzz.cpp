// libFuzzer target for the options layer: arbitrary bytes as STRATA_OPTIONS,
// as GLIBC_TUNABLES, as a whole environment, as option_set arguments, as
// numbers, and as mallopt calls. Beyond "no crash, no sanitizer report" it
// checks that every option stays within its limits, that option_get output
// is read back by option_set, and that STRATA_OPTIONS and option_set agree
// with a simple reference model written independently below (std::string,
// std::from_chars) on every value and on the number of reported mistakes.
#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "options/option_table.h"
#include "options/options.h"

namespace {

using strata::g_options;
using strata::kDefaultOptions;
using strata::Options;
using strata::options_internal::kOptionCount;
using strata::options_internal::kOptionTable;
using strata::options_internal::OptionInfo;
using strata::options_internal::Wide;

#define FUZZ_CHECK(cond)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                 \
    }                                                                          \
  } while (0)

// --- reference model of STRATA_OPTIONS ----------------------------------------

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

std::string lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

// The documented value syntax, reimplemented without the layer's helpers.
bool reference_value(const OptionInfo& o, std::string text, Wide* out) {
  if (o.kind == strata::options_internal::kBool) {
    std::string t = lower(text);
    if (t == "1" || t == "true" || t == "yes" || t == "on") {
      *out = 1;
      return true;
    }
    if (t == "0" || t == "false" || t == "no" || t == "off") {
      *out = 0;
      return true;
    }
    return false;
  }
  bool negative = false;
  if (o.min < 0 && !text.empty() && text[0] == '-') {
    negative = true;
    text.erase(0, 1);
  }
  int shift = 0;
  if (o.kind == strata::options_internal::kSize && !text.empty()) {
    char last = lower(text.substr(text.size() - 1))[0];
    shift = last == 'k' ? 10 : last == 'm' ? 20 : last == 'g' ? 30 : 0;
    if (shift != 0) text.pop_back();
  }
  int base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
    text.erase(0, 2);
  }
  if (text.empty()) return false;
  unsigned long long value;
  auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (err != std::errc() || end != text.data() + text.size()) return false;
  if (shift != 0 && value > (~0ULL >> shift)) return false;
  Wide v = static_cast<Wide>(value << shift);
  if (negative) v = -v;
  if (v < o.min || v > o.max) return false;
  *out = v;
  return true;
}

int reference_find(const std::string& name) {
  for (size_t i = 0; i < kOptionCount; ++i) {
    if (name == kOptionTable[i].name) return static_cast<int>(i);
  }
  return -1;
}

bool clears_dynamic(const std::string& name) {
  return name == "mmap_threshold" || name == "mmap_max" || name == "trim_threshold" ||
         name == "top_pad";
}

// Applies STRATA_OPTIONS text to `values` (indexed like the table); returns
// the number of mistakes.
int reference_strata_options(const std::string& text, std::vector<Wide>& values) {
  const int dynamic = reference_find("mmap_threshold_dynamic");
  int mistakes = 0;
  int explicit_dynamic = -1;
  size_t start = 0;
  while (start <= text.size()) {
    size_t colon = text.find(':', start);
    if (colon == std::string::npos) colon = text.size();
    std::string entry = trim(text.substr(start, colon - start));
    start = colon + 1;
    if (entry.empty()) continue;
    size_t eq = entry.find('=');
    std::string name = trim(entry.substr(0, eq));
    int index = reference_find(name);
    if (index < 0) {
      ++mistakes;
      continue;
    }
    const OptionInfo& o = kOptionTable[index];
    Wide v;
    if (eq == std::string::npos) {
      if (o.kind != strata::options_internal::kBool) {
        ++mistakes;
        continue;
      }
      v = 1;
    } else if (!reference_value(o, trim(entry.substr(eq + 1)), &v)) {
      ++mistakes;
      continue;
    }
    values[index] = v;
    if (clears_dynamic(name)) values[dynamic] = 0;
    if (index == dynamic) explicit_dynamic = static_cast<int>(v);
  }
  if (explicit_dynamic >= 0) values[dynamic] = explicit_dynamic;
  return mistakes;
}

// --- invariants ---------------------------------------------------------------------

std::vector<Wide> snapshot() {
  std::vector<Wide> values;
  for (const OptionInfo& o : kOptionTable) values.push_back(o.load(g_options));
  return values;
}

// After start-up every option holds its default or a value within its limits,
// and what option_get prints, option_set reads back unchanged.
void check_after_init() {
  for (const OptionInfo& o : kOptionTable) {
    Wide v = o.load(g_options);
    FUZZ_CHECK(v == o.def || (v >= o.min && v <= o.max));
  }
  Options saved = g_options;
  for (const OptionInfo& o : kOptionTable) {
    Wide v = o.load(g_options);
    if (v < o.min || v > o.max) continue;  // arena_max's default 0
    char buf[64];
    FUZZ_CHECK(strata::option_get(o.name, buf, sizeof buf));
    FUZZ_CHECK(strata::option_set(o.name, buf));
    FUZZ_CHECK(o.load(g_options) == v);
  }
  g_options = saved;
}

std::vector<std::string> split_nul(const uint8_t* data, size_t size, size_t limit) {
  std::vector<std::string> parts(1);
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      if (parts.size() == limit) break;
      parts.emplace_back();
    } else {
      parts.back().push_back(static_cast<char>(data[i]));
    }
  }
  return parts;
}

void init_with(std::vector<std::string> entries) {
  std::vector<char*> envp;
  for (std::string& e : entries) envp.push_back(e.data());
  envp.push_back(nullptr);
  strata::options_internal::options_init_env(envp.data(), false);
}

// Environment strings end at a NUL: cut the input there.
std::string as_env_value(const uint8_t* data, size_t size) {
  std::string s(reinterpret_cast<const char*>(data), size);
  return s.substr(0, s.find('\0'));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Reports are formatted and written, but to /dev/null.
  strata::options_internal::g_report_fd = open("/dev/null", O_WRONLY);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 6;
  ++data;
  --size;
  switch (mode) {
    case 0: {  // STRATA_OPTIONS, against the reference model
      std::string value = as_env_value(data, size);
      init_with({"STRATA_OPTIONS=" + value});
      std::vector<Wide> expected;
      for (const OptionInfo& o : kOptionTable) expected.push_back(o.def);
      int mistakes = reference_strata_options(value, expected);
      FUZZ_CHECK(snapshot() == expected);
      FUZZ_CHECK(strata::options_internal::g_last_report_count == mistakes);
      check_after_init();
      break;
    }
    case 1: {  // GLIBC_TUNABLES
      init_with({"GLIBC_TUNABLES=" + as_env_value(data, size)});
      FUZZ_CHECK(strata::options_internal::g_last_report_count == 0);
      check_after_init();
      break;
    }
    case 2: {  // a whole environment, one entry per NUL-separated part
      init_with(split_nul(data, size, 64));
      check_after_init();
      break;
    }
    case 3: {  // option_set(name, value), against the reference model
      std::vector<std::string> parts = split_nul(data, size, 2);
      std::string name = parts[0];
      std::string value = parts.size() > 1 ? parts[1] : "";
      g_options = kDefaultOptions;
      std::vector<Wide> before = snapshot();
      bool ok = strata::option_set(name.c_str(), value.c_str());
      int index = reference_find(name);
      Wide v = 0;
      bool expected_ok = index >= 0 && reference_value(kOptionTable[index], trim(value), &v);
      FUZZ_CHECK(ok == expected_ok);
      if (ok) {
        before[index] = v;
        if (clears_dynamic(name)) before[reference_find("mmap_threshold_dynamic")] = 0;
      }
      FUZZ_CHECK(snapshot() == before);
      char buf[32];
      FUZZ_CHECK(strata::option_get(name.c_str(), buf, sizeof buf) == (index >= 0));
      break;
    }
    case 4: {  // the number parsers on raw bytes (NULs included)
      std::string_view text(reinterpret_cast<const char*>(data), size);
      size_t value = 0;
      if (strata::parse_size(text, &value)) {
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%zu", value);
        size_t again = 0;
        FUZZ_CHECK(strata::parse_size(std::string_view(buf, static_cast<size_t>(n)), &again));
        FUZZ_CHECK(again == value);
      }
      bool flag;
      (void)strata::parse_bool(text, &flag);
      (void)strata::options_internal::glibc_strtoul(text);
      break;
    }
    case 5: {  // mallopt calls: 5 bytes each (parameter selector, 32-bit value)
      g_options = kDefaultOptions;
      static constexpr int kParams[] = {1, -1, -2, -3, -4, -5, -6, -7, -8, 0, 2, 3, 4, -9, 100};
      for (size_t i = 0; i + 5 <= size; i += 5) {
        int param = kParams[data[i] % (sizeof kParams / sizeof kParams[0])];
        int32_t value;
        memcpy(&value, data + i + 1, sizeof value);
        int result = strata::options_mallopt(param, value);
        FUZZ_CHECK(result == 0 || result == 1);
        FUZZ_CHECK(result == 1 || param == strata::kM_MXFAST);
      }
      for (const OptionInfo& o : kOptionTable) {
        char buf[32];
        FUZZ_CHECK(strata::option_get(o.name, buf, sizeof buf));
      }
      break;
    }
  }
  g_options = kDefaultOptions;
  return 0;
}
