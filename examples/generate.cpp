// irepa-generate: the reference's generate.py. Samples a trained SiT's EMA weights for FID: N
// class-conditional images (labels uniform over the classes), decoded by the SD-VAE for latent
// models, converted to uint8 as the reference does, written as the ADM suite's .npz (arr_0
// uint8 [N, H, W, 3], ZIP64) and, with --save-png, as <index>.png files.
// A JiT checkpoint (irepa-train-jit's, or the reference main_jit.py's .pth as it is) is sampled as the JiT engine's evaluate samples: image i
// has class i / (N / classes), its sampler (--heun: Heun then a last Euler step, else Euler;
// --cfg-scale inside --guidance-low/high as its interval; noise scale and t_eps from the run's
// settings), uint8 rounded rather than truncated.
//
//   irepa-generate --ckpt runs/x/checkpoints/0400000.safetensors --vae vae/sdvae-ft-mse-f8d4.safetensors
//       --num-fid-samples 50000 --mode sde --num-steps 250 --cfg-scale 1.8 --guidance-high 0.7   (one line)
//   mpirun -np 8 irepa-generate ... --device cuda      # or torchrun; every rank its share
//   irepa-generate --ckpt runs/fashion-mnist/checkpoints/0001400.safetensors --num-fid-samples 1000
//
// As the reference: rank r of W seeds with global_seed * W + r; a global batch is W x
// --per-proc-batch-size; the total is rounded up to whole global batches and the npz keeps the
// first --num-fid-samples; sample i of rank r's iteration k has index k * global_batch + i * W + r.
// Here each batch's noise, SDE draws and labels come from a counter-based generator keyed by
// (the rank's seed, k), so a batch is the same whether or not the run was interrupted before it.
//
// Output: <sample-dir>/<name>/ holds generate.json (the settings; "finished" at the end) and one
// batch-r<rank>-i<k>.npy per batch, each written to a temporary file and renamed, so a killed run
// continues where it stopped; a folder made with other settings is refused. Rank 0 then streams
// the batches in index order into <sample-dir>/<name>.npz (temporary file, renamed).
// The model's architecture is read off the checkpoint (widths, depth, patch, channels, classes);
// the head count comes from its run settings (num_heads, or the model name) or --model.

#include <CLI/CLI.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include <irepa/data/latent_stats.hpp>
#include <irepa/io/npy.hpp>
#include <irepa/io/npz.hpp>
#include <irepa/io/params.hpp>
#include <irepa/io/png.hpp>
#include <irepa/train/checkpoint.hpp>
#include <irepa/train/communicator.hpp>

#include "fail_safe.hpp"
#include "generate_job.hpp"
#include "tool_support.hpp"

namespace {

using namespace irepa;
namespace fs = std::filesystem;

struct GenOptions {
  std::string model, ckpt, sample_dir = "samples", mode = "ode", path_type = "linear", vae, latents_stats, device = "cpu",
                       precision = "fp32";
  std::int64_t num_fid_samples = 50000, per_proc_batch = 32, global_seed = 0, resolution = 256, num_classes = 0, stop_after = 0,
               num_heads = 0;
  int num_steps = 50, ema = 0, threads = 0;
  double cfg_scale = 1.5, guidance_low = 0.0, guidance_high = 1.0, latent_scale = 0.18215;
  bool heun = false, save_png = false;
  // The reference's flags that change nothing here, or that are refused when on.
  bool tf32 = true, fused_attn = true, qk_norm = false, legacy = false;
  std::int64_t encoder_depth = 8;
  std::string z_dims;
};

template <class Model>
class CpuGenerator final : public examples::SampleGenerator {
 public:
  CpuGenerator(Model model, std::optional<SdVae<float>> vae, examples::GenerateSpec spec, int threads)
      : model_(std::move(model)), vae_(std::move(vae)), spec_(std::move(spec)), ctx_(threads) {}
  Tensor<std::uint8_t> generate(const Tensor<std::int64_t>& labels, std::uint64_t seed) override {
    return examples::generate_batch(ctx_, model_, vae_ ? &*vae_ : nullptr, spec_, labels, seed);
  }
  std::string where() const override { return "cpu (" + std::to_string(ctx_.threads()) + " threads)"; }

