// strata's run-time options: the Options struct the core reads, and the ways
// of setting it (environment at start-up, mallopt, option_set). The options
// themselves are listed once, in options.def.
//
// Where values come from, lowest precedence first (as glibc 2.36 reads them):
//   1. the defaults in options.def;
//   2. glibc's aliases MALLOC_CHECK_, MALLOC_PERTURB_, MALLOC_MMAP_THRESHOLD_,
//      MALLOC_MMAP_MAX_, MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_,
//      MALLOC_ARENA_MAX, MALLOC_ARENA_TEST (if one is given twice, the first
//      valid one counts);
//   3. GLIBC_TUNABLES=glibc.malloc.NAME=VALUE:... (the last valid entry counts;
//      it beats the alias whatever their order in the environment);
//   4. STRATA_OPTIONS=name=value:name=value (strata's names, highest).
// glibc's values are parsed the way glibc parses them (decimal, 0x hex or
// leading-0 octal, trailing junk ignored, out-of-range values silently
// ignored); STRATA_OPTIONS is parsed strictly and every mistake in it is
// reported on stderr, with the list of valid names, and otherwise ignored.
// A secure (set-user-ID, AT_SECURE) process ignores all of them, as glibc
// ignores its malloc variables there.
//
// Everything here is safe to run inside the first malloc call: no allocation,
// no exceptions, no static constructors; output goes to write(2).
#ifndef STRATA_OPTIONS_OPTIONS_H
#define STRATA_OPTIONS_OPTIONS_H

#include <climits>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace strata {

// The current options. Plain fields: the core reads them without locking;
// they are written by options_init() at start-up and afterwards only by
// options_mallopt() and option_set(), which the caller serialises.
struct Options {
#define STRATA_OPTION(name, type, kind, def, min, max, gmax, env, tunable, mallopt, help) type name;
#include "options/options.def"
#undef STRATA_OPTION
};

inline constexpr Options kDefaultOptions = {
#define STRATA_OPTION(name, type, kind, def, min, max, gmax, env, tunable, mallopt, help) def,
#include "options/options.def"
#undef STRATA_OPTION
};

extern constinit Options g_options;

// glibc never raises the dynamic mmap threshold above this (its
// DEFAULT_MMAP_THRESHOLD_MAX on 64-bit); mmap_threshold itself may be set higher.
inline constexpr size_t kDynamicMmapThresholdMax = 32 * 1024 * 1024;

// mallopt() parameter numbers, as in glibc's <malloc.h>.
enum MalloptParam : int {
  kM_NONE = 0,  // not a parameter: marks options without one
  kM_MXFAST = 1,
  kM_TRIM_THRESHOLD = -1,
  kM_TOP_PAD = -2,
  kM_MMAP_THRESHOLD = -3,
  kM_MMAP_MAX = -4,
  kM_CHECK_ACTION = -5,
  kM_PERTURB = -6,
  kM_ARENA_TEST = -7,
  kM_ARENA_MAX = -8,
};

// Resets g_options to the defaults, then reads the environment as described
// above. envp may be null (then `environ` is used, which may itself still be
// null very early: then only the defaults apply). Called once at start-up;
// calling it again starts over from the defaults. Preserves errno.
void options_init(char** envp);

// mallopt() with glibc 2.36's exact results: 1, except 0 for M_MXFAST above
// 160 (or negative). Unknown parameters return 1 and change nothing, as in
// glibc. Setting M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD or M_MMAP_MAX
// clears mmap_threshold_dynamic. Negative values of the size parameters wrap
// to huge sizes (M_TRIM_THRESHOLD -1 = never trim); M_MMAP_MAX and M_PERTURB
// store any int; M_ARENA_TEST/M_ARENA_MAX ignore values <= 0; M_CHECK_ACTION
// takes 0..3 and ignores other values.
int options_mallopt(int param, int value);

// Sets one option by its strata name from text written as in STRATA_OPTIONS.
// Returns false, changing nothing, for an unknown name or a bad value.
// Setting mmap_threshold, mmap_max, trim_threshold or top_pad clears
// mmap_threshold_dynamic, as mallopt does.
bool option_set(const char* name, const char* value);

// Writes the current value of an option (decimal; bools as true/false, which
// option_set takes back) as a NUL-terminated string. False if the name is
// unknown or buf is too small.
bool option_get(const char* name, char* buf, size_t len);

// Writes the table of options (name, type, default, glibc equivalents, help).
void options_write_help(int fd);

// Writes every option's current value, one "name=value" a line.
void options_write_current(int fd);

// Parses a byte count: decimal or 0x hex digits, then an optional k, m or g
// (either case; powers of 1024). The whole text must match; no spaces, no sign.
// False on anything else or on overflow. Allocation-free, for any layer.
bool parse_size(std::string_view text, size_t* out);

// Parses 1/0, true/false, yes/no, on/off (any case). False otherwise.
bool parse_bool(std::string_view text, bool* out);

}  // namespace strata

#endif  // STRATA_OPTIONS_OPTIONS_H
