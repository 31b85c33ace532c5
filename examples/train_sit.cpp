// irepa-train: trains a SiT with REPA / iREPA alignment on a folder of safetensors shards
// (latents, VAE posteriors with or without their images, or images; labels; the frozen encoders'
// features as features.<encoder>), with the reference's command-line flags. On posteriors
// (mean | std, what irepa-encode writes) each step draws its latents as the reference's
// sample_posterior, with --latents-stats; --vae decodes the latent sample grids to pixels.
// A YAML file (--config configs/irepa.yaml) sets any flag by its
// name (dashes or underscores); the command line wins over the file. Unknown keys and bad values
// are errors that name them.
//
//   irepa-train --data-dir shards/ --model SiT-B/2 --config configs/irepa.yaml --exp-name b2-irepa
//   irepa-train ... --resume-step 50000            # continues bit-identically from a checkpoint
//   irepa-train ... --device cuda                  # the model, AdamW and EMA on the GPU (a CUDA build)
//
// Writes OUTPUT_DIR/EXP_NAME/: args.json (the resolved flags), log.jsonl (every step's scalars), checkpoints/NNNNNNN.safetensors
// (model, EMA, optimizer, RNG, config), samples/NNNNNNN.png (EMA model, Euler ODE, when the data
// has 1 or 3 channels), and a progress line on stdout.

#include <algorithm>
#include <cstdio>
#include <optional>
#include <filesystem>
#include <string>

#include <irepa/core/checked.hpp>
#include <irepa/data/any_dataset.hpp>
#include <irepa/data/fashion_mnist.hpp>
#include <irepa/data/hf_dataset.hpp>
#include <irepa/data/image_folder.hpp>
#include <irepa/data/shards.hpp>
#include <irepa/diffusion/sit_objective.hpp>
#include <irepa/models/sit.hpp>

#include "fail_safe.hpp"
#include "cli_flags.hpp"
#include "train_job.hpp"

