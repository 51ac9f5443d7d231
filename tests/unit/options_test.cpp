// Unit tests of the options layer (src/options): value parsing, every
// option's limits, reading glibc's variables, GLIBC_TUNABLES and
// STRATA_OPTIONS with their precedence, mallopt, option_set/option_get and
// the generated help.
//
// The expected glibc behaviour below was not taken from documentation: it was
// measured on glibc 2.36 (Debian 2.36-9+deb12u14, x86-64). Environment cases
// were run through `ld.so --list-tunables` and, for their effect, through a
// small program whose malloc parameters (mp_, perturb_byte, global_max_fast)
// were read with gdb and libc6-dbg after the first malloc; mallopt cases
// through this program, printing mallopt's return value and then mp_:
//
//   #include <malloc.h>
//   #include <stdio.h>
//   #include <stdlib.h>
//   void probe(void) { __asm__ volatile(""); }  // gdb: break probe; p mp_
//   int main(int argc, char** argv) {
//     free(malloc(1));
//     for (int i = 1; i + 1 < argc; i += 2) {
//       int param = atoi(argv[i]), value = (int)strtol(argv[i + 1], 0, 0);
//       printf("mallopt(%d, %d) = %d\n", param, value, mallopt(param, value));
//     }
//     probe();
//   }
#include <fcntl.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "options/option_table.h"
#include "options/options.h"

namespace strata {
namespace {

using options_internal::find_option;
using options_internal::g_last_report_count;
using options_internal::g_report_fd;
using options_internal::glibc_strtoul;
using options_internal::kOptionCount;
using options_internal::kOptionTable;
using options_internal::OptionInfo;
using options_internal::Wide;

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * 1024;

// A NULL-terminated envp built from string literals.
class Env {
 public:
  Env(std::initializer_list<std::string> entries) : strings_(entries) {
    for (std::string& s : strings_) pointers_.push_back(s.data());
    pointers_.push_back(nullptr);
  }
  char** get() { return pointers_.data(); }

 private:
  std::vector<std::string> strings_;
  std::vector<char*> pointers_;
};

void init(std::initializer_list<std::string> entries) {
  Env env(entries);
  options_init(env.get());
}

// Collects what the options layer writes to a file descriptor.
class Capture {
 public:
  Capture() {
    EXPECT_EQ(pipe(fds_), 0);
    fcntl(fds_[0], F_SETFL, O_NONBLOCK);
  }
  ~Capture() {
    close(fds_[0]);
    close(fds_[1]);
  }
  int fd() const { return fds_[1]; }
  std::string text() {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(fds_[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }

 private:
  int fds_[2];
};

size_t count_of(const std::string& haystack, const std::string& needle) {
  size_t count = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + 1)) {
    ++count;
  }
  return count;
}

std::string get(const char* name) {
  char buf[64];
  EXPECT_TRUE(option_get(name, buf, sizeof buf)) << name;
  return buf;
}

// Which options differ between a and b ("" if none). Compares field by field
// through the table: memcmp would also compare padding.
std::string diff(const Options& a, const Options& b) {
  std::string out;
  for (const OptionInfo& o : kOptionTable) {
    if (o.load(a) != o.load(b)) out += std::string(out.empty() ? "" : ", ") + o.name;
  }
  return out;
}

const OptionInfo& info(const char* name) {
  int index = find_option(name);
  EXPECT_GE(index, 0) << name;
  return kOptionTable[index >= 0 ? index : 0];
}

class OptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g_report_fd = -1;  // keep expected complaints out of the test log
    g_options = kDefaultOptions;
  }
  void TearDown() override {
    g_report_fd = STDERR_FILENO;
    g_options = kDefaultOptions;  // other tests in this binary expect defaults
  }
};

// --- defaults -------------------------------------------------------------

TEST_F(OptionsTest, DefaultsMatchGlibc236) {
  // mp_ of a fresh glibc 2.36 process: trim_threshold = top_pad =
  // mmap_threshold = 0x20000, arena_test = 8, arena_max = 0, n_mmaps_max =
  // 65536, no_dyn_threshold = 0, tcache_max_bytes = 1032, tcache_count = 7,
  // perturb_byte = 0, global_max_fast = 128.
  init({});
  EXPECT_EQ(g_options.mmap_threshold, 128 * kKiB);
  EXPECT_TRUE(g_options.mmap_threshold_dynamic);
  EXPECT_EQ(g_options.mmap_max, 65536);
  EXPECT_EQ(g_options.trim_threshold, 128 * kKiB);
  EXPECT_EQ(g_options.top_pad, 128 * kKiB);
  EXPECT_EQ(g_options.perturb, 0);
  EXPECT_EQ(g_options.check, 0);
  EXPECT_EQ(g_options.arena_max, 0u);
  EXPECT_EQ(g_options.arena_test, 8u);
  EXPECT_EQ(g_options.mxfast, 128u);
  EXPECT_EQ(g_options.tcache_count, 7u);
  EXPECT_EQ(g_options.tcache_max, 1032u);
  EXPECT_EQ(g_options.hugetlb, 0u);
  EXPECT_EQ(g_options.purge_delay_ms, 1000u);
  EXPECT_EQ(g_options.dirty_max, 8 * kMiB);
  EXPECT_FALSE(g_options.brk);
  EXPECT_FALSE(g_options.stats);
  EXPECT_FALSE(g_options.verbose);
  EXPECT_FALSE(g_options.leaks);
  EXPECT_EQ(g_options.guard_sample_rate, 0u);
  EXPECT_EQ(g_options.quarantine_bytes, 0u);
}

