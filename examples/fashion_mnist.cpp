// irepa-fashion: the embedded default job. A small SiT learns Fashion-MNIST on the CPU with iREPA
// aligned to the weight-free HOG target (a 3x3 conv projector over the 7x7 token grid, spatial
// z-score of the HOG tokens), then samples every class with the EMA weights and classifier-free
// guidance, and scores the samples against held-out real images.
//
//   irepa-fashion                       # iREPA, writes runs/fashion-mnist/
//   irepa-fashion --compare             # no alignment, REPA and iREPA, same steps and seed
//   irepa-fashion --steps 300 --output-dir /tmp/quick
//
// Output folder: samples.png (one row per class), loss_curves.png, log.jsonl, checkpoints/,
// args.json, report.md; with --compare one folder per method plus compare.md and
// compare_losses.png.
//
// Quality numbers (report.md): a one-hidden-layer classifier that this program trains on HOG
// features of 30,000 training images (accuracy on the 10,000 test images is reported) scores
// (1) class accuracy: samples classified as the class they were generated for, and (2) FD-HOG:
// the Frechet distance between the classifier's hidden features of the samples and of as many
// held-out test images, next to the same distance between real training and test images (the
// floor at that sample count).

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include <irepa/irepa.hpp>
#include <irepa/data/fashion_mnist.hpp>
#include <irepa/io/plot.hpp>
#include <irepa/metrics/classifier.hpp>
#include <irepa/metrics/frechet.hpp>
#include <irepa/models/hog.hpp>
#include <irepa/train/tensorboard.hpp>
#include <irepa/train/trainer.hpp>
#include "fail_safe.hpp"
#include <irepa/io/files.hpp>

namespace {

using namespace irepa;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string output_dir = "runs/fashion-mnist", data_dir = data::kFashionMnistDir, alignment = "irepa";
  bool compare = false, overwrite = false;
  // Sized so that the job (after the build) takes 6-8 minutes on a 2-core machine.
  std::int64_t steps = 1400, batch_size = 64, seed = 0, eval_per_class = 50, log_every = 100;
  std::int64_t depth = 4, hidden_size = 96, num_heads = 2, encoder_depth = 2;
  // EMA 0.995: a run this short needs an average over its last few hundred steps; the reference's
  // 0.9999 would still hold most of the initial weights.
  double learning_rate = 1e-3, ema_decay = 0.995, proj_coeff = 0.5, cfg_scale = 2.0;
  int sample_steps = 30, threads = 0;
};

struct Method {
  std::string key, title;
  HeadChoice head;
  bool aligned;
};

Method method(const std::string& k) {
  if (k == "irepa") return {"irepa", "iREPA (conv 3x3 + spatial z-score)", {"conv", "zscore", 0.6}, true};
  if (k == "repa") return {"repa", "REPA (MLP projector)", {"mlp", "none", 0.6}, true};
  if (k == "none") return {"none", "no alignment", {"mlp", "none", 0.6}, false};
  fail("irepa-fashion: --alignment '{}' is not known; expected irepa, repa or none", k);
}

const char* kTarget = "hog-x-g7_d128";  // 7x7 tokens (28 / patch 4), 8 orientations x 4x4 cells

/// What the evaluation needs once per program run: the classifier and the real images' features.
struct Judge {
  HogEncoder features{"hog-x-g4_d128", 28};  // 16 tokens x 128 = 2048 values per image
  metrics::MlpClassifier<> clf{2048, 10, {.hidden = 128, .epochs = 6, .seed = 5}};
  double test_accuracy = 0, fd_floor = 0;
  Tensor<float> test_hidden;  // [n_eval, 128]: held-out real images
  std::int64_t train_images = 0;
  double seconds = 0;

  Tensor<float> hog(const CpuContext& ctx, ConstView<float> x_0_255) const {
    Tensor<float> f = features.encode(ctx, x_0_255);  // [N, 16, 128]
    return Tensor<float>::copy_of(f.cview().reshape(Shape{f.size(0), 2048}));
  }
};