namespace {

using namespace irepa;
namespace fs = std::filesystem;

struct Options {
  // logging and run
  std::string output_dir = "exps", exp_name = "sit", data_dir, dataset = "shards", image_dir;
  std::int64_t resolution = 256;
  std::int64_t sampling_steps = 0, resume_step = 0, checkpointing_steps = 50000, log_every = 100;
  std::int64_t seed = 0, skip_nonfinite_steps = 0;
  bool overwrite = false;
  cli::Placement place;  // --device, --matmul-precision, --attention, --threads
  // model
  std::string model = "SiT-B/2";
  std::int64_t num_classes = 1000, encoder_depth = 8, projector_dim = 2048;
  std::int64_t depth = 0, hidden_size = 0, num_heads = 0, patch_size = 0;  // --model custom
  std::string projection_layer_type = "mlp";
  int proj_kwargs_kernel_size = 3;
  // optimisation
  std::int64_t batch_size = 256, max_train_steps = 400000;
  double learning_rate = 1e-4, adam_beta1 = 0.9, adam_beta2 = 0.999, adam_weight_decay = 0.0, adam_epsilon = 1e-8;
  double max_grad_norm = 1.0, ema_decay = 0.9999;
  std::int64_t ema_update_freq = 1;
  // loss
  std::string path_type = "linear", weighting = "uniform", spnorm_method = "none";
  double cfg_prob = 0.1, zscore_alpha = 0.6;
  std::string proj_coeff = "0.5", projection_loss_type = "cosine";  // comma lists, paired as the reference's
  bool repa_loss = true;  // the reference's default is false; here alignment follows --enc-type and --no-repa-loss ends it
  // The reference's flags with no effect here (docs/reference_flags.md says why for each).
  std::int64_t epochs = 1400, gradient_accumulation_steps = 1, num_workers = 12, n_samples = 256;
  std::string logging_dir = "logs", report_to = "wandb", mixed_precision = "fp16", prediction = "v";
  bool fused_attn = true, qk_norm = false, allow_tf32 = true, compile = true, zscore_proj_skip_std = false;
  double cls_token_weight = 0.2;
  int sample_steps = 50;
  double cfg_scale = 1.0;
  std::int64_t samples_per_class = 8;
  std::string enc_type;  // online target encoders, comma-separated
  std::string encoder_dir;  // ViT encoder weights: <dir>/<name>.safetensors
  std::string latents_stats, vae;  // posterior data: latents_scale / latents_bias; SD-VAE weights for grids
};

/// The reference's SiT recipe with this run's settings (TrainerOptions' defaults are that recipe).
TrainerOptions trainer_options(const Options& o) {
  TrainerOptions t;
  t.run_dir = (std::filesystem::path(o.output_dir) / o.exp_name).string();
  t.batch_size = o.batch_size, t.max_train_steps = o.max_train_steps, t.seed = o.seed;
  t.checkpointing_steps = o.checkpointing_steps, t.sampling_steps = o.sampling_steps, t.resume_step = o.resume_step;
  t.log_every = o.log_every;
  t.overwrite = o.overwrite, t.skip_nonfinite_steps = o.skip_nonfinite_steps;
  t.log_sink = cli::report_to_sink("irepa-train", "report-to", o.report_to);
  t.adamw = AdamWOptions{.lr = o.learning_rate, .beta1 = o.adam_beta1, .beta2 = o.adam_beta2, .eps = o.adam_epsilon,
                         .weight_decay = o.adam_weight_decay};
  t.schedule = LrSchedule{.kind = LrSchedule::Kind::Constant, .lr = o.learning_rate};
  t.max_grad_norm = o.max_grad_norm;
  t.ema_decays = {o.ema_decay};
  t.ema_update_freq = o.ema_update_freq;
  t.label_drop_prob = o.cfg_prob;
  t.grid = SampleSettings{.steps = o.sample_steps, .heun = false, .cfg_scale = o.cfg_scale};
  t.classes_in_grid = std::min<std::int64_t>(o.num_classes, 10);
  t.samples_per_class = o.samples_per_class;
  for (const char* k : {"logging-dir", "num-workers", "compile", "allow-tf32", "fused-attn", "n-samples", "mixed-precision"})
    t.resume_may_change.emplace_back(k);  // the reference's flags that change nothing here
  return t;
}

SiTObjective objective(const Options& o) {
  return {.path = parse_path_type(o.path_type), .weighting = parse_time_sampling(o.weighting),
          .proj_coeff = cli::total_proj_coeff("irepa-train", o.proj_coeff, o.projection_loss_type, '-')};
}

using cli::Flag;

template <class V>
Flag flag(const std::string& name, V& target, const std::string& help) {
  return cli::flag("irepa-train", name, target, help);
}

std::vector<Flag> flags(Options& o) {
  std::vector<Flag> fl = {
      flag("output-dir", o.output_dir, "folder for runs"),
      flag("exp-name", o.exp_name, "run name (a folder under --output-dir)"),
      flag("dataset", o.dataset,
           "shards (--data-dir), hf (--data-dir: the reference's data/ with imagenet-latents-images and "
           "imagenet-latents-sdvae-ft-mse-f8d4, Hugging Face save_to_disk folders), image-folder (--data-dir: root/<class>/<image>, "
           "ADM center crop to --resolution) or fashion-mnist (Debian's package; targets from --enc-type)"),
      flag("data-dir", o.data_dir, "folder of safetensors shards (latents, posteriors [+ images] or images; labels; features.<encoder>)"),
      flag("image-dir", o.image_dir,
           "the images of --data-dir's posteriors, as an ImageFolder (root/<class>/<image>, same order), for online target encoders"),
      flag("resolution", o.resolution, "image side of --dataset image-folder and --image-dir (ADM center crop)"),
      flag("sampling-steps", o.sampling_steps, "write a sample grid every N steps (0: never)"),
      flag("resume-step", o.resume_step, "continue from checkpoints/<step>.safetensors, or the reference's checkpoints/<step>.pt"),
      flag("overwrite", o.overwrite, "start a fresh run in a folder that holds one (its checkpoints, log and grids are deleted)"),
      flag("skip-nonfinite-steps", o.skip_nonfinite_steps,
           "skip up to N steps whose gradient norm is not finite (no update; each logged), as a loss scaler; 0: stop at the first"),
      flag("samples-per-class", o.samples_per_class, "sample grids: one row per class (up to 10), this many columns"),
      flag("cfg-scale", o.cfg_scale, "classifier-free guidance scale of the sample grids"),
      flag("enc-type", o.enc_type,
           "online target encoders, comma-separated (hog-x-g16_d128, dinov2-vit-b, dinov2reg-vit-l, ...; grid = the model's token grid)"),
      flag("encoder-dir", o.encoder_dir,
           "folder of ViT encoder weights <name>.safetensors, or the released <name>.pth / .pt (default $IREPA_ENCODER_DIR or ./encoders)"),
      flag("latents-stats", o.latents_stats, "posterior data: latents_scale and latents_bias (safetensors, or the reference's .pt)"),
      flag("vae", o.vae, "SD-VAE weights (the reference's or diffusers' names): latent sample grids decoded to pixels"),
      flag("checkpointing-steps", o.checkpointing_steps, "write a checkpoint every N steps (and at the end)"),
      flag("log-every", o.log_every, "print the progress line every N steps"),
      flag("seed", o.seed, "seed of initialisation, data order, noise"),
      flag("model", o.model, "SiT-S/2, SiT-B/4, SiT-L/2, SiT-XL/2, ... or custom (--depth --hidden-size --num-heads --patch-size)"),
      flag("num-classes", o.num_classes, "classes (the null class is this index)"),
      flag("encoder-depth", o.encoder_depth, "align the tokens after this block (1-based)"),
      flag("projector-dim", o.projector_dim, "MLP projector hidden width"),
      flag("depth", o.depth, "custom model: blocks"),
      flag("hidden-size", o.hidden_size, "custom model: width"),
      flag("num-heads", o.num_heads, "custom model: attention heads"),
      flag("patch-size", o.patch_size, "custom model: patch size"),
      flag("projection-layer-type", o.projection_layer_type, "mlp (REPA), linear or conv (iREPA)"),
      flag("proj-kwargs-kernel-size", o.proj_kwargs_kernel_size, "conv projector kernel (odd)"),
      flag("batch-size", o.batch_size, "images per step over all processes (each of N takes batch / N, as the reference)"),
      flag("max-train-steps", o.max_train_steps, "steps in total"),
      flag("learning-rate", o.learning_rate, "AdamW learning rate"),
      flag("adam-beta1", o.adam_beta1, "AdamW beta1"),
      flag("adam-beta2", o.adam_beta2, "AdamW beta2"),
      flag("adam-weight-decay", o.adam_weight_decay, "AdamW decoupled weight decay"),
      flag("adam-epsilon", o.adam_epsilon, "AdamW epsilon"),
      flag("max-grad-norm", o.max_grad_norm, "global gradient-norm clip"),
      flag("ema-decay", o.ema_decay, "EMA decay"),
      flag("ema-update-freq", o.ema_update_freq, "update the EMA every N steps"),
      flag("path-type", o.path_type, "linear or cosine"),
      flag("weighting", o.weighting, "time sampling: uniform or lognormal"),
      flag("spnorm-method", o.spnorm_method, "target normalisation: none or zscore (iREPA)"),
      flag("cfg-prob", o.cfg_prob, "label dropout probability (classifier-free guidance)"),
      flag("proj-coeff", o.proj_coeff, "alignment loss coefficient; a comma list pairs with --projection-loss-type (the terms add)"),
      flag("projection-loss-type", o.projection_loss_type, "alignment losses, comma-separated: cosine (the one the reference registers)"),
      flag("repa-loss", o.repa_loss,
           "align to the targets of --enc-type (or the data's features); --no-repa-loss trains without alignment (the reference's "
           "default is off; here alignment follows --enc-type)"),
      flag("epochs", o.epochs, "passes over the data at most: training stops at --max-train-steps or after this many epochs, the first"),
      flag("qk-norm", o.qk_norm, "RMS-normalised queries and keys: refused when on (the reference's SiT cannot enable it either)"),
      flag("prediction", o.prediction, "v (the reference supports v only)"),
      flag("gradient-accumulation-steps", o.gradient_accumulation_steps, "1 only (raise --batch-size; several processes share it)"),
      cli::no_effect("irepa-train", "cls-token-weight", o.cls_token_weight, "the reference's spatial normalisation ignores it too"),
      cli::no_effect("irepa-train", "zscore-proj-skip-std", o.zscore_proj_skip_std, "the reference's spatial normalisation ignores it too"),
      cli::no_effect("irepa-train", "logging-dir", o.logging_dir, "logs go to the run folder (log.jsonl)"),
      flag("report-to", o.report_to,
           "tensorboard, wandb or all: TensorBoard event files beside log.jsonl (wandb is not linked: `wandb sync --sync-tensorboard` "
           "imports them); none: log.jsonl only"),
      cli::no_effect("irepa-train", "n-samples", o.n_samples, "sample grids are --samples-per-class x up to 10 classes"),
      cli::no_effect("irepa-train", "fused-attn", o.fused_attn, "the same attention; --attention chooses the GPU kernel"),
      cli::no_effect("irepa-train", "allow-tf32", o.allow_tf32, "--matmul-precision chooses (fp32 by default)"),
      cli::no_effect("irepa-train", "mixed-precision", o.mixed_precision, "float32 weights; --matmul-precision tf32 or bf16 on a GPU"),
      cli::no_effect("irepa-train", "compile", o.compile, "compiled already"),
      cli::no_effect("irepa-train", "num-workers", o.num_workers, "--threads sizes the data pipeline"),
      flag("zscore-alpha", o.zscore_alpha, "spatial z-score: share of the token mean removed"),
      flag("sample-steps", o.sample_steps, "Euler steps of the sample grids"),
  };
  for (auto& f : cli::placement_flags("irepa-train", o.place, '-')) fl.push_back(std::move(f));
  return fl;
}

SiTConfig model_config(const Options& o, const data::AnyDataset& ds, const std::vector<TargetEncoder>& online) {
  SiTConfig c;
  const Shape s = detail::model_sample_shape(ds.kind(), ds.sample_shape());
  IREPA_CHECK(s.rank() == 3 && s[1] == s[2], "irepa-train: samples have shape {}, expected square [C, H, H]", s.str());
  c.in_channels = s[0];
  c.input_size = s[1];
  c.num_classes = o.num_classes;
  c.class_dropout_prob = o.cfg_prob;
  c.encoder_depth = o.encoder_depth;
  c.projector_dim = o.projector_dim;
  c.kernel_size = o.proj_kwargs_kernel_size;
  c.z_dims.clear();
  for (const auto& e : ds.encoders()) c.z_dims.push_back(ds.feature_shape(e)[1]);
  for (const auto& e : online) c.z_dims.push_back(e.dim);
  if (o.model == "custom") {
    c.depth = o.depth, c.hidden_size = o.hidden_size, c.num_heads = o.num_heads, c.patch_size = o.patch_size;
  } else {
    apply_model_name(c, o.model);
  }
  return c;
}

/// The run on the CPU, or on GPU N with --device cuda[:N] (train_cuda.cu).
int run(const Options& o, const examples::TrainJob& job, const HeadChoice& choice, const SiTConfig& cfg, const data::AnyDataset& ds) {
  examples::run_training<examples::SiTFamily>("irepa-train", job, choice, cfg, objective(o), ds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<irepa::DistributedJob> dj;  // first: an mpirun job starts MPI here
  try {
    dj.emplace(&argc, &argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", "irepa-train", e.what());
    return 1;
  }
  Options o;
  auto fl = flags(o);
  if (const int status = cli::parse("irepa-train", "irepa-train: SiT with REPA / iREPA alignment on safetensors shards", argc, argv, fl);
      status >= 0)
    return status;
  try {
    IREPA_CHECK(o.batch_size > 0 && o.max_train_steps > 0 && o.checkpointing_steps > 0 && o.log_every > 0,
                "irepa-train: --batch-size, --max-train-steps, --checkpointing-steps and --log-every must be positive");
    int device = cli::check_placement("irepa-train", o.place);
    if (device >= 0 && o.place.device == "cuda" && dj->distributed()) device = dj->launch().local_rank;  // one GPU per local rank
    const nlohmann::json config_json = cli::resolved(fl);
    const HeadChoice choice{.projection = o.projection_layer_type, .spnorm = o.spnorm_method, .zscore_alpha = o.zscore_alpha};
    (void)objective(o);  // a bad --proj-coeff list is refused before the data is read
    IREPA_CHECK(o.prediction == "v", "irepa-train: --prediction '{}' is not supported (v, as the reference)", o.prediction);
    IREPA_CHECK(o.gradient_accumulation_steps == 1,
                "irepa-train: --gradient-accumulation-steps {} is not implemented (1); raise --batch-size, which several processes share",
                o.gradient_accumulation_steps);
    IREPA_CHECK(!o.qk_norm, "irepa-train: --qk-norm is not supported (the reference's SiT cannot enable it either)");
    IREPA_CHECK(o.epochs > 0 && o.n_samples > 0 && o.num_workers >= 0,
                "irepa-train: --epochs {} and --n-samples {} must be positive, --num-workers {} not negative", o.epochs, o.n_samples,
                o.num_workers);
    IREPA_CHECK(o.mixed_precision == "no" || o.mixed_precision == "fp16" || o.mixed_precision == "bf16",
                "irepa-train: --mixed-precision '{}' is not one of the reference's (no, fp16, bf16)", o.mixed_precision);
    if (!o.repa_loss) o.enc_type.clear();
    auto run_on = [&](const data::AnyDataset& ds) {
      IREPA_CHECK(o.repa_loss || ds.encoders().empty(),
                  "irepa-train: --no-repa-loss, but the data carries target features ({}); use shards without features.<encoder>",
                  ds.encoders().front());
      auto job = examples::make_job(static_cast<std::uint64_t>(o.seed), trainer_options(o), config_json, dj->threads(o.place.threads), device,
                                    o.place.matmul_precision, o.place.attention);
      job.launch = dj->launch();
      // The reference loops over --epochs (dropping the last partial batch) and stops at --max-train-steps.
      if (const std::int64_t per_epoch = ds.size() / o.batch_size; per_epoch > 0)
        job.options.max_train_steps = std::min(job.options.max_train_steps, checked_mul(per_epoch, o.epochs, "irepa-train: --epochs"));
      if (!o.latents_stats.empty()) job.options.latent_stats = data::LatentStats::load(o.latents_stats);
      job.vae = o.vae;
      job.online = make_target_encoders(o.enc_type, detail::image_side(ds), o.encoder_dir);
      return run(o, job, choice, model_config(o, ds, job.online), ds);
    };
    IREPA_CHECK(o.resolution > 0, "irepa-train: --resolution {} must be positive", o.resolution);
    IREPA_CHECK(o.image_dir.empty() || o.dataset == "shards", "irepa-train: --image-dir pairs images with --dataset shards, not {}",
                o.dataset);
    if (o.dataset == "fashion-mnist")
      return run_on(data::AnyDataset(data::ImageDataset::fashion_mnist(o.data_dir.empty() ? data::kFashionMnistDir : o.data_dir)));
    IREPA_CHECK(o.dataset == "shards" || o.dataset == "image-folder" || o.dataset == "hf",
                "irepa-train: --dataset '{}' is not known; expected shards, hf, image-folder or fashion-mnist", o.dataset);
    IREPA_CHECK(!o.data_dir.empty(), "irepa-train: --data-dir is required (a folder of safetensors shards, the reference's data/, or an ImageFolder)");
    if (o.dataset == "hf") {  // the reference's HFImgLatentDataset: images and latents, paired by row
      const auto root = std::filesystem::path(o.data_dir);
      const data::HfImageDataset images((root / "imagenet-latents-images").string(), 0, dj->threads(o.place.threads));
      const data::HfLatentDataset latents((root / "imagenet-latents-sdvae-ft-mse-f8d4").string());
      return run_on(data::AnyDataset(data::PairedDataset(images, latents)));
    }
    if (o.dataset == "image-folder") return run_on(data::AnyDataset(data::ImageFolder(o.data_dir, o.resolution, dj->threads(o.place.threads))));
    data::ShardedDataset shards(o.data_dir);
    if (o.image_dir.empty()) return run_on(data::AnyDataset(std::move(shards)));
    const data::ImageFolder images(o.image_dir, o.resolution, dj->threads(o.place.threads));  // outlives the pairing
    return run_on(data::AnyDataset(data::PairedDataset(images, shards)));
  } catch (const std::exception& e) {
    if (dj->distributed()) dj->stop("irepa-train", e);  // names the rank and ends every process of the job
    std::fprintf(stderr, "irepa-train: %s\n", e.what());
    return 1;
  }
}