TEST_F(OptionsTest, TableIsConsistent) {
  for (const OptionInfo& o : kOptionTable) {
    SCOPED_TRACE(o.name);
    EXPECT_LE(o.min, o.max);
    EXPECT_LE(o.max, o.glibc_max);
    EXPECT_NE(std::string(o.help), "");
    // A default outside the range is allowed only for arena_max's "automatic" 0.
    if (std::string(o.name) != "arena_max") {
      EXPECT_GE(o.def, o.min);
      EXPECT_LE(o.def, o.max);
    }
    EXPECT_EQ(o.load(kDefaultOptions), o.def);
    EXPECT_EQ(find_option(o.name), &o - kOptionTable);
  }
  EXPECT_EQ(find_option("no_such_option"), -1);
  EXPECT_EQ(find_option(""), -1);
}

// --- parse_size / parse_bool / glibc_strtoul ----------------------------------

TEST_F(OptionsTest, ParseSizeAcceptsSuffixesAndHex) {
  struct Case {
    const char* text;
    size_t value;
  } cases[] = {
      {"0", 0},
      {"4096", 4096},
      {"128k", 128 * kKiB},
      {"128K", 128 * kKiB},
      {"2m", 2 * kMiB},
      {"2M", 2 * kMiB},
      {"1g", size_t{1} << 30},
      {"3G", size_t{3} << 30},
      {"0x1000", 4096},
      {"0X10k", 16 * kKiB},
      {"007", 7},  // decimal: leading zeros are not octal here
      {"18446744073709551615", SIZE_MAX},
      {"0xffffffffffffffff", SIZE_MAX},
      {"17179869183g", size_t{17179869183} << 30},
  };
  for (const Case& c : cases) {
    size_t value = 12345;
    EXPECT_TRUE(parse_size(c.text, &value)) << c.text;
    EXPECT_EQ(value, c.value) << c.text;
  }
}

TEST_F(OptionsTest, ParseSizeRejectsMalformedAndOverflow) {
  const char* cases[] = {"",    "k",   "-1",  " 1",  "1 ", "1kb", "1.5m", "0x",
                         "0xg", "abc", "12a", "1kk", "+1", "1t",  "0x-1", "1e3"};
  const char* overflows[] = {"18446744073709551616", "17179869184g", "0x10000000000000000",
                             "16777216t"};
  for (const char* text : cases) {
    size_t value = 12345;
    EXPECT_FALSE(parse_size(text, &value)) << text;
    EXPECT_EQ(value, 12345u) << text;
  }
  for (const char* text : overflows) {
    size_t value = 12345;
    EXPECT_FALSE(parse_size(text, &value)) << text;
    EXPECT_EQ(value, 12345u) << text;
  }
}

TEST_F(OptionsTest, ParseBool) {
  for (const char* text : {"1", "true", "TRUE", "yes", "Yes", "on", "ON"}) {
    bool value = false;
    EXPECT_TRUE(parse_bool(text, &value)) << text;
    EXPECT_TRUE(value) << text;
  }
  for (const char* text : {"0", "false", "False", "no", "NO", "off", "Off"}) {
    bool value = true;
    EXPECT_TRUE(parse_bool(text, &value)) << text;
    EXPECT_FALSE(value) << text;
  }
  for (const char* text : {"", "2", "y", "n", "truee", " true", "-1", "enable"}) {
    bool value = true;
    EXPECT_FALSE(parse_bool(text, &value)) << text;
  }
}

TEST_F(OptionsTest, GlibcStrtoulMatchesGlibc) {
  // Values as glibc 2.36 recorded them for MALLOC_TOP_PAD_=<text>.
  struct Case {
    const char* text;
    uint64_t value;
  } cases[] = {
      {"128k", 128},  // trailing junk ignored
      {"abc", 0},     // no digits: 0 (and top_pad is set to 0)
      {"", 0},
      {" 12", 12},
      {"\t7", 7},
      {"+5", 5},
      {"0x10", 16},
      {"0X1f", 31},
      {"010", 8},  // octal
      {"09", 0},   // octal stops at 9
      {"0x", 0},
      {"-1", UINT64_MAX},
      {"-0x10", 0xfffffffffffffff0},
      {"99999999999999999999999", UINT64_MAX},
      {"18446744073709551615", UINT64_MAX},
      {"18446744073709551616", UINT64_MAX},
      {"18446744073709551614", UINT64_MAX},  // glibc's overflow test is conservative
      {"1844674407370955161", 0x1999999999999999},
  };
  for (const Case& c : cases) EXPECT_EQ(glibc_strtoul(c.text), c.value) << c.text;
}

// --- STRATA_OPTIONS, option by option ------------------------------------------

TEST_F(OptionsTest, EveryOptionTakesItsLimitsFromStrataOptions) {
  for (const OptionInfo& o : kOptionTable) {
    SCOPED_TRACE(o.name);
    for (Wide value : {o.min, o.max, (o.min + o.max) / 2}) {
      std::string text = o.kind == options_internal::kBool
                             ? (value != 0 ? "true" : "false")
                             : (value < 0 ? "-" + std::to_string(static_cast<uint64_t>(-value))
                                          : std::to_string(static_cast<uint64_t>(value)));
      init({"STRATA_OPTIONS=" + std::string(o.name) + "=" + text});
      EXPECT_EQ(g_last_report_count, 0) << text;
      EXPECT_EQ(o.load(g_options), value) << text;
    }
  }
}