Tensor<float> images_of(const data::FashionMnist& d, const std::vector<std::int64_t>& idx) {
  Tensor<float> x(Shape{static_cast<std::int64_t>(idx.size()), 1, 28, 28});
  for (std::size_t i = 0; i < idx.size(); ++i)
    for (std::int64_t k = 0; k < 784; ++k) x[static_cast<std::int64_t>(i) * 784 + k] = d.images[idx[i] * 784 + k];
  return x;
}

/// The first `per_class` images of each class, in class order.
std::vector<std::int64_t> balanced(const data::FashionMnist& d, std::int64_t per_class, std::int64_t skip = 0) {
  std::vector<std::int64_t> out;
  for (std::int64_t c = 0; c < 10; ++c) {
    std::int64_t seen = 0;
    for (std::int64_t i = 0; i < d.size() && static_cast<std::int64_t>(out.size()) < (c + 1) * per_class; ++i)
      if (d.labels[i] == c && seen++ >= skip) out.push_back(i);
  }
  return out;
}

Judge make_judge(const CpuContext& ctx, const data::FashionMnist& train, const data::FashionMnist& test, std::int64_t n_eval_per_class) {
  const auto t0 = Clock::now();
  Judge j;
  const auto fit_idx = data::epoch_permutation(train.size(), 99, 0);
  std::vector<std::int64_t> idx(fit_idx.begin(), fit_idx.begin() + std::min<std::int64_t>(30000, train.size()));
  const auto xf = j.hog(ctx, images_of(train, idx));
  Tensor<std::int64_t> yf(Shape{static_cast<std::int64_t>(idx.size())});
  for (std::size_t i = 0; i < idx.size(); ++i) yf[static_cast<std::int64_t>(i)] = train.labels[idx[i]];
  j.clf.fit(ctx, xf, yf);
  j.train_images = static_cast<std::int64_t>(idx.size());
  std::vector<std::int64_t> all(static_cast<std::size_t>(test.size()));
  for (std::int64_t i = 0; i < test.size(); ++i) all[static_cast<std::size_t>(i)] = i;
  j.test_accuracy = j.clf.accuracy(ctx, j.hog(ctx, images_of(test, all)), test.labels);
  j.test_hidden = j.clf.hidden(ctx, j.hog(ctx, images_of(test, balanced(test, n_eval_per_class))));
  // Floor: real training images (not among the classifier's) against the same test images.
  std::vector<std::int64_t> rest(fit_idx.begin() + static_cast<std::ptrdiff_t>(idx.size()), fit_idx.end());
  data::FashionMnist held{Tensor<std::uint8_t>::copy_of(train.images), Tensor<std::int64_t>::copy_of(train.labels)};
  std::vector<std::int64_t> floor_idx;
  for (std::int64_t c = 0; c < 10; ++c) {
    std::int64_t n = 0;
    for (auto i : rest)
      if (train.labels[i] == c && n < n_eval_per_class) floor_idx.push_back(i), ++n;
  }
  j.fd_floor = metrics::frechet_distance<float>(j.clf.hidden(ctx, j.hog(ctx, images_of(train, floor_idx))), j.test_hidden);
  j.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return j;
}

struct Outcome {
  Method m;
  std::vector<TrainRecord> history;
  double train_seconds = 0, images_per_second = 0, sample_seconds = 0;
  double class_accuracy = 0, fd = 0;
  std::int64_t params = 0;
};

double mean_last(const std::vector<TrainRecord>& h, double TrainRecord::*f, std::size_t n) {
  double s = 0;
  const std::size_t a = h.size() > n ? h.size() - n : 0;
  for (std::size_t i = a; i < h.size(); ++i) s += h[i].*f;
  return h.size() > a ? s / static_cast<double>(h.size() - a) : NAN;
}

