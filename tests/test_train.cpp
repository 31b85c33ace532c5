// Training machinery over the flat arena: AdamW and gradient clipping against PyTorch's values
// (scripts/golden/make_optim_values.py, torch 1.13, float64), EMA, learning-rate schedules.

#include <cmath>
#include <cstring>

#include "irepa/core/arena.hpp"
#include "irepa/train/optim.hpp"
#include "test_support.hpp"

using namespace irepa;

namespace {
/// Two parameters as a model would name them: a weight (default [2, 2]) and a bias ([2]).
template <class T = double>
struct TwoParams {
  using scalar_type = T;
  using device_type = Cpu;
  Param<T> w, b;
  explicit TwoParams(Shape ws = Shape{2, 2}, Shape bs = Shape{2}) : w(ws), b(bs) {}
  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    v(join_name(prefix, "lin.weight"), w);
    v(join_name(prefix, "lin.bias"), b);
  }
};
struct OneParam {
  using scalar_type = double;
  using device_type = Cpu;
  Param<double> p;
  template <class V>
  void visit_params(V&& v, std::string_view) {
    v("x", p);
  }
};
}  // namespace

TEST_CASE("AdamW follows PyTorch: decoupled decay on weights only, bias correction, eps outside the root", "[train][optim]") {
  TwoParams<> m;
  ParamArena<double> arena(m);
  const double w0[] = {1.0, -2.0, 0.5, 0.25}, b0[] = {0.3, -0.1};
  std::copy_n(w0, 4, m.w.value.data());
  std::copy_n(b0, 2, m.b.value.data());
  AdamW<double> opt(arena, AdamWOptions{.lr = 0.1, .weight_decay = 0.1, .decay = decay_weights_only});
  const double gw[3][4] = {{0.5, -1.0, 2.0, 0.0}, {-0.2, 0.4, 1.0, 3.0}, {0.3, 0.3, -0.5, 1e-3}};
  const double gb[3][2] = {{0.1, -0.3}, {0.0, 0.2}, {-1.0, 0.5}};
  // torch.optim.AdamW after each step
  const double want_w[3][4] = {{0.890000002, -1.880000001, 0.3950000005, 0.2475},
                               {0.8465394180965108, -1.826639416652626, 0.2978320372035104, 0.17061131799400353},
                               {0.7836299894801902, -1.7997950276618335, 0.23848757960340358, 0.11136191176902702}};
  const double want_b[3][2] = {{0.200000009999999, -3.3333332205565114e-09},
                               {0.1329941940647696, 0.01445204907140318},
                               {0.19141038941067326, -0.030847041303891373}};
  CpuContext ctx(2);
  for (int s = 0; s < 3; ++s) {
    std::copy_n(gw[s], 4, m.w.grad.data());
    std::copy_n(gb[s], 2, m.b.grad.data());
    opt.step(ctx, arena, 0.1);
    for (int i = 0; i < 4; ++i) CHECK(m.w.value[i] == Approx(want_w[s][i]).epsilon(1e-12).margin(1e-15));
    for (int i = 0; i < 2; ++i) CHECK(m.b.value[i] == Approx(want_b[s][i]).epsilon(1e-9).margin(1e-15));
  }
  CHECK(opt.steps() == 3);
}

namespace {
/// Five parameters in the order weight, weight, bias, bias, weight (decay flags 1 1 0 0 1).
struct FiveParams {
  using scalar_type = double;
  using device_type = Cpu;
  Param<double> w1{Shape{3, 5}}, w2{Shape{4, 2}}, b1{Shape{7}}, b2{Shape{3}}, w3{Shape{2, 6}};
  template <class V>
  void visit_params(V&& v, std::string_view) {
    v("a.weight", w1), v("b.weight", w2), v("a.bias", b1), v("b.bias", b2), v("c.weight", w3);
  }
};
}  // namespace