 private:
  Model model_;
  std::optional<SdVae<float>> vae_;
  examples::GenerateSpec spec_;
  CpuContext ctx_;
};

/// The settings of the run that wrote the checkpoint: an irepa checkpoint's config, or the args of
/// the reference's torch.save checkpoint; empty when there are none (flags decide then).
nlohmann::json run_settings(const io::SafeTensorsFile& f) {
  if (const auto cfg = f.metadata("config") ? f.metadata("config") : f.metadata("args")) {
    try {
      return io::parse_json(*cfg, "checkpoint config");
    } catch (const Error&) {
    }
  }
  return {};
}

/// A number among the run's settings (our tools store flags as strings), or `fallback`.
double run_number(const nlohmann::json& run, const std::string& key, double fallback) {
  if (!run.is_object() || !run.contains(key)) return fallback;
  const auto& v = run[key];
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    try {
      return std::stod(v.get<std::string>());
    } catch (const std::exception&) {
    }
  }
  return fallback;
}

/// Where the chosen EMA's weights sit: "ema." / "emaK." in this library's checkpoints and in the
/// reference SiT's .pt; main_jit.py's .pth keeps its two EMAs as model_ema1 / model_ema2 of its
/// Denoiser, whose JiT is "net.".
std::string weights_prefix(const io::SafeTensorsFile& f, int ema) {
  IREPA_CHECK(ema >= 0, "irepa-generate: --ema {} is negative", ema);
  const std::string ours = ema_prefix(static_cast<std::size_t>(ema));
  if (f.contains(ours + "x_embedder.proj1.weight") || f.contains(ours + "x_embedder.proj.weight") ||
      !f.contains("model_ema1.net.x_embedder.proj1.weight"))
    return ours;
  const std::string ref = fmt::format("model_ema{}.net.", ema + 1);
  IREPA_CHECK(f.contains(ref + "x_embedder.proj1.weight"),
              "irepa-generate: '{}' is a JiT checkpoint of the reference's main_jit.py with no '{}x_embedder.proj1.weight': "
              "--ema 0 reads its model_ema1, --ema 1 its model_ema2",
              f.path(), ref);
  return ref;
}

/// The image side (in model inputs) the checkpoint's model was built for, read off its fixed
/// pos_embed [1, T, D] (our checkpoints keep it as "model.pos_embed", the reference's EMA state
/// dicts under the EMA's prefix); 0 when the file has neither.
std::int64_t pos_embed_side(const io::SafeTensorsFile& f, const std::string& prefix, std::int64_t patch) {
  for (const std::string& name : {std::string("model.pos_embed"), prefix + "pos_embed"}) {
    if (!f.contains(name)) continue;
    const Shape s = f.info(name).shape;
    IREPA_CHECK(s.rank() == 3, "irepa-generate: '{}' {} has shape {}, expected [1, tokens, width]", f.path(), name, s.str());
    const std::int64_t T = s[1], g = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(T))));
    IREPA_CHECK(g * g == T, "irepa-generate: '{}' {} has {} tokens, not a square grid", f.path(), name, T);
    return g * patch;
  }
  return 0;
}

/// Whether the checkpoint holds a JiT (its bottleneck patch embedding) rather than a SiT.
bool holds_jit(const io::SafeTensorsFile& f, const std::string& prefix) { return f.contains(prefix + "x_embedder.proj1.weight"); }

