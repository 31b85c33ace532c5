// JiT with REPA / iREPA heads: parity with the reference's golden files (outputs, losses and
// every gradient), whole-model gradient checks with the in-context tokens before, at and after
// the aligned block, fixed sizes against Dynamic, names, the sampler's step and guidance rules,
// save / load, and errors.

#include <filesystem>

#include <cstring>

#include "golden/objectives.hpp"
#include "irepa/check/gradient_check.hpp"
#include "irepa/diffusion/jit_objective.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/models/jit.hpp"
#include "irepa/train/recipes.hpp"
#include "model_test_support.hpp"
#include "test_support.hpp"

using namespace irepa;
using irepa::test::golden_dir;
using irepa::test::have_golden;
using irepa::test::random_batch;
using irepa::test::randomize;

namespace {

const char* const kJiTFiles[] = {"jit_irepa_conv3_zscore", "jit_repa_mlp_early"};

template <class T>
void check_jit_golden_file(const std::string& stem, double tol) {
  io::SafeTensorsFile f((golden_dir() / (stem + ".safetensors")).string());
  const auto rows = golden::check_jit<T>(f, tol);
  REQUIRE(rows.size() > 40);  // 4 images, 2 alignment tensors, 3 losses and every gradient
  for (const auto& r : rows) {
    INFO(stem << " " << r.name << " rel " << r.rel);
    CHECK(r.ok());
  }
}

/// Depth 3, width 32, 2 heads (head dim 16), a 3x3 grid of 4x4 patches over 3 channels,
/// bottleneck 5, 3 in-context tokens entering before block 1, two target encoders.
JiTConfig small_jit_config() {
  JiTConfig c;
  c.input_size = 12;
  c.in_channels = 3;
  c.num_classes = 4;
  c.bottleneck_dim = 5;
  c.in_context_len = 3;
  c.in_context_start = 1;
  c.encoder_depth = 2;
  c.z_dims = {7, 6};
  c.projector_dim = 16;
  c.kernel_size = 3;
  c.depth = 3;
  c.hidden_size = 32;
  c.num_heads = 2;
  c.patch_size = 4;
  return c;
}

template <class Head>
void gradient_check_whole_model(Head head, JiTConfig cfg) {
  using Model = JiT<Dynamic, DynamicPatch, Head, double>;
  Model m(cfg, head);
  randomize(m);
  // RMSNorm weights near 1, as trained ones are: at N(0, 0.1) the attention sees q, k ten times
  // too small and its gradients sink to the finite-difference noise floor.
  m.params().for_each([&](std::string_view name, TensorView<double> v, TensorView<double>) {
    if (name.find("norm") != std::string_view::npos)
      for (std::int64_t i = 0; i < v.numel(); ++i) v.data()[i] += 1.0;
  });
  // t in [0.1, 0.6]: the velocity's 1 / (1 - t) would otherwise blow the loss up to where central
  // differences lose digits (the golden files exercise the t_eps clamp).
  auto data = random_batch(m, 3);
  data.t = test::rand_uniform<double>(Shape{3}, 0.1, 0.6);
  JiTObjective obj;
  obj.proj_coeff = 0.7;
  check::GradCheckOptions opt;
  opt.max_elements = 6;
  opt.step = 1e-4;
  const auto report = test::total_loss_gradient_check(m, obj, data, opt);
  INFO(report.report());
  REQUIRE(report.ok());
}

}  // namespace

TEST_CASE("JiT matches every golden file in double to 1e-9", "[jit][golden]") {
  if (!have_golden()) return;
  for (const char* stem : kJiTFiles) check_jit_golden_file<double>(stem, 1e-9);
}

TEST_CASE("JiT matches every golden file in float to 1e-4", "[jit][golden]") {
  if (!have_golden()) return;
  for (const char* stem : kJiTFiles) check_jit_golden_file<float>(stem, 1e-4);
}

TEST_CASE("JiT: whole-model gradients of the total loss on fresh random shapes", "[jit][gradcheck]") {
  SECTION("iREPA, aligned after the in-context tokens entered (stripped before the projector)") {
    gradient_check_whole_model(iREPAHead<ConvProjector<0>, SpatialNorm>{SpatialNorm{.alpha = 0.8}}, small_jit_config());
  }
  SECTION("REPA, aligned before the in-context tokens enter") {
    auto cfg = small_jit_config();
    cfg.encoder_depth = 1;
    cfg.in_context_start = 2;
    gradient_check_whole_model(REPAHead{}, cfg);
  }
  SECTION("in-context tokens from the first block, aligned after the last") {
    auto cfg = small_jit_config();
    cfg.in_context_start = 0;
    cfg.encoder_depth = 3;
    gradient_check_whole_model(iREPAHead<ConvProjector<0>, NoNorm>{}, cfg);
  }
  SECTION("no in-context tokens, one encoder") {
    auto cfg = small_jit_config();
    cfg.in_context_len = 0;
    cfg.z_dims = {9};
    gradient_check_whole_model(iREPAHead<LinearProjector, SpatialNorm>{}, cfg);
  }
}