std::vector<io::PlotPanel> loss_panels(const std::vector<Outcome>& runs) {
  io::PlotPanel den{"denoising loss (moving average, 100 steps)", "step", "loss", {}};
  io::PlotPanel ali{"alignment loss: -cos(projected tokens, HOG tokens)", "step", "loss", {}};
  for (const auto& r : runs) {
    std::vector<double> x, d, a;
    for (const auto& h : r.history) x.push_back(static_cast<double>(h.step)), d.push_back(h.denoising), a.push_back(h.alignment);
    den.series.push_back({r.m.key, x, io::moving_average(d, 100)});
    if (r.m.aligned) ali.series.push_back({r.m.key, x, io::moving_average(a, 100)});
  }
  if (ali.series.empty()) return {den};
  return {den, ali};
}

Outcome run_method(const CpuContext& ctx, const Options& o, const Method& m, const fs::path& dir, const data::ImageDataset& ds,
                   const Judge& judge) {
  SiTConfig cfg;
  cfg.input_size = 28, cfg.in_channels = 1, cfg.num_classes = 10, cfg.class_dropout_prob = 0.1;
  cfg.depth = o.depth, cfg.hidden_size = o.hidden_size, cfg.num_heads = o.num_heads, cfg.patch_size = 4;
  cfg.encoder_depth = o.encoder_depth, cfg.projector_dim = 4 * o.hidden_size, cfg.kernel_size = 3;
  std::vector<TargetEncoder> online;
  if (m.aligned) online.push_back(make_target_encoder(kTarget, 28));
  cfg.z_dims.clear();
  for (const auto& e : online) cfg.z_dims.push_back(e.dim);
  TrainerOptions to;
  to.run_dir = dir.string(), to.batch_size = o.batch_size, to.max_train_steps = o.steps, to.seed = o.seed;
  to.checkpointing_steps = o.steps, to.log_every = o.log_every;
  to.schedule = LrSchedule{.kind = LrSchedule::Kind::Constant, .lr = o.learning_rate};
  to.ema_decays = {o.ema_decay};
  to.label_drop_prob = 0.1;
  to.overwrite = o.overwrite;
  to.log_sink = tensorboard_sink();  // `tensorboard --logdir <out>` shows the methods side by side
  const SiTObjective objective{.proj_coeff = m.aligned ? o.proj_coeff : 0.0};
  const nlohmann::json args = {{"job", "irepa-fashion"},
                               {"method", m.key},
                               {"target", m.aligned ? kTarget : "none"},
                               {"projection", m.head.projection},
                               {"spnorm", m.head.spnorm},
                               {"steps", o.steps},
                               {"batch_size", o.batch_size},
                               {"seed", o.seed},
                               {"depth", o.depth},
                               {"hidden_size", o.hidden_size},
                               {"num_heads", o.num_heads},
                               {"patch_size", 4},
                               {"encoder_depth", o.encoder_depth},
                               {"learning_rate", o.learning_rate},
                               {"ema_decay", o.ema_decay},
                               {"proj_coeff", m.aligned ? o.proj_coeff : 0.0},
                               {"cfg_scale", o.cfg_scale},
                               {"sample_steps", o.sample_steps}};
  // Only the two heads this job uses are compiled (with_head would instantiate all six).
  auto go = [&](auto head) {
    using Model = SiT<Dynamic, DynamicPatch, decltype(head), float>;
    Model model(cfg, head);
    model.init(static_cast<std::uint64_t>(o.seed));
    std::printf("== %s: SiT depth %lld, width %lld, %lld heads, patch 4 on 28x28 (49 tokens), %lld parameters; target %s\n",
                m.title.c_str(), static_cast<long long>(o.depth), static_cast<long long>(o.hidden_size),
                static_cast<long long>(o.num_heads), static_cast<long long>(model.num_params()), m.aligned ? kTarget : "none");
    std::fflush(stdout);
    const auto res = train(ctx, to, model, objective, ds, online, args);
    Outcome out{m, res.history, res.seconds, res.images_per_second, 0, 0, 0, model.num_params()};
    Model ema(cfg, head);
    ema.params().values().copy_from(res.ema.view());

    const auto t0 = Clock::now();
    std::printf("sampling %lld images (EMA weights, Euler %d steps, CFG %.1f) ...\n", static_cast<long long>(10 * o.eval_per_class),
                o.sample_steps, o.cfg_scale);
    std::fflush(stdout);
    const auto y = class_grid_labels(10, o.eval_per_class);  // [10 * per_class], class-major
    const auto x = sample_sit(ctx, ema, y.cview(), static_cast<std::uint64_t>(o.seed),
                              SamplerOptions{.kind = SamplerKind::Euler, .num_steps = o.sample_steps, .cfg_scale = o.cfg_scale,
                                             .path = objective.path});
    out.sample_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    // Grid: the first 10 samples of each class, one row per class.
    const std::int64_t cols = std::min<std::int64_t>(10, o.eval_per_class);
    Tensor<double> grid(Shape{10 * cols, 1, 28, 28});
    for (std::int64_t c = 0; c < 10; ++c)
      for (std::int64_t j = 0; j < cols; ++j)
        std::copy_n(x.data() + (c * o.eval_per_class + j) * 784, 784, grid.data() + (c * cols + j) * 784);
    io::write_image_grid<double>((dir / "samples.png").string(), grid, io::GridOptions{.columns = cols, .scale = 2});
    // Scores: samples in 0..255 (as the real images), classified and compared in HOG space.
    Tensor<float> px(x.shape());
    for (std::int64_t i = 0; i < x.numel(); ++i) px[i] = static_cast<float>(std::clamp((x[i] + 1.0) * 127.5, 0.0, 255.0));
    const auto f = judge.hog(ctx, px);
    out.class_accuracy = judge.clf.accuracy(ctx, f, y);
    out.fd = metrics::frechet_distance<float>(judge.clf.hidden(ctx, f), judge.test_hidden);
    io::write_line_plot((dir / "loss_curves.png").string(), loss_panels({out}));
    return out;
  };
  if (m.head.projection == "conv") return go(iREPAHead<ConvProjector<0>, SpatialNorm>{SpatialNorm{.alpha = m.head.zscore_alpha}});
  return go(REPAHead{});
}

