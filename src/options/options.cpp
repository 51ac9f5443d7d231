// The options layer's state and its writers: the descriptor table generated
// from options.def, start-up reading of the environment (glibc's MALLOC_*
// aliases, GLIBC_TUNABLES, STRATA_OPTIONS), mallopt, option_set/option_get.
#include "options/options.h"

#include <malloc.h>
#include <sys/auxv.h>
#include <unistd.h>

#include <cerrno>
#include <type_traits>

#include "options/fd_writer.h"
#include "options/option_table.h"

namespace strata {

constinit Options g_options = kDefaultOptions;

namespace options_internal {

constinit int g_report_fd = STDERR_FILENO;
constinit int g_last_report_count = 0;

// Our parameter numbers must be glibc's: programs pass <malloc.h>'s macros.
static_assert(kM_MXFAST == M_MXFAST && kM_TRIM_THRESHOLD == M_TRIM_THRESHOLD &&
              kM_TOP_PAD == M_TOP_PAD && kM_MMAP_THRESHOLD == M_MMAP_THRESHOLD &&
              kM_MMAP_MAX == M_MMAP_MAX && kM_CHECK_ACTION == M_CHECK_ACTION &&
              kM_PERTURB == M_PERTURB && kM_ARENA_TEST == M_ARENA_TEST &&
              kM_ARENA_MAX == M_ARENA_MAX);

constinit const OptionInfo kOptionTable[kOptionCount] = {
#define STRATA_OPTION(name_, type, kind_, def_, min_, max_, gmax_, env_, tunable_, mallopt_, \
                      help_)                                                                 \
  {#name_,                                                                                   \
   help_,                                                                                    \
   env_,                                                                                     \
   tunable_,                                                                                 \
   kM_##mallopt_ == kM_NONE ? nullptr : "M_" #mallopt_,                                      \
   kM_##mallopt_,                                                                            \
   kind_,                                                                                    \
   std::is_signed_v<type>,                                                                   \
   static_cast<Wide>(static_cast<type>(def_)),                                               \
   static_cast<Wide>(static_cast<type>(min_)),                                               \
   static_cast<Wide>(static_cast<type>(max_)),                                               \
   static_cast<Wide>(static_cast<type>(gmax_)),                                              \
   [](const Options& o) -> Wide { return static_cast<Wide>(o.name_); },                      \
   [](Options& o, Wide v) { o.name_ = static_cast<type>(v); }},
#include "options/options.def"
#undef STRATA_OPTION
};

namespace {

constexpr size_t index_of(OptionId id) { return static_cast<size_t>(id); }

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// Splits "name=value" (an environment entry or a GLIBC_TUNABLES item) at the
// first '='. False if there is none.
bool split_assignment(std::string_view entry, std::string_view* name, std::string_view* value) {
  size_t eq = entry.find('=');
  if (eq == std::string_view::npos) return false;
  *name = std::string_view(entry.data(), eq);
  *value = std::string_view(entry.data() + eq + 1, entry.size() - eq - 1);
  return true;
}

// Stores a value already known to be in range, with glibc's side effect.
void store(size_t index, Wide value) {
  kOptionTable[index].store(g_options, value);
  if (clears_dynamic_threshold(index)) g_options.mmap_threshold_dynamic = false;
}

// --- glibc's variables ----------------------------------------------------

// What glibc's tunable layer holds for one tunable after reading the
// environment: whether it was set, and to what (not yet checked by malloc).
struct GlibcSlot {
  bool initialized;
  Wide value;
};

// glibc's tunable_initialize: parse leniently and record the value only if
// it is within the tunable's own range (otherwise it is silently ignored).
void glibc_record(size_t index, std::string_view text, GlibcSlot* slots) {
  const OptionInfo& info = kOptionTable[index];
  uint64_t raw = glibc_strtoul(text);
  // glibc compares its INT_32 tunables as signed 64-bit values and its SIZE_T
  // ones as unsigned: "-1" is below 0 for the former, SIZE_MAX for the latter.
  Wide value =
      info.is_signed ? static_cast<Wide>(static_cast<int64_t>(raw)) : static_cast<Wide>(raw);
  if (value < info.min || value > info.glibc_max) return;
  slots[index] = {true, value};
}

// glibc's parse_tunables over one GLIBC_TUNABLES value: items separated by
// ':'; an item without '=' is skipped; the name ends at the first '=' and the
// value runs to the next ':'. Names other than glibc.malloc ones strata knows
// belong to glibc alone and are ignored without a word, as glibc ignores
// names it does not know.
void parse_glibc_tunables(std::string_view text, GlibcSlot* slots) {
  size_t pos = 0;
  const size_t size = text.size();
  while (pos < size) {
    size_t len = 0;
    while (pos + len < size && text[pos + len] != '=' && text[pos + len] != ':') ++len;
    if (pos + len == size) return;  // a trailing name without a value
    if (text[pos + len] == ':') {
      pos += len + 1;
      continue;
    }
    std::string_view name(text.data() + pos, len);
    pos += len + 1;
    len = 0;
    while (pos + len < size && text[pos + len] != ':') ++len;
    std::string_view value(text.data() + pos, len);
    for (size_t i = 0; i < kOptionCount; ++i) {
      const char* tunable = kOptionTable[i].glibc_tunable;
      if (tunable != nullptr && name == tunable) {
        glibc_record(i, value, slots);
        break;
      }
    }
    pos += len + 1;
  }
}

// malloc's TUNABLE_GET callbacks: every tunable the environment set is
// applied if malloc accepts the value. Only mxfast, tcache_count and
// tcache_max can be refused here (their glibc_max is above max).
void apply_glibc_slots(const GlibcSlot* slots) {
  for (size_t i = 0; i < kOptionCount; ++i) {
    if (slots[i].initialized && slots[i].value <= kOptionTable[i].max) store(i, slots[i].value);
  }
}

// --- STRATA_OPTIONS -------------------------------------------------------

// Reports the mistakes in STRATA_OPTIONS: one line each (up to a limit, so a
// huge variable cannot flood stderr), then the valid names once.
class Reporter {
 public:
  Reporter() : out_(g_report_fd) {}
  ~Reporter() {
    if (count_ > kMaxLines) {
      out_.put("strata: STRATA_OPTIONS: ");
      out_.put_unsigned(static_cast<uint64_t>(count_ - kMaxLines));
      out_.put(" more mistakes not shown\n");
    }
    if (count_ > 0) {
      out_.put("strata: valid options:");
      for (const OptionInfo& info : kOptionTable) {
        out_.put(' ');
        out_.put(info.name);
      }
      out_.put("\n");
    }
    g_last_report_count = count_;
  }
  Reporter(const Reporter&) = delete;
  Reporter& operator=(const Reporter&) = delete;

