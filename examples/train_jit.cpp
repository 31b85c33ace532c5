// irepa-train-jit: trains a JiT (pixel-space x-prediction transformer) with REPA / iREPA
// alignment, with the JiT reference's flag names (main_jit.py: --model JiT-B/16 --img_size
// --batch_size --blr --epochs --warmup_epochs --enable_repa --enc_type ...; dashes work too).
// A YAML file (--config configs/jit_irepa.yaml) sets any flag by name; the command line wins.
// Unknown keys and bad values are errors that name them.
//
//   irepa-train-jit --dataset shards --data_path imgs/ --model JiT-B/16 --config configs/jit_irepa.yaml --enc_type dinov2-vit-b
//   irepa-train-jit --dataset fashion-mnist --model custom --depth 4 --hidden_size 96 ... --enable_repa --enc_type hog-x-g7_d128
//
// Writes OUTPUT_DIR/EXP_NAME/: args.json, log.jsonl, checkpoints/NNNNNNN.safetensors (model, both
// EMAs, optimizer, RNG, config; --resume_step continues bit-identically), samples/NNNNNNN.png
// (first EMA, the JiT sampler) and a progress line on stdout. --device cuda runs the model,
// AdamW and both EMAs on a GPU (a CUDA build; --matmul_precision, --attention choose its paths).

#include <cstdio>
#include <optional>
#include <filesystem>
#include <string>

#include <irepa/data/any_dataset.hpp>
#include <irepa/data/fashion_mnist.hpp>
#include <irepa/data/image_folder.hpp>
#include <irepa/data/shards.hpp>
#include <irepa/diffusion/jit_objective.hpp>
#include <irepa/metrics/online_fid.hpp>
#include <irepa/models/jit.hpp>
#include <irepa/train/recipes.hpp>

#include "fail_safe.hpp"
#include "cli_flags.hpp"
#include "train_job.hpp"