TEST_CASE("AdamW segments: merged runs of one decay flag for the GPU and one per parameter on the CPU with torch's update per value", "[train][optim]") {
  FiveParams m;
  ParamArena<double> arena(m);
  // The GPU's merged runs: {w1 w2}, {b1 b2}, {w3}; one run when everything decays.
  const auto runs = adamw_segments(arena, decay_weights_only, /*merge=*/true);
  REQUIRE(runs.size() == 3);
  CHECK((runs[0].offset == 0 && runs[0].count == 15 + 8 && runs[0].decay));
  CHECK((runs[1].offset == 23 && runs[1].count == 7 + 3 && !runs[1].decay));
  CHECK((runs[2].offset == 33 && runs[2].count == 12 && runs[2].decay));
  CHECK(adamw_segments(arena, DecayPredicate{}, true).size() == 1);
  CHECK(adamw_segments(arena, decay_weights_only, false).size() == 5);
  test::rng().normal(arena.values());
  const Tensor<double> start = Tensor<double>::copy_of(arena.values());
  const AdamWOptions o{.lr = 0.05, .weight_decay = 0.3, .decay = decay_weights_only};
  AdamW<double> opt(arena, o);
  CHECK(opt.segments() == 5);  // the CPU keeps one per parameter (its rounding follows the blocks)
  CpuContext ctx(2);
  std::vector<Tensor<double>> g;
  for (int s = 1; s <= 3; ++s) {
    g.emplace_back(Shape{arena.numel()});
    test::rng().normal(g.back().view());
    arena.grads().copy_from(g.back().cview());
    opt.step(ctx, arena, o.lr);
  }
  // Each value by hand (torch's AdamW), decayed only when its parameter is a weight.
  std::int64_t checked = 0;
  for (const auto& e : arena.entries()) {
    const double keep = e.shape.rank() >= 2 ? 1 - o.lr * o.weight_decay : 1.0;
    for (std::int64_t i = e.offset; i < e.offset + e.shape.numel(); ++i, ++checked) {
      double p = start[i], mm = 0, vv = 0;
      for (int s = 1; s <= 3; ++s) {
        const double gi = g[static_cast<std::size_t>(s - 1)][i];
        mm = o.beta1 * mm + (1 - o.beta1) * gi;
        vv = o.beta2 * vv + (1 - o.beta2) * gi * gi;
        const double bc1 = 1 - std::pow(o.beta1, s), bc2 = 1 - std::pow(o.beta2, s);
        p = p * keep - o.lr / bc1 * mm / (std::sqrt(vv) / std::sqrt(bc2) + o.eps);
      }
      INFO(e.name << "[" << i - e.offset << "]");
      CHECK(arena.values()[i] == Approx(p).epsilon(1e-12).margin(1e-15));
    }
  }
  CHECK(checked == arena.numel());
}

TEST_CASE("clip_grad_norm returns the global norm and scales as torch does", "[train][optim]") {
  TwoParams<> m;
  ParamArena<double> arena(m);
  const double g[] = {3.0, 4.0, 0.0, 0.0, 12.0, 0.0};  // norm 13
  std::copy_n(g, 6, arena.grads().data());
  CpuContext ctx(2);
  CHECK(clip_grad_norm(ctx, arena, 100.0) == Approx(13.0));
  CHECK(arena.grads()[4] == 12.0);  // below the threshold: untouched
  CHECK(clip_grad_norm(ctx, arena, 5.0) == Approx(13.0));
  const double want[] = {1.1538460650887643, 1.5384614201183524, 0.0, 0.0, 4.615384260355057, 0.0};  // torch
  for (int i = 0; i < 6; ++i) CHECK(arena.grads()[i] == Approx(want[i]).epsilon(1e-12));

  // A large random arena: the norm of the parallel reduction is the serial one.
  OneParam one{Param<double>{Shape{1000, 37}}};
  ParamArena<double> a2(one);
  test::rng().normal(a2.grads());
  double ss = 0;
  for (std::int64_t i = 0; i < a2.numel(); ++i) ss += a2.grads()[i] * a2.grads()[i];
  CHECK(clip_grad_norm(ctx, a2, 1.0) == Approx(std::sqrt(ss)).epsilon(1e-12));
  double after = 0;
  for (std::int64_t i = 0; i < a2.numel(); ++i) after += a2.grads()[i] * a2.grads()[i];
  CHECK(std::sqrt(after) == Approx(1.0).epsilon(1e-5));
  a2.grads()[17] = std::nan("");
  REQUIRE_IREPA_ERROR(clip_grad_norm(ctx, a2, 1.0), "gradient norm is nan");
}