/// The JiT of a checkpoint's EMA weights (one irepa-train-jit wrote): sizes read off the tensors;
/// heads, the in-context start and the image size from --model / --num-heads or the run's settings.
JiTConfig jit_checkpoint_config(const io::SafeTensorsFile& f, const std::string& prefix, const GenOptions& o, const nlohmann::json& run) {
  const auto shape = [&](const std::string& name) {
    IREPA_CHECK(f.contains(prefix + name), "irepa-generate: '{}' has no '{}{}': not a JiT checkpoint of this library (or another --ema)",
                f.path(), prefix, name);
    return f.info(prefix + name).shape;
  };
  JiTConfig c;
  const Shape p1 = shape("x_embedder.proj1.weight"), p2 = shape("x_embedder.proj2.weight");  // [b, C, p, p], [D, b, 1, 1]
  c.bottleneck_dim = p1[0], c.in_channels = p1[1], c.patch_size = p1[2], c.hidden_size = p2[0];
  c.depth = 0;
  while (f.contains(prefix + "blocks." + std::to_string(c.depth) + ".attn.qkv.weight")) ++c.depth;
  IREPA_CHECK(c.depth > 0, "irepa-generate: '{}' has no '{}blocks.0.attn.qkv.weight'", f.path(), prefix);
  c.num_classes = shape("y_embedder.embedding_table.weight")[0] - 1;
  c.in_context_len = f.contains(prefix + "in_context_posemb") ? shape("in_context_posemb")[1] : 0;
  c.z_dims.clear();
  if (o.num_classes > 0)
    IREPA_CHECK(o.num_classes == c.num_classes, "irepa-generate: --num-classes {}, the checkpoint's label table has {} classes (+ null)",
                o.num_classes, c.num_classes);
  std::string name = o.model;
  if (name.empty() && run.is_object() && run.contains("model") && run["model"].is_string()) name = run["model"].get<std::string>();
  if (!name.empty() && name != "custom") {
    JiTConfig byname;
    apply_jit_model_name(byname, name);
    IREPA_CHECK(byname.depth == c.depth && byname.hidden_size == c.hidden_size && byname.patch_size == c.patch_size,
                "irepa-generate: model '{}' is depth {} width {} patch {}, the checkpoint depth {} width {} patch {}", name, byname.depth,
                byname.hidden_size, byname.patch_size, c.depth, c.hidden_size, c.patch_size);
    c.num_heads = byname.num_heads, c.in_context_start = byname.in_context_start;
  } else {
    c.num_heads = o.num_heads > 0 ? o.num_heads : static_cast<std::int64_t>(run_number(run, "num_heads", 0));
    c.in_context_start = static_cast<std::int64_t>(run_number(run, "in_context_start", -1));
  }
  IREPA_CHECK(c.num_heads > 0 && c.hidden_size % c.num_heads == 0,
              "irepa-generate: the head count of '{}' is unknown (its settings name no model or num_heads, or {} heads do not divide width {}): "
              "pass --model JiT-X/p, or --model custom --num-heads N",
              f.path(), c.num_heads, c.hidden_size);
  // The grid of its pos_embed, else the run's --img_size when it set one, else --resolution.
  const auto img = static_cast<std::int64_t>(run_number(run, "img_size", 0));
  const std::int64_t side = pos_embed_side(f, prefix, c.patch_size);
  c.input_size = side > 0 ? side : img > 0 ? img : o.resolution;
  return c;
}

