#pragma once
// A parameter arena to and from safetensors, by name. Saving writes every parameter under
// prefix + name in the arena's element type (or a chosen dtype); loading checks that the file
// holds exactly the arena's parameters under the prefix, with the same shapes, and names
// every missing, unexpected or mis-shaped tensor in one error before anything is overwritten.

#include <string>
#include <string_view>
#include <vector>

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
  std::vector<std::string> problems;
  auto check = [&](std::string_view name, const Shape& shape) {
    const std::string key = std::string(prefix) + std::string(name);
    if (!f.contains(key))
      problems.push_back("missing '" + key + "' " + shape.str());
    else if (!(f.info(key).shape == shape))
      problems.push_back("'" + key + "' has shape " + f.info(key).shape.str() + ", expected " + shape.str());
    else if (!detail::is_float(f.info(key).dtype))
      problems.push_back("'" + key + "' has dtype " + std::string(dtype_name(f.info(key).dtype)) + ", expected a float type");
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
      if (!known) problems.push_back("unexpected '" + key + "' " + f.info(key).shape.str());
    }
  }
  if (!problems.empty()) {
    std::string msg;
    for (std::size_t i = 0; i < problems.size() && i < 20; ++i) msg += "\n  " + problems[i];
    if (problems.size() > 20) msg += "\n  ... and " + std::to_string(problems.size() - 20) + " more";
    fail("load_params: '{}' does not match the model's {} parameters under prefix '{}':{}", f.path(), arena.size(), prefix,
         msg);
  }
  arena.for_each([&](std::string_view name, TensorView<T> v, TensorView<T>) {
    f.load_into<T>(std::string(prefix) + std::string(name), v);
  });
  for (const auto& b : buffers) f.load_into<T>(std::string(prefix) + b.name, b.view);
}

}  // namespace irepa::io