  void unknown(std::string_view name) {
    if (!begin()) return;
    out_.put("unknown option '");
    out_.put_untrusted(name, kEchoLimit);
    out_.put("' ignored\n");
  }

  void bad_value(size_t index, std::string_view value, bool has_value) {
    if (!begin()) return;
    const OptionInfo& info = kOptionTable[index];
    if (!has_value) {
      out_.put(info.name);
      out_.put(" needs a value");
    } else {
      out_.put("bad value '");
      out_.put_untrusted(value, kEchoLimit);
      out_.put("' for ");
      out_.put(info.name);
    }
    out_.put(" (ignored): expected ");
    switch (info.kind) {
      case kBool:
        out_.put("1/0, true/false, yes/no or on/off");
        break;
      case kSize:
        out_.put("a byte count (optional k/m/g suffix)");
        break;
      case kInt:
      case kByte:
        out_.put("an integer");
        break;
    }
    if (info.kind != kBool) {
      out_.put(" from ");
      put_value(info.kind, info.min);
      out_.put(" to ");
      put_value(info.kind, info.max);
    }
    out_.put('\n');
  }

 private:
  static constexpr int kMaxLines = 16;
  static constexpr size_t kEchoLimit = 64;

  bool begin() {
    if (++count_ > kMaxLines) return false;
    out_.put("strata: STRATA_OPTIONS: ");
    return true;
  }

  void put_value(Kind kind, Wide value) {
    if (value < 0) {
      out_.put_signed(static_cast<int64_t>(value));
    } else if (kind == kSize) {
      out_.put_size(static_cast<uint64_t>(value));
    } else {
      out_.put_unsigned(static_cast<uint64_t>(value));
    }
  }

