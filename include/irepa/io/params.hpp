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

struct LoadParamsOptions {
  bool allow_unexpected = false;  // tolerate tensors under the prefix that the arena does not have
};

/// Reads every parameter of the arena from prefix + name, converting from the stored float dtype.
/// Throws irepa::Error listing all missing / mis-shaped (and, unless allowed, unexpected)
/// tensors; on error the arena is unchanged.
template <class T>
void load_params(const SafeTensorsFile& f, const ParamArena<T>& arena, std::string_view prefix = {},
                 LoadParamsOptions opt = {}) {
  std::vector<std::string> problems;
  arena.for_each([&](std::string_view name, TensorView<T> v, TensorView<T>) {
    const std::string key = std::string(prefix) + std::string(name);
    if (!f.contains(key))
      problems.push_back("missing '" + key + "' " + v.shape().str());
    else if (!(f.info(key).shape == v.shape()))
      problems.push_back("'" + key + "' has shape " + f.info(key).shape.str() + ", expected " + v.shape().str());
  });
  if (!opt.allow_unexpected) {
    for (const auto& key : f.names()) {
      if (key.compare(0, prefix.size(), prefix) != 0) continue;
      if (!arena.contains(std::string_view(key).substr(prefix.size())))
        problems.push_back("unexpected '" + key + "' " + f.info(key).shape.str());
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
}

}  // namespace irepa::io