TEST_F(OptionsTest, EveryOptionRejectsValuesOutsideItsLimits) {
  for (const OptionInfo& o : kOptionTable) {
    SCOPED_TRACE(o.name);
    std::vector<std::string> bad = {"", "x", "1x", "0x", "- 1", "1 2", "=1"};
    if (o.max < static_cast<Wide>(UINT64_MAX)) {
      bad.push_back(std::to_string(static_cast<uint64_t>(o.max + 1)));
    } else {
      bad.push_back("18446744073709551616");
    }
    if (o.min > 0) bad.push_back(std::to_string(static_cast<uint64_t>(o.min - 1)));
    if (o.min >= 0 && o.kind != options_internal::kBool) bad.push_back("-1");
    if (o.kind != options_internal::kSize) bad.push_back("1k");
    for (const std::string& text : bad) {
      init({"STRATA_OPTIONS=" + std::string(o.name) + "=" + text});
      EXPECT_EQ(g_last_report_count, 1) << "'" << text << "'";
      EXPECT_EQ(o.load(g_options), o.def) << "'" << text << "'";
    }
  }
}

TEST_F(OptionsTest, StrataOptionsSyntax) {
  init({"STRATA_OPTIONS=mmap_threshold=1m:stats:leaks=yes: verbose = off ::top_pad=0x100:"});
  EXPECT_EQ(g_last_report_count, 0);
  EXPECT_EQ(g_options.mmap_threshold, kMiB);
  EXPECT_TRUE(g_options.stats);  // a bare bool name means true
  EXPECT_TRUE(g_options.leaks);
  EXPECT_FALSE(g_options.verbose);
  EXPECT_EQ(g_options.top_pad, 256u);

  init({"STRATA_OPTIONS=perturb=0xab:check=3:mmap_max=0:dirty_max=64k:purge_delay_ms=0"});
  EXPECT_EQ(g_last_report_count, 0);
  EXPECT_EQ(g_options.perturb, 0xab);
  EXPECT_EQ(g_options.check, 3);
  EXPECT_EQ(g_options.mmap_max, 0);
  EXPECT_EQ(g_options.dirty_max, 64 * kKiB);
  EXPECT_EQ(g_options.purge_delay_ms, 0u);

  // Later entries win; an empty variable changes nothing.
  init({"STRATA_OPTIONS=stats=1:stats=0:guard_sample_rate=10:guard_sample_rate=20"});
  EXPECT_FALSE(g_options.stats);
  EXPECT_EQ(g_options.guard_sample_rate, 20u);
  init({"STRATA_OPTIONS="});
  EXPECT_EQ(g_last_report_count, 0);
  EXPECT_EQ(diff(g_options, kDefaultOptions), "");
}

TEST_F(OptionsTest, MistakesAreReportedOnceWithTheValidNames) {
  Capture capture;
  g_report_fd = capture.fd();
  init({"STRATA_OPTIONS=bogus=1:mmap_threshold=12q:stats:mmap_max:Stats=1:quarantine_bytes=1m"});
  std::string text = capture.text();
  EXPECT_EQ(g_last_report_count, 4);
  // The good entries still apply.
  EXPECT_TRUE(g_options.stats);
  EXPECT_EQ(g_options.quarantine_bytes, kMiB);
  EXPECT_EQ(g_options.mmap_threshold, 128 * kKiB);
  EXPECT_EQ(g_options.mmap_max, 65536);
  EXPECT_NE(text.find("unknown option 'bogus'"), std::string::npos) << text;
  EXPECT_NE(text.find("unknown option 'Stats'"), std::string::npos) << text;
  EXPECT_NE(text.find("bad value '12q' for mmap_threshold"), std::string::npos) << text;
  EXPECT_NE(text.find("mmap_max needs a value"), std::string::npos) << text;
  EXPECT_EQ(count_of(text, "valid options:"), 1u) << text;
  std::string valid = text.substr(text.find("valid options:"));
  for (const OptionInfo& o : kOptionTable) {
    EXPECT_NE(valid.find(std::string(" ") + o.name), std::string::npos) << o.name;
  }
  // Every line is attributed to strata.
  for (size_t pos = 0; pos < text.size(); pos = text.find('\n', pos) + 1) {
    EXPECT_EQ(text.compare(pos, 8, "strata: "), 0) << text.substr(pos);
  }
}

TEST_F(OptionsTest, ReportsAreSanitisedAndBounded) {
  Capture capture;
  g_report_fd = capture.fd();
  std::string junk = "STRATA_OPTIONS=\x01\x1b[31m" + std::string(500, 'z') + "=1";
  for (int i = 0; i < 40; ++i) junk += ":bad" + std::to_string(i);
  init({junk});
  std::string text = capture.text();
  EXPECT_EQ(g_last_report_count, 41);
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
  EXPECT_EQ(text.find('\x01'), std::string::npos);
  EXPECT_NE(text.find("??[31mzzz"), std::string::npos) << text;
  EXPECT_NE(text.find("..."), std::string::npos);
  EXPECT_EQ(text.find(std::string(100, 'z')), std::string::npos);
  EXPECT_NE(text.find("25 more mistakes not shown"), std::string::npos) << text;
  EXPECT_EQ(count_of(text, "valid options:"), 1u);
  EXPECT_LT(count_of(text, "\n"), 20u);
}

