#pragma once
// Model size tags: depth, width and heads fixed at compile time (SiT-S/B/L/XL; JiT shares B, L
// and H's widths), and Dynamic, which takes them from the run-time configuration instead.
// As with Eigen's fixed and Dynamic sizes, a fixed size gives the same numbers as Dynamic with
// the same values.

#include <concepts>

namespace irepa {

struct S {
  static constexpr int depth = 12, hidden = 384, heads = 6;
};
struct B {
  static constexpr int depth = 12, hidden = 768, heads = 12;
};
struct L {
  static constexpr int depth = 24, hidden = 1024, heads = 16;
};
struct XL {
  static constexpr int depth = 28, hidden = 1152, heads = 16;
};
/// JiT-H (JiT-B and JiT-L use B and L).
struct H {
  static constexpr int depth = 32, hidden = 1280, heads = 16;
};
/// Depth, width and heads from the configuration.
struct Dynamic {
  static constexpr int depth = 0, hidden = 0, heads = 0;
};
/// A patch-size template argument taken from the configuration.
inline constexpr int DynamicPatch = 0;

template <class Sz>
concept SizeTag = requires {
  { Sz::depth } -> std::convertible_to<int>;
  { Sz::hidden } -> std::convertible_to<int>;
  { Sz::heads } -> std::convertible_to<int>;
};

}  // namespace irepa