TEST_CASE("JiT: a fixed size gives the same numbers as Dynamic with the same values", "[jit]") {
  JiTConfig fixed_cfg;
  fixed_cfg.input_size = 32;
  fixed_cfg.num_classes = 3;
  fixed_cfg.in_context_len = 2;
  fixed_cfg.encoder_depth = 6;
  fixed_cfg.z_dims = {16};
  fixed_cfg.kernel_size = 3;
  JiTConfig dyn_cfg = fixed_cfg;
  apply_jit_model_name(dyn_cfg, "JiT-B/16");
  REQUIRE(dyn_cfg.bottleneck_dim == 128);
  REQUIRE(dyn_cfg.in_context_start == 4);

  JiT<B, 16, iREPAHead<Conv3x3, SpatialNorm>> fixed(fixed_cfg);
  JiT<Dynamic, DynamicPatch, iREPAHead<ConvProjector<0>, SpatialNorm>> dyn(dyn_cfg);
  REQUIRE(fixed.depth == 12);
  REQUIRE(fixed.bottleneck == 128);
  REQUIRE(fixed.ctx_start == 4);
  REQUIRE(fixed.params().numel() == dyn.params().numel());
  randomize(fixed, 0.5);
  dyn.params().values().copy_from(fixed.params().values());
  const auto data = random_batch(fixed, 2);
  JiTObjective obj;
  const CpuContext ctx;
  const auto a = objective_step(ctx, fixed, obj, data.batch(fixed.label_rows()), data.t, data.noise).losses(ctx);
  const auto b = objective_step(ctx, dyn, obj, data.batch(dyn.label_rows()), data.t, data.noise).losses(ctx);
  CHECK(a.total == b.total);
  CHECK(test::rel_error(fixed.params().grads(), dyn.params().grads()) == 0.0);
  CHECK(a.total > 0);
}

TEST_CASE("JiT: names, shapes and the reference initialisation", "[jit]") {
  JiTConfig cfg;
  cfg.input_size = 64;
  cfg.num_classes = 10;
  cfg.z_dims = {24};
  cfg.projector_dim = 32;
  cfg.encoder_depth = 8;
  JiT<L, 32, REPAHead> m(cfg);
  for (const char* name :
       {"t_embedder.mlp.0.weight", "y_embedder.embedding_table.weight", "x_embedder.proj1.weight", "x_embedder.proj2.weight",
        "x_embedder.proj2.bias", "in_context_posemb", "blocks.0.norm1.weight", "blocks.0.attn.q_norm.weight",
        "blocks.0.attn.k_norm.weight", "blocks.23.attn.qkv.bias", "blocks.5.mlp.w12.weight", "blocks.5.mlp.w3.bias",
        "blocks.5.norm2.weight", "blocks.5.adaLN_modulation.1.weight", "projectors.0.projection_layer.4.weight",
        "final_layer.norm_final.weight", "final_layer.linear.weight", "final_layer.adaLN_modulation.1.bias"})
    CHECK(m.params().contains(name));
  CHECK_FALSE(m.params().contains("pos_embed"));
  CHECK(m.params().value("x_embedder.proj1.weight").shape() == Shape{128, 3, 32, 32});
  CHECK(m.params().value("x_embedder.proj2.weight").shape() == Shape{1024, 128, 1, 1});
  CHECK(m.params().value("blocks.0.mlp.w12.weight").shape() == Shape{2 * 2730, 1024});  // int(4096 * 2 / 3) = 2730
  CHECK(m.params().value("in_context_posemb").shape() == Shape{1, 32, 1024});
  CHECK(m.params().value("y_embedder.embedding_table.weight").shape() == Shape{11, 1024});
  CHECK(m.ctx_start == 8);

  m.init(7);
  auto stats = [&](const char* name) {
    const auto v = m.params().value(name);
    double s = 0, s2 = 0;
    for (std::int64_t i = 0; i < v.numel(); ++i) s += v.element_at(i), s2 += v.element_at(i) * v.element_at(i);
    const double n = static_cast<double>(v.numel());
    return std::pair{s / n, std::sqrt(s2 / n - (s / n) * (s / n))};
  };
  CHECK(stats("in_context_posemb").second == Approx(0.02).epsilon(0.05));
  CHECK(stats("blocks.3.attn.q_norm.weight") == std::pair{1.0, 0.0});
  CHECK(stats("blocks.3.adaLN_modulation.1.weight") == std::pair{0.0, 0.0});
  CHECK(stats("final_layer.linear.weight") == std::pair{0.0, 0.0});
  // xavier-uniform on [128, 3 * 32 * 32]: std sqrt(2 / (128 + 3072))
  CHECK(stats("x_embedder.proj1.weight").second == Approx(std::sqrt(2.0 / (128 + 3072))).epsilon(0.02));
}