  FdWriter out_;
  int count_ = 0;
};

// Parses `value` for the option (has_value false: the bare name was given,
// which only a bool accepts, as true). False if malformed or out of range.
bool parse_for(size_t index, std::string_view value, bool has_value, Wide* out) {
  const OptionInfo& info = kOptionTable[index];
  Wide parsed;
  if (!has_value) {
    if (info.kind != kBool) return false;
    parsed = 1;
  } else if (info.kind == kBool) {
    bool flag;
    if (!parse_bool(value, &flag)) return false;
    parsed = flag ? 1 : 0;
  } else if (!parse_number(value, info.kind == kSize, info.min < 0, &parsed)) {
    return false;
  }
  if (parsed < info.min || parsed > info.max) return false;
  *out = parsed;
  return true;
}

void parse_strata_options(std::string_view text) {
  Reporter report;
  // An explicit mmap_threshold_dynamic wins over the side effect of setting
  // mmap_threshold & co. in the same variable, wherever it stands.
  int explicit_dynamic = -1;
  while (!text.empty()) {
    size_t colon = text.find(':');
    std::string_view entry = text;
    if (colon == std::string_view::npos) {
      text = {};
    } else {
      entry = std::string_view(text.data(), colon);
      text.remove_prefix(colon + 1);
    }
    entry = trim(entry);
    if (entry.empty()) continue;
    std::string_view name = entry, value;
    bool has_value = split_assignment(entry, &name, &value);
    name = trim(name);
    value = trim(value);
    int index = find_option(name);
    if (index < 0) {
      report.unknown(name);
      continue;
    }
    Wide parsed;
    if (!parse_for(static_cast<size_t>(index), value, has_value, &parsed)) {
      report.bad_value(static_cast<size_t>(index), value, has_value);
      continue;
    }
    store(static_cast<size_t>(index), parsed);
    if (index == static_cast<int>(OptionId::mmap_threshold_dynamic)) {
      explicit_dynamic = static_cast<int>(parsed);
    }
  }
  if (explicit_dynamic >= 0) g_options.mmap_threshold_dynamic = explicit_dynamic != 0;
}

}  // namespace

int find_option(std::string_view name) {
  for (size_t i = 0; i < kOptionCount; ++i) {
    if (name == kOptionTable[i].name) return static_cast<int>(i);
  }
  return -1;
}

bool clears_dynamic_threshold(size_t index) {
  return index == index_of(OptionId::mmap_threshold) || index == index_of(OptionId::mmap_max) ||
         index == index_of(OptionId::trim_threshold) || index == index_of(OptionId::top_pad);
}

void options_init_env(char** envp, bool secure) {
  int saved_errno = errno;
  g_options = kDefaultOptions;
  g_last_report_count = 0;
  if (envp == nullptr || secure) {
    errno = saved_errno;
    return;
  }

  // One pass in environment order, as glibc's __tunables_init: an alias only
  // sets a tunable that nothing set yet; GLIBC_TUNABLES always overwrites.
  GlibcSlot slots[kOptionCount] = {};
  std::string_view strata_options;
  bool have_strata_options = false;
  for (char** entry = envp; *entry != nullptr; ++entry) {
    std::string_view name, value;
    if (!split_assignment(*entry, &name, &value)) continue;
    if (name == "GLIBC_TUNABLES") {
      parse_glibc_tunables(value, slots);
    } else if (name == "STRATA_OPTIONS") {
      if (!have_strata_options) strata_options = value;  // the first, as getenv
      have_strata_options = true;
    } else {
      for (size_t i = 0; i < kOptionCount; ++i) {
        const char* alias = kOptionTable[i].glibc_env;
        if (alias != nullptr && !slots[i].initialized && name == alias) {
          glibc_record(i, value, slots);
          break;
        }
      }
    }
  }
  apply_glibc_slots(slots);
  if (have_strata_options) parse_strata_options(strata_options);
  if (g_options.verbose) {
    FdWriter out(g_report_fd);
    out.put("strata: options in effect:\n");
    out.flush();
    options_write_current(g_report_fd);
  }
  errno = saved_errno;
}

}  // namespace options_internal

