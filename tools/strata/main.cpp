// The strata command: run a program with strata preloaded, and show the
// allocator's fixed tables (size classes, options).
//
//   strata run [--stats] [--option NAME=VALUE]... [--] PROGRAM [ARGS...]
//   strata size-classes
//   strata options
#include <limits.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "options/options.h"
#include "sizeclass/size_classes.h"

namespace {

int usage(FILE* out, int status) {
  std::fputs(
      "usage: strata run [--stats] [--option NAME=VALUE]... [--] PROGRAM [ARGS...]\n"
      "       strata size-classes   print the size classes and their waste\n"
      "       strata options        print every option (STRATA_OPTIONS=name=value:...)\n"
      "\n"
      "run: executes PROGRAM with libstrata.so preloaded (LD_PRELOAD). --stats prints\n"
      "the allocator's statistics when the program exits; --option sets a strata\n"
      "option for the program (repeatable).\n",
      out);
  return status;
}

// libstrata.so sits beside this executable in the build tree, or in ../lib
// when installed.
std::string find_library() {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return {};
  self[n] = '\0';
  std::string dir(self);
  dir.erase(dir.rfind('/'));
  for (const char* candidate : {"/libstrata.so", "/../lib/libstrata.so"}) {
    std::string path = dir + candidate;
    if (access(path.c_str(), R_OK) == 0) return path;
  }
  return {};
}

void append_env(const char* name, const std::string& value, char separator) {
  const char* old = std::getenv(name);
  std::string combined =
      (old != nullptr && *old != '\0') ? std::string(old) + separator + value : value;
  setenv(name, combined.c_str(), 1);
}

int run(int argc, char** argv) {
  std::vector<std::string> options;
  int i = 0;
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg == "--stats") {
      options.push_back("stats=1");
    } else if ((arg == "--option" || arg == "-o") && i + 1 < argc) {
      options.push_back(argv[++i]);
    } else if (arg.rfind("--option=", 0) == 0) {
      options.push_back(arg.substr(9));
    } else if (arg.rfind("-", 0) == 0) {
      std::fprintf(stderr, "strata run: unknown option '%s'\n", arg.c_str());
      return usage(stderr, 2);
    } else {
      break;
    }
  }
  if (i >= argc) return usage(stderr, 2);
  std::string library = find_library();
  if (library.empty()) {
    std::fprintf(stderr, "strata run: libstrata.so not found beside %s\n", "the strata executable");
    return 1;
  }
  append_env("LD_PRELOAD", library, ':');
  for (const std::string& option : options) append_env("STRATA_OPTIONS", option, ':');
  execvp(argv[i], argv + i);
  std::fprintf(stderr, "strata run: cannot run %s: %s\n", argv[i], std::strerror(errno));
  return 127;
}

int size_classes() {
  std::printf("%5s %9s %6s %8s %10s %10s  %s\n", "class", "block", "slab", "blocks", "max waste",
              "slab tail", "slabs");
  size_t previous = 0;
  for (size_t cls = 0; cls < strata::kNumClasses; ++cls) {
    const strata::SizeClassInfo& info = strata::kSizeClasses[cls];
    size_t slab = info.slab_units * strata::kUnitSize;
    size_t tail = slab - static_cast<size_t>(info.capacity) * info.block_size;
    // The worst request for this class is one byte more than the class below.
    double waste = 100.0 * static_cast<double>(info.block_size - (previous + 1)) / info.block_size;
    std::printf("%5zu %9u %5zuK %8u %9.1f%% %9.1f%%  %s\n", cls, info.block_size, slab / 1024,
                info.capacity, waste, 100.0 * static_cast<double>(tail) / static_cast<double>(slab),
                strata::is_shared_class(cls) ? "shared" : "per thread");
    previous = info.block_size;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage(stderr, 2);
  std::string command = argv[1];
  if (command == "run") return run(argc - 2, argv + 2);
  if (command == "size-classes") return size_classes();
  if (command == "options") {
    strata::options_write_help(STDOUT_FILENO);
    return 0;
  }
  if (command == "--help" || command == "-h" || command == "help") return usage(stdout, 0);
  std::fprintf(stderr, "strata: unknown command '%s'\n", command.c_str());
  return usage(stderr, 2);
}