TEST_CASE("EMA starts as a copy and moves every k steps", "[train][ema]") {
  TwoParams<> m;
  ParamArena<double> arena(m);
  test::rng().normal(arena.values());
  const Tensor<double> start = Tensor<double>::copy_of(arena.values());
  Ema<double> fast(arena, 0.5), slow(arena, 0.9, 2);
  CHECK(test::rel_error(fast.values(), start) == 0.0);
  CpuContext ctx(1);
  arena.values().fill(1.0);
  fast.update(ctx, arena, 1);
  slow.update(ctx, arena, 1);  // not a multiple of 2: unchanged
  for (int i = 0; i < 6; ++i) {
    CHECK(fast.values()[i] == Approx(0.5 * start[i] + 0.5));
    CHECK(slow.values()[i] == start[i]);
  }
  slow.update(ctx, arena, 2);
  for (int i = 0; i < 6; ++i) CHECK(slow.values()[i] == Approx(0.9 * start[i] + 0.1));
}

TEST_CASE("the fused step (clip factor, AdamW, EMAs in one pass) equals clip_grad_norm + step + Ema::update bit for bit", "[train][optim]") {
  CpuContext ctx(2);
  // Both decay groups (weight and bias); sizes that split unevenly over threads.
  TwoParams<float> n1(Shape{301, 17}, Shape{45}), n2(Shape{301, 17}, Shape{45});
  ParamArena<float> a1(n1), a2(n2);
  test::rng().normal(a1.values());
  std::copy_n(a1.values().data(), a1.numel(), a2.values().data());
  const AdamWOptions o{.lr = 3e-3, .weight_decay = 0.05, .decay = decay_weights_only};
  AdamW<float> sep(a1, o), fused(a2, o);
  Ema<float> e1a(a1, 0.9), e1b(a1, 0.5, 2), e2a(a2, 0.9), e2b(a2, 0.5, 2);
  bool clipped = false, unclipped = false;
  for (std::int64_t s = 1; s <= 5; ++s) {
    test::rng().normal(a1.grads());
    if (s % 2 == 0) a1.grads().flat() = a1.grads().flat() * 1e-3f;  // small: no clipping on these steps
    std::copy_n(a1.grads().data(), a1.numel(), a2.grads().data());
    const double max_norm = 2.0;
    const double gn1 = clip_grad_norm(ctx, a1, max_norm);
    sep.step(ctx, a1, 1e-3 * static_cast<double>(s));
    e1a.update(ctx, a1, s);
    e1b.update(ctx, a1, s);
    const double gn2 = grad_norm(ctx, a2);
    CHECK(gn2 == gn1);
    (clip_coefficient(gn2, max_norm) < 1.0 ? clipped : unclipped) = true;
    fused.step(ctx, a2, 1e-3 * static_cast<double>(s), clip_coefficient(gn2, max_norm), {&e2a, &e2b}, s);
    REQUIRE(std::memcmp(a1.values().data(), a2.values().data(), sizeof(float) * static_cast<std::size_t>(a1.numel())) == 0);
    REQUIRE(std::memcmp(sep.exp_avg_sq().data(), fused.exp_avg_sq().data(), sizeof(float) * static_cast<std::size_t>(a1.numel())) == 0);
    REQUIRE(std::memcmp(e1a.values().data(), e2a.values().data(), sizeof(float) * static_cast<std::size_t>(a1.numel())) == 0);
    REQUIRE(std::memcmp(e1b.values().data(), e2b.values().data(), sizeof(float) * static_cast<std::size_t>(a1.numel())) == 0);
  }
  CHECK(clipped);
  CHECK(unclipped);
  CHECK(fused.steps() == 5);
  // The fused step leaves the gradients as they were (the clip factor is applied as they are read).
  const float g0 = a2.grads()[7];
  fused.step(ctx, a2, 1e-3, 0.5, {}, 6);
  CHECK(a2.grads()[7] == g0);
  Ema<float> e3(a2, 0.1), e4(a2, 0.2), e5(a2, 0.3);
  const Tensor<float> before = Tensor<float>::copy_of(a2.values());
  REQUIRE_IREPA_ERROR(fused.step(ctx, a2, 1e-3, 1.0, {&e3, &e4, &e5}, 7), "at most 2 EMAs");
  CHECK(fused.steps() == 6);  // refused before anything changed
  CHECK(std::memcmp(before.data(), a2.values().data(), sizeof(float) * static_cast<std::size_t>(a2.numel())) == 0);
}

