// Human-readable listings generated from the option table: the help table
// (options_write_help) and the values in effect (options_write_current).
#include <string_view>

#include "options/fd_writer.h"
#include "options/option_table.h"
#include "options/options.h"

namespace strata {

using options_internal::FdWriter;
using options_internal::Kind;
using options_internal::kOptionTable;
using options_internal::OptionInfo;
using options_internal::Wide;

namespace {

constexpr size_t kTypeColumn = 24;
constexpr size_t kDefaultColumn = 30;
constexpr size_t kTextColumn = 40;
constexpr size_t kWidth = 100;

std::string_view kind_name(Kind kind) {
  switch (kind) {
    case options_internal::kBool:
      return "bool";
    case options_internal::kSize:
      return "size";
    case options_internal::kInt:
      return "int";
    case options_internal::kByte:
      return "byte";
  }
  return "?";
}

// Sizes with their k/m/g suffix, bools as true/false: the forms a person
// would write in STRATA_OPTIONS (and that it reads back).
void put_value(FdWriter& out, const OptionInfo& info, Wide value) {
  if (info.kind == options_internal::kBool) {
    out.put(value != 0 ? "true" : "false");
  } else if (value < 0) {
    out.put_signed(static_cast<int64_t>(value));
  } else if (info.kind == options_internal::kSize) {
    out.put_size(static_cast<uint64_t>(value));
  } else {
    out.put_unsigned(static_cast<uint64_t>(value));
  }
}

// One word at the current column, after a space unless it starts the text;
// moved to a new line indented to `indent` if it would pass kWidth.
void put_word(FdWriter& out, std::string_view word, size_t indent, bool first) {
  if (!first && out.column() + 1 + word.size() > kWidth) {
    out.put('\n');
    if (indent > 0) out.pad_to(indent);
  } else if (!first) {
    out.put(' ');
  }
  out.put(word);
}

// Words of `text` from the current column, wrapped at kWidth onto lines
// indented to `indent`.
void put_wrapped(FdWriter& out, std::string_view text, size_t indent) {
  bool first = true;
  while (!text.empty()) {
    size_t space = text.find(' ');
    if (space == std::string_view::npos) space = text.size();
    std::string_view word(text.data(), space);
    text.remove_prefix(space == text.size() ? space : space + 1);
    if (word.empty()) continue;
    put_word(out, word, indent, first);
    first = false;
  }
}

}  // namespace

void options_write_help(int fd) {
  FdWriter out(fd);
  put_wrapped(out,
              "strata reads its options from STRATA_OPTIONS=name=value:name=value (a bool "
              "option's bare name means true). Sizes are bytes, with an optional k, m or g "
              "suffix (powers of 1024); numbers may also be written in 0x hex. The options "
              "with a glibc equivalent are also set by glibc's MALLOC_* variables, by "
              "GLIBC_TUNABLES=glibc.malloc.name=value:... and by mallopt(); GLIBC_TUNABLES "
              "beats MALLOC_*, and STRATA_OPTIONS beats both. Set-user-ID programs ignore "
              "all of them.",
              0);
  out.put("\n\n");
  out.put("name");
  out.pad_to(kTypeColumn);
  out.put("type");
  out.pad_to(kDefaultColumn);
  out.put("default");
  out.pad_to(kTextColumn);
  out.put("meaning\n");
  for (const OptionInfo& info : kOptionTable) {
    out.put(info.name);
    out.pad_to(kTypeColumn);
    out.put(kind_name(info.kind));
    out.pad_to(kDefaultColumn);
    put_value(out, info, info.def);
    out.pad_to(kTextColumn);
    put_wrapped(out, info.help, kTextColumn);
    out.put('\n');
    if (info.glibc_env != nullptr || info.glibc_tunable != nullptr ||
        info.mallopt_name != nullptr) {
      out.pad_to(kTextColumn);
      out.put("glibc:");
      for (const char* name : {info.glibc_env, info.glibc_tunable, info.mallopt_name}) {
        if (name != nullptr) put_word(out, name, kTextColumn + 7, false);
      }
      out.put('\n');
    }
  }
}

void options_write_current(int fd) {
  FdWriter out(fd);
  for (const OptionInfo& info : kOptionTable) {
    out.put("  ");
    out.put(info.name);
    out.put('=');
    put_value(out, info, info.load(g_options));
    out.put('\n');
  }
}

}  // namespace strata