/// The SiT of a checkpoint's EMA weights under prefix: sizes read off the tensors, the head count
/// from --model or the run's settings. Projectors are not built (inference does not use them).
SiTConfig checkpoint_config(const io::SafeTensorsFile& f, const std::string& prefix, const GenOptions& o) {
  const auto shape = [&](const std::string& name) {
    IREPA_CHECK(f.contains(prefix + name), "irepa-generate: '{}' has no '{}{}': not a SiT checkpoint of this library (or another --ema)",
                f.path(), prefix, name);
    return f.info(prefix + name).shape;
  };
  SiTConfig c;
  const Shape xe = shape("x_embedder.proj.weight");  // [D, C, p, p]
  c.hidden_size = xe[0], c.in_channels = xe[1], c.patch_size = xe[2];
  c.depth = 0;
  while (f.contains(prefix + "blocks." + std::to_string(c.depth) + ".attn.qkv.weight")) ++c.depth;
  IREPA_CHECK(c.depth > 0, "irepa-generate: '{}' has no '{}blocks.0.attn.qkv.weight'", f.path(), prefix);
  c.mlp_ratio = static_cast<double>(shape("blocks.0.mlp.fc1.weight")[0]) / static_cast<double>(c.hidden_size);
  const Shape table = shape("y_embedder.embedding_table.weight");
  c.num_classes = table[0] - 1, c.class_dropout_prob = 0.1;  // the null class's row (CFG)
  c.qk_norm = f.contains(prefix + "blocks.0.attn.q_norm.weight");
  c.z_dims.clear();
  if (o.num_classes > 0)
    IREPA_CHECK(o.num_classes == c.num_classes, "irepa-generate: --num-classes {}, the checkpoint's label table has {} classes (+ null)",
                o.num_classes, c.num_classes);
  // Grid: the file's pos_embed when it has one, else --resolution (/ 8 through the VAE).
  const std::int64_t side = pos_embed_side(f, prefix, c.patch_size);
  c.input_size = side > 0 ? side : o.vae.empty() ? o.resolution : o.resolution / 8;
  // Heads: --model (the reference's flag), else the run's settings.
  const nlohmann::json run = run_settings(f);
  std::string name = o.model;
  if (name.empty() && run.is_object() && run.contains("model") && run["model"].is_string()) name = run["model"].get<std::string>();
  if (!name.empty() && name != "custom") {
    SiTConfig byname;
    apply_model_name(byname, name);
    IREPA_CHECK(byname.depth == c.depth && byname.hidden_size == c.hidden_size && byname.patch_size == c.patch_size,
                "irepa-generate: model '{}' is depth {} width {} patch {}, the checkpoint depth {} width {} patch {}", name, byname.depth,
                byname.hidden_size, byname.patch_size, c.depth, c.hidden_size, c.patch_size);
    IREPA_CHECK(o.num_heads == 0 || o.num_heads == byname.num_heads, "irepa-generate: --num-heads {}, but {} has {} heads", o.num_heads, name,
                byname.num_heads);
    c.num_heads = byname.num_heads;
  } else if (o.num_heads > 0) {
    c.num_heads = o.num_heads;
  } else if (run.is_object() && run.contains("num_heads")) {
    const auto& h = run["num_heads"];
    c.num_heads = h.is_string() ? std::stoll(h.get<std::string>()) : h.get<std::int64_t>();
  }
  IREPA_CHECK(c.num_heads > 0 && c.hidden_size % c.num_heads == 0,
              "irepa-generate: the head count of '{}' is unknown (its settings name no model or num_heads, or {} heads do not divide width {}): "
              "pass --model SiT-X/p, or --model custom --num-heads N",
              f.path(), c.num_heads, c.hidden_size);
  const Shape fl = shape("final_layer.linear.weight");
  IREPA_CHECK(fl[0] == c.patch_size * c.patch_size * c.in_channels,
              "irepa-generate: final_layer.linear has {} outputs, expected patch^2 x channels = {} (learned sigma is not a model this library trains)",
              fl[0], c.patch_size * c.patch_size * c.in_channels);
  return c;
}

nlohmann::json manifest(const GenOptions& o, const LaunchInfo& launch, bool jit, std::int64_t image_side) {
  return {{"tool", "irepa-generate"},
          {"family", jit ? "jit" : "sit"},
          {"ckpt", fs::absolute(o.ckpt).lexically_normal().string()},
          {"ema", o.ema},
          {"vae", o.vae.empty() ? "" : fs::absolute(o.vae).lexically_normal().string()},
          {"latents_stats", o.latents_stats},
          {"num_fid_samples", o.num_fid_samples},
          {"per_proc_batch_size", o.per_proc_batch},
          {"world", launch.world},
          {"global_seed", o.global_seed},
          {"mode", o.mode},
          {"heun", o.heun},
          {"num_steps", o.num_steps},
          {"cfg_scale", o.cfg_scale},
          {"guidance_low", o.guidance_low},
          {"guidance_high", o.guidance_high},
          {"path_type", o.path_type},
          {"image_size", image_side},
          {"finished", false}};
}


fs::path batch_path(const fs::path& dir, int rank, std::int64_t it) { return dir / fmt::format("batch-r{:03d}-i{:06d}.npy", rank, it); }

bool batch_done(const fs::path& p, const Shape& want) {
  std::error_code ec;
  if (!fs::exists(p, ec)) return false;
  try {
    const io::NpyFile f(p.string());
    return f.dtype() == DType::U8 && f.shape() == want;
  } catch (const Error&) {
    return false;  // a damaged batch is made again
  }
}