TEST_CASE("learning-rate schedules: constant, warm-up, cosine to a floor", "[train][schedule]") {
  LrSchedule c{.lr = 2e-4};
  CHECK(c.at(1) == 2e-4);
  CHECK(c.at(100000) == 2e-4);
  LrSchedule w{.kind = LrSchedule::Kind::WarmupConstant, .lr = 1e-3, .warmup_steps = 10};
  CHECK(w.at(1) == Approx(1e-4));
  CHECK(w.at(5) == Approx(5e-4));
  CHECK(w.at(10) == Approx(1e-3));
  CHECK(w.at(11) == Approx(1e-3));
  LrSchedule k{.kind = LrSchedule::Kind::WarmupCosine, .lr = 1e-3, .warmup_steps = 10, .total_steps = 110, .min_lr = 1e-5};
  CHECK(k.at(10) == Approx(1e-3));
  CHECK(k.at(60) == Approx(1e-5 + (1e-3 - 1e-5) * 0.5));
  CHECK(k.at(110) == Approx(1e-5));
  CHECK(k.at(500) == Approx(1e-5));
  REQUIRE_IREPA_ERROR(LrSchedule::parse("step"), "'step'", "warmup_cosine");
}

// ---------------------------------------------------------------------------------------------
// Checkpoints and bit-identical resume

#include <cstring>
#include <filesystem>

#include "irepa/diffusion/sit_objective.hpp"
#include "irepa/models/sit.hpp"
#include "irepa/nn/embedders.hpp"
#include "irepa/train/checkpoint.hpp"

namespace {
using Model = SiT<Dynamic, DynamicPatch, iREPAHead<Conv3x3, SpatialNorm>, float>;

SiTConfig tiny_sit() {
  SiTConfig c;
  c.input_size = 8;
  c.in_channels = 4;
  c.num_classes = 10;
  c.encoder_depth = 2;
  c.z_dims = {12};
  c.depth = 3;
  c.hidden_size = 32;
  c.num_heads = 2;
  c.patch_size = 2;
  return c;
}

struct Run {
  Model model{tiny_sit()};
  AdamW<float> opt{model.params(), AdamWOptions{.lr = 1e-3, .weight_decay = 0.01, .decay = decay_weights_only}};
  Ema<float> ema{model.params(), 0.9};
  Ema<float> ema2{model.params(), 0.5, 2};
  Philox rng{77, 1};

  explicit Run(std::uint64_t seed) {
    model.init(seed);
    opt = AdamW<float>(model.params(), opt.options());
    ema = Ema<float>(model.params(), 0.9);
    ema2 = Ema<float>(model.params(), 0.5, 2);
  }

  /// Steps from+1 .. to: data of step s from its own stream, t / noise / label dropout from rng.
  void steps(const CpuContext& ctx, std::int64_t from, std::int64_t to) {
    const LrSchedule lr{.kind = LrSchedule::Kind::WarmupCosine, .lr = 1e-3, .warmup_steps = 2, .total_steps = 8};
    SiTObjective obj;
    obj.proj_coeff = 1.0;
    for (std::int64_t s = from + 1; s <= to; ++s) {
      Philox data(2024, static_cast<std::uint64_t>(s));
      Tensor<float> x(Shape{3, 4, 8, 8}), z(Shape{3, 16, 12});
      Tensor<std::int64_t> y(Shape{3});
      data.normal(x.view());
      data.normal(z.view());
      data.randint(y.view(), 0, 10);
      nn::drop_labels(rng, y.view(), 0.3, 10);
      model.params().zero_grad();
      objective_step(ctx, model, obj, upload_batch(ctx, HostBatch<float>{x, y, {z}}, model.label_rows()), rng);
      clip_grad_norm(ctx, model.params(), 1.0);
      opt.step(ctx, model.params(), lr.at(s));
      ema.update(ctx, model.params(), s);
      ema2.update(ctx, model.params(), s);
    }
  }
};

using test::same_bits;
}  // namespace