TEST_F(OptionsTest, NothingIsReportedForGoodInput) {
  Capture capture;
  g_report_fd = capture.fd();
  init({"STRATA_OPTIONS=stats=1", "MALLOC_TOP_PAD_=junk", "GLIBC_TUNABLES=glibc.malloc.bogus=1"});
  EXPECT_EQ(capture.text(), "");
  EXPECT_EQ(g_last_report_count, 0);
}

TEST_F(OptionsTest, VerbosePrintsTheOptionsInEffect) {
  Capture capture;
  g_report_fd = capture.fd();
  init({"STRATA_OPTIONS=verbose:top_pad=64k"});
  std::string text = capture.text();
  EXPECT_NE(text.find("options in effect"), std::string::npos) << text;
  EXPECT_NE(text.find("top_pad=64k\n"), std::string::npos) << text;
  EXPECT_NE(text.find("verbose=true\n"), std::string::npos) << text;
}

// --- glibc's MALLOC_* aliases (expected values measured on glibc 2.36) ----

TEST_F(OptionsTest, GlibcAliasesParseLikeGlibc) {
  init({"MALLOC_TOP_PAD_=128k"});
  EXPECT_EQ(g_options.top_pad, 128u);  // glibc ignores the suffix
  EXPECT_FALSE(g_options.mmap_threshold_dynamic);

  init({"MALLOC_TOP_PAD_=abc"});
  EXPECT_EQ(g_options.top_pad, 0u);  // no digits is 0, and valid
  EXPECT_FALSE(g_options.mmap_threshold_dynamic);

  init({"MALLOC_MMAP_THRESHOLD_=-1"});
  EXPECT_EQ(g_options.mmap_threshold, SIZE_MAX);
  EXPECT_FALSE(g_options.mmap_threshold_dynamic);

  init({"MALLOC_MMAP_THRESHOLD_=33554433"});  // no 32 MiB cap from the environment
  EXPECT_EQ(g_options.mmap_threshold, 33554433u);

  init({"MALLOC_TRIM_THRESHOLD_=5"});
  EXPECT_EQ(g_options.trim_threshold, 5u);
  EXPECT_FALSE(g_options.mmap_threshold_dynamic);

  init({"MALLOC_MMAP_MAX_=5"});
  EXPECT_EQ(g_options.mmap_max, 5);
  EXPECT_FALSE(g_options.mmap_threshold_dynamic);

  init({"MALLOC_PERTURB_=0x41"});
  EXPECT_EQ(g_options.perturb, 0x41);
  EXPECT_TRUE(g_options.mmap_threshold_dynamic);  // only the four threshold knobs clear it

  init({"MALLOC_ARENA_MAX=2", "MALLOC_ARENA_TEST=1", "MALLOC_CHECK_=3"});
  EXPECT_EQ(g_options.arena_max, 2u);
  EXPECT_EQ(g_options.arena_test, 1u);
  EXPECT_EQ(g_options.check, 3);
  EXPECT_TRUE(g_options.mmap_threshold_dynamic);
}

TEST_F(OptionsTest, GlibcAliasesIgnoreOutOfRangeValuesSilently) {
  // Each of these left glibc 2.36's parameter at its default.
  for (const char* entry :
       {"MALLOC_MMAP_MAX_=-1", "MALLOC_MMAP_MAX_=2147483648", "MALLOC_MMAP_MAX_=-2147483648",
        "MALLOC_MMAP_MAX_=4294967295", "MALLOC_PERTURB_=256", "MALLOC_PERTURB_=-1",
        "MALLOC_ARENA_MAX=0", "MALLOC_ARENA_TEST=0", "MALLOC_CHECK_=4", "MALLOC_CHECK_=-1",
        "malloc_top_pad_=5", "MALLOC_TOP_PAD", "MALLOC_TOP_PAD_X=5", "XMALLOC_TOP_PAD_=5"}) {
    init({entry});
    EXPECT_EQ(diff(g_options, kDefaultOptions), "") << entry;
    EXPECT_EQ(g_last_report_count, 0) << entry;
  }
  init({"MALLOC_MMAP_MAX_=2147483647", "MALLOC_PERTURB_=255"});
  EXPECT_EQ(g_options.mmap_max, INT_MAX);
  EXPECT_EQ(g_options.perturb, 255);
}

TEST_F(OptionsTest, FirstValidAliasWins) {
  init({"MALLOC_TOP_PAD_=1", "MALLOC_TOP_PAD_=2"});
  EXPECT_EQ(g_options.top_pad, 1u);
  init({"MALLOC_PERTURB_=300", "MALLOC_PERTURB_=5"});
  EXPECT_EQ(g_options.perturb, 5);
  init({"MALLOC_TOP_PAD_", "MALLOC_TOP_PAD_=4"});
  EXPECT_EQ(g_options.top_pad, 4u);
}

// --- GLIBC_TUNABLES (expected values measured on glibc 2.36) ---------------