namespace {

using namespace irepa;
using cli::Flag;

struct Options {
  std::string output_dir = "./exps", exp_name = "jit", data_path, dataset = "shards";
  std::int64_t resume_step = 0, checkpointing_steps = 10000, sample_grid_freq = 0, log_freq = 100, seed = 0, skip_nonfinite_steps = 0;
  bool overwrite = false;
  cli::Placement place;  // --device, --matmul_precision, --attention, --threads
  std::string model = "JiT-B/16";
  std::int64_t img_size = 0, class_num = 1000;  // img_size 0: the data's
  std::int64_t depth = 0, hidden_size = 0, num_heads = 0, patch_size = 0, bottleneck_dim = 0, in_context_len = 32,
               in_context_start = -1;  // --model custom
  std::int64_t epochs = 200, max_train_steps = 0, batch_size = 128;
  double warmup_epochs = 5, lr = 0, blr = 5e-5, min_lr = 0, weight_decay = 0, ema_decay1 = 0.9999, ema_decay2 = 0.9996;
  std::string lr_schedule = "constant";
  double P_mean = -0.8, P_std = 0.8, noise_scale = 1.0, t_eps = 0.05, label_drop_prob = 0.1;
  std::string sampling_method = "heun";
  int num_sampling_steps = 50;
  double cfg = 1.0, interval_min = 0.0, interval_max = 1.0;
  std::int64_t sample_grid_per_class = 8;
  bool enable_repa = false, hflip = true;
  std::int64_t encoder_depth = 8, projector_dim = 2048;
  std::string enc_type = "dinov2-vit-b", encoder_dir, proj_coeff = "0.5", projection_layer_type = "mlp",
              projection_loss_type = "cosine", spnorm_method = "none";
  int proj_kwargs_kernel_size = 3;
  double zscore_alpha = 0.8;
  // The reference's flags that change nothing here, or that are refused away from their defaults
  // (docs/reference_flags.md says why for each).
  double attn_dropout = 0, proj_dropout = 0, cls_token_weight = 0.2;
  std::int64_t start_epoch = 0, num_workers = 12, num_images = 50000, eval_freq = 40, save_interval = 20, sample_grid_n_images = 64,
               gen_bsz = 256, save_last_freq = 5, requeue_time = 0, requeue_safety_margin = 10, world_size = 1, local_rank = -1;
  bool pin_mem = true, no_pin_mem = false, online_eval = false, evaluate_gen = false, sample_grid = false, zscore_proj_skip_std = false, dist_on_itp = false;
  std::string tmp_gen_path = "ssd/tmp", gen_checkpoint_path, gen_output_dir = "samples", resume, report_to = "all", dist_url = "env://";
  std::string fid_stats, inception;  // online evaluation (ours: the reference hard-codes both)
};

template <class V>
Flag flag(const std::string& name, V& target, const std::string& help) {
  return cli::flag("irepa-train-jit", name, target, help);
}
template <class V>
Flag no_effect(const std::string& name, V& target, const std::string& why) {
  return cli::no_effect("irepa-train-jit", name, target, why);
}

std::vector<Flag> flags(Options& o) {
  std::vector<Flag> fl = {
      flag("output_dir", o.output_dir, "folder for runs"),
      flag("exp_name", o.exp_name, "run name (a folder under --output_dir)"),
      flag("dataset", o.dataset,
           "shards (--data_path: safetensors shards of uint8 images), imagenet / image-folder (--data_path: root/<class>/<image>, "
           "ADM center crop to --img_size) or fashion-mnist (Debian's package)"),
      flag("data_path", o.data_path, "folder of image shards (images, labels[, features.<encoder>]), or an ImageFolder root"),
      flag("resume_step", o.resume_step, "continue from checkpoints/<step>.safetensors"),
      flag("overwrite", o.overwrite, "start a fresh run in a folder that holds one (its checkpoints, log and grids are deleted)"),
      flag("skip_nonfinite_steps", o.skip_nonfinite_steps,
           "skip up to N steps whose gradient norm is not finite (no update; each logged), as a loss scaler; 0: stop at the first"),
      flag("checkpointing_steps", o.checkpointing_steps, "write a checkpoint every N steps (and at the end)"),
      flag("sample_grid_freq", o.sample_grid_freq, "write a sample grid every N steps (0: never)"),
      flag("sample_grid_per_class", o.sample_grid_per_class, "sample grids: one row per class (up to 10), this many columns"),
      flag("log_freq", o.log_freq, "print the progress line every N steps"),
      flag("seed", o.seed, "seed of initialisation, data order, flips, noise"),
      flag("model", o.model, "JiT-B/16, JiT-B/32, JiT-L/16, JiT-L/32, JiT-H/16, JiT-H/32, or custom (--depth --hidden_size ...)"),
      flag("img_size", o.img_size, "image size the model is built for (0: the data's; it must match)"),
      flag("class_num", o.class_num, "classes (the null class is this index)"),
      flag("depth", o.depth, "custom model: blocks"),
      flag("hidden_size", o.hidden_size, "custom model: width"),
      flag("num_heads", o.num_heads, "custom model: attention heads (head dim a multiple of 4)"),
      flag("patch_size", o.patch_size, "custom model: patch size"),
      flag("bottleneck_dim", o.bottleneck_dim, "custom model: patch-embedding bottleneck"),
      flag("in_context_len", o.in_context_len, "in-context class tokens (0: none)"),
      flag("in_context_start", o.in_context_start, "custom model: the block before which they enter"),
      flag("epochs", o.epochs, "epochs (steps = epochs * floor(images / batch) unless --max_train_steps)"),
      flag("max_train_steps", o.max_train_steps, "steps in total (0: from --epochs)"),
      flag("warmup_epochs", o.warmup_epochs, "linear learning-rate warm-up, per iteration"),
      flag("batch_size", o.batch_size, "images per step and process (the global batch is this x processes, as the reference)"),
      flag("lr", o.lr, "absolute learning rate (0: blr * batch_size / 256)"),
      flag("blr", o.blr, "base learning rate"),
      flag("min_lr", o.min_lr, "floor of the cosine schedule"),
      flag("lr_schedule", o.lr_schedule, "after the warm-up: constant or cosine"),
      flag("weight_decay", o.weight_decay, "AdamW (0.9, 0.95) decoupled weight decay (never on biases and 1-D tensors)"),
      flag("ema_decay1", o.ema_decay1, "first EMA's decay (sample grids use it)"),
      flag("ema_decay2", o.ema_decay2, "second EMA's decay"),
      flag("P_mean", o.P_mean, "logit-normal time sampling: mean"),
      flag("P_std", o.P_std, "logit-normal time sampling: std"),
      flag("noise_scale", o.noise_scale, "std of the noise"),
      flag("t_eps", o.t_eps, "floor of 1 - t in the velocity"),
      flag("label_drop_prob", o.label_drop_prob, "label dropout (classifier-free guidance)"),
      flag("hflip", o.hflip, "random horizontal flips (true/false)"),
      flag("sampling_method", o.sampling_method, "heun or euler (the last interval is always Euler)"),
      flag("num_sampling_steps", o.num_sampling_steps, "sampler steps of the sample grids"),
      flag("cfg", o.cfg, "classifier-free guidance scale of the sample grids"),
      flag("interval_min", o.interval_min, "guidance off for t <= interval_min (when not 0)"),
      flag("interval_max", o.interval_max, "guidance off for t >= interval_max"),
      flag("enable_repa", o.enable_repa, "align to target encoders (true/false)"),
      flag("encoder_depth", o.encoder_depth, "align the tokens after this block (1-based)"),
      flag("projector_dim", o.projector_dim, "MLP projector hidden width"),
      flag("enc_type", o.enc_type, "online target encoders, comma-separated (hog-x-g16_d128, dinov2-vit-b, pe-vit-l, ...)"),
      flag("encoder_dir", o.encoder_dir, "folder of converted ViT weights <name>.safetensors (default $IREPA_ENCODER_DIR or ./encoders)"),
      flag("proj_coeff", o.proj_coeff, "alignment loss coefficient; a comma list pairs with --projection_loss_type (the terms add)"),
      flag("projection_layer_type", o.projection_layer_type, "mlp (REPA), linear or conv (iREPA)"),
      flag("proj_kwargs_kernel_size", o.proj_kwargs_kernel_size, "conv projector kernel (odd)"),
      flag("projection_loss_type", o.projection_loss_type, "alignment losses, comma-separated: cosine (the one the reference registers)"),
      flag("spnorm_method", o.spnorm_method, "target normalisation: none or zscore (iREPA)"),
      flag("zscore_alpha", o.zscore_alpha, "spatial z-score: share of the token mean removed"),
      flag("attn_dropout", o.attn_dropout, "0 only (the reference's default; dropout is not implemented)"),
      flag("proj_dropout", o.proj_dropout, "0 only (the reference's default; dropout is not implemented)"),
      flag("start_epoch", o.start_epoch, "0 only: --resume_step continues a run"),
      flag("resume", o.resume, "empty only: --resume_step continues a run from its checkpoints/ folder"),
      flag("online_eval", o.online_eval,
           "every --eval_freq epochs and at the end: --num_images class-balanced samples of the first EMA (the grid's sampler "
           "settings), FID against --fid_stats and the Inception Score, logged as fid_cfg<cfg>_res<size> / is_cfg<cfg>_res<size>"),
      flag("evaluate_gen", o.evaluate_gen, "score the checkpoint of --resume_step as --online_eval does, and stop"),
      flag("eval_freq", o.eval_freq, "online evaluation every N epochs"),
      flag("num_images", o.num_images, "online evaluation: samples (a multiple of --class_num)"),
      flag("gen_bsz", o.gen_bsz, "online evaluation: samples per process and round"),
      flag("fid_stats", o.fid_stats, "online evaluation: .npz with mu and sigma of pool_3 (default fid_stats/jit_in<img_size>_stats.npz)"),
      flag("inception", o.inception,
           "online evaluation: FID Inception-v3 weights (safetensors, torch-fidelity's names) or random:SEED; default $IREPA_INCEPTION"),
      no_effect("cls_token_weight", o.cls_token_weight, "the reference's spatial normalisation ignores it too"),
      no_effect("zscore_proj_skip_std", o.zscore_proj_skip_std, "the reference's spatial normalisation ignores it too"),
      no_effect("num_workers", o.num_workers, "--threads sizes the data pipeline"),
      no_effect("pin_mem", o.pin_mem, "no pinned host copies are made"),
      no_effect("no_pin_mem", o.no_pin_mem, "no pinned host copies are made"),
      no_effect("tmp_gen_path", o.tmp_gen_path, "online evaluation scores the samples in memory; no image files are written"),
      no_effect("gen_checkpoint_path", o.gen_checkpoint_path, "--evaluate_gen scores the checkpoint of --resume_step"),
      no_effect("gen_output_dir", o.gen_output_dir, "online evaluation scores the samples in memory; no image files are written"),
      no_effect("save_interval", o.save_interval, "--checkpointing_steps sets the checkpoints"),
      no_effect("save_last_freq", o.save_last_freq, "--checkpointing_steps sets the checkpoints"),
      no_effect("sample_grid", o.sample_grid, "--sample_grid_freq > 0 writes grids"),
      no_effect("sample_grid_n_images", o.sample_grid_n_images, "grids are --sample_grid_per_class x up to 10 classes"),
      no_effect("requeue_time", o.requeue_time, "a stopped run resumes with --resume_step"),
      no_effect("requeue_safety_margin", o.requeue_safety_margin, "a stopped run resumes with --resume_step"),
      flag("report_to", o.report_to,
           "tensorboard, wandb or all: TensorBoard event files beside log.jsonl (wandb is not linked: `wandb sync --sync-tensorboard` "
           "imports them); none: log.jsonl only"),
      no_effect("world_size", o.world_size, "the launcher (mpirun, torchrun) sets the processes"),
      no_effect("local_rank", o.local_rank, "the launcher (mpirun, torchrun) sets the processes"),
      no_effect("dist_on_itp", o.dist_on_itp, "the launcher (mpirun, torchrun) sets the processes"),
      no_effect("dist_url", o.dist_url, "the launcher (mpirun, torchrun) sets the processes"),
  };
  for (auto& f : cli::placement_flags("irepa-train-jit", o.place, '_')) fl.push_back(std::move(f));
  return fl;
}

JiTConfig model_config(const Options& o, const data::AnyDataset& ds, const std::vector<TargetEncoder>& online) {
  JiTConfig c;
  const Shape& s = ds.sample_shape();
  IREPA_CHECK(s.rank() == 3 && s[1] == s[2], "irepa-train-jit: images have shape {}, expected square [C, H, H]", s.str());
  IREPA_CHECK(o.img_size == 0 || o.img_size == s[1], "irepa-train-jit: --img_size {} but the images are {}x{}", o.img_size, s[1],
              s[2]);
  c.in_channels = s[0], c.input_size = s[1], c.num_classes = o.class_num;
  c.in_context_len = o.in_context_len;
  c.encoder_depth = o.encoder_depth, c.projector_dim = o.projector_dim, c.kernel_size = o.proj_kwargs_kernel_size;
  c.z_dims.clear();
  for (const auto& e : ds.encoders()) c.z_dims.push_back(ds.feature_shape(e)[1]);
  for (const auto& e : online) c.z_dims.push_back(e.dim);
  if (!o.enable_repa) c.z_dims.clear();
  if (o.model == "custom") {
    c.depth = o.depth, c.hidden_size = o.hidden_size, c.num_heads = o.num_heads, c.patch_size = o.patch_size;
    c.bottleneck_dim = o.bottleneck_dim, c.in_context_start = o.in_context_start;
  } else {
    apply_jit_model_name(c, o.model);
  }
  return c;
}

/// The JiT reference's recipe (train/recipes.hpp) with this run's settings, for n images.
/// --batch_size is per process, as in the reference: the global batch (and so lr = blr x batch
/// x world / 256 and the steps per epoch) is batch x world.
TrainerOptions trainer_options(const Options& o, std::int64_t n, int world) {
  TrainerOptions t;
  t.run_dir = (std::filesystem::path(o.output_dir) / o.exp_name).string();
  t.batch_size = o.batch_size * world, t.max_train_steps = o.max_train_steps, t.seed = o.seed;
  t.checkpointing_steps = o.checkpointing_steps, t.sampling_steps = o.sample_grid_freq, t.resume_step = o.resume_step;
  t.log_every = o.log_freq;
  t.overwrite = o.overwrite, t.skip_nonfinite_steps = o.skip_nonfinite_steps;
  t.log_sink = cli::report_to_sink("irepa-train-jit", "report_to", o.report_to);
  apply_jit_recipe(t, JiTRecipe{.epochs = o.epochs, .blr = o.blr, .lr = o.lr, .min_lr = o.min_lr, .lr_schedule = o.lr_schedule,
                                .warmup_epochs = o.warmup_epochs, .weight_decay = o.weight_decay, .ema_decay1 = o.ema_decay1,
                                .ema_decay2 = o.ema_decay2, .hflip = o.hflip},
                   n);
  t.label_drop_prob = o.label_drop_prob;
  t.grid = SampleSettings{.steps = o.num_sampling_steps, .heun = o.sampling_method == "heun", .cfg_scale = o.cfg,
                          .guidance_low = o.interval_min, .guidance_high = o.interval_max};
  t.classes_in_grid = std::min<std::int64_t>(o.class_num, 10), t.samples_per_class = o.sample_grid_per_class;
  // Online evaluation after every eval_freq-th epoch (and the last step); the evaluator is built on the job's device.
  if (o.online_eval) t.eval_steps = o.eval_freq * JiTRecipe{.epochs = o.epochs}.steps_per_epoch(n, t.batch_size);
  t.evaluate_only = o.evaluate_gen;
  return t;
}

JiTObjective objective(const Options& o) {
  JiTObjective obj{.P_mean = o.P_mean, .P_std = o.P_std, .noise_scale = o.noise_scale, .t_eps = o.t_eps};
  obj.proj_coeff = cli::total_proj_coeff("irepa-train-jit", o.proj_coeff, o.projection_loss_type, '_');
  return obj;
}

/// A float as Python's str() writes it (1.0, not fmt's 1): the reference's logged names.
std::string python_float(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

/// --online_eval / --evaluate_gen: the Inception weights, the reference statistics and the
/// evaluation's settings (the names logged: the reference's fid_cfg<cfg>_res<size>).
examples::OnlineEvalJob online_evaluation(const Options& o, std::int64_t img_size) {
  IREPA_CHECK(o.eval_freq > 0 && o.num_images > 0 && o.gen_bsz > 0, "irepa-train-jit: --eval_freq {}, --num_images {} and --gen_bsz {} must be positive",
              o.eval_freq, o.num_images, o.gen_bsz);
  IREPA_CHECK(!o.evaluate_gen || o.resume_step > 0, "irepa-train-jit: --evaluate_gen scores a checkpoint: give its step with --resume_step");
  std::string stats = o.fid_stats;
  if (stats.empty()) {
    IREPA_CHECK(img_size == 256 || img_size == 512,
                "irepa-train-jit: no --fid_stats, and the reference has statistics for 256 and 512 pixels only (these images are {})", img_size);
    stats = fmt::format("fid_stats/jit_in{}_stats.npz", img_size);
  }
  examples::OnlineEvalJob e;
  e.inception = o.inception;
  if (e.inception.empty())
    if (const char* env = std::getenv("IREPA_INCEPTION")) e.inception = env;
  IREPA_CHECK(!e.inception.empty(),
              "irepa-train-jit: online evaluation needs the FID Inception weights: pass --inception FILE.safetensors (or set "
              "IREPA_INCEPTION); convert torch-fidelity's weights-inception-2015-12-05-6726825d.pth with tools/convert_encoder.py");
  e.reference = metrics::stored_gaussian(io::NpzFile(stats), "mu", "sigma", InceptionV3<float>::kPool3);
  e.options = metrics::OnlineFidOptions{.num_images = o.num_images, .batch = o.gen_bsz, .num_classes = o.class_num,
                                        .seed = static_cast<std::uint64_t>(o.seed), .suffix = "_cfg" + python_float(o.cfg) + "_res" + std::to_string(img_size)};
  return e;
}

/// The run on the CPU, or on GPU N with --device cuda[:N] (train_cuda.cu).
int run(const Options& o, const examples::TrainJob& job, const HeadChoice& choice, const JiTConfig& cfg, const data::AnyDataset& ds) {
  IREPA_CHECK(ds.kind() == "images", "irepa-train-jit: JiT trains on images, but the data holds {}", ds.kind());
  if (job.launch.rank == 0)
    std::printf("learning rate %.3g (blr %.3g x batch %lld x %d processes / 256 unless --lr), %lld steps\n", job.options.schedule.lr, o.blr,
                static_cast<long long>(o.batch_size), job.launch.world, static_cast<long long>(job.options.max_train_steps));
  examples::run_training<examples::JiTFamily>("irepa-train-jit", job, choice, cfg, objective(o), ds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<irepa::DistributedJob> dj;  // first: an mpirun job starts MPI here
  try {
    dj.emplace(&argc, &argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", "irepa-train-jit", e.what());
    return 1;
  }
  Options o;
  auto fl = flags(o);
  if (const int status =
          cli::parse("irepa-train-jit", "irepa-train-jit: JiT (pixel-space, x-prediction) with REPA / iREPA alignment", argc, argv, fl);
      status >= 0)
    return status;
  try {
    IREPA_CHECK(o.batch_size > 0 && o.epochs > 0 && o.max_train_steps >= 0 && o.checkpointing_steps > 0 && o.log_freq > 0,
                "irepa-train-jit: --batch_size, --epochs, --checkpointing_steps and --log_freq must be positive");
    IREPA_CHECK(o.attn_dropout == 0 && o.proj_dropout == 0, "irepa-train-jit: --attn_dropout {} / --proj_dropout {}: dropout is not implemented (0, the reference's default)",
                o.attn_dropout, o.proj_dropout);
    IREPA_CHECK(o.start_epoch == 0 && o.resume.empty(),
                "irepa-train-jit: --start_epoch / --resume are the reference's way to continue; here --resume_step N continues from checkpoints/");
    int device = cli::check_placement("irepa-train-jit", o.place);
    if (device >= 0 && o.place.device == "cuda" && dj->distributed()) device = dj->launch().local_rank;  // one GPU per local rank
    const nlohmann::json config_json = cli::resolved(fl);
    const HeadChoice choice{.projection = o.projection_layer_type, .spnorm = o.spnorm_method, .zscore_alpha = o.zscore_alpha};
    (void)objective(o);  // a bad --proj_coeff or sampler is refused before the data is read
    IREPA_CHECK(o.sampling_method == "heun" || o.sampling_method == "euler",
                "irepa-train-jit: --sampling_method '{}' is not known (heun or euler)", o.sampling_method);
    auto run_on = [&](const data::AnyDataset& ds) {
      auto job = examples::make_job(static_cast<std::uint64_t>(o.seed), trainer_options(o, ds.size(), dj->launch().world), config_json, dj->threads(o.place.threads),
                                    device, o.place.matmul_precision, o.place.attention);
      job.launch = dj->launch();
      if (o.enable_repa) job.online = make_target_encoders(o.enc_type, ds.sample_shape()[1], o.encoder_dir);
      if (o.online_eval || o.evaluate_gen) job.online_eval = online_evaluation(o, ds.sample_shape()[1]);
      return run(o, job, choice, model_config(o, ds, job.online), ds);
    };
    if (o.dataset == "fashion-mnist")
      return run_on(data::AnyDataset(data::ImageDataset::fashion_mnist(o.data_path.empty() ? data::kFashionMnistDir : o.data_path)));
    IREPA_CHECK(o.dataset == "shards" || o.dataset == "imagenet" || o.dataset == "image-folder",
                "irepa-train-jit: --dataset '{}' is not known; expected shards, imagenet, image-folder or fashion-mnist", o.dataset);
    IREPA_CHECK(!o.data_path.empty(), "irepa-train-jit: --data_path is required (a folder of safetensors image shards, or an ImageFolder)");
    if (o.dataset != "shards") {  // the reference's ImageFolder(center_crop_arr(img_size)); flips come from the recipe
      const std::int64_t size = o.img_size > 0 ? o.img_size : 256;
      return run_on(data::AnyDataset(data::ImageFolder(o.data_path, size, dj->threads(o.place.threads))));
    }
    return run_on(data::AnyDataset(data::ShardedDataset(o.data_path)));
  } catch (const std::exception& e) {
    if (dj->distributed()) dj->stop("irepa-train-jit", e);  // names the rank and ends every process of the job
    std::fprintf(stderr, "irepa-train-jit: %s\n", e.what());
    return 1;
  }
}