TEST_CASE("resume is bit-identical: N steps straight = N/2, checkpoint, new process state, N/2", "[train][checkpoint]") {
  CpuContext ctx(2);
  const std::uint64_t seed = test::rng().seed();
  Run straight(seed);
  straight.steps(ctx, 0, 6);

  const auto dir = std::filesystem::temp_directory_path() / ("irepa_ckpt_" + std::to_string(seed));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "step3.safetensors").string();
  {
    Run first(seed);
    first.steps(ctx, 0, 3);
    save_checkpoint(path, first.model, first.opt, {&first.ema, &first.ema2}, first.rng,
                    CheckpointInfo{.step = 3, .config = {{"model", "tiny"}, {"seed", seed}}});
  }
  Run resumed(seed + 1);  // different initial weights and RNG: everything must come from the file
  resumed.rng = Philox(5, 5);
  const auto info = load_checkpoint(path, resumed.model, resumed.opt, {&resumed.ema, &resumed.ema2}, resumed.rng);
  CHECK(info.step == 3);
  CHECK(info.config.at("model") == "tiny");
  resumed.steps(ctx, info.step, 6);

  CHECK(same_bits(resumed.model.params().values(), straight.model.params().values()));
  CHECK(same_bits(resumed.ema.values(), straight.ema.values()));
  CHECK(same_bits(resumed.ema2.values(), straight.ema2.values()));
  CHECK(same_bits(resumed.opt.exp_avg(), straight.opt.exp_avg()));
  CHECK(same_bits(resumed.opt.exp_avg_sq(), straight.opt.exp_avg_sq()));
  CHECK(resumed.opt.steps() == 6);
  CHECK(resumed.rng.position() == straight.rng.position());
  // ... and training did move the weights.
  Run untouched(seed);
  CHECK(test::rel_error(straight.model.params().values(), untouched.model.params().values()) > 1e-4);

  SECTION("a checkpoint of another model is refused, naming the differences, and changes nothing") {
    SiTConfig other = tiny_sit();
    other.z_dims = {12, 5};
    SiT<Dynamic, DynamicPatch, iREPAHead<Conv3x3, SpatialNorm>, float> big(other);
    AdamW<float> opt(big.params(), AdamWOptions{});
    Ema<float> ema(big.params(), 0.9), ema2(big.params(), 0.5, 2);
    Philox rng(1);
    const Tensor<float> before = Tensor<float>::copy_of(big.params().values());
    REQUIRE_IREPA_ERROR(load_checkpoint(path, big, opt, {&ema, &ema2}, rng), "missing 'ema.projectors.1.projection_layer.weight'");
    CHECK(same_bits(big.params().values(), before.view()));
    REQUIRE_IREPA_ERROR(load_checkpoint(path, resumed.model, resumed.opt, {&resumed.ema}, resumed.rng), "holds 2 EMAs",
                        "the run has 1");
  }
  SECTION("a file that is not a checkpoint") {
    io::SafeTensorsWriter w;
    resumed.model.save(w, "model.");
    const std::string plain = (dir / "plain.safetensors").string();
    w.write(plain);
    REQUIRE_IREPA_ERROR(load_checkpoint(plain, resumed.model, resumed.opt, {&resumed.ema, &resumed.ema2}, resumed.rng),
                        "not an irepa checkpoint");
  }
  std::filesystem::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
#include <fstream>

#include <nlohmann/json.hpp>

#include "irepa/train/logger.hpp"

TEST_CASE("JSONL log lines append and parse back, and the progress line shows rate and ETA", "[train][log]") {
  const auto path = std::filesystem::temp_directory_path() / ("irepa_log_" + std::to_string(test::rng().seed()) + ".jsonl");
  {
    JsonlLogger log(path.string());
    log.log(1, {{"loss", 0.5}, {"grad_norm", 2.0}});
  }
  {
    JsonlLogger log(path.string());  // a resumed run appends
    log.log(2, {{"loss", 0.25}, {"lr", std::nan("")}});
  }
  std::ifstream in(path);
  std::string line;
  std::vector<nlohmann::json> rows;
  while (std::getline(in, line)) rows.push_back(nlohmann::json::parse(line));
  REQUIRE(rows.size() == 2);
  CHECK(rows[0]["step"] == 1);
  CHECK(rows[0]["loss"] == 0.5);
  CHECK(rows[1]["loss"] == 0.25);
  CHECK(rows[1]["lr"] == "nan");  // JSON has no NaN: kept as text, never silently dropped
  std::filesystem::remove(path);

  CHECK(format_duration(3725) == "01:02:05");
  CHECK(format_duration(2 * 86400 + 61) == "2d 00:01:01");
  CHECK(format_duration(std::nan("")) == "?");
  const std::string p = progress_line(1200, 400000, 85.25, 90061, 0.6123, 0.521, -0.4566, 0.83);
  CHECK(p == "step 1200/400000 | 85.2 img/s | ETA 1d 01:01:01 | loss 0.6123 denoise 0.5210 align -0.4566 | grad 0.830");
}

