#pragma once
// What irepa-train and irepa-train-jit share around the library's one trainer: a job (where it
// runs and what the trainer needs), building and initialising the model there, the model line,
// and the call (run_training). The GPU half of both tools (train_cuda.cu, compiled once by nvcc)
// runs the job with a CudaContext, the CPU path with a CpuContext; the programs never
// instantiate CUDA code with the host compiler, nor the CPU model with nvcc.

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <irepa/align/dispatch.hpp>
#include <irepa/data/any_dataset.hpp>
#include <irepa/data/fashion_mnist.hpp>
#include <irepa/data/shards.hpp>
#include <irepa/diffusion/jit_objective.hpp>
#include <irepa/diffusion/sit_objective.hpp>
#include <irepa/metrics/online_fid.hpp>
#include <irepa/models/jit.hpp>
#include <irepa/models/sd_vae.hpp>
#include <irepa/models/sit.hpp>
#include <irepa/models/target_encoder.hpp>
#include <irepa/train/distributed.hpp>
#include <irepa/train/trainer.hpp>

namespace irepa::examples {

/// An online evaluation (irepa-train-jit --online_eval): the evaluator is built where the job runs.
struct OnlineEvalJob {
  std::string inception;        // safetensors weights, or random:SEED
  metrics::Gaussian reference;  // pool_3 mu / sigma (a fid_stats .npz)
  metrics::OnlineFidOptions options;
};

struct TrainJob {
  std::uint64_t seed = 0;          // initialisation
  TrainerOptions options;
  std::vector<TargetEncoder> online;
  nlohmann::json config;           // args.json and checkpoints
  int threads = 0;                 // CPU threads (0: all cores)
  int device = -1;                 // -1: the CPU; else the GPU
  MatmulPrecision precision = MatmulPrecision::fp32;
  bool fused_attention = false;
  LaunchInfo launch;               // this process's place in a data-parallel job
  std::string vae;                 // SD-VAE weights: latent sample grids decoded to pixels on the job's device
  std::optional<OnlineEvalJob> online_eval;
};

/// A job from the trainer's options, the run's settings and where it runs (device -1: the CPU).
inline TrainJob make_job(std::uint64_t seed, TrainerOptions options, nlohmann::json config, int threads, int device,
                         const std::string& matmul_precision, const std::string& attention) {
  return TrainJob{.seed = seed, .options = std::move(options), .online = {}, .config = std::move(config), .threads = threads,
                  .device = device, .precision = parse_matmul_precision(matmul_precision), .fused_attention = attention == "fused", .launch = {}, .vae = {}, .online_eval = {}};
}

/// Where the model runs, in words: "" on the CPU, " on cuda:N (matmul fp32, materialized attention)" on a GPU.
inline std::string placement(const TrainJob& job) {
  if (job.device < 0) return "";
  return fmt::format(" on cuda:{} (matmul {}, {} attention)", job.device, to_string(job.precision),
                     job.fused_attention ? "fused" : "materialized");
}

/// "SiT 12x768, 12 heads, patch 2: N parameters" / the JiT line with its bottleneck and in-context tokens.
template <class Size, int Patch, class Head, class T, class D>
std::string describe(const SiT<Size, Patch, Head, T, D>& m) {
  return fmt::format("SiT {}x{}, {} heads, patch {}: {} parameters", m.depth, m.hidden, m.heads, m.patch, m.num_params());
}
template <class Size, int Patch, class Head, class T, class D>
std::string describe(const JiT<Size, Patch, Head, T, D>& m) {
  return fmt::format("JiT {}x{}, {} heads, patch {}, bottleneck {}, {} in-context tokens from block {}: {} parameters", m.depth, m.hidden,
                     m.heads, m.patch, m.bottleneck, m.ctx_len, m.ctx_start, m.num_params());
}

/// Builds Model(cfg, head) on ctx's device, initialises it from job.seed (on the host, so every
/// device starts from the same values), prints the model line (rank 0) and trains, with the
/// communicator of the job (one process, MPI between CPU processes, NCCL between GPUs).
/// Scaled latents [B, E, h, w] -> pixels [B, 3, H, W] in [-1, 1]: z / scale + bias through the
/// VAE's decoder on ctx's device, a few images at a time (grids are tens of images).
template <class Ctx>
std::function<Tensor<double>(const Tensor<double>&)> vae_grid_decoder(const Ctx& ctx, const std::string& weights,
                                                                     const data::LatentStats& stats) {
  using D = typename Ctx::device_type;
  const SdVae<float> host = load_sd_vae<float>(weights);  // the architecture read off the file
  stats.expect_channels(host.latent_channels(), weights);
  auto vae = std::make_shared<const SdVae<float, D>>(SdVae<float, D>::from_host(host));
  const auto [sh, bh] = stats.as<float>();
  auto scale = std::make_shared<const Tensor<float, D>>(to_device(ctx, sh.cview()));
  auto bias = std::make_shared<const Tensor<float, D>>(to_device(ctx, bh.cview()));
  return [&ctx, vae, scale, bias](const Tensor<double>& z) {
    constexpr std::int64_t chunk = 8;
    Tensor<double> out;
    for (std::int64_t i0 = 0; i0 < z.size(0); i0 += chunk) {
      const std::int64_t n = std::min(chunk, z.size(0) - i0), per = z.numel() / z.size(0);
      Tensor<float> zf(Shape{n, z.size(1), z.size(2), z.size(3)});
      for (std::int64_t k = 0; k < zf.numel(); ++k) zf[k] = static_cast<float>(z[i0 * per + k]);
      const auto zd = to_device(ctx, zf.cview());
      Tensor<float, D> un(zd.shape());
      ops::unscale_latents<float>(ctx, zd.cview(), scale->cview(), bias->cview(), un.view());
      const Tensor<float> px = to_host(ctx, vae->decode(ctx, un.cview()).cview());
      if (!out.data()) out = Tensor<double>(Shape{z.size(0), px.size(1), px.size(2), px.size(3)});
      for (std::int64_t k = 0; k < px.numel(); ++k) out[i0 * (px.numel() / n) + k] = static_cast<double>(px[k]);
    }
    return out;
  };
}

template <class Model, class Ctx, class Config, class Objective, class Dataset>
void run_job(const Ctx& ctx, const TrainJob& job, const Config& cfg, const typename Model::head_type& head, const Objective& obj,
             const Dataset& ds) {
  Model model(cfg, head);
  model.init(job.seed);
  TrainerOptions options = job.options;
  if (!job.vae.empty()) {
    IREPA_CHECK(options.latent_stats, "--vae {}: decoding latent sample grids needs the latent statistics as well", job.vae);
    options.grid_decoder = vae_grid_decoder(ctx, job.vae, *options.latent_stats);
  }
  if (job.online_eval) {
    const auto& e = *job.online_eval;
    using Net = InceptionV3<float, typename Ctx::device_type>;
    auto net = std::make_shared<const Net>(Net::from_host(metrics::load_fid_inception(e.inception)));
    options.evaluate = metrics::online_fid_evaluator(ctx, std::move(net), e.reference, e.options);
  }
  auto comm = make_communicator(ctx, job.launch);
  if (comm->rank() == 0) {
    std::printf("%s%s; %lld samples of %s %s; %zu target encoder(s)\n", describe(model).c_str(), placement(job).c_str(),
                static_cast<long long>(ds.size()), ds.kind().c_str(), ds.sample_shape().str().c_str(), cfg.z_dims.size());
    if (comm->world() > 1)
      std::printf("data parallel: %s (%s); global batch %lld = %d x %lld\n", comm->describe().c_str(), job.launch.launcher.c_str(),
                  static_cast<long long>(job.options.batch_size), comm->world(),
                  static_cast<long long>(job.options.batch_size / comm->world()));
    std::fflush(stdout);
  }
  train(ctx, options, model, obj, ds, job.online, job.config, *comm);
}

/// The model types the tools build: a family's model for a head on a device, in float.
struct SiTFamily {
  template <class Head, class D>
  using model = SiT<Dynamic, DynamicPatch, Head, float, D>;
};
struct JiTFamily {
  template <class Head, class D>
  using model = JiT<Dynamic, DynamicPatch, Head, float, D>;
};

/// A context's constructor argument and settings from the job.
inline int context_arg(const TrainJob& job, Cpu) { return job.threads; }
inline int context_arg(const TrainJob& job, Cuda) { return job.device; }
inline void configure(CpuContext&, const TrainJob&) {}
inline void configure(CudaContext& ctx, const TrainJob& job) {
  ctx.set_matmul_precision(job.precision);
  ctx.set_fused_attention(job.fused_attention);
}

/// The job with the chosen head: a context of type Ctx, the family's model on its device, trained.
template <class Family, class Ctx, class Config, class Objective, class Dataset>
void run_with_head(const TrainJob& job, const HeadChoice& choice, const Config& cfg, const Objective& obj, const Dataset& ds) {
  with_head(choice, [&](auto head) {
    Ctx ctx(context_arg(job, typename Ctx::device_type{}));
    configure(ctx, job);
    run_job<typename Family::template model<decltype(head), typename Ctx::device_type>>(ctx, job, cfg, head, obj, ds);
  });
}

/// run_with_head on GPU job.device; defined and instantiated for both tools' models, objectives
/// and datasets in train_cuda.cu (a build with CUDA), so the host compiler never instantiates it.
template <class Family, class Config, class Objective, class Dataset>
void train_on_cuda(const TrainJob& job, const HeadChoice& choice, const Config& cfg, const Objective& obj, const Dataset& ds);

/// The job on the CPU, or on GPU job.device; `prog` names the tool in the error of a build without CUDA.
template <class Family, class Config, class Objective, class Dataset>
void run_training(std::string_view prog, const TrainJob& job, const HeadChoice& choice, const Config& cfg, const Objective& obj,
                  const Dataset& ds) {
  if (job.device < 0) return run_with_head<Family, CpuContext>(job, choice, cfg, obj, ds);
#if defined(IREPA_WITH_CUDA)
  (void)prog;
  train_on_cuda<Family>(job, choice, cfg, obj, ds);
#else
  fail("{}: --device cuda:{} needs a build with CUDA (configure with -DIREPA_ENABLE_CUDA=ON; nvcc was not used here)", prog,
       job.device);
#endif
}

}  // namespace irepa::examples
