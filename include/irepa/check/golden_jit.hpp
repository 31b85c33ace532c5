#pragma once
// The JiT objective golden check on any device: the golden file's config read into our
// settings, the objective run with the file's t and noise, every output and gradient compared.
// Kept apart from check/golden.hpp so that nvcc can include it without the CPU-only models.

#include "irepa/check/golden_sit.hpp"
#include "irepa/diffusion/jit_loss.hpp"
#include "irepa/models/jit.hpp"

namespace irepa::golden {

struct JiTSetup {
  JiTConfig model;
  HeadChoice head;
  JiTObjective objective;
};

/// A golden JiT config -> our settings; unknown keys are errors.
inline JiTSetup jit_setup(const nlohmann::json& c) {
  static const std::set<std::string> known = {
      "input_size", "patch_size", "hidden_size", "depth", "num_heads", "num_classes", "bottleneck_dim", "in_context_len",
      "in_context_start", "encoder_depth", "z_dims", "projector_dim", "projection_layer_type", "kernel_size",
      "spnorm_method", "zscore_alpha", "proj_coeff", "noise_scale", "t_eps", "P_mean", "P_std", "batch", "mlp_ratio",
      "in_channels"};
  for (const auto& [k, v] : c.items()) IREPA_CHECK(known.contains(k), "golden: JiT config key '{}' is not known", k);
  JiTSetup s;
  try {
    s.model.input_size = c.at("input_size").get<std::int64_t>();
    s.model.patch_size = c.at("patch_size").get<std::int64_t>();
    s.model.in_channels = c.value("in_channels", std::int64_t{3});
    s.model.hidden_size = c.at("hidden_size").get<std::int64_t>();
    s.model.depth = c.at("depth").get<std::int64_t>();
    s.model.num_heads = c.at("num_heads").get<std::int64_t>();
    s.model.num_classes = c.at("num_classes").get<std::int64_t>();
    s.model.bottleneck_dim = c.at("bottleneck_dim").get<std::int64_t>();
    s.model.in_context_len = c.at("in_context_len").get<std::int64_t>();
    s.model.in_context_start = c.at("in_context_start").get<std::int64_t>();
    s.model.encoder_depth = c.at("encoder_depth").get<std::int64_t>();
    s.model.z_dims = c.at("z_dims").get<std::vector<std::int64_t>>();
    s.model.projector_dim = c.value("projector_dim", std::int64_t{2048});
    s.model.kernel_size = c.value("kernel_size", 3);
    s.model.mlp_ratio = c.value("mlp_ratio", 4.0);
    s.head.projection = c.value("projection_layer_type", std::string("mlp"));
    s.head.spnorm = c.value("spnorm_method", std::string("none"));
    s.head.zscore_alpha = c.value("zscore_alpha", 0.6);
    s.objective.proj_coeff = c.value("proj_coeff", 0.5);
    s.objective.noise_scale = c.value("noise_scale", 1.0);
    s.objective.t_eps = c.value("t_eps", 0.05);
    s.objective.P_mean = c.value("P_mean", -0.8);
    s.objective.P_std = c.value("P_std", 0.8);
  } catch (const nlohmann::json::exception& e) {
    fail("golden: JiT config is missing a key or has a value of the wrong type: {}", e.what());
  }
  return s;
}

/// Runs the JiT objective of a golden file in T on the device of ctx (given t and e): the model
/// input, output, target and predicted velocity, the alignment tensors, the losses and every gradient.
template <class T, class Ctx>
std::vector<Row> check_jit_on(const io::SafeTensorsFile& f, double tol, const Ctx& ctx) {
  using D = typename Ctx::device_type;
  const JiTSetup s = jit_setup(config_of(f));
  return with_head(s.head, [&](auto head) {
    using Model = JiT<Dynamic, DynamicPatch, decltype(head), T, D>;
    Model m(s.model, head);
    m.load(f, "params/");
    fill(ctx, m.params().grads(), T(0));
    const auto in = ObjectiveInputs<T>::load(f, s.model.z_dims.size());
    const auto st = jit_loss(ctx, m, s.objective, in.batch(), in.t, in.noise);
    RowCollector<T> out{f, tol};
    auto cmp = [&](const std::string& name, ConstView<T, D> ours) { out.cmp(name, to_host(ctx, ours)); };
    auto scalar = [&](const std::string& name, double v) { out.scalar(name, v); };
    out.cmp("outputs/model_input", st.model_input);
    cmp("outputs/model_output", st.cache.output());
    out.cmp("outputs/target_v", st.target_v);
    out.cmp("outputs/v_pred", st.v_pred);
    for (std::size_t j = 0; j < in.zs.size(); ++j) {
      cmp("outputs/zs_tilde." + std::to_string(j), st.cache.projected(j));
      cmp("outputs/z_normalized." + std::to_string(j), st.z_normalized[j]);
    }
    scalar("outputs/denoising_loss", st.denoising);
    scalar("outputs/proj_loss", st.alignment);
    scalar("outputs/total_loss", st.total);
    if constexpr (std::is_same_v<D, Cpu>) {
      compare_grads(f, m.params(), [&](const std::string& name, ConstView<T> g) { out.cmp(name, g); });
    } else {
      const auto host = m.to_host_model(/*grads=*/true);
      compare_grads(f, host.params(), [&](const std::string& name, ConstView<T> g) { out.cmp(name, g); });
    }
    return out.rows;
  });
}

}  // namespace irepa::golden