std::string fmt_seconds(double s) { return format_duration(s); }

void write_report(const fs::path& path, const Options& o, const Outcome& r, const Judge& j) {
  std::ostringstream f;
  f << "# irepa-fashion: " << r.m.title << " on Fashion-MNIST\n\n";
  f << "| setting | value |\n|---|---|\n";
  f << fmt::format("| model | SiT, depth {}, width {}, {} heads, patch 4 on 28x28 grey (49 tokens), {} parameters |\n", o.depth,
                   o.hidden_size, o.num_heads, r.params);
  f << fmt::format("| alignment | {}; target {}, after block {}, coefficient {} |\n", r.m.title, r.m.aligned ? kTarget : "none",
                   o.encoder_depth, r.m.aligned ? o.proj_coeff : 0.0);
  f << fmt::format("| training | {} steps x batch {}, AdamW lr {}, EMA {}, label drop 0.1, linear path, seed {} |\n", o.steps,
                   o.batch_size, o.learning_rate, o.ema_decay, o.seed);
  f << fmt::format("| sampling | EMA weights, Euler ODE {} steps, CFG scale {} |\n\n", o.sample_steps, o.cfg_scale);
  f << "| result | value |\n|---|---|\n";
  f << fmt::format("| denoising loss, mean of the last 100 steps | {:.4f} (first 100: {:.4f}) |\n",
                   mean_last(r.history, &TrainRecord::denoising, 100),
                   [&] {
                     double s = 0;
                     const std::size_t n = std::min<std::size_t>(100, r.history.size());
                     for (std::size_t i = 0; i < n; ++i) s += r.history[i].denoising;
                     return n ? s / static_cast<double>(n) : NAN;
                   }());
  if (r.m.aligned)
    f << fmt::format("| alignment loss, mean of the last 100 steps | {:.4f} |\n", mean_last(r.history, &TrainRecord::alignment, 100));
  f << fmt::format("| class accuracy of {} samples (classifier's test accuracy on real images: {:.1f}%) | {:.1f}% |\n",
                   10 * o.eval_per_class, 100 * j.test_accuracy, 100 * r.class_accuracy);
  f << fmt::format("| FD-HOG, samples vs {} test images (real train vs test: {:.2f}) | {:.2f} |\n", 10 * o.eval_per_class, j.fd_floor,
                   r.fd);
  f << fmt::format("| training time | {} ({:.0f} img/s) |\n", fmt_seconds(r.train_seconds), r.images_per_second);
  f << fmt::format("| sampling time | {} |\n\n", fmt_seconds(r.sample_seconds));
  f << "How the scores are made: a one-hidden-layer classifier (128 ReLU units) trained by this program on HOG features "
       "(hog-x-g4_d128: 16 positions x 128) of "
    << j.train_images
    << " training images. *Class accuracy*: share of samples it assigns to the class they were generated for. *FD-HOG*: "
       "Frechet distance between Gaussians fitted to its hidden features of the samples and of the same number of "
       "held-out test images (10 classes, equal counts); the real-vs-real value is the floor at this sample count.\n\n"
       "Files: samples.png (one row per class: T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, "
       "Ankle boot), loss_curves.png, log.jsonl (every step), checkpoints/, args.json.\n";
  io::write_file_atomic(path.string(), f.str(), "irepa-fashion");
}