// ---------------------------------------------------------------------------------------------
// The one trainer: a step moves only its batch; SiT and JiT runs resume bit-identically.

#include "irepa/data/fashion_mnist.hpp"
#include "irepa/diffusion/jit_objective.hpp"
#include "irepa/models/jit.hpp"
#include "irepa/train/recipes.hpp"
#include "irepa/train/trainer.hpp"

namespace {
/// 40 random 8x8 grey images in 0..255 with labels 0..9.
data::ImageDataset tiny_images() {
  Tensor<std::uint8_t> img(Shape{40, 1, 8, 8});
  Tensor<std::int64_t> px(Shape{img.numel()}), labels(Shape{40});
  test::rng().randint(px.view(), 0, 256);
  test::rng().randint(labels.view(), 0, 10);
  for (std::int64_t i = 0; i < img.numel(); ++i) img[i] = static_cast<std::uint8_t>(px[i]);
  return data::ImageDataset(std::move(img), std::move(labels));
}

SiTConfig tiny_image_sit() {
  SiTConfig c = tiny_sit();
  c.in_channels = 1;
  c.z_dims = {};
  return c;
}

JiTConfig tiny_image_jit() {
  JiTConfig c;
  c.input_size = 8, c.in_channels = 1, c.num_classes = 10, c.encoder_depth = 2, c.z_dims = {}, c.kernel_size = 3;
  c.depth = 3, c.hidden_size = 32, c.num_heads = 2, c.patch_size = 2, c.bottleneck_dim = 8;
  c.in_context_len = 3, c.in_context_start = 1;
  return c;
}

template <class Model, class Objective>
void check_resume(const typename Model::config_type& cfg, const Objective& obj, TrainerOptions o, const std::string& name) {
  namespace fs = std::filesystem;
  CpuContext ctx(2);
  const auto ds = tiny_images();
  const fs::path dir = fs::temp_directory_path() / ("irepa_trainer_" + name + "_" + std::to_string(test::rng().seed()));
  auto run = [&](const std::string& sub, std::int64_t resume) {
    Model m(cfg);
    m.init(11);
    TrainerOptions oo = o;
    oo.run_dir = (dir / sub).string(), oo.resume_step = resume;
    return train(ctx, oo, m, obj, ds, {}, nlohmann::json{{"test", name}});
  };
  const auto straight = run("straight", 0);
  REQUIRE(straight.history.size() == static_cast<std::size_t>(o.max_train_steps));
  fs::create_directories(dir / "resumed" / "checkpoints");
  fs::copy_file(dir / "straight" / "checkpoints" / "0000004.safetensors", dir / "resumed" / "checkpoints" / "0000004.safetensors");
  const auto resumed = run("resumed", 4);
  REQUIRE(resumed.history.size() == static_cast<std::size_t>(o.max_train_steps - 4));
  for (std::size_t i = 0; i < resumed.history.size(); ++i) {
    INFO(name << " step " << resumed.history[i].step);
    CHECK(resumed.history[i].total == straight.history[i + 4].total);
    CHECK(resumed.history[i].grad_norm == straight.history[i + 4].grad_norm);
  }
  CHECK(same_bits(resumed.ema.view(), straight.ema.view()));
  io::SafeTensorsFile a((dir / "straight" / "checkpoints" / "0000008.safetensors").string());
  io::SafeTensorsFile b((dir / "resumed" / "checkpoints" / "0000008.safetensors").string());
  for (const auto& n : a.names()) {
    INFO(name << " " << n);
    CHECK(same_bits(a.load<float>(n).view(), b.load<float>(n).view()));
  }
  // Every step logged, once, with its learning rate; and training moved the loss.
  std::ifstream log(dir / "resumed" / "log.jsonl");
  std::string line;
  std::vector<std::int64_t> steps;
  while (std::getline(log, line)) steps.push_back(nlohmann::json::parse(line).at("step").get<std::int64_t>());
  CHECK(steps == std::vector<std::int64_t>{5, 6, 7, 8});
  CHECK(straight.history.front().total != straight.history.back().total);
  fs::remove_all(dir);
}
}  // namespace

