#pragma once
// The SiT part of the golden format (see golden.hpp): rows of ours against the file, the SiT
// config, the objective's inputs and check_sit_on, which runs a golden SiT objective on any
// device. Kept apart from golden.hpp (the encoders, JiT, samplers) so that CUDA code can
// include it without the CPU-only models.

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "irepa/align/dispatch.hpp"
#include "irepa/diffusion/sit_loss.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/models/sit.hpp"
#include "irepa/ops/tensor_ops.hpp"

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

/// The file's `config`, parsed; an error when it is missing or not JSON.
inline nlohmann::json config_of(const io::SafeTensorsFile& f) {
  const auto c = f.metadata("config");
  IREPA_CHECK(c.has_value(), "golden: '{}' has no 'config' metadata (not a golden file)", f.path());
  try {
    return nlohmann::json::parse(*c);
  } catch (const std::exception& e) {
    fail("golden: '{}' config is not valid JSON: {}", f.path(), e.what());
  }
}

struct SiTSetup {
  SiTConfig model;
  HeadChoice head;
  SiTObjective objective;
  std::int64_t batch = 0;
};

/// A golden SiT config -> our settings. Every key must be known (a new key is an error, not
/// silently ignored), and the required ones present.
inline SiTSetup sit_setup(const nlohmann::json& c) {
  static const std::set<std::string> known = {
      "input_size", "patch_size", "in_channels", "hidden_size", "depth", "num_heads", "num_classes", "encoder_depth",
      "z_dims", "projector_dim", "projection_layer_type", "kernel_size", "qk_norm", "spnorm_method", "zscore_alpha",
      "proj_coeff", "path_type", "batch", "class_dropout_prob", "mlp_ratio", "weighting"};
  for (const auto& [k, v] : c.items()) IREPA_CHECK(known.contains(k), "golden: SiT config key '{}' is not known", k);
  auto need = [&](const char* k) -> const nlohmann::json& {
    IREPA_CHECK(c.contains(k), "golden: SiT config has no '{}'", k);
    return c.at(k);
  };
  SiTSetup s;
  try {
    s.model.input_size = need("input_size").get<std::int64_t>();
    s.model.patch_size = need("patch_size").get<std::int64_t>();
    s.model.in_channels = need("in_channels").get<std::int64_t>();
    s.model.hidden_size = need("hidden_size").get<std::int64_t>();
    s.model.depth = need("depth").get<std::int64_t>();
    s.model.num_heads = need("num_heads").get<std::int64_t>();
    s.model.num_classes = need("num_classes").get<std::int64_t>();
    s.model.encoder_depth = need("encoder_depth").get<std::int64_t>();
    s.model.z_dims = need("z_dims").get<std::vector<std::int64_t>>();
    s.model.projector_dim = c.value("projector_dim", std::int64_t{2048});
    s.model.kernel_size = c.value("kernel_size", 3);
    s.model.qk_norm = c.value("qk_norm", false);
    s.model.class_dropout_prob = c.value("class_dropout_prob", 0.1);
    s.model.mlp_ratio = c.value("mlp_ratio", 4.0);
    s.head.projection = c.value("projection_layer_type", std::string("mlp"));
    s.head.spnorm = c.value("spnorm_method", std::string("none"));
    s.head.zscore_alpha = c.value("zscore_alpha", 0.6);
    s.objective.proj_coeff = c.value("proj_coeff", 0.5);
    s.objective.path = parse_path_type(c.value("path_type", std::string("linear")));
    s.objective.weighting = parse_time_sampling(c.value("weighting", std::string("uniform")));
    s.batch = c.value("batch", std::int64_t{0});
  } catch (const nlohmann::json::exception& e) {
    fail("golden: SiT config has a value of the wrong type: {}", e.what());
  }
  return s;
}

/// The fixed inputs of an objective golden file: x, noise, t, y and one raw target per encoder.
template <class T>
struct ObjectiveInputs {
  Tensor<T> x, noise, t;
  Tensor<std::int64_t> y;
  std::vector<Tensor<T>> zs;
  static ObjectiveInputs load(const io::SafeTensorsFile& f, std::size_t encoders) {
    ObjectiveInputs in{f.load<T>("inputs/x"), f.load<T>("inputs/noise"), f.load<T>("inputs/t"), f.load<std::int64_t>("inputs/y"), {}};
    for (std::size_t j = 0; j < encoders; ++j) in.zs.push_back(f.load<T>("inputs/z." + std::to_string(j)));
    return in;
  }
  SiTBatch<T> batch() const {
    SiTBatch<T> b{x, y, {}};
    for (const auto& z : zs) b.zs.push_back(z);
    return b;
  }
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

/// Runs the SiT objective of a golden file in T on the device of ctx (a CpuContext or, in code
/// compiled by nvcc, a CudaContext); one row per output and per parameter gradient. Every grads/
/// tensor must belong to a trainable parameter and every parameter must have one.
template <class T, class Ctx>
std::vector<Row> check_sit_on(const io::SafeTensorsFile& f, double tol, const Ctx& ctx) {
  using D = typename Ctx::device_type;
  const SiTSetup s = sit_setup(config_of(f));
  return with_head(s.head, [&](auto head) {
    using Model = SiT<Dynamic, DynamicPatch, decltype(head), T, D>;
    Model m(s.model, head);
    m.load(f, "params/");
    fill(ctx, m.params().grads(), T(0));

    const auto in = ObjectiveInputs<T>::load(f, s.model.z_dims.size());
    const auto st = sit_loss(ctx, m, s.objective, in.batch(), in.t, in.noise);
    RowCollector<T> out{f, tol};
    auto cmp = [&](const std::string& name, ConstView<T, D> ours) { out.cmp(name, to_host(ctx, ours)); };
    auto scalar = [&](const std::string& name, double v) { out.scalar(name, v); };
    out.cmp("outputs/model_input", st.model_input);
    out.cmp("outputs/target", st.target);
    cmp("outputs/model_output", st.cache.output());
    for (std::size_t j = 0; j < in.zs.size(); ++j) {
      cmp("outputs/zs_tilde." + std::to_string(j), st.cache.projected(j));
      cmp("outputs/z_normalized." + std::to_string(j), st.z_normalized[j]);
    }
    out.cmp("outputs/denoising_loss_per_sample", st.denoising_per_sample);
    scalar("outputs/denoising_loss", st.denoising);
    scalar("outputs/proj_loss", st.alignment);
    scalar("outputs/total_loss", st.total);

    const auto host = m.to_host_model(/*grads=*/true);
    compare_grads(f, host.params(), [&](const std::string& name, ConstView<T> g) { out.cmp(name, g); });
    return out.rows;
  });
}

/// check_sit_on on the CPU.
template <class T>
std::vector<Row> check_sit(const io::SafeTensorsFile& f, double tol, const CpuContext& ctx = CpuContext{}) {
  return check_sit_on<T>(f, tol, ctx);
}

}  // namespace irepa::golden