TEST_F(OptionsTest, GlibcTunablesSyntax) {
  struct Case {
    const char* tunables;
    size_t top_pad;
  } cases[] = {
      {"glibc.malloc.top_pad=2", 2},
      {"glibc.malloc.top_pad=1:glibc.malloc.top_pad=2", 2},  // last wins
      {"glibc.malloc.top_pad=1=2", 1},
      {"::glibc.malloc.top_pad=3::", 3},
      {"glibc.malloc.top_pad", 128 * kKiB},
      {"foo:glibc.malloc.top_pad=4", 4},
      {"foo=1:glibc.malloc.top_pad=4", 4},
      {"glibc.malloc.top_pad=", 0},
      {"=5:glibc.malloc.top_pad=6", 6},
      {"glibc.malloc.top_pad=6:glibc.malloc.perturb", 6},
      {"GLIBC.MALLOC.TOP_PAD=6", 128 * kKiB},
      {"glibc.malloc.top_pad =6", 128 * kKiB},
      {"glibc.malloc.top_pad=6 ", 6},
      {"glibc.malloc.top_pad=12k", 12},
      {"glibc.malloc.top_pad=glibc.malloc.perturb=5", 0},
      {"glibc.malloc.top_pad=99999999999999999999999", SIZE_MAX},
      {"glibc.cpu.hwcaps=-AVX2_Usable:glibc.malloc.top_pad=9:glibc.rtld.nns=2", 9},
      {"glibc.malloc.tcache_unsorted_limit=5:glibc.malloc.top_pad=10", 10},
      {"", 128 * kKiB},
      {":", 128 * kKiB},
      {"=", 128 * kKiB},
  };
  for (const Case& c : cases) {
    init({std::string("GLIBC_TUNABLES=") + c.tunables});
    EXPECT_EQ(g_options.top_pad, c.top_pad) << c.tunables;
    EXPECT_EQ(g_options.perturb, 0) << c.tunables;
    EXPECT_EQ(g_last_report_count, 0) << c.tunables;
  }
}

TEST_F(OptionsTest, GlibcTunablesLimits) {
  struct Case {
    const char* tunables;
    const char* option;
    Wide value;
  } cases[] = {
      {"glibc.malloc.mxfast=160", "mxfast", 160},
      {"glibc.malloc.mxfast=161", "mxfast", 128},
      {"glibc.malloc.mxfast=0", "mxfast", 0},
      {"glibc.malloc.tcache_max=1032", "tcache_max", 1032},
      {"glibc.malloc.tcache_max=1033", "tcache_max", 1032},
      {"glibc.malloc.tcache_max=0", "tcache_max", 0},
      {"glibc.malloc.tcache_count=65535", "tcache_count", 65535},
      {"glibc.malloc.tcache_count=65536", "tcache_count", 7},
      {"glibc.malloc.tcache_count=0", "tcache_count", 0},
      {"glibc.malloc.hugetlb=1", "hugetlb", 1},
      {"glibc.malloc.hugetlb=2", "hugetlb", 2},
      {"glibc.malloc.hugetlb=2097152", "hugetlb", 2097152},
      {"glibc.malloc.perturb=300", "perturb", 0},
      {"glibc.malloc.perturb=255", "perturb", 255},
      {"glibc.malloc.check=1", "check", 1},
      {"glibc.malloc.check=4", "check", 0},
      {"glibc.malloc.arena_max=0", "arena_max", 0},
      {"glibc.malloc.arena_max=7", "arena_max", 7},
      {"glibc.malloc.arena_test=0", "arena_test", 8},
      {"glibc.malloc.mmap_max=-1", "mmap_max", 65536},
      {"glibc.malloc.mmap_threshold=4096", "mmap_threshold", 4096},
      {"glibc.malloc.trim_threshold=-1", "trim_threshold", static_cast<Wide>(SIZE_MAX)},
      // A value glibc's tunable layer records but malloc then refuses drops
      // the earlier setting of the same tunable: the default remains.
      {"glibc.malloc.mxfast=64:glibc.malloc.mxfast=1000", "mxfast", 128},
      {"glibc.malloc.mxfast=64:glibc.malloc.mxfast=-1", "mxfast", 128},
      {"glibc.malloc.tcache_count=3:glibc.malloc.tcache_count=70000", "tcache_count", 7},
      // ...whereas a value outside the tunable's own range is skipped.
      {"glibc.malloc.perturb=3:glibc.malloc.perturb=700", "perturb", 3},
  };
  for (const Case& c : cases) {
    init({std::string("GLIBC_TUNABLES=") + c.tunables});
    EXPECT_EQ(info(c.option).load(g_options), c.value) << c.tunables;
  }
  init({"GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4096"});
  EXPECT_FALSE(g_options.mmap_threshold_dynamic);
  init({"GLIBC_TUNABLES=glibc.malloc.tcache_count=1:glibc.malloc.mxfast=0:glibc.malloc.perturb=1"});
  EXPECT_TRUE(g_options.mmap_threshold_dynamic);
}

