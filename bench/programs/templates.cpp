// g++ workload: a template-heavy translation unit. Compiling it makes the
// compiler build and discard many types, instantiations and expression
// trees. The program it produces prints values computed at compile time.
//
// The amount of work is set with -DSTRATA_TEMPLATE_SCALE=N (default 40).
#include <array>
#include <cstdio>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#ifndef STRATA_TEMPLATE_SCALE
#define STRATA_TEMPLATE_SCALE 40
#endif

namespace {

template <int N>
struct Fib {
  static constexpr unsigned long long value = Fib<N - 1>::value + Fib<N - 2>::value;
};
template <>
struct Fib<0> {
  static constexpr unsigned long long value = 0;
};
template <>
struct Fib<1> {
  static constexpr unsigned long long value = 1;
};

// A distinct type per index, each with its own member functions.
template <int I>
struct Node {
  std::array<int, (I % 7) + 1> data{};
  std::string label = "node" + std::to_string(I);
  constexpr int weight() const { return I * 3 + static_cast<int>(data.size()); }
};

template <int... Is>
constexpr int weights(std::integer_sequence<int, Is...>) {
  return (Node<Is>{}.data.size() + ... + 0);
}

template <class... Ts>
struct TypeList {};

template <class List, template <class> class F>
struct Map;
template <class... Ts, template <class> class F>
struct Map<TypeList<Ts...>, F> {
  using type = TypeList<typename F<Ts>::type...>;
};

template <class T>
struct AddPtr {
  using type = T*;
};

template <int I>
using Wrapped = std::tuple<Node<I>, std::vector<Node<I>>, std::map<int, Node<I>>>;

template <int... Is>
auto make_variants(std::integer_sequence<int, Is...>) {
  std::vector<std::variant<Node<Is>...>> out;
  (out.emplace_back(std::in_place_index<Is>), ...);
  return out;
}

template <int... Is>
std::size_t touch_all(std::integer_sequence<int, Is...>) {
  std::size_t total = 0;
  ((total += std::get<2>(Wrapped<Is>{}).size() + std::get<1>(Wrapped<Is>{}).size() +
             Node<Is>{}.label.size()),
   ...);
  return total;
}

constexpr auto kSeq = std::make_integer_sequence<int, STRATA_TEMPLATE_SCALE>{};

using Mapped = Map<TypeList<int, long, char, double, Node<1>, Node<2>>, AddPtr>::type;

}  // namespace

int main() {
  auto variants = make_variants(kSeq);
  std::size_t visited = 0;
  for (auto& v : variants)
    visited += std::visit([](auto& n) { return static_cast<std::size_t>(n.weight()); }, v);
  static_assert(!std::is_same_v<Mapped, void>);
  std::printf("g++: scale=%d fib=%llu weights=%d visited=%zu touched=%zu\n", STRATA_TEMPLATE_SCALE,
              Fib<80>::value, weights(kSeq), visited, touch_all(kSeq));
  return 0;
}
