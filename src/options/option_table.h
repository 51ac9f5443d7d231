// Internal to the options layer (and its tests): the descriptor table
// generated from options.def that the parser, mallopt, option_get/set and the
// help listing walk, plus the hooks the tests and the fuzz target use.
#ifndef STRATA_OPTIONS_OPTION_TABLE_H
#define STRATA_OPTIONS_OPTION_TABLE_H

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "options/options.h"

namespace strata::options_internal {

// Wide enough for every field type (size_t and negative ints alike), so that
// range checks need no per-type code.
using Wide = __int128;

enum Kind : uint8_t { kBool, kSize, kInt, kByte };

enum class OptionId : unsigned {
#define STRATA_OPTION(name, type, kind, def, min, max, gmax, env, tunable, mallopt, help) name,
#include "options/options.def"
#undef STRATA_OPTION
  kCount
};

inline constexpr size_t kOptionCount = static_cast<size_t>(OptionId::kCount);

struct OptionInfo {
  const char* name;
  const char* help;
  const char* glibc_env;      // nullptr if none
  const char* glibc_tunable;  // nullptr if none
  const char* mallopt_name;   // "M_..." or nullptr
  int mallopt;                // kM_NONE if none
  Kind kind;
  bool is_signed;  // the field's type is signed (glibc: an INT_32 tunable)
  Wide def, min, max, glibc_max;
  Wide (*load)(const Options&);
  void (*store)(Options&, Wide);
};

extern const OptionInfo kOptionTable[kOptionCount];

// Index of the option called `name`, or -1.
int find_option(std::string_view name);

// The options whose setting (by mallopt, environment or option_set) turns
// mmap_threshold_dynamic off, as in glibc.
bool clears_dynamic_threshold(size_t index);

// options_init with the AT_SECURE decision made by the caller.
void options_init_env(char** envp, bool secure);

// Where STRATA_OPTIONS mistakes are reported: stderr, or -1 for nowhere.
extern constinit int g_report_fd;

// Number of mistakes found in STRATA_OPTIONS by the last options_init.
extern constinit int g_last_report_count;

// glibc's _dl_strtoul: optional blanks and sign, then decimal, 0x hex or
// leading-0 octal digits; stops at the first other character; no digit at
// all gives 0; overflow gives UINT64_MAX; a '-' negates modulo 2^64.
uint64_t glibc_strtoul(std::string_view text);

// Strict number for STRATA_OPTIONS: optional '-' (only if allow_negative),
// decimal or 0x hex digits, then (only if allow_suffix) one of k/m/g.
// False unless all of `text` matches and the magnitude fits in 64 bits.
bool parse_number(std::string_view text, bool allow_suffix, bool allow_negative, Wide* out);

}  // namespace strata::options_internal

#endif  // STRATA_OPTIONS_OPTION_TABLE_H