TEST_F(OptionsTest, GlibcTunablesBeatAliasesInAnyOrder) {
  init({"MALLOC_TOP_PAD_=1", "GLIBC_TUNABLES=glibc.malloc.top_pad=2"});
  EXPECT_EQ(g_options.top_pad, 2u);
  init({"GLIBC_TUNABLES=glibc.malloc.top_pad=2", "MALLOC_TOP_PAD_=1"});
  EXPECT_EQ(g_options.top_pad, 2u);
  init({"MALLOC_TOP_PAD_=1", "GLIBC_TUNABLES=glibc.malloc.top_pad=8", "MALLOC_TOP_PAD_=3"});
  EXPECT_EQ(g_options.top_pad, 8u);
  // An invalid tunable leaves the alias in charge, in either order.
  init({"MALLOC_PERTURB_=7", "GLIBC_TUNABLES=glibc.malloc.perturb=300"});
  EXPECT_EQ(g_options.perturb, 7);
  init({"GLIBC_TUNABLES=glibc.malloc.top_pad=99999999999999999999999:glibc.malloc.perturb=300",
        "MALLOC_TOP_PAD_=1", "MALLOC_PERTURB_=7"});
  EXPECT_EQ(g_options.top_pad, SIZE_MAX);
  EXPECT_EQ(g_options.perturb, 7);
  // Every GLIBC_TUNABLES variable is read, in order.
  init({"GLIBC_TUNABLES=glibc.malloc.top_pad=7", "GLIBC_TUNABLES=glibc.malloc.perturb=5"});
  EXPECT_EQ(g_options.top_pad, 7u);
  EXPECT_EQ(g_options.perturb, 5);
  init({"GLIBC_TUNABLES=glibc.malloc.top_pad=7", "GLIBC_TUNABLES=glibc.malloc.top_pad=8"});
  EXPECT_EQ(g_options.top_pad, 8u);
}

// --- STRATA_OPTIONS over glibc's ------------------------------------------------

TEST_F(OptionsTest, StrataOptionsWin) {
  init({"STRATA_OPTIONS=top_pad=3:perturb=9", "GLIBC_TUNABLES=glibc.malloc.top_pad=2",
        "MALLOC_TOP_PAD_=1", "MALLOC_PERTURB_=4", "MALLOC_ARENA_MAX=5"});
  EXPECT_EQ(g_options.top_pad, 3u);
  EXPECT_EQ(g_options.perturb, 9);
  EXPECT_EQ(g_options.arena_max, 5u);  // what STRATA_OPTIONS leaves alone, glibc's variables set
  // Only the first STRATA_OPTIONS counts, as getenv would find it.
  init({"STRATA_OPTIONS=stats", "STRATA_OPTIONS=leaks"});
  EXPECT_TRUE(g_options.stats);
  EXPECT_FALSE(g_options.leaks);
  // A bad STRATA_OPTIONS value leaves glibc's value in place.
  init({"MALLOC_TOP_PAD_=1", "STRATA_OPTIONS=top_pad=bad"});
  EXPECT_EQ(g_options.top_pad, 1u);
}

TEST_F(OptionsTest, DynamicThresholdRules) {
  for (const char* entry : {"STRATA_OPTIONS=mmap_threshold=1m", "STRATA_OPTIONS=mmap_max=10",
                            "STRATA_OPTIONS=trim_threshold=0", "STRATA_OPTIONS=top_pad=0"}) {
    init({entry});
    EXPECT_FALSE(g_options.mmap_threshold_dynamic) << entry;
  }
  for (const char* entry : {"STRATA_OPTIONS=mxfast=0", "STRATA_OPTIONS=dirty_max=0",
                            "STRATA_OPTIONS=mmap_threshold=bad"}) {
    init({entry});
    EXPECT_TRUE(g_options.mmap_threshold_dynamic) << entry;
  }
  // An explicit mmap_threshold_dynamic wins, before or after.
  init({"STRATA_OPTIONS=mmap_threshold_dynamic=1:mmap_threshold=1m"});
  EXPECT_TRUE(g_options.mmap_threshold_dynamic);
  EXPECT_EQ(g_options.mmap_threshold, kMiB);
  init({"STRATA_OPTIONS=mmap_threshold=1m:mmap_threshold_dynamic=1"});
  EXPECT_TRUE(g_options.mmap_threshold_dynamic);
  init({"MALLOC_MMAP_THRESHOLD_=4096", "STRATA_OPTIONS=mmap_threshold_dynamic=on"});
  EXPECT_TRUE(g_options.mmap_threshold_dynamic);
  init({"STRATA_OPTIONS=mmap_threshold_dynamic=0"});
  EXPECT_FALSE(g_options.mmap_threshold_dynamic);
}

// --- where the environment comes from -------------------------------------------

TEST_F(OptionsTest, SecureProcessesIgnoreTheEnvironment) {
  // glibc 2.36 ignored MALLOC_PERTURB_ and GLIBC_TUNABLES=glibc.malloc.perturb
  // in a set-user-ID program started by another user.
  Env env({"STRATA_OPTIONS=stats", "MALLOC_TOP_PAD_=1", "GLIBC_TUNABLES=glibc.malloc.perturb=1"});
  options_internal::options_init_env(env.get(), true);
  EXPECT_EQ(diff(g_options, kDefaultOptions), "");
  options_internal::options_init_env(env.get(), false);
  EXPECT_TRUE(g_options.stats);
}

TEST_F(OptionsTest, NullEnvpUsesEnviron) {
  char** saved = environ;
  Env env({"STRATA_OPTIONS=leaks"});
  environ = env.get();
  options_init(nullptr);
  EXPECT_TRUE(g_options.leaks);
  environ = nullptr;  // as in the earliest moments of a process
  options_init(nullptr);
  EXPECT_FALSE(g_options.leaks);
  environ = saved;
}