TEST_CASE("the one trainer: a SiT run and a JiT run resumed at step 4 end bit-identical to the straight ones", "[train][trainer]") {
  TrainerOptions o;
  o.batch_size = 6, o.max_train_steps = 8, o.checkpointing_steps = 4, o.log_every = 3, o.quiet = true, o.seed = 5;
  o.schedule = LrSchedule{.kind = LrSchedule::Kind::Constant, .lr = 1e-3};
  o.ema_decays = {0.9};
  check_resume<SiT<Dynamic, DynamicPatch, REPAHead, float>>(tiny_image_sit(), SiTObjective{}, o, "sit");
  apply_jit_recipe(o, JiTRecipe{.lr = 1e-3, .warmup_epochs = 1}, 40);  // flips, two EMAs, warm-up, no clipping
  check_resume<JiT<Dynamic, DynamicPatch, REPAHead, float>>(tiny_image_jit(), JiTObjective{}, o, "jit");
}

TEST_CASE("the one trainer: a step moves only its batch to the device, the logged scalars come back once per flush", "[train][trainer]") {
  CpuContext ctx(2);
  const auto dir = std::filesystem::temp_directory_path() / ("irepa_trainer_transfers_" + std::to_string(test::rng().seed()));
  Model model{tiny_sit()};  // one projector (z 12), 16 tokens
  model.init(3);
  TrainerOptions o;
  o.run_dir = dir.string(), o.batch_size = 3, o.max_train_steps = 10, o.log_every = 5, o.quiet = true;
  Trainer<Model, SiTObjective> trainer(ctx, o, model, SiTObjective{.proj_coeff = 1.0}, nlohmann::json::object());
  Philox data(2024, 3);
  Tensor<float> x(Shape{3, 4, 8, 8}), z(Shape{3, 16, 12});
  Tensor<std::int64_t> y(Shape{3});
  data.normal(x.view());
  data.normal(z.view());
  data.randint(y.view(), 0, 10);
  const std::int64_t batch_bytes = x.numel() * 4 + y.numel() * 8 + z.numel() * 4;
  for (int s = 0; s < 3; ++s) {
    ctx.reset_transfers();
    trainer.step(x, y.view(), {z.cview()});
    const TransferStats t = ctx.transfers();
    CHECK(t.uploads == 3);  // x, labels, the one target
    CHECK(t.upload_bytes == batch_bytes);
    CHECK(t.downloads == 0);
    CHECK(t.download_bytes == 0);
  }
  CHECK(trainer.history().empty());  // nothing read back yet
  ctx.reset_transfers();
  trainer.flush();
  CHECK(ctx.transfers().downloads == 1);
  // The three steps' scalars and one row of the weights' and moments' sums of squares.
  CHECK(ctx.transfers().download_bytes == (3 + 1) * Trainer<Model, SiTObjective>::kLogColumns * 8);
  CHECK(ctx.transfers().uploads == 0);
  REQUIRE(trainer.history().size() == 3);
  for (const auto& r : trainer.history()) {
    CHECK(std::isfinite(r.total));
    CHECK(r.total == Approx(r.denoising + r.alignment).epsilon(1e-12));
    CHECK(r.grad_norm > 0);
  }
  // A NaN in the batch is refused at the flush, naming the step, before a checkpoint could hold it.
  x[0] = std::nanf("");
  trainer.step(x, y.view(), {z.cview()});
  REQUIRE_IREPA_ERROR(trainer.flush(), "step 4", "not finite");
  std::filesystem::remove_all(dir);
}