using options_internal::kOptionTable;
using options_internal::Wide;

void options_init(char** envp) {
  int saved_errno = errno;
  // glibc ignores its malloc variables in set-user-ID and similar programs
  // (their tunables are SXID_IGNORE / SXID_ERASE); strata ignores them and
  // its own the same way. (glibc's one exception, MALLOC_CHECK_ honoured when
  // /etc/suid-debug exists, is not copied: it only matters with
  // libc_malloc_debug.so, which the loader does not preload into them.)
  bool secure = getauxval(AT_SECURE) != 0;
  errno = saved_errno;
  options_internal::options_init_env(envp != nullptr ? envp : environ, secure);
}

int options_mallopt(int param, int value) {
  // The rules of glibc 2.36's mallopt, checked against it (see
  // tests/unit/options_test.cpp). The size parameters take the int converted
  // to size_t, so negative values wrap to huge sizes.
  Options& o = g_options;
  const size_t as_size = static_cast<size_t>(value);
  switch (param) {
    case kM_MXFAST:
      if (as_size > kOptionTable[static_cast<size_t>(options_internal::OptionId::mxfast)].max) {
        return 0;
      }
      o.mxfast = as_size;
      return 1;
    case kM_TRIM_THRESHOLD:
      o.trim_threshold = as_size;
      o.mmap_threshold_dynamic = false;
      return 1;
    case kM_TOP_PAD:
      o.top_pad = as_size;
      o.mmap_threshold_dynamic = false;
      return 1;
    case kM_MMAP_THRESHOLD:
      // glibc up to 2.34 refused values above 32 MiB; 2.36 takes any.
      o.mmap_threshold = as_size;
      o.mmap_threshold_dynamic = false;
      return 1;
    case kM_MMAP_MAX:
      o.mmap_max = value;
      o.mmap_threshold_dynamic = false;
      return 1;
    case kM_CHECK_ACTION:
      // glibc's libc accepts and ignores it (MALLOC_CHECK_ lives in
      // libc_malloc_debug.so); strata honours the MALLOC_CHECK_ levels.
      if (value >= 0 && value <= 3) o.check = value;
      return 1;
    case kM_PERTURB:
      o.perturb = value;  // any int, as glibc; the low byte is the pattern
      return 1;
    case kM_ARENA_TEST:
      if (value > 0) o.arena_test = as_size;
      return 1;
    case kM_ARENA_MAX:
      if (value > 0) o.arena_max = as_size;
      return 1;
    default:
      return 1;  // glibc returns 1 for parameters it does not know
  }
}

bool option_set(const char* name, const char* value) {
  if (name == nullptr || value == nullptr) return false;
  int index = options_internal::find_option(name);
  if (index < 0) return false;
  Wide parsed;
  if (!options_internal::parse_for(static_cast<size_t>(index), options_internal::trim(value), true,
                                   &parsed)) {
    return false;
  }
  options_internal::store(static_cast<size_t>(index), parsed);
  return true;
}

bool option_get(const char* name, char* buf, size_t len) {
  if (name == nullptr || buf == nullptr || len == 0) return false;
  buf[0] = '\0';
  int index = options_internal::find_option(name);
  if (index < 0) return false;
  const options_internal::OptionInfo& info = kOptionTable[index];
  Wide value = info.load(g_options);

  char text[48];
  size_t n = 0;
  if (info.kind == options_internal::kBool) {
    for (char c : std::string_view(value != 0 ? "true" : "false")) text[n++] = c;
  } else {
    bool negative = value < 0;
    uint64_t magnitude = negative ? 0 - static_cast<uint64_t>(value) : static_cast<uint64_t>(value);
    char digits[20];
    size_t d = 0;
    do {
      digits[d++] = static_cast<char>('0' + magnitude % 10);
      magnitude /= 10;
    } while (magnitude != 0);
    if (negative) text[n++] = '-';
    while (d > 0) text[n++] = digits[--d];
  }
  if (n + 1 > len) return false;
  for (size_t i = 0; i < n; ++i) buf[i] = text[i];
  buf[n] = '\0';
  return true;
}

}  // namespace strata
