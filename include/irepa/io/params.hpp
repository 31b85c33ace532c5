#pragma once
// A parameter arena to and from safetensors, by name. Saving writes every parameter under
// prefix + name in the arena's element type (or a chosen dtype); loading checks that the file
// holds exactly the arena's parameters under the prefix, with the same shapes, and names
// every missing, unexpected or mis-shaped tensor in one error before anything is overwritten.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "irepa/core/arena.hpp"
#include "irepa/io/safetensors.hpp"

namespace irepa::io {

/// Adds every parameter of the arena as prefix + name (e.g. "model." + "blocks.0.attn.qkv.weight").
template <class T>
void add_params(SafeTensorsWriter& w, const ParamArena<T>& arena, std::string_view prefix = {}) {
  arena.for_each([&](std::string_view name, TensorView<T> v, TensorView<T>) {
    w.add<T>(std::string(prefix) + std::string(name), v);
  });
}

/// A named non-parameter tensor (a buffer such as SiT's pos_embed) saved and loaded with the
/// parameters.
template <class T>
struct NamedView {
  std::string name;
  TensorView<T> view;
};

/// What does not match between a weights file and what a reader wants, collected so that one
/// error names all of it (the first 20, and how many more) before anything is overwritten.
struct TensorMismatches {
  std::vector<std::string> list;
  /// Notes key missing from f, or there with another shape; true when it is there as wanted.
  bool expect(const TensorFile& f, const std::string& key, const Shape& shape) {
    if (!f.contains(key)) {
      list.push_back("missing '" + key + "' " + shape.str());
      return false;
    }
    if (!(f.info(key).shape == shape)) {
      list.push_back("'" + key + "' has shape " + f.info(key).shape.str() + ", expected " + shape.str());
      return false;
    }
    return true;
  }
  void add(std::string problem) { list.push_back(std::move(problem)); }
  /// Throws "<headline>:" followed by the list, when there is one.
  template <class... A>
  void fail_if_any(fmt::format_string<A...> headline, A&&... args) const {
    if (list.empty()) return;
    std::string msg = fmt::format(headline, std::forward<A>(args)...) + ":";
    for (std::size_t i = 0; i < list.size() && i < 20; ++i) msg += "\n  " + list[i];
    if (list.size() > 20) msg += "\n  ... and " + std::to_string(list.size() - 20) + " more";
    fail("{}", msg);
  }
};

struct LoadParamsOptions {
  bool allow_unexpected = false;  // tolerate tensors under the prefix that the arena does not have
  std::vector<std::string> read_by_caller;  // names (after the prefix) the caller reads itself: not unexpected
};

/// Reads every parameter of the arena (and every buffer) from prefix + name, converting from the
/// stored float dtype. Throws irepa::Error listing all missing / mis-shaped (and, unless allowed,
/// unexpected) tensors; on error nothing is changed.
template <class T>
void load_params(const SafeTensorsFile& f, const ParamArena<T>& arena, std::string_view prefix = {},
                 LoadParamsOptions opt = {}, const std::vector<NamedView<T>>& buffers = {}) {
  TensorMismatches problems;
  auto check = [&](std::string_view name, const Shape& shape) {
    const std::string key = std::string(prefix) + std::string(name);
    if (problems.expect(f, key, shape) && !detail::is_float(f.info(key).dtype))
      problems.add("'" + key + "' has dtype " + std::string(dtype_name(f.info(key).dtype)) + ", expected a float type");
  };
  arena.for_each([&](std::string_view name, TensorView<T> v, TensorView<T>) { check(name, v.shape()); });
  for (const auto& b : buffers) check(b.name, b.view.shape());
  if (!opt.allow_unexpected) {
    for (const auto& key : f.names()) {
      if (key.compare(0, prefix.size(), prefix) != 0) continue;
      const std::string_view rest = std::string_view(key).substr(prefix.size());
      bool known = arena.contains(rest);
      for (const auto& b : buffers) known = known || b.name == rest;
      for (const auto& n : opt.read_by_caller) known = known || n == rest;
      if (!known) problems.add("unexpected '" + key + "' " + f.info(key).shape.str());
    }
  }
  problems.fail_if_any("load_params: '{}' does not match the model's {} parameters under prefix '{}'", f.path(), arena.size(), prefix);
  arena.for_each([&](std::string_view name, TensorView<T> v, TensorView<T>) {
    f.load_into<T>(std::string(prefix) + std::string(name), v);
  });
  for (const auto& b : buffers) f.load_into<T>(std::string(prefix) + b.name, b.view);
}

}  // namespace irepa::io