TEST_CASE("JiT training: weight decay skips biases and 1-D tensors, as the reference's parameter groups", "[jit]") {
  CHECK(jit_decays("blocks.0.attn.qkv.weight", Shape{96, 32}));
  CHECK(jit_decays("in_context_posemb", Shape{1, 32, 64}));  // 3-D: decayed in the reference too
  CHECK(jit_decays("x_embedder.proj1.weight", Shape{16, 3, 4, 4}));
  CHECK_FALSE(jit_decays("blocks.0.attn.qkv.bias", Shape{96}));
  CHECK_FALSE(jit_decays("blocks.0.attn.q_norm.weight", Shape{16}));
  CHECK_FALSE(jit_decays("final_layer.norm_final.weight", Shape{64}));
  JiTRecipe r;
  CHECK(r.base_lr(64) == 5e-5 * 64 / 256);  // blr * batch / 256
  CHECK(r.steps_per_epoch(1000, 64) == 15);
  TrainerOptions o;
  o.batch_size = 64;
  o.max_train_steps = 0;  // from the epochs
  apply_jit_recipe(o, r, 1000);
  CHECK(o.max_train_steps == 200 * 15);
  CHECK(o.schedule.kind == LrSchedule::Kind::WarmupConstant);
  CHECK(o.schedule.warmup_steps == 5 * 15);
  CHECK(o.schedule.at(0) == 0.0);  // the reference sets the rate from the 0-based iteration
  CHECK(o.schedule.at(75) == Approx(5e-5 * 64 / 256));
  CHECK((o.adamw.beta1 == 0.9 && o.adamw.beta2 == 0.95 && o.adamw.decay("a.bias", Shape{4}) == false));
  CHECK(o.ema_decays == std::vector<double>{0.9999, 0.9996});
  CHECK(std::isinf(o.max_grad_norm));  // no clipping: the norm is logged
  CHECK(o.hflip);
  r.lr = 1e-3, r.lr_schedule = "cosine";
  o.max_train_steps = 40;
  apply_jit_recipe(o, r, 1000);
  CHECK(o.schedule.lr == 1e-3);
  CHECK(o.max_train_steps == 40);
  CHECK(o.schedule.kind == LrSchedule::Kind::WarmupCosine);
  CHECK(o.schedule.total_steps == 76);  // past the warm-up, so the cosine has a length
  r.lr_schedule = "step";
  REQUIRE_IREPA_ERROR(apply_jit_recipe(o, r, 1000), "'step' is not known");
}

TEST_CASE("JiT: model names and configuration errors", "[jit]") {
  JiTConfig c;
  apply_jit_model_name(c, "JiT-H/32");
  CHECK(c.depth == 32);
  CHECK(c.hidden_size == 1280);
  CHECK(c.bottleneck_dim == 256);
  CHECK(c.in_context_start == 10);
  CHECK(c.patch_size == 32);
  REQUIRE_IREPA_ERROR(apply_jit_model_name(c, "JiT-XL/16"), "JiT-XL/16");
  REQUIRE_IREPA_ERROR(apply_jit_model_name(c, "JiT-B/8"), "patch size must be 16 or 32");

  auto cfg = small_jit_config();
  cfg.in_context_start = 3;  // == depth: the tokens would never enter
  REQUIRE_IREPA_ERROR((JiT<Dynamic, DynamicPatch, REPAHead, double>(cfg)), "in-context");
  cfg = small_jit_config();
  cfg.num_heads = 16;  // head dim 2: 2-D RoPE needs a multiple of 4
  REQUIRE_IREPA_ERROR((JiT<Dynamic, DynamicPatch, REPAHead, double>(cfg)), "head dim");
  cfg = small_jit_config();
  JiT<Dynamic, DynamicPatch, REPAHead, double> m(cfg);
  auto data = random_batch(m, 2);
  data.y[1] = cfg.num_classes + 1;
  REQUIRE_IREPA_ERROR(m.forward(CpuContext{}, data.x, data.t, data.y), "index 5", "5 rows");  // 4 classes + the null row
  REQUIRE_IREPA_ERROR(data.batch(m.label_rows()), "label 5 at position 1", "5 label rows");
  data = random_batch(m, 2);
  data.zs[0] = test::randn<double>(Shape{2, 9, 8});
  REQUIRE_IREPA_ERROR(objective_step(CpuContext{}, m, JiTObjective{}, data.batch(m.label_rows()), data.t, data.noise),
                      "target features 0");
}