TEST_F(OptionsTest, InitStartsFromDefaultsAndKeepsErrno) {
  g_options.stats = true;
  g_options.top_pad = 1;
  errno = 1234;
  init({"STRATA_OPTIONS=nonsense", "HOME=/"});
  EXPECT_EQ(errno, 1234);
  EXPECT_EQ(diff(g_options, kDefaultOptions), "");
}

// --- mallopt (results measured on glibc 2.36) ---------------------------------------

TEST_F(OptionsTest, MalloptConstantsAreGlibcs) {
  EXPECT_EQ(kM_MXFAST, M_MXFAST);
  EXPECT_EQ(kM_TRIM_THRESHOLD, M_TRIM_THRESHOLD);
  EXPECT_EQ(kM_TOP_PAD, M_TOP_PAD);
  EXPECT_EQ(kM_MMAP_THRESHOLD, M_MMAP_THRESHOLD);
  EXPECT_EQ(kM_MMAP_MAX, M_MMAP_MAX);
  EXPECT_EQ(kM_CHECK_ACTION, M_CHECK_ACTION);
  EXPECT_EQ(kM_PERTURB, M_PERTURB);
  EXPECT_EQ(kM_ARENA_TEST, M_ARENA_TEST);
  EXPECT_EQ(kM_ARENA_MAX, M_ARENA_MAX);
}

TEST_F(OptionsTest, MalloptMatchesGlibc) {
  struct Case {
    int param, value, result;
    const char* option;  // changed option, or nullptr
    Wide expected;
    bool clears_dynamic;
  } cases[] = {
      {M_MXFAST, 0, 1, "mxfast", 0, false},
      {M_MXFAST, 8, 1, "mxfast", 8, false},
      {M_MXFAST, 160, 1, "mxfast", 160, false},
      {M_MXFAST, 161, 0, nullptr, 0, false},
      {M_MXFAST, -1, 0, nullptr, 0, false},
      {M_TRIM_THRESHOLD, -1, 1, "trim_threshold", static_cast<Wide>(SIZE_MAX), true},
      {M_TRIM_THRESHOLD, 0, 1, "trim_threshold", 0, true},
      {M_TOP_PAD, -1, 1, "top_pad", static_cast<Wide>(SIZE_MAX), true},
      {M_TOP_PAD, 4096, 1, "top_pad", 4096, true},
      {M_MMAP_THRESHOLD, 33554432, 1, "mmap_threshold", 33554432, true},
      {M_MMAP_THRESHOLD, 33554433, 1, "mmap_threshold", 33554433, true},  // no cap in 2.36
      {M_MMAP_THRESHOLD, 64 << 20, 1, "mmap_threshold", 64 << 20, true},
      {M_MMAP_THRESHOLD, INT_MAX, 1, "mmap_threshold", INT_MAX, true},
      {M_MMAP_THRESHOLD, -1, 1, "mmap_threshold", static_cast<Wide>(SIZE_MAX), true},
      {M_MMAP_THRESHOLD, 0, 1, "mmap_threshold", 0, true},
      {M_MMAP_MAX, -1, 1, "mmap_max", -1, true},
      {M_MMAP_MAX, 0, 1, "mmap_max", 0, true},
      {M_MMAP_MAX, INT_MAX, 1, "mmap_max", INT_MAX, true},
      {M_PERTURB, 300, 1, "perturb", 300, false},
      {M_PERTURB, -1, 1, "perturb", -1, false},
      {M_PERTURB, 0x55, 1, "perturb", 0x55, false},
      {M_ARENA_TEST, 0, 1, nullptr, 0, false},
      {M_ARENA_TEST, -1, 1, nullptr, 0, false},
      {M_ARENA_TEST, 3, 1, "arena_test", 3, false},
      {M_ARENA_MAX, 0, 1, nullptr, 0, false},
      {M_ARENA_MAX, -5, 1, nullptr, 0, false},
      {M_ARENA_MAX, 4, 1, "arena_max", 4, false},
      // glibc's libc returns 1 and changes nothing for M_CHECK_ACTION;
      // strata also takes MALLOC_CHECK_'s levels 0..3 from it.
      {M_CHECK_ACTION, 2, 1, "check", 2, false},
      {M_CHECK_ACTION, 7, 1, nullptr, 0, false},
      {M_CHECK_ACTION, -1, 1, nullptr, 0, false},
      // Unknown parameters, including the historical M_NLBLKS (2), M_GRAIN (3)
      // and M_KEEP (4): 1, nothing changes.
      {0, 5, 1, nullptr, 0, false},
      {2, 5, 1, nullptr, 0, false},
      {3, 1, 1, nullptr, 0, false},
      {4, 1, 1, nullptr, 0, false},
      {-9, 1, 1, nullptr, 0, false},
      {100, 1, 1, nullptr, 0, false},
      {-100, 1, 1, nullptr, 0, false},
      {INT_MIN, 1, 1, nullptr, 0, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << "mallopt(" << c.param << ", " << c.value << ")");
    g_options = kDefaultOptions;
    EXPECT_EQ(options_mallopt(c.param, c.value), c.result);
    Options expected = kDefaultOptions;
    if (c.option != nullptr) info(c.option).store(expected, c.expected);
    if (c.clears_dynamic) expected.mmap_threshold_dynamic = false;
    EXPECT_EQ(diff(g_options, expected), "");
  }
}