int run(GenOptions o) {
  IREPA_CHECK(o.num_fid_samples > 0 && o.per_proc_batch > 0 && o.num_steps > 0 && o.resolution > 0,
              "irepa-generate: --num-fid-samples, --per-proc-batch-size, --num-steps and --resolution must be positive");
  IREPA_CHECK(o.mode == "ode" || o.mode == "sde", "irepa-generate: --mode '{}' is not ode or sde", o.mode);
  IREPA_CHECK(!o.heun || o.mode == "ode", "irepa-generate: --heun applies to --mode ode only");
  IREPA_CHECK(o.path_type == "linear" || o.path_type == "cosine", "irepa-generate: --path-type '{}' is not linear or cosine", o.path_type);
  IREPA_CHECK(o.cfg_scale >= 1.0 && o.guidance_low <= o.guidance_high, "irepa-generate: --cfg-scale {} (>= 1) and guidance interval [{}, {}]",
              o.cfg_scale, o.guidance_low, o.guidance_high);
  IREPA_CHECK(o.device == "cpu" || o.device.starts_with("cuda"), "irepa-generate: --device '{}' is not cpu, cuda or cuda:N", o.device);
  const LaunchInfo launch = LaunchInfo::from_env();
  const io::SafeTensorsFile ck(o.ckpt);
  const std::string prefix = weights_prefix(ck, o.ema);
  const bool jit = holds_jit(ck, prefix);
  const nlohmann::json run_cfg = run_settings(ck);
  const auto load = [&](auto& model) {
    io::LoadParamsOptions lo;
    for (const auto& n : ck.names())
      if (n.starts_with(prefix + "projectors.")) lo.read_by_caller.push_back(n.substr(prefix.size()));
    lo.read_by_caller.push_back("pos_embed");  // the reference's EMA state dict holds the fixed table; the model makes its own
    io::load_params(ck, model.params(), prefix, lo);
  };
  // Each family's model on the host, turned into the generator once the folder is claimed.
  examples::GenerateSpec spec;
  std::function<std::unique_ptr<examples::SampleGenerator>()> make_generator;
  const auto generator_of = [&](auto model, std::optional<SdVae<float>> vae) {
    auto m = std::make_shared<decltype(model)>(std::move(model));
    auto v = std::make_shared<std::optional<SdVae<float>>>(std::move(vae));
    make_generator = [&o, &launch, &spec, m, v]() -> std::unique_ptr<examples::SampleGenerator> {
      if (o.device == "cpu") {
        int threads = o.threads;
        if (threads == 0 && launch.local_world > 1) threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / launch.local_world);
        return std::make_unique<CpuGenerator<typename decltype(m)::element_type>>(std::move(*m), std::move(*v), std::move(spec), threads);
      }
#if defined(IREPA_WITH_CUDA)
      return examples::make_cuda_generator(*m, *v ? &**v : nullptr, std::move(spec),
                                           o.device == "cuda" ? launch.local_rank : std::stoi(o.device.substr(5)), o.precision);
#else
      fail("irepa-generate: --device {} needs a build with CUDA", o.device);
#endif
    };
  };
  std::int64_t image_side = 0, num_classes = 0;
  std::string what;
  if (jit) {  // pixels from the JiT sampler, class-balanced as the JiT engine draws them
    IREPA_CHECK(o.vae.empty(), "irepa-generate: '{}' holds a JiT, which makes pixels: --vae does not apply", o.ckpt);
    IREPA_CHECK(o.mode == "ode", "irepa-generate: JiT's sampler is an ODE (Heun with --heun, else Euler): --mode {} does not apply", o.mode);
    const JiTConfig cfg = jit_checkpoint_config(ck, prefix, o, run_cfg);
    IREPA_CHECK(o.num_fid_samples % cfg.num_classes == 0,
                "irepa-generate: a JiT's samples are class-balanced (the JiT engine's rule): --num-fid-samples {} is not a multiple of its {} classes",
                o.num_fid_samples, cfg.num_classes);
    examples::GenJiT<> model(cfg, REPAHead{});
    load(model);
    spec.jit_sampler = JiTSamplerOptions{.num_steps = o.num_steps, .heun = o.heun, .cfg_scale = o.cfg_scale, .interval_min = o.guidance_low,
                                         .interval_max = o.guidance_high, .t_eps = run_number(run_cfg, "t_eps", 0.05)};
    spec.noise_scale = run_number(run_cfg, "noise_scale", 1.0);
    image_side = cfg.input_size, num_classes = cfg.num_classes;
    what = fmt::format("JiT depth {} width {} patch {}", cfg.depth, cfg.hidden_size, cfg.patch_size);
    generator_of(std::move(model), std::nullopt);
  } else {
    const SiTConfig cfg = checkpoint_config(ck, prefix, o);
    IREPA_CHECK(o.vae.empty() || cfg.in_channels == 4, "irepa-generate: --vae given, but the model makes {}-channel images, not latents",
                cfg.in_channels);
    IREPA_CHECK(!o.vae.empty() || (cfg.in_channels == 1 || cfg.in_channels == 3),
                "irepa-generate: the model makes {}-channel latents: pass --vae (the SD-VAE they decode with)", cfg.in_channels);
    examples::GenSiT<> model(cfg, REPAHead{});
    load(model);
    spec.sampler = SamplerOptions{.kind = o.mode == "sde" ? SamplerKind::EulerMaruyama : o.heun ? SamplerKind::Heun : SamplerKind::Euler,
                                  .num_steps = o.num_steps, .cfg_scale = o.cfg_scale, .guidance_low = o.guidance_low,
                                  .guidance_high = o.guidance_high, .path = parse_path_type(o.path_type)};
    std::optional<SdVae<float>> vae;
    if (!o.vae.empty()) {
      vae.emplace(load_sd_vae<float>(o.vae));
      data::LatentStats st;
      if (!o.latents_stats.empty()) {
        st = data::LatentStats::load(o.latents_stats);
      } else {  // the reference's default for the SD-VAE: scale 0.18215, bias 0
        st.scale = Tensor<double>(Shape{vae->latent_channels()}), st.bias = Tensor<double>(Shape{vae->latent_channels()});
        st.scale.fill(o.latent_scale), st.bias.fill(0.0);
      }
      st.expect_channels(vae->latent_channels(), o.vae);
      std::tie(spec.latents_scale, spec.latents_bias) = st.as<float>();
    }
    image_side = cfg.input_size * (vae ? vae->config.factor() : 1), num_classes = cfg.num_classes;
    what = fmt::format("SiT depth {} width {} patch {}", cfg.depth, cfg.hidden_size, cfg.patch_size);
    generator_of(std::move(model), std::move(vae));
  }

  // The reference's bookkeeping: whole global batches, the first N kept.
  const std::int64_t n = o.per_proc_batch, G = n * launch.world;
  const std::int64_t total = (o.num_fid_samples + G - 1) / G * G, iterations = total / G;
  const std::string name = fmt::format("{}-size-{}-cfg-{}-seed-{}-{}{}{}", fs::path(o.ckpt).stem().string(), image_side, o.cfg_scale,
                                       o.global_seed, o.mode, o.heun ? "-heun" : "", o.num_steps != 50 ? fmt::format("-steps-{}", o.num_steps) : "");
  const fs::path dir = fs::path(o.sample_dir) / name, npz = fs::path(o.sample_dir) / (name + ".npz"), man = dir / "generate.json";
  const nlohmann::json want = manifest(o, launch, jit, image_side);
  std::vector<std::string> keys;
  for (const auto& [k, v] : want.items())
    if (k != "finished") keys.push_back(k);
  const nlohmann::json have = examples::claim_folder(dir, man, want, keys, launch.rank, "irepa-generate", "--sample-dir");
  if (have.value("finished", false) && fs::exists(npz)) {
    std::printf("%s is complete (%lld samples); nothing to do\n", npz.string().c_str(), static_cast<long long>(o.num_fid_samples));
    return 0;
  }

  const std::unique_ptr<examples::SampleGenerator> gen = make_generator();
  const std::string who = launch.distributed() ? fmt::format("rank {}: ", launch.rank) : std::string();
  const Shape batch_shape{n, image_side, image_side, 3};
  std::int64_t already = 0;
  for (std::int64_t it = 0; it < iterations; ++it) already += batch_done(batch_path(dir, launch.rank, it), batch_shape) ? n : 0;
  std::printf("%s%lld samples (%lld iterations of %lld x %d processes) of %s, %lldx%lld, on %s%s\n", who.c_str(),
              static_cast<long long>(o.num_fid_samples), static_cast<long long>(iterations), static_cast<long long>(n), launch.world,
              what.c_str(), static_cast<long long>(image_side), static_cast<long long>(image_side), gen->where().c_str(),
              already ? fmt::format(", continuing ({} already there)", already).c_str() : "");
  std::fflush(stdout);
  examples::Progress progress(who + "samples", iterations * n, already);
  const std::uint64_t rank_seed = static_cast<std::uint64_t>(o.global_seed * launch.world + launch.rank);
  std::int64_t made = 0;
  for (std::int64_t it = 0; it < iterations; ++it) {
    const fs::path p = batch_path(dir, launch.rank, it);
    if (batch_done(p, batch_shape)) continue;
    if (o.stop_after > 0 && made == o.stop_after) {
      std::printf("%sstopping after %lld new batches (--stop-after-batches); run again to continue\n", who.c_str(), static_cast<long long>(made));
      return 3;
    }
    const std::uint64_t seed = mix64(rank_seed << 32 ^ static_cast<std::uint64_t>(it));
    Tensor<std::int64_t> labels(Shape{n});
    if (jit) {  // image index -> its class (the JiT engine's np.arange(classes).repeat(N / classes)); the padding past N: class 0
      for (std::int64_t i = 0; i < n; ++i) {
        const std::int64_t index = it * G + i * launch.world + launch.rank;
        labels[i] = index < o.num_fid_samples ? index / (o.num_fid_samples / num_classes) : 0;
      }
    } else {
      Philox(seed, 9).randint(labels.view(), 0, num_classes);
    }
    const Tensor<std::uint8_t> images = gen->generate(labels, seed);
    const std::string tmp = p.string() + ".tmp." + std::to_string(::getpid());
    io::write_npy<std::uint8_t>(tmp, images.cview());
    fs::rename(tmp, p);
    if (o.save_png)
      for (std::int64_t i = 0; i < n; ++i) {
        const std::int64_t index = it * G + i * launch.world + launch.rank;
        if (index >= o.num_fid_samples) continue;
        io::write_png((dir / fmt::format("{:06d}.png", index)).string(),
                      ConstView<std::uint8_t>(images.data() + i * image_side * image_side * 3, Shape{image_side, image_side, 3}));
      }
    ++made;
    progress.add(n);
  }
  if (launch.rank != 0) return 0;
  // Rank 0: wait for every rank's batches, then stream them into the npz in index order.
  for (int r = 1; r < launch.world; ++r)
    for (std::int64_t it = 0; it < iterations; ++it)
      for (int waited = 0; !batch_done(batch_path(dir, r, it), batch_shape); ++waited) {
        if (waited % 600 == 599) std::printf("waiting for rank %d's batch %lld ...\n", r, static_cast<long long>(it));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
  io::NpzWriter w(npz.string());
  w.begin_array("arr_0", DType::U8, Shape{o.num_fid_samples, image_side, image_side, 3});
  const std::int64_t row = image_side * image_side * 3;
  for (std::int64_t it = 0, index = 0; it < iterations && index < o.num_fid_samples; ++it) {
    std::vector<io::NpyFile> parts;
    for (int r = 0; r < launch.world; ++r) parts.emplace_back(batch_path(dir, r, it).string());
    for (std::int64_t rem = 0; rem < G && index < o.num_fid_samples; ++rem, ++index) {
      const std::int64_t i = rem / launch.world, r = rem % launch.world;
      w.write_bytes(parts[static_cast<std::size_t>(r)].data() + i * row, static_cast<std::uint64_t>(row));
    }
  }
  w.end_array();
  w.finish();
  nlohmann::json done = want;
  done["finished"] = true;
  done["seconds"] = progress.seconds();
  done["samples_per_second"] = progress.rate();
  examples::write_json_atomic(man, done);
  std::printf("Saved .npz file to %s [shape=(%lld, %lld, %lld, 3)].\n", npz.string().c_str(), static_cast<long long>(o.num_fid_samples),
              static_cast<long long>(image_side), static_cast<long long>(image_side));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  GenOptions o;
  CLI::App app{"irepa-generate: samples of a trained SiT or JiT for FID (the reference's generate.py), as an ADM .npz"};
  app.add_option("--ckpt", o.ckpt, "a checkpoint irepa-train, irepa-train-jit or irepa-fashion wrote, or the reference's train.py .pt or jit/main_jit.py .pth")->required();
  app.add_option("--model", o.model, "SiT-S/2 ... SiT-XL/2, JiT-B/16 ... (checked against the checkpoint; gives the head count), or custom");
  app.add_option("--num-heads", o.num_heads, "--model custom: the attention heads (the checkpoint's tensors give the rest)");
  app.add_option("--ema", o.ema, "which EMA of the checkpoint (0: 'ema.', or model_ema1 of the reference's JiT .pth; 1: 'ema1.', or model_ema2)")->capture_default_str();
  app.add_option("--num-fid-samples", o.num_fid_samples, "samples in the npz")->capture_default_str();
  app.add_option("--sample-dir", o.sample_dir, "where the batch folder and the npz go")->capture_default_str();
  app.add_option("--per-proc-batch-size", o.per_proc_batch, "samples per process per iteration")->capture_default_str();
  app.add_option("--global-seed", o.global_seed, "rank r seeds with global_seed x world + r")->capture_default_str();
  app.add_option("--mode", o.mode, "ode or sde")->capture_default_str();
  app.add_flag("--heun,!--no-heun", o.heun, "ODE: Heun's second-order steps (a JiT: Heun and a last Euler step, its engine's default)");
  app.add_option("--num-steps", o.num_steps, "sampler steps")->capture_default_str();
  app.add_option("--cfg-scale", o.cfg_scale, "classifier-free guidance scale (1: none)")->capture_default_str();
  app.add_option("--guidance-low", o.guidance_low, "guidance only for t in [low, high]")->capture_default_str();
  app.add_option("--guidance-high", o.guidance_high, "guidance only for t in [low, high]")->capture_default_str();
  app.add_option("--path-type", o.path_type, "linear or cosine (as the model was trained)")->capture_default_str();
  app.add_option("--resolution", o.resolution, "image side (latent side x 8 with --vae) when the checkpoint does not say")->capture_default_str();
  app.add_option("--num-classes", o.num_classes, "checked against the checkpoint's label table (0: take it from there)");
  app.add_option("--vae", o.vae, "SD-VAE weights (latent models): samples are decoded through it");
  app.add_option("--latents-stats", o.latents_stats, "latents_scale / latents_bias file (default: scale 0.18215, bias 0)");
  app.add_option("--device", o.device, "cpu, cuda (the local rank's GPU) or cuda:N")->capture_default_str();
  app.add_option("--precision", o.precision, "GPU products: fp32, tf32 or bf16")->check(CLI::IsMember({"fp32", "tf32", "bf16"}))->capture_default_str();
  app.add_option("--threads", o.threads, "CPU threads (0: all cores)")->capture_default_str();
  app.add_flag("--save-png", o.save_png, "also write <index>.png per sample, as the reference does");
  app.add_option("--stop-after-batches", o.stop_after, "stop (exit 3) after this many new batches, as if killed: a test of resuming");
  app.add_flag("--tf32,!--no-tf32", o.tf32, "the reference's; no effect here: --precision chooses (fp32 by default)");
  app.add_flag("--fused-attn,!--no-fused-attn", o.fused_attn, "the reference's; no effect here: the same attention");
  app.add_option("--encoder-depth", o.encoder_depth, "the reference's; no effect here: sampling does not run the projectors");
  app.add_option("--z-dims", o.z_dims, "the reference's; no effect here: sampling does not run the projectors");
  app.add_flag("--qk-norm,!--no-qk-norm", o.qk_norm, "refused when on (the reference's SiT cannot enable it)");
  app.add_flag("--legacy,!--no-legacy", o.legacy, "refused when on: the layout of REPA's first checkpoints (load_legacy_checkpoints) is not read");
  CLI11_PARSE(app, argc, argv);
  try {
    IREPA_CHECK(!o.qk_norm, "irepa-generate: --qk-norm is not supported (the reference's SiT cannot enable it either)");
    IREPA_CHECK(!o.legacy, "irepa-generate: --legacy (REPA's first checkpoint layout, renamed by load_legacy_checkpoints) is not read");
    return run(o);
  } catch (const std::exception& e) {
    return examples::report_error("irepa-generate", e);
  }
}