TEST_CASE("JiT: save and load round-trip, and a file of another model is named", "[jit]") {
  auto cfg = small_jit_config();
  JiT<Dynamic, DynamicPatch, iREPAHead<ConvProjector<0>, SpatialNorm>, double> a(cfg), b(cfg);
  randomize(a);
  const auto path =
      (std::filesystem::temp_directory_path() / ("irepa_test_jit_" + std::to_string(test::rng().seed()) + ".safetensors")).string();
  {
    io::SafeTensorsWriter w;
    a.save(w);
    w.write(path);
  }
  b.load(io::SafeTensorsFile(path));
  CHECK(test::rel_error(a.params().values(), b.params().values()) == 0.0);
  auto other = cfg;
  other.bottleneck_dim = 6;
  JiT<Dynamic, DynamicPatch, iREPAHead<ConvProjector<0>, SpatialNorm>, double> c(other);
  REQUIRE_IREPA_ERROR(c.load(io::SafeTensorsFile(path)), "'x_embedder.proj1.weight' has shape [5, 3, 4, 4], expected [6, 3, 4, 4]");
  std::filesystem::remove(path);
}

TEST_CASE("JiT sampler: Heun then a final Euler step, guidance on the predicted image inside its interval", "[jit][sampler]") {
  auto cfg = small_jit_config();
  cfg.z_dims = {};
  JiT<Dynamic, DynamicPatch, REPAHead, double> m(cfg);
  randomize(m, 0.5);
  const auto z0 = test::randn<double>(Shape{2, 3, 12, 12});
  Tensor<std::int64_t> y(Shape{2});
  y[0] = 1, y[1] = 3;
  const CpuContext ctx;
  // Reference computation written out for 3 steps, CFG 2.5 active only for t < 0.5.
  auto net_v = [&](const Tensor<double>& z, double t, bool guided) {
    const std::int64_t per = z.numel() / 2;
    Tensor<double> tt(Shape{2});
    tt.fill(t);
    const auto cond = m.forward(ctx, z, tt, y, false);
    Tensor<std::int64_t> ny(Shape{2});
    ny.fill(cfg.num_classes);
    const auto unc = m.forward(ctx, z, tt, ny, false);
    Tensor<double> v(z.shape());
    for (std::int64_t i = 0; i < 2 * per; ++i) {
      const double x = guided ? unc.out[i] + 2.5 * (cond.out[i] - unc.out[i]) : cond.out[i];
      v[i] = (x - z[i]) / std::max(1.0 - t, 0.05);
    }
    return v;
  };
  auto step = [&](const Tensor<double>& z, double t0, double t1, bool heun) {
    const auto v0 = net_v(z, t0, t0 < 0.5);
    Tensor<double> ze(z.shape()), out(z.shape());
    for (std::int64_t i = 0; i < z.numel(); ++i) ze[i] = z[i] + (t1 - t0) * v0[i];
    if (!heun) return ze;
    const auto v1 = net_v(ze, t1, t1 < 0.5);
    for (std::int64_t i = 0; i < z.numel(); ++i) out[i] = z[i] + (t1 - t0) * 0.5 * (v0[i] + v1[i]);
    return out;
  };
  Tensor<double> ref = Tensor<double>::copy_of(z0);
  ref = step(ref, 0.0, 1.0 / 3, true);
  ref = step(ref, 1.0 / 3, 2.0 / 3, true);
  ref = step(ref, 2.0 / 3, 1.0, false);
  JiTSamplerOptions o;
  o.num_steps = 3;
  o.cfg_scale = 2.5;
  o.interval_min = 0.0;
  o.interval_max = 0.5;
  const auto ours = jit_sample(ctx, m, z0, y, o);
  CHECK(test::rel_error(ours, ref) < 1e-13);
  // Without guidance the result differs: the interval rule matters.
  o.cfg_scale = 1.0;
  CHECK(test::rel_error(jit_sample(ctx, m, z0, y, o), ref) > 1e-6);
}