void write_compare(const fs::path& dir, const Options& o, const std::vector<Outcome>& runs, const Judge& j) {
  std::ostringstream f;
  f << fmt::format("# Fashion-MNIST: no alignment vs REPA vs iREPA ({} steps x batch {}, seed {}, target {})\n\n", o.steps,
                   o.batch_size, o.seed, kTarget);
  f << "| method | denoising loss (last 100 steps) | alignment loss (last 100) | class accuracy | FD-HOG | train time |\n";
  f << "|---|---|---|---|---|---|\n";
  for (const auto& r : runs)
    f << fmt::format("| {} | {:.4f} | {} | {:.1f}% | {:.2f} | {} |\n", r.m.title, mean_last(r.history, &TrainRecord::denoising, 100),
                     r.m.aligned ? fmt::format("{:.4f}", mean_last(r.history, &TrainRecord::alignment, 100)) : "-",
                     100 * r.class_accuracy, r.fd, fmt_seconds(r.train_seconds));
  f << fmt::format("\nReal images: the classifier's test accuracy {:.1f}%; FD-HOG real train vs test {:.2f} ({} images each).\n",
                   100 * j.test_accuracy, j.fd_floor, 10 * o.eval_per_class);
  f << "Lower FD-HOG and higher class accuracy are better. One seed: differences of a point or two are within noise.\n";
  io::write_file_atomic((dir / "compare.md").string(), f.str(), "irepa-fashion");
  io::write_line_plot((dir / "compare_losses.png").string(), loss_panels(runs));
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"irepa-fashion: a small SiT learns Fashion-MNIST with iREPA aligned to HOG targets, on the CPU"};
  app.add_option("--output-dir", o.output_dir, "output folder")->capture_default_str();
  app.add_option("--data-dir", o.data_dir, "Fashion-MNIST idx .gz files (Debian's dataset-fashion-mnist)")->capture_default_str();
  app.add_option("--alignment", o.alignment, "irepa, repa or none")->capture_default_str();
  app.add_flag("--compare", o.compare, "run none, repa and irepa with the same steps and seed; write compare.md and compare_losses.png");
  app.add_option("--steps", o.steps, "training steps")->capture_default_str();
  app.add_option("--batch-size", o.batch_size, "images per step")->capture_default_str();
  app.add_option("--seed", o.seed, "seed of initialisation, data order, noise and sampling")->capture_default_str();
  app.add_option("--depth", o.depth, "SiT blocks")->capture_default_str();
  app.add_option("--hidden-size", o.hidden_size, "SiT width")->capture_default_str();
  app.add_option("--num-heads", o.num_heads, "attention heads")->capture_default_str();
  app.add_option("--encoder-depth", o.encoder_depth, "align the tokens after this block")->capture_default_str();
  app.add_option("--learning-rate", o.learning_rate, "AdamW learning rate")->capture_default_str();
  app.add_option("--ema-decay", o.ema_decay, "EMA decay")->capture_default_str();
  app.add_option("--proj-coeff", o.proj_coeff, "alignment loss coefficient")->capture_default_str();
  app.add_option("--cfg-scale", o.cfg_scale, "classifier-free guidance scale for the samples")->capture_default_str();
  app.add_option("--sample-steps", o.sample_steps, "Euler steps per sample")->capture_default_str();
  app.add_option("--eval-per-class", o.eval_per_class, "samples per class for the scores (the grid shows 10)")->capture_default_str();
  app.add_option("--log-every", o.log_every, "progress line every N steps")->capture_default_str();
  app.add_option("--threads", o.threads, "CPU threads (0: all cores)")->capture_default_str();
  app.add_flag("--overwrite", o.overwrite, "start again in an output folder that holds an earlier run (its checkpoints and logs are deleted)");
  CLI11_PARSE(app, argc, argv);
  try {
    IREPA_CHECK(o.steps > 0 && o.batch_size > 0 && o.eval_per_class >= 2 && o.sample_steps > 0 && o.log_every > 0,
                "irepa-fashion: --steps, --batch-size, --sample-steps, --log-every must be positive and --eval-per-class >= 2");
    const auto start = Clock::now();
    CpuContext ctx(o.threads);
    const auto train = data::FashionMnist::load(o.data_dir, "train");
    const auto test = data::FashionMnist::load(o.data_dir, "test");
    const data::ImageDataset ds(Tensor<std::uint8_t>::copy_of(train.images.cview().reshape(Shape{train.size(), 1, 28, 28})),
                                Tensor<std::int64_t>::copy_of(train.labels));
    std::vector<Method> methods;
    if (o.compare)
      methods = {method("none"), method("repa"), method("irepa")};
    else
      methods = {method(o.alignment)};
    std::printf("Fashion-MNIST: %lld training, %lld test images; %zu method(s), %lld steps each; output %s\n",
                static_cast<long long>(train.size()), static_cast<long long>(test.size()), methods.size(),
                static_cast<long long>(o.steps), o.output_dir.c_str());
    std::printf("training the scoring classifier on HOG features ...\n");
    std::fflush(stdout);
    const Judge judge = make_judge(ctx, train, test, o.eval_per_class);
    std::printf("scoring classifier: %.1f%% on the test images, real-vs-real FD-HOG %.2f (%s)\n", 100 * judge.test_accuracy,
                judge.fd_floor, fmt_seconds(judge.seconds).c_str());
    std::vector<Outcome> runs;
    for (const auto& m : methods) {
      const fs::path dir = o.compare ? fs::path(o.output_dir) / m.key : fs::path(o.output_dir);
      runs.push_back(run_method(ctx, o, m, dir, ds, judge));
      write_report(dir / "report.md", o, runs.back(), judge);
      std::printf("%s: class accuracy %.1f%%, FD-HOG %.2f (real %.2f); wrote %s\n", m.key.c_str(), 100 * runs.back().class_accuracy,
                  runs.back().fd, judge.fd_floor, (dir / "report.md").c_str());
      std::fflush(stdout);
    }
    if (o.compare) {
      write_compare(o.output_dir, o, runs, judge);
      std::printf("wrote %s\n", (fs::path(o.output_dir) / "compare.md").c_str());
    }
    std::printf("done in %s\n", fmt_seconds(std::chrono::duration<double>(Clock::now() - start).count()).c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "irepa-fashion: %s\n", e.what());
    return 1;
  }
}