TEST_CASE("the one trainer: an online ViT target runs on the model's device, and a run with it equals steps fed its tokens", "[train][trainer]") {
  namespace fs = std::filesystem;
  CpuContext ctx(2);
  // A tiny DINOv2-style ViT (random weights): 3x32x32 images -> 16x16 tokens of width 24, the
  // token grid of a patch-2 SiT on 32x32 images.
  VitConfig vc;
  vc.embed_dim = 24, vc.depth = 1, vc.heads = 2, vc.patch = 14, vc.registers = 2;
  auto enc = std::make_shared<VitEncoder<float>>(vc);
  enc->init_random(test::rng().seed(), 0.05f);
  const std::vector<TargetEncoder> online{vit_target_encoder("tiny-vit", enc)};
  const auto placed = place_encoders<Cpu>(online);
  REQUIRE(placed.size() == 1);
  CHECK(!placed[0].on_host());
  CHECK(describe_placement(placed) == "tiny-vit on cpu");

  // 12 random 3x32x32 images; from_host copies everything load prepared (here a CPU twin).
  Tensor<std::uint8_t> img(Shape{12, 3, 32, 32});
  Tensor<std::int64_t> px(Shape{img.numel()}), labels(Shape{12});
  test::rng().randint(px.view(), 0, 256);
  test::rng().randint(labels.view(), 0, 10);
  for (std::int64_t i = 0; i < img.numel(); ++i) img[i] = static_cast<std::uint8_t>(px[i]);
  const data::ImageDataset ds(std::move(img), std::move(labels));
  {
    const auto b = ds.get<float>(std::vector<std::int64_t>{0, 5, 7});
    const VitEncoder<float> twin = VitEncoder<float>::from_host(*enc);
    const Tensor<float> a = enc->encode(ctx, b.x), c = twin.encode(ctx, b.x);
    CHECK(a.shape() == Shape{3, 256, 24});
    CHECK(same_bits(a.view(), c.view()));
  }

  SiTConfig cfg = tiny_image_sit();
  cfg.input_size = 32, cfg.in_channels = 3, cfg.z_dims = {24};
  using M = SiT<Dynamic, DynamicPatch, REPAHead, float>;
  TrainerOptions o;
  o.batch_size = 4, o.max_train_steps = 5, o.checkpointing_steps = 100, o.log_every = 2, o.quiet = true, o.seed = 3;
  o.schedule = LrSchedule{.kind = LrSchedule::Kind::Constant, .lr = 1e-3};
  const fs::path dir = fs::temp_directory_path() / ("irepa_trainer_online_" + std::to_string(test::rng().seed()));
  M online_model(cfg);
  online_model.init(9);
  TrainerOptions oa = o;
  oa.run_dir = (dir / "online").string();
  const auto run = train(ctx, oa, online_model, SiTObjective{}, ds, online, nlohmann::json::object());

  // The same batches, their tokens computed here and given as host targets.
  M fed_model(cfg);
  fed_model.init(9);
  TrainerOptions ob = o;
  ob.run_dir = (dir / "fed").string();
  Trainer<M, SiTObjective> fed(ctx, ob, fed_model, SiTObjective{}, nlohmann::json::object());
  auto loader = data::epoch_loader<float>(ds, o.batch_size, o.seed, 0);
  for (std::int64_t s = 0; s < o.max_train_steps; ++s) {
    auto b = loader->next();
    const Tensor<float> z = enc->encode(ctx, b.x);
    for (std::int64_t i = 0; i < b.x.numel(); ++i) b.x[i] = b.x[i] * float(1.0 / 127.5) - 1.0f;
    fed.step(b.x, b.y.view(), {z.cview()});
  }
  fed.flush();
  REQUIRE(run.history.size() == fed.history().size());
  for (std::size_t i = 0; i < run.history.size(); ++i) {
    INFO("step " << run.history[i].step);
    CHECK(run.history[i].total == fed.history()[i].total);
    CHECK(run.history[i].alignment == fed.history()[i].alignment);
    CHECK(run.history[i].alignment != 0);
  }
  fs::remove_all(dir);
}

TEST_CASE("convert: elementwise to another element type, shapes checked", "[train]") {
  CpuContext ctx(1);
  Tensor<float> a(Shape{2, 5});
  test::rng().normal(a.view());
  Tensor<double> b(Shape{2, 5});
  convert(ctx, a.cview(), b.view());
  for (std::int64_t i = 0; i < a.numel(); ++i) CHECK(b[i] == static_cast<double>(a[i]));
  Tensor<double> wrong(Shape{5, 2});
  REQUIRE_IREPA_ERROR(convert(ctx, a.cview(), wrong.view()), "convert", "[2, 5]");
}
