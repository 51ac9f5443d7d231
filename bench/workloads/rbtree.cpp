// rbtree: a linked structure of many small nodes. A red-black tree
// (std::map, whose nodes come from malloc through a minimal allocator) holds
// a long-lived base of entries, each owning a malloc'd payload; a stream of
// short-lived entries is inserted and erased again a little later, and now
// and then a long-lived payload is resized. Long-lived and short-lived nodes
// end up interleaved in the heap, as in a cache or an index.
#include <map>

#include "bench_common.hpp"

namespace {

template <class T>
struct MallocAllocator {
  using value_type = T;
  MallocAllocator() = default;
  template <class U>
  MallocAllocator(const MallocAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(bench::xmalloc(n * sizeof(T))); }
  void deallocate(T* p, size_t) { std::free(p); }
  template <class U>
  bool operator==(const MallocAllocator<U>&) const {
    return true;
  }
};

struct Payload {
  char* data;
  uint32_t size;
  uint64_t tag;
};

using Tree = std::map<uint64_t, Payload, std::less<uint64_t>,
                      MallocAllocator<std::pair<const uint64_t, Payload>>>;

Payload make_payload(bench::Rng& rng) {
  Payload p;
  p.size = static_cast<uint32_t>(rng.log_size(8, 256));
  p.tag = rng.next();
  p.data = static_cast<char*>(bench::xmalloc(p.size));
  bench::fill(p.data, p.size, p.tag);
  return p;
}

void drop_payload(const Payload& p) {
  bench::check(p.data, p.size, p.tag);
  std::free(p.data);
}

// Inserts or replaces: keys are random, so a key may already be present.
void put(Tree& tree, uint64_t key, bench::Rng& rng) {
  auto [it, inserted] = tree.try_emplace(key);
  if (!inserted) drop_payload(it->second);
  it->second = make_payload(rng);
}

void erase(Tree& tree, uint64_t key) {
  auto it = tree.find(key);
  if (it == tree.end()) return;
  drop_payload(it->second);
  tree.erase(it);
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv, "[--base N] [--ops N] [--window N]");
  const size_t base = static_cast<size_t>(args.get("base", 200000));
  const int64_t ops = args.get("ops", 2000000);
  const size_t window = static_cast<size_t>(args.get("window", 1000));
  args.finish();
  if (base < 1 || window < 1) bench::die("bad arguments");

  bench::Timer timer;
  bench::Rng rng(2024);
  Tree tree;
  std::vector<uint64_t> base_keys(base);
  for (auto& k : base_keys) {
    k = rng.next() | 1;  // odd keys: long-lived
    put(tree, k, rng);
  }
  std::vector<uint64_t> recent(window, 0);
  uint64_t lookups = 0;
  for (int64_t i = 0; i < ops; ++i) {
    uint64_t& slot = recent[static_cast<size_t>(i) % window];
    if (slot) erase(tree, slot);
    slot = rng.next() & ~1ULL;  // even keys: short-lived
    if (!slot) slot = 2;
    put(tree, slot, rng);
    if (i % 16 == 0) put(tree, base_keys[rng.below(base)], rng);  // resize a long-lived one
    if (tree.count(base_keys[rng.below(base)])) ++lookups;
  }

  uint64_t sum = 0;
  for (const auto& [key, payload] : tree) {
    sum = sum * 31 + key + payload.size;
    drop_payload(payload);
  }
  std::printf("rbtree: entries=%zu lookups=%" PRIu64 " sum=%016" PRIx64 "\n", tree.size(), lookups,
              sum);
  tree.clear();
  timer.report("rbtree");
  return 0;
}