TEST_CASE("JiT in-context token ops: prepend and its backward and slicing tokens out and back, with shape checks", "[jit][device]") {
  CpuContext ctx(2);
  const std::int64_t B = 2, L = 3, N = 5, D = 4;
  Tensor<double> emb(Shape{B, D}), pos(Shape{L, D}), x(Shape{B, N, D}), out(Shape{B, L + N, D});
  test::rng().normal(emb.view());
  test::rng().normal(pos.view());
  test::rng().normal(x.view());
  ops::prepend_context<double>(ctx, emb, pos, x, out.view());
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t l = 0; l < L; ++l)
      for (std::int64_t d = 0; d < D; ++d) CHECK(out[(b * (L + N) + l) * D + d] == emb[b * D + d] + pos[l * D + d]);
    for (std::int64_t i = 0; i < N * D; ++i) CHECK(out[(b * (L + N) + L) * D + i] == x[b * N * D + i]);
  }
  // Backward: the adjoint of prepend (sums accumulate onto what is there).
  Tensor<double> dout(out.shape()), demb(emb.shape()), dpos(pos.shape()), dx(x.shape());
  test::rng().normal(dout.view());
  demb.fill(1.0), dpos.fill(-1.0);
  ops::prepend_context_backward<double>(ctx, dout, demb.view(), dpos.view(), dx.view());
  double lhs = 0, rhs = 0;  // <dout, prepend(emb, pos, x)> = <demb - 1, emb> + <dpos + 1, pos> + <dx, x>
  for (std::int64_t i = 0; i < out.numel(); ++i) lhs += dout[i] * out[i];
  for (std::int64_t i = 0; i < emb.numel(); ++i) rhs += (demb[i] - 1.0) * emb[i];
  for (std::int64_t i = 0; i < pos.numel(); ++i) rhs += (dpos[i] + 1.0) * pos[i];
  for (std::int64_t i = 0; i < x.numel(); ++i) rhs += dx[i] * x[i];
  CHECK(lhs == Approx(rhs).epsilon(1e-12));
  // Slicing the patch tokens back out gives x; adding them back doubles that part only.
  Tensor<double> sl(x.shape());
  ops::slice_tokens<double>(ctx, out, L, sl.view());
  CHECK(test::rel_error(sl, x) == 0.0);
  ops::add_slice_tokens<double>(ctx, out.view(), L, x);
  CHECK(out[(1 * (L + N) + L) * D + 2] == 2.0 * x[1 * N * D + 2]);
  CHECK(out[(1 * (L + N) + 1) * D + 2] == emb[1 * D + 2] + pos[1 * D + 2]);
  // Errors name the tensor and the shapes.
  Tensor<double> bad_pos(Shape{L, D + 1}), bad_out(Shape{B, L + N - 1, D}), small(Shape{B, N + 1, D});
  REQUIRE_IREPA_ERROR(ops::prepend_context<double>(ctx, emb, bad_pos, x, out.view()), "in-context positions have shape [3, 5]");
  REQUIRE_IREPA_ERROR(ops::prepend_context<double>(ctx, emb, pos, x, bad_out.view()), "output");
  REQUIRE_IREPA_ERROR(ops::slice_tokens<double>(ctx, out, L + 3, small.view()), "do not fit");
}

TEST_CASE("JiT: the sampling forward (infer) gives the training forward's output bit for bit", "[jit]") {
  for (const std::int64_t start : {0, 1, 2}) {  // in-context tokens from the first, a middle and the last block
    auto cfg = small_jit_config();
    cfg.in_context_start = start;
    JiT<Dynamic, DynamicPatch, iREPAHead<ConvProjector<0>, SpatialNorm>, float> m(cfg);
    randomize(m, 0.5);
    const auto data = random_batch(m, 3);
    const CpuContext ctx(2);
    const auto cache = m.forward(ctx, data.x, data.t, data.y);
    const auto out = m.infer(ctx, data.x, data.t, data.y);
    INFO("in-context start " << start);
    REQUIRE(out.shape() == cache.output().shape());
    CHECK(std::memcmp(out.data(), cache.output().data(), sizeof(float) * static_cast<std::size_t>(out.numel())) == 0);
    CHECK(test::rel_error(out, Tensor<float>(out.shape(), 0.0f)) > 0.0);  // not a zero image
  }
}