TEST_F(OptionsTest, EveryMalloptParameterOfTheTableWorks) {
  // Ties the table's mallopt column to options_mallopt: each listed
  // parameter changes its option.
  for (const OptionInfo& o : kOptionTable) {
    if (o.mallopt == kM_NONE) continue;
    SCOPED_TRACE(o.name);
    EXPECT_EQ(std::string(o.mallopt_name).rfind("M_", 0), 0u);
    g_options = kDefaultOptions;
    int value = static_cast<int>(o.def == 1 ? 2 : 1);
    EXPECT_EQ(options_mallopt(o.mallopt, value), 1);
    EXPECT_EQ(o.load(g_options), value);
  }
}

// --- option_set / option_get ---------------------------------------------------------

TEST_F(OptionsTest, OptionSetAndGet) {
  EXPECT_EQ(get("mmap_threshold"), "131072");
  EXPECT_EQ(get("mmap_threshold_dynamic"), "true");
  EXPECT_EQ(get("brk"), "false");
  EXPECT_TRUE(option_set("mmap_threshold", "1m"));
  EXPECT_EQ(get("mmap_threshold"), "1048576");
  EXPECT_FALSE(g_options.mmap_threshold_dynamic);  // as mallopt
  EXPECT_TRUE(option_set("mmap_threshold_dynamic", "yes"));
  EXPECT_TRUE(g_options.mmap_threshold_dynamic);
  EXPECT_TRUE(option_set("brk", " on "));
  EXPECT_TRUE(g_options.brk);

  EXPECT_FALSE(option_set("mmap_threshold", "1x"));
  EXPECT_FALSE(option_set("perturb", "256"));
  EXPECT_FALSE(option_set("no_such", "1"));
  EXPECT_FALSE(option_set(nullptr, "1"));
  EXPECT_FALSE(option_set("stats", nullptr));
  EXPECT_FALSE(option_set("stats", ""));
  EXPECT_EQ(g_options.mmap_threshold, kMiB);
  EXPECT_EQ(g_options.perturb, 0);

  char buf[8];
  EXPECT_FALSE(option_get("no_such", buf, sizeof buf));
  EXPECT_EQ(buf[0], '\0');
  EXPECT_FALSE(option_get("mmap_threshold", buf, 7));  // "1048576" needs 8
  EXPECT_TRUE(option_get("mmap_threshold", buf, 8));
  EXPECT_STREQ(buf, "1048576");
  EXPECT_FALSE(option_get("mmap_threshold", nullptr, 8));
  EXPECT_FALSE(option_get("mmap_threshold", buf, 0));
  EXPECT_FALSE(option_get(nullptr, buf, sizeof buf));

  options_mallopt(M_MMAP_MAX, -1);
  EXPECT_EQ(get("mmap_max"), "-1");
  options_mallopt(M_TRIM_THRESHOLD, -1);
  EXPECT_EQ(get("trim_threshold"), "18446744073709551615");
}

TEST_F(OptionsTest, OptionGetRoundTripsThroughOptionSet) {
  for (const OptionInfo& o : kOptionTable) {
    SCOPED_TRACE(o.name);
    for (Wide value : {o.min, o.max}) {
      g_options = kDefaultOptions;
      o.store(g_options, value);
      std::string text = get(o.name);
      g_options = kDefaultOptions;
      EXPECT_TRUE(option_set(o.name, text.c_str())) << text;
      EXPECT_EQ(o.load(g_options), value) << text;
    }
  }
}

// --- help -------------------------------------------------------------------------------

TEST_F(OptionsTest, HelpListsEveryOption) {
  Capture capture;
  options_write_help(capture.fd());
  std::string text = capture.text();
  EXPECT_NE(text.find("STRATA_OPTIONS"), std::string::npos);
  for (const OptionInfo& o : kOptionTable) {
    SCOPED_TRACE(o.name);
    EXPECT_NE(text.find(std::string("\n") + o.name + " "), std::string::npos);
    for (const char* glibc_name : {o.glibc_env, o.glibc_tunable, o.mallopt_name}) {
      if (glibc_name != nullptr) {
        EXPECT_NE(text.find(glibc_name), std::string::npos) << glibc_name;
      }
    }
  }
  EXPECT_NE(text.find("mmap_threshold          size  128k"), std::string::npos) << text;
  EXPECT_NE(text.find("dirty_max               size  8m"), std::string::npos) << text;
  EXPECT_NE(text.find("brk                     bool  false"), std::string::npos) << text;
  // Lines stay readable in a terminal.
  for (size_t pos = 0, end; (end = text.find('\n', pos)) != std::string::npos; pos = end + 1) {
    EXPECT_LE(end - pos, 100u) << text.substr(pos, end - pos);
  }
}

TEST_F(OptionsTest, CurrentValuesListEveryOption) {
  Capture capture;
  g_options.top_pad = 3 * kMiB;
  options_write_current(capture.fd());
  std::string text = capture.text();
  for (const OptionInfo& o : kOptionTable) {
    EXPECT_NE(text.find(std::string(" ") + o.name + "="), std::string::npos) << o.name;
  }
  EXPECT_NE(text.find("  top_pad=3m\n"), std::string::npos) << text;
  EXPECT_EQ(count_of(text, "\n"), kOptionCount);
}

}  // namespace
}  // namespace strata
