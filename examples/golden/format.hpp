#pragma once
// The golden format (irepa-golden-v1, ../shared/golden/README.md), as irepa-golden-check and the
// tests read it: a file names its model and holds its `config` as JSON metadata, `params/<state_dict
// name>` (or, with the config key `params_from`, borrows them from another file of the same
// folder), `inputs/<name>`, `outputs/<name>` and `grads/<name>`. A check returns one Row per
// compared tensor: ||ours - ref|| / ||ref||. Not a public header: the golden readers belong
// with the checker and the tests.

#include <cmath>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "irepa/core/arena.hpp"
#include "irepa/io/safetensors.hpp"

namespace irepa::golden {

struct Row {
  std::string name;  // the file's tensor name (outputs/..., grads/...)
  double rel = 0;    // ||ours - ref|| / ||ref|| (||ours - ref|| when ref is zero)
  double tol = 0;
  bool ok() const { return rel <= tol; }  // false for NaN
};

/// Relative error of ours against ref (same element count; NaN positions must agree).
template <class T>
double rel_error(ConstView<T> ours, ConstView<double> ref) {
  IREPA_CHECK(ours.numel() == ref.numel(), "golden: {} values against {} in the file", ours.numel(), ref.numel());
  double d = 0, n = 0;
  for (std::int64_t i = 0; i < ref.numel(); ++i) {
    const double a = static_cast<double>(ours.element_at(i)), b = ref.element_at(i);
    if (std::isnan(a) || std::isnan(b)) {
      if (std::isnan(a) != std::isnan(b)) return INFINITY;
      continue;
    }
    d += (a - b) * (a - b);
    n += b * b;
  }
  return n > 0 ? std::sqrt(d / n) : std::sqrt(d);
}

namespace detail {
inline nlohmann::json raw_config(const io::SafeTensorsFile& f) {
  const auto c = f.metadata("config");
  IREPA_CHECK(c.has_value(), "golden: '{}' has no 'config' metadata (not a golden file)", f.path());
  try {
    return nlohmann::json::parse(*c);
  } catch (const std::exception& e) {
    fail("golden: '{}' config is not valid JSON: {}", f.path(), e.what());
  }
}
}  // namespace detail

/// The file's `config`, parsed, without the format's own `params_from` key; an error when it
/// is missing or not JSON.
inline nlohmann::json config_of(const io::SafeTensorsFile& f) {
  nlohmann::json c = detail::raw_config(f);
  if (c.is_object()) c.erase("params_from");
  return c;
}

/// Where a file's params/ are: the file itself, or the file its config's `params_from` names
/// (looked up in the same folder; it must hold params/ itself).
class ParamsFile {
 public:
  explicit ParamsFile(const io::SafeTensorsFile& f) : file_(&f) {
    const nlohmann::json c = detail::raw_config(f);
    if (!c.is_object() || !c.contains("params_from")) return;
    IREPA_CHECK(c.at("params_from").is_string(), "golden: '{}' params_from is {}, expected a file name", f.path(), c.at("params_from").dump());
    const auto path = std::filesystem::path(f.path()).parent_path() / c.at("params_from").get<std::string>();
    IREPA_CHECK(std::filesystem::exists(path), "golden: '{}' borrows its params/ from '{}', which does not exist", f.path(),
                path.string());
    borrowed_ = std::make_unique<io::SafeTensorsFile>(path.string());
    bool any = false;
    for (const auto& n : borrowed_->names()) any = any || n.starts_with("params/");
    IREPA_CHECK(any, "golden: '{}' borrows its params/ from '{}', which holds none", f.path(), path.string());
    for (const auto& n : f.names())
      IREPA_CHECK(!n.starts_with("params/"), "golden: '{}' names params_from '{}' but holds '{}' itself", f.path(), path.string(), n);
    file_ = borrowed_.get();
  }
  const io::SafeTensorsFile& operator*() const { return *file_; }
  const io::SafeTensorsFile* operator->() const { return file_; }

 private:
  const io::SafeTensorsFile* file_;
  std::unique_ptr<io::SafeTensorsFile> borrowed_;
};

/// Rows of "ours against the file's tensor of this name".
template <class T>
struct RowCollector {
  const io::SafeTensorsFile& f;
  double tol;
  std::vector<Row> rows{};
  void cmp(const std::string& name, ConstView<T> ours) { rows.push_back({name, rel_error<T>(ours, f.load<double>(name).cview()), tol}); }
  void scalar(const std::string& name, double v) {
    Tensor<T> one(Shape{});
    one[0] = static_cast<T>(v);
    cmp(name, one);
  }
};

/// Every parameter's gradient against grads/<name>: each parameter must have one, and every
/// grads/ tensor must belong to a parameter.
template <class T, class Cmp>
void compare_grads(const io::SafeTensorsFile& f, const ParamArena<T>& params, Cmp&& cmp) {
  std::set<std::string> seen;
  params.for_each([&](std::string_view name, TensorView<T>, TensorView<T> g) {
    const std::string key = "grads/" + std::string(name);
    IREPA_CHECK(f.contains(key), "golden: '{}' has no gradient for parameter '{}'", f.path(), name);
    cmp(key, g);
    seen.insert(key);
  });
  for (const auto& k : f.names())
    IREPA_CHECK(k.rfind("grads/", 0) != 0 || seen.contains(k), "golden: '{}' holds '{}', which is not a parameter of the model",
                f.path(), k);
}

}  // namespace irepa::golden
