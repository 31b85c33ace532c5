#pragma once
// The `SiT-sampler` files of the golden format: a small SiT (its projectors loaded but unused)
// driven through each of the file's sampler runs on the device of a context, the SDE's noise
// taken from the file, and each run's final sample compared.

#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "golden/format.hpp"
#include "irepa/align/head.hpp"
#include "irepa/diffusion/samplers.hpp"
#include "irepa/models/sit.hpp"

namespace irepa::golden {

/// Runs every sampler run of a `SiT-sampler` golden file with the model (and the sampler's
/// state) in T on the device of ctx; one row per run. The file's projectors are loaded too,
/// their sizes read from the file.
template <class T, class Ctx>
std::vector<Row> check_sit_sampler_on(const io::SafeTensorsFile& f, double tol, const Ctx& ctx) {
  using D = typename Ctx::device_type;
  const nlohmann::json c = config_of(f);
  static const std::set<std::string> known = {"input_size", "patch_size", "in_channels", "hidden_size", "depth", "num_heads",
                                              "batch", "num_classes", "runs", "class_dropout_prob", "mlp_ratio"};
  for (const auto& [k, v] : c.items()) IREPA_CHECK(known.contains(k), "golden: SiT-sampler config key '{}' is not known", k);
  SiTConfig cfg;
  try {
    cfg.input_size = c.at("input_size").get<std::int64_t>();
    cfg.patch_size = c.at("patch_size").get<std::int64_t>();
    cfg.in_channels = c.at("in_channels").get<std::int64_t>();
    cfg.hidden_size = c.at("hidden_size").get<std::int64_t>();
    cfg.depth = c.at("depth").get<std::int64_t>();
    cfg.num_heads = c.at("num_heads").get<std::int64_t>();
    cfg.num_classes = c.at("num_classes").get<std::int64_t>();
    cfg.class_dropout_prob = c.value("class_dropout_prob", 0.1);
    cfg.mlp_ratio = c.value("mlp_ratio", 4.0);
  } catch (const nlohmann::json::exception& e) {
    fail("golden: SiT-sampler config is missing a key or has a wrong type: {}", e.what());
  }
  const ParamsFile params(f);
  cfg.z_dims.clear();
  cfg.encoder_depth = 1;
  for (int j = 0; params->contains("params/projectors." + std::to_string(j) + ".projection_layer.4.weight"); ++j) {
    const Shape& s = params->info("params/projectors." + std::to_string(j) + ".projection_layer.4.weight").shape;
    cfg.z_dims.push_back(s[0]);
    cfg.projector_dim = s[1];
  }
  SiT<Dynamic, DynamicPatch, REPAHead, T, D> m(cfg);
  m.load(*params, "params/");
  const auto latents = to_device(ctx, f.load<T>("inputs/latents").cview());
  const auto y = f.load<std::int64_t>("inputs/y");
  std::vector<Row> rows;
  const auto& runs = c.at("runs");
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    SamplerOptions o;
    const std::string kind = r.value("kind", std::string("euler"));
    o.kind = kind == "euler" && r.value("heun", false) ? SamplerKind::Heun : parse_sampler(kind);
    o.num_steps = r.at("num_steps").get<int>();
    o.cfg_scale = r.value("cfg_scale", 1.0);
    o.guidance_low = r.value("guidance_low", 0.0);
    o.guidance_high = r.value("guidance_high", 1.0);
    o.path = parse_path_type(r.value("path_type", std::string("linear")));
    o.null_class = cfg.num_classes;
    int draw = 0;
    const std::string prefix = "inputs/run" + std::to_string(i) + "_noise.";
    NoiseFn<T, D> noise = [&](TensorView<T, D> eps) {
      const std::string key = prefix + std::to_string(draw++);
      IREPA_CHECK(f.contains(key), "golden: run {} needs noise draw '{}', which the file does not hold", i, key);
      const auto e = to_device(ctx, f.load<T>(key, eps.shape()).cview());
      ops::copy<T>(ctx, e.cview(), eps);
    };
    const auto x = sample<T>(ctx, sit_velocity(ctx, m), latents.cview(), y.cview(), o, noise);
    const std::string name = "outputs/run" + std::to_string(i);
    rows.push_back({name, rel_error<T>(to_host<T>(ctx, x.cview()), f.load<double>(name).cview()), tol});
  }
  return rows;
}

/// On the CPU.
template <class T>
std::vector<Row> check_sit_sampler(const io::SafeTensorsFile& f, double tol, const CpuContext& ctx = CpuContext{}) {
  return check_sit_sampler_on<T>(f, tol, ctx);
}

}  // namespace irepa::golden
