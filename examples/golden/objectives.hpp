#pragma once
// The SiT and JiT objective files of the golden format: the config read into our settings, the
// model rebuilt and loaded, the objective run through objective_step with the file's t and
// noise on the device of a context (a CpuContext, or a CudaContext in code nvcc compiles), and
// every output, loss and parameter gradient compared. One check for both models: they differ
// only in how their config reads and what their objective keeps.

#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "golden/format.hpp"
#include "irepa/align/dispatch.hpp"
#include "irepa/diffusion/jit_objective.hpp"
#include "irepa/diffusion/objective.hpp"
#include "irepa/diffusion/sit_objective.hpp"
#include "irepa/models/jit.hpp"
#include "irepa/models/sit.hpp"

namespace irepa::golden {

namespace detail {
/// Every key of c must be known (a new key is an error, not silently ignored).
inline void check_keys(const nlohmann::json& c, const std::set<std::string>& known, std::string_view model) {
  for (const auto& [k, v] : c.items()) IREPA_CHECK(known.contains(k), "golden: {} config key '{}' is not known", model, k);
}
/// c[k], which must be present.
inline const nlohmann::json& need(const nlohmann::json& c, const char* k, std::string_view model) {
  IREPA_CHECK(c.contains(k), "golden: {} config has no '{}'", model, k);
  return c.at(k);
}
/// The keys both objective files share: the transformer, the projectors and the head.
template <class Config>
void read_common(const nlohmann::json& c, std::string_view model, Config& m, HeadChoice& head, double& proj_coeff) {
  m.input_size = need(c, "input_size", model).get<std::int64_t>();
  m.patch_size = need(c, "patch_size", model).get<std::int64_t>();
  m.hidden_size = need(c, "hidden_size", model).get<std::int64_t>();
  m.depth = need(c, "depth", model).get<std::int64_t>();
  m.num_heads = need(c, "num_heads", model).get<std::int64_t>();
  m.num_classes = need(c, "num_classes", model).get<std::int64_t>();
  m.encoder_depth = need(c, "encoder_depth", model).get<std::int64_t>();
  m.z_dims = need(c, "z_dims", model).get<std::vector<std::int64_t>>();
  m.projector_dim = c.value("projector_dim", std::int64_t{2048});
  m.kernel_size = c.value("kernel_size", 3);
  m.mlp_ratio = c.value("mlp_ratio", 4.0);
  head.projection = c.value("projection_layer_type", std::string("mlp"));
  head.spnorm = c.value("spnorm_method", std::string("none"));
  head.zscore_alpha = c.value("zscore_alpha", 0.6);
  proj_coeff = c.value("proj_coeff", 0.5);
}
}  // namespace detail

struct SiTSetup {
  SiTConfig model;
  HeadChoice head;
  SiTObjective objective;
  std::int64_t batch = 0;
};

/// A golden SiT config -> our settings; unknown keys are errors, required ones must be there.
inline SiTSetup sit_setup(const nlohmann::json& c) {
  detail::check_keys(c, {"input_size", "patch_size", "in_channels", "hidden_size", "depth", "num_heads", "num_classes", "encoder_depth",
                         "z_dims", "projector_dim", "projection_layer_type", "kernel_size", "qk_norm", "spnorm_method", "zscore_alpha",
                         "proj_coeff", "path_type", "batch", "class_dropout_prob", "mlp_ratio", "weighting"},
                     "SiT");
  SiTSetup s;
  try {
    detail::read_common(c, "SiT", s.model, s.head, s.objective.proj_coeff);
    s.model.in_channels = detail::need(c, "in_channels", "SiT").get<std::int64_t>();
    s.model.qk_norm = c.value("qk_norm", false);
    s.model.class_dropout_prob = c.value("class_dropout_prob", 0.1);
    s.objective.path = parse_path_type(c.value("path_type", std::string("linear")));
    s.objective.weighting = parse_time_sampling(c.value("weighting", std::string("uniform")));
    s.batch = c.value("batch", std::int64_t{0});
  } catch (const nlohmann::json::exception& e) {
    fail("golden: SiT config has a value of the wrong type: {}", e.what());
  }
  return s;
}

struct JiTSetup {
  JiTConfig model;
  HeadChoice head;
  JiTObjective objective;
};

/// A golden JiT config -> our settings; unknown keys are errors.
inline JiTSetup jit_setup(const nlohmann::json& c) {
  detail::check_keys(c, {"input_size", "patch_size", "hidden_size", "depth", "num_heads", "num_classes", "bottleneck_dim", "in_context_len",
                         "in_context_start", "encoder_depth", "z_dims", "projector_dim", "projection_layer_type", "kernel_size",
                         "spnorm_method", "zscore_alpha", "proj_coeff", "noise_scale", "t_eps", "P_mean", "P_std", "batch", "mlp_ratio",
                         "in_channels"},
                     "JiT");
  JiTSetup s;
  try {
    detail::read_common(c, "JiT", s.model, s.head, s.objective.proj_coeff);
    s.model.in_channels = c.value("in_channels", std::int64_t{3});
    s.model.bottleneck_dim = detail::need(c, "bottleneck_dim", "JiT").get<std::int64_t>();
    s.model.in_context_len = detail::need(c, "in_context_len", "JiT").get<std::int64_t>();
    s.model.in_context_start = detail::need(c, "in_context_start", "JiT").get<std::int64_t>();
    s.objective.noise_scale = c.value("noise_scale", 1.0);
    s.objective.t_eps = c.value("t_eps", 0.05);
    s.objective.P_mean = c.value("P_mean", -0.8);
    s.objective.P_std = c.value("P_std", 0.8);
  } catch (const nlohmann::json::exception& e) {
    fail("golden: JiT config is missing a key or has a value of the wrong type: {}", e.what());
  }
  return s;
}

/// What SiT and JiT files call the objective's target and terms.
template <class T, class D, class Cmp>
void compare_terms(const SiTObjective::Terms<T, D>& terms, Cmp&& cmp) {
  cmp("outputs/denoising_loss_per_sample", terms.per_sample.cview());
}
template <class T, class D, class Cmp>
void compare_terms(const JiTObjective::Terms<T, D>& terms, Cmp&& cmp) {
  cmp("outputs/v_pred", terms.v_pred.cview());
}
inline const char* target_name(const SiTObjective&) { return "outputs/target"; }
inline const char* target_name(const JiTObjective&) { return "outputs/target_v"; }

/// Runs an objective file's model (the file's params) and objective in T on the device of ctx,
/// from the file's inputs x, noise, t, y and raw targets z.<j>; one row per output, loss and
/// parameter gradient.
template <class Model, class Objective, class Ctx>
std::vector<Row> check_objective_on(const io::SafeTensorsFile& f, double tol, const Ctx& ctx, Model& m, const Objective& obj) {
  using T = typename Model::scalar_type;
  using D = typename Model::device_type;
  m.load(*ParamsFile(f), "params/");
  fill(ctx, m.params().grads(), T(0));
  const auto x = f.load<T>("inputs/x"), noise = f.load<T>("inputs/noise"), t = f.load<T>("inputs/t");
  const auto y = f.load<std::int64_t>("inputs/y");
  std::vector<Tensor<T>> zs;
  std::vector<ConstView<T>> zv;
  for (std::size_t j = 0; j < m.num_projectors(); ++j) {
    zs.push_back(f.load<T>("inputs/z." + std::to_string(j)));
    zv.push_back(zs.back().cview());
  }
  const auto batch = upload_batch(ctx, HostBatch<T>{x.cview(), y.cview(), zv}, m.label_rows());
  const auto td = to_device(ctx, t.cview()), nd = to_device(ctx, noise.cview());
  const auto st = objective_step(ctx, m, obj, batch, td.cview(), nd.cview());
  const StepLosses losses = st.losses(ctx);

  RowCollector<T> out{f, tol};
  auto cmp = [&](const std::string& name, ConstView<T, D> ours) { out.cmp(name, to_host<T>(ctx, ours)); };
  cmp("outputs/model_input", st.inputs.model_input.cview());
  cmp(target_name(obj), st.inputs.target.cview());
  cmp("outputs/model_output", st.cache.output());
  compare_terms(st.terms, cmp);
  for (std::size_t j = 0; j < zs.size(); ++j) {
    cmp("outputs/zs_tilde." + std::to_string(j), st.cache.projected(j));
    cmp("outputs/z_normalized." + std::to_string(j), st.z_normalized[j].cview());
  }
  out.scalar("outputs/denoising_loss", losses.denoising);
  out.scalar("outputs/proj_loss", losses.alignment);
  out.scalar("outputs/total_loss", losses.total);
  const auto host = m.to_host_model(/*grads=*/true);
  compare_grads(f, host.params(), [&](const std::string& name, ConstView<T> g) { out.cmp(name, g); });
  return out.rows;
}

/// The models a check builds: a family's model for a head, in T on device D.
struct SiTModels {
  template <class Head, class T, class D>
  using model = SiT<Dynamic, DynamicPatch, Head, T, D>;
};
struct JiTModels {
  template <class Head, class T, class D>
  using model = JiT<Dynamic, DynamicPatch, Head, T, D>;
};

/// A setup's model (with its head chosen at run time) in T on the device of ctx, checked.
template <class Models, class T, class Ctx, class Setup>
std::vector<Row> check_setup_on(const io::SafeTensorsFile& f, double tol, const Ctx& ctx, const Setup& s) {
  return with_head(s.head, [&](auto head) {
    typename Models::template model<decltype(head), T, typename Ctx::device_type> m(s.model, head);
    return check_objective_on(f, tol, ctx, m, s.objective);
  });
}

/// A `SiT` / `JiT` golden file in T on the device of ctx.
template <class T, class Ctx>
std::vector<Row> check_sit_on(const io::SafeTensorsFile& f, double tol, const Ctx& ctx) {
  return check_setup_on<SiTModels, T>(f, tol, ctx, sit_setup(config_of(f)));
}
template <class T, class Ctx>
std::vector<Row> check_jit_on(const io::SafeTensorsFile& f, double tol, const Ctx& ctx) {
  return check_setup_on<JiTModels, T>(f, tol, ctx, jit_setup(config_of(f)));
}

/// On the CPU.
template <class T>
std::vector<Row> check_sit(const io::SafeTensorsFile& f, double tol, const CpuContext& ctx = CpuContext{}) {
  return check_sit_on<T>(f, tol, ctx);
}
template <class T>
std::vector<Row> check_jit(const io::SafeTensorsFile& f, double tol, const CpuContext& ctx = CpuContext{}) {
  return check_jit_on<T>(f, tol, ctx);
}

}  // namespace irepa::golden
