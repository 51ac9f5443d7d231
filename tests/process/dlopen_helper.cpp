// A library that the dlopen tests load and unload: it allocates when loaded
// (static initializers), when called, and when unloaded (destructors).
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

std::vector<std::string> make_table() {
  std::vector<std::string> table;
  for (int i = 0; i < 300; ++i) table.push_back(std::string(static_cast<std::size_t>(i), 'h'));
  return table;
}

std::vector<std::string> loaded_table = make_table();

struct UnloadAllocates {
  ~UnloadAllocates() {
    void* p = std::malloc(4096);
    if (p != nullptr) std::memset(p, 1, 4096);
    std::free(p);
  }
} unload_allocates;

}  // namespace

extern "C" {

__attribute__((visibility("default"))) void* helper_malloc(std::size_t size) {
  return std::malloc(size);
}
__attribute__((visibility("default"))) void helper_free(void* p) { std::free(p); }
__attribute__((visibility("default"))) void* helper_new(std::size_t size) {
  return ::operator new(size);
}
__attribute__((visibility("default"))) void helper_delete(void* p) { ::operator delete(p); }
// The malloc this library is bound to.
__attribute__((visibility("default"))) void* helper_malloc_address() {
  return reinterpret_cast<void*>(&std::malloc);
}
// Whether the table built at load time is intact.
__attribute__((visibility("default"))) int helper_table_intact() {
  if (loaded_table.size() != 300) return 0;
  for (std::size_t i = 0; i < loaded_table.size(); ++i) {
    if (loaded_table[i] != std::string(i, 'h')) return 0;
  }
  return 1;
}

}  // extern "C"
