// SiT with REPA / iREPA heads: parity with the reference's golden files (outputs, losses and
// every parameter gradient), fixed sizes against Dynamic, whole-model gradient checks on fresh
// random shapes, initialisation, save / load, and the errors users see.

#include <cstring>
#include <filesystem>

#include "golden/objectives.hpp"
#include "irepa/diffusion/sit_objective.hpp"
#include "irepa/check/gradient_check.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/models/sit.hpp"
#include "model_test_support.hpp"
#include "test_support.hpp"

using namespace irepa;
using irepa::test::golden_dir;
using irepa::test::have_golden;
using irepa::test::random_batch;
using irepa::test::randomize;

namespace {

const char* const kSiTFiles[] = {"sit_irepa_conv3_zscore", "sit_repa_mlp", "sit_two_encoders_cosine_path"};

template <class T>
void check_sit_golden_file(const std::string& stem, double tol) {
  io::SafeTensorsFile f((golden_dir() / (stem + ".safetensors")).string());
  const auto rows = golden::check_sit<T>(f, tol);
  // Everything the file pins down is compared: 3 model tensors, 2 per encoder, 4 losses, grads.
  REQUIRE(rows.size() > 20);
  for (const auto& r : rows) {
    INFO(stem << " " << r.name << " rel " << r.rel);
    CHECK(r.ok());
  }
}

}  // namespace

TEST_CASE("SiT matches every golden file in double to 1e-9", "[sit][golden]") {
  if (!have_golden()) return;
  for (const char* stem : kSiTFiles) check_sit_golden_file<double>(stem, 1e-9);
}

TEST_CASE("SiT matches every golden file in float to 1e-4", "[sit][golden]") {
  if (!have_golden()) return;
  for (const char* stem : kSiTFiles) check_sit_golden_file<float>(stem, 1e-4);
}

namespace {

/// A small model of odd shapes, drawn fresh: depth 2, width 24, 2 heads, 3x3 token grid of
/// 2x2 patches over 3 channels, 5 classes, two target encoders.
SiTConfig small_config() {
  SiTConfig c;
  c.input_size = 6;
  c.in_channels = 3;
  c.num_classes = 5;
  c.encoder_depth = 1;
  c.z_dims = {7, 5};
  c.projector_dim = 16;
  c.depth = 2;
  c.hidden_size = 24;
  c.num_heads = 2;
  c.patch_size = 2;
  return c;
}

template <class Head>
void gradient_check_whole_model(Head head, SiTConfig cfg, PathType path) {
  using Model = SiT<Dynamic, DynamicPatch, Head, double>;
  Model m(cfg, head);
  randomize(m);
  const auto data = random_batch(m, 3);
  SiTObjective obj;
  obj.path = path;
  obj.proj_coeff = 0.7;
  check::GradCheckOptions opt;
  opt.max_elements = 6;  // a random subset of each tensor: every parameter tensor is visited
  const auto report = test::total_loss_gradient_check(m, obj, data, opt);
  INFO(report.report());
  REQUIRE(report.ok());
}

}  // namespace

TEST_CASE("SiT: whole-model gradients of the total loss on fresh random shapes", "[sit][gradcheck]") {
  SECTION("iREPA: conv 3x3 projector, spatial z-score, linear path") {
    auto cfg = small_config();
    cfg.kernel_size = 3;
    gradient_check_whole_model(iREPAHead<Conv3x3, SpatialNorm>{SpatialNorm{.alpha = 0.8}}, cfg, PathType::Linear);
  }
  SECTION("REPA: MLP projector, aligned after the last block, cosine path") {
    auto cfg = small_config();
    cfg.encoder_depth = 2;
    gradient_check_whole_model(REPAHead{}, cfg, PathType::Cosine);
  }
  SECTION("conv 5x5 chosen at run time, one encoder, no null class") {
    auto cfg = small_config();
    cfg.kernel_size = 5;
    cfg.z_dims = {9};
    cfg.class_dropout_prob = 0;
    gradient_check_whole_model(iREPAHead<ConvProjector<0>, NoNorm>{}, cfg, PathType::Linear);
  }
}

TEST_CASE("SiT: a fixed size gives the same numbers as Dynamic with the same values", "[sit]") {
  SiTConfig fixed_cfg;
  fixed_cfg.input_size = 8;
  fixed_cfg.num_classes = 10;
  fixed_cfg.encoder_depth = 4;
  fixed_cfg.z_dims = {32};
  fixed_cfg.kernel_size = 3;
  SiTConfig dyn_cfg = fixed_cfg;
  dyn_cfg.depth = S::depth;
  dyn_cfg.hidden_size = S::hidden;
  dyn_cfg.num_heads = S::heads;
  dyn_cfg.patch_size = 2;

  SiT<S, 2, iREPAHead<Conv3x3, SpatialNorm>> fixed(fixed_cfg);
  SiT<Dynamic, DynamicPatch, iREPAHead<ConvProjector<0>, SpatialNorm>> dyn(dyn_cfg);
  REQUIRE(fixed.depth == 12);
  REQUIRE(fixed.hidden == 384);
  REQUIRE(fixed.params().numel() == dyn.params().numel());
  randomize(fixed);
  dyn.params().values().copy_from(fixed.params().values());

  const auto data = random_batch(fixed, 2);
  SiTObjective obj;
  obj.proj_coeff = 1.0;
  const CpuContext ctx;
  const auto a = objective_step(ctx, fixed, obj, data.batch(fixed.label_rows()), data.t, data.noise);
  const auto b = objective_step(ctx, dyn, obj, data.batch(dyn.label_rows()), data.t, data.noise);
  CHECK(a.losses(ctx).total == b.losses(ctx).total);
  CHECK(test::rel_error(a.cache.output(), b.cache.output()) == 0.0);
  CHECK(test::rel_error(fixed.params().grads(), dyn.params().grads()) == 0.0);
  CHECK(a.losses(ctx).total > 0);  // a real loss, not a degenerate zero
}

TEST_CASE("SiT: parameter names are the reference's state_dict names", "[sit]") {
  SiTConfig cfg;
  cfg.input_size = 8;
  cfg.encoder_depth = 2;
  cfg.z_dims = {16, 8};
  cfg.projector_dim = 32;
  SiT<S, 2, REPAHead> m(cfg);
  for (const char* name : {"x_embedder.proj.weight", "x_embedder.proj.bias", "t_embedder.mlp.0.weight", "t_embedder.mlp.2.bias",
                           "y_embedder.embedding_table.weight", "blocks.0.attn.qkv.weight", "blocks.11.attn.proj.bias",
                           "blocks.3.mlp.fc1.weight", "blocks.3.mlp.fc2.bias", "blocks.3.adaLN_modulation.1.weight",
                           "projectors.0.projection_layer.0.weight", "projectors.1.projection_layer.4.bias",
                           "final_layer.linear.weight", "final_layer.adaLN_modulation.1.bias"})
    CHECK(m.params().contains(name));
  CHECK_FALSE(m.params().contains("pos_embed"));  // a buffer, never trained
  CHECK(m.params().value("y_embedder.embedding_table.weight").shape() == Shape{1001, 384});
  CHECK(m.params().value("projectors.1.projection_layer.4.weight").shape() == Shape{8, 32});
  SiT<S, 2, iREPAHead<Conv3x3, SpatialNorm>> c(cfg);
  CHECK(c.params().value("projectors.0.projection_layer.weight").shape() == Shape{16, 384, 3, 3});
}

TEST_CASE("SiT: initialisation follows the reference", "[sit]") {
  auto cfg = small_config();
  cfg.hidden_size = 64;
  cfg.num_heads = 4;
  SiT<Dynamic, DynamicPatch, iREPAHead<Conv3x3, SpatialNorm>, double> m(cfg), m2(cfg), m3(cfg);
  const std::uint64_t seed = test::rng().seed() ^ 0x9e3779b97f4a7c15ULL;
  m.init(seed);
  m2.init(seed);
  m3.init(seed + 1);
  CHECK(test::rel_error(m.params().values(), m2.params().values()) == 0.0);
  CHECK(test::rel_error(m.params().values(), m3.params().values()) > 0.5);

  auto max_abs = [](TensorView<double> v) {
    double a = 0;
    for (std::int64_t i = 0; i < v.numel(); ++i) a = std::max(a, std::abs(v[i]));
    return a;
  };
  auto stdev = [](TensorView<double> v) {
    double s = 0, ss = 0;
    for (std::int64_t i = 0; i < v.numel(); ++i) s += v[i], ss += v[i] * v[i];
    const double n = static_cast<double>(v.numel());
    return std::sqrt(ss / n - (s / n) * (s / n));
  };
  const auto& p = m.params();
  m.params().for_each([&](std::string_view name, TensorView<double> v, TensorView<double>) {
    INFO(name);
    const std::string n(name);
    if (n.find("adaLN_modulation") != std::string::npos || n.rfind("final_layer.linear", 0) == 0)
      CHECK(max_abs(v) == 0.0);
    else if (n.ends_with(".bias") && n.rfind("projectors.", 0) != 0)
      CHECK(max_abs(v) == 0.0);
  });
  // xavier-uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out)); std a / sqrt(3)
  const double a_qkv = std::sqrt(6.0 / (64 + 192));
  CHECK(max_abs(p.value("blocks.1.attn.qkv.weight")) <= a_qkv);
  CHECK(stdev(p.value("blocks.1.attn.qkv.weight")) == Approx(a_qkv / std::sqrt(3.0)).epsilon(0.05));
  const double a_patch = std::sqrt(6.0 / (3 * 2 * 2 + 64));
  CHECK(max_abs(p.value("x_embedder.proj.weight")) <= a_patch);
  CHECK(stdev(p.value("y_embedder.embedding_table.weight")) == Approx(0.02).epsilon(0.25));
  CHECK(stdev(p.value("t_embedder.mlp.0.weight")) == Approx(0.02).epsilon(0.05));
  // nn.Conv2d's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
  const double b_conv = 1.0 / std::sqrt(64.0 * 9.0);
  CHECK(max_abs(p.value("projectors.0.projection_layer.weight")) <= b_conv);
  CHECK(max_abs(p.value("projectors.0.projection_layer.bias")) > 0.0);
  CHECK(stdev(p.value("projectors.0.projection_layer.weight")) == Approx(b_conv / std::sqrt(3.0)).epsilon(0.05));
  // pos_embed: the fixed 2-D table, column in the first half
  const auto table = ops::sincos_2d_table<double>(3, 3, 64);
  CHECK(test::rel_error(m.pos_embed.cview().reshape(table.shape()), table) == 0.0);
}

TEST_CASE("SiT: save and load through safetensors, and the errors of a wrong file", "[sit][io]") {
  using Model = SiT<Dynamic, DynamicPatch, iREPAHead<ConvProjector<0>, SpatialNorm>, float>;
  auto cfg = small_config();
  Model a(cfg), b(cfg);
  randomize(a);
  const auto dir = std::filesystem::temp_directory_path() / ("irepa_test_sit_" + std::to_string(test::rng().seed()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "model.safetensors").string();
  {
    io::SafeTensorsWriter w;
    a.save(w, "model.");
    w.write(path);
  }
  b.load(io::SafeTensorsFile(path), "model.");
  CHECK(test::rel_error(b.params().values(), a.params().values()) == 0.0);
  CHECK(test::rel_error(b.pos_embed.cview(), a.pos_embed.cview()) == 0.0);

  // A file from a model of another shape: every difference is named, nothing is loaded.
  Model c(cfg);
  randomize(c);
  auto other = cfg;
  other.z_dims = {7};
  other.depth = 3;
  other.kernel_size = 5;
  Model d(other);
  {
    io::SafeTensorsWriter w;
    d.save(w);
    w.add<float>("extra.weight", test::randn<float>(Shape{2}).cview());
    w.write(path);
  }
  const Tensor<float> before = Tensor<float>::copy_of(c.params().values());
  REQUIRE_IREPA_ERROR(c.load(io::SafeTensorsFile(path)), "missing 'projectors.1.projection_layer.weight'",
                      "unexpected 'blocks.2.attn.qkv.weight'", "unexpected 'extra.weight'",
                      "'projectors.0.projection_layer.weight' has shape [7, 24, 5, 5], expected [7, 24, 3, 3]");
  CHECK(test::rel_error(c.params().values(), before) == 0.0);
  std::filesystem::remove_all(dir);
}

TEST_CASE("SiT: wrong configurations and inputs are errors that say what was expected", "[sit][errors]") {
  auto cfg = small_config();
  SECTION("a fixed size contradicted by the configuration") {
    SiTConfig c;
    c.hidden_size = 768;
    REQUIRE_IREPA_ERROR((SiT<S, 2, REPAHead>(c)), "hidden_size = 768", "fixes 384");
  }
  SECTION("Dynamic without its sizes") {
    auto c = cfg;
    c.num_heads = 0;
    REQUIRE_IREPA_ERROR((SiT<Dynamic, DynamicPatch, REPAHead, double>(c)), "num_heads must be positive");
  }
  SECTION("encoder depth outside the model") {
    auto c = cfg;
    c.encoder_depth = 3;
    REQUIRE_IREPA_ERROR((SiT<Dynamic, DynamicPatch, REPAHead, double>(c)), "encoder_depth 3", "[1, 2]");
  }
  SECTION("a conv kernel the type does not have") {
    auto c = cfg;
    c.kernel_size = 5;
    REQUIRE_IREPA_ERROR((SiT<Dynamic, DynamicPatch, iREPAHead<Conv3x3, NoNorm>, double>(c)), "kernel size 5", "fixes 3");
  }
  SECTION("an unknown projector or normalizer name") {
    REQUIRE_IREPA_ERROR(with_head(HeadChoice{.projection = "attention"}, [](auto) { return 0; }), "'attention'",
                        "mlp, linear or conv");
    REQUIRE_IREPA_ERROR(with_head(HeadChoice{.projection = "conv", .spnorm = "l2"}, [](auto) { return 0; }), "'l2'",
                        "none or zscore");
  }
  SECTION("inputs of the wrong shape, labels outside the table, missing targets") {
    SiT<Dynamic, DynamicPatch, REPAHead, double> m(cfg);
    randomize(m);
    auto data = random_batch(m, 2);
    const auto wrong = test::randn<double>(Shape{2, 3, 8, 8});
    REQUIRE_IREPA_ERROR(m.forward(CpuContext{}, wrong, data.t, data.y), "[2, 3, 8, 8]", "expected [B, 3, 6, 6]");
    const CpuContext ctx;
    data.y[1] = 6;
    REQUIRE_IREPA_ERROR(data.batch(m.label_rows()), "label 6 at position 1", "6 label rows");
    // Past the upload's check (a batch uploaded for a larger table), the embedding names the index.
    const auto unchecked = data.batch(100);
    REQUIRE_IREPA_ERROR(objective_step(ctx, m, SiTObjective{}, unchecked, data.t, data.noise), "index 6", "6 rows");
    data.y[1] = 0;
    auto b = data.batch(m.label_rows());
    b.zs.pop_back();
    REQUIRE_IREPA_ERROR(objective_step(ctx, m, SiTObjective{}, b, data.t, data.noise), "1 target feature tensors", "2 projectors");
  }
  SECTION("a NaN loss") {
    SiT<Dynamic, DynamicPatch, REPAHead, double> m(cfg);
    randomize(m);
    auto data = random_batch(m, 2);
    data.x[5] = std::numeric_limits<double>::quiet_NaN();
    const CpuContext ctx;
    REQUIRE_IREPA_ERROR(objective_step(ctx, m, SiTObjective{}, data.batch(m.label_rows()), data.t, data.noise).losses(ctx),
                        "not finite");
  }
}

namespace {

std::filesystem::path extra_golden_dir() { return IREPA_TEST_DATA_DIR "/golden"; }

/// Rewrites a golden file with edit(name, tensor) applied to each float tensor; returns the copy's path.
template <class Edit>
std::string edited_copy(const std::filesystem::path& src, const std::string& stem, Edit&& edit,
                        const std::map<std::string, std::string>& meta_override = {}) {
  io::SafeTensorsFile f(src.string());
  io::SafeTensorsWriter w;
  for (const auto& [k, v] : f.metadata()) w.set_metadata(k, meta_override.contains(k) ? meta_override.at(k) : v);
  for (const auto& name : f.names()) {
    if (f.info(name).dtype == DType::I64) {
      w.add<std::int64_t>(name, f.load<std::int64_t>(name));
      continue;
    }
    Tensor<double> t = f.load<double>(name);
    if (edit(name, t)) w.add<double>(name, t);
  }
  const auto out = std::filesystem::temp_directory_path() / (stem + "_" + std::to_string(test::rng().seed()) + ".safetensors");
  w.write(out.string());
  return out.string();
}

}  // namespace

TEST_CASE("SiT matches golden files of other shapes (patch 4, conv 5x5, 3 encoders, 1 head, none)", "[sit][golden]") {
  std::size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(extra_golden_dir())) {
    if (e.path().extension() != ".safetensors") continue;
    io::SafeTensorsFile f(e.path().string());
    if (f.metadata("model") != std::optional<std::string>("SiT")) continue;  // the folder holds HOG cases too
    ++files;
    INFO(e.path().filename().string());
    for (const auto& r : golden::check_sit<double>(f, 1e-9)) {
      INFO(r.name << " rel " << r.rel);
      CHECK(r.ok());
    }
    for (const auto& r : golden::check_sit<float>(f, 1e-4)) {
      INFO(r.name << " rel " << r.rel << " (float)");
      CHECK(r.ok());
    }
  }
  REQUIRE(files == 3);
}

TEST_CASE("The golden checker notices a wrong number, a missing gradient and an unknown config key", "[sit][golden]") {
  const auto src = extra_golden_dir() / "sit_extra_one_head_mlp_last_block.safetensors";
  SECTION("one gradient element off by 1e-6 relative") {
    const auto path = edited_copy(src, "perturbed", [](const std::string& name, Tensor<double>& t) {
      if (name == "grads/blocks.1.mlp.fc1.weight") t[7] += 1e-6 * std::abs(t[7]) + 1e-7;
      return true;
    });
    const auto rows = golden::check_sit<double>(io::SafeTensorsFile(path), 1e-9);
    for (const auto& r : rows) {
      INFO(r.name << " rel " << r.rel);
      CHECK(r.ok() == (r.name != "grads/blocks.1.mlp.fc1.weight"));
    }
    std::filesystem::remove(path);
  }
  SECTION("a parameter's gradient missing from the file") {
    const auto path = edited_copy(src, "nograd", [](const std::string& name, Tensor<double>&) {
      return name != "grads/t_embedder.mlp.2.bias";
    });
    REQUIRE_IREPA_ERROR(golden::check_sit<double>(io::SafeTensorsFile(path), 1e-9), "no gradient for parameter 't_embedder.mlp.2.bias'");
    std::filesystem::remove(path);
  }
  SECTION("a config key this build does not know") {
    auto cfg = golden::config_of(io::SafeTensorsFile(src.string()));
    cfg["attention_window"] = 4;
    const auto path = edited_copy(src, "newkey", [](const std::string&, Tensor<double>&) { return true; },
                                  {{"config", cfg.dump()}});
    REQUIRE_IREPA_ERROR(golden::check_sit<double>(io::SafeTensorsFile(path), 1e-9), "'attention_window' is not known");
    std::filesystem::remove(path);
  }
}

TEST_CASE("model names as the reference's --model flag", "[sit]") {
  SiTConfig c;
  apply_model_name(c, "SiT-XL/2");
  CHECK((c.depth == 28 && c.hidden_size == 1152 && c.num_heads == 16 && c.patch_size == 2));
  apply_model_name(c, "B/4");
  CHECK((c.depth == 12 && c.hidden_size == 768 && c.num_heads == 12 && c.patch_size == 4));
  REQUIRE_IREPA_ERROR(apply_model_name(c, "SiT-M/2"), "'SiT-M/2' is not known");
  REQUIRE_IREPA_ERROR(apply_model_name(c, "SiT-S/3"), "patch size must be 2, 4 or 8");
}

TEST_CASE("SiT: the device-generic helpers on the CPU (chunks, unpatchify, broadcast add, host copies)", "[sit][device]") {
  CpuContext ctx(2);
  const std::int64_t B = 3, k = 6, D = 5, C = 2, p = 2, gh = 3, gw = 4;
  // adaLN's chunks: split then merge gives the input back, and chunk j of image b is m[b, j D ..].
  const auto m = test::randn<double>({B, k * D});
  Tensor<double> chunks(Shape{k, B, D}), back(m.shape());
  ops::split_chunks<double>(ctx, m, chunks.view());
  CHECK(chunks(4, 1, 3) == m(1, 4 * D + 3));
  ops::merge_chunks<double>(ctx, chunks, back.view());
  CHECK(std::equal(m.data(), m.data() + m.numel(), back.data()));
  // unpatchify: token (r, q), position (i, j), channel c lands at pixel (c, r p + i, q p + j); the
  // inverse takes it back.
  const auto tok = test::randn<double>({B, gh * gw, p * p * C});
  Tensor<double> img(Shape{B, C, gh * p, gw * p}), tok2(tok.shape());
  ops::unpatchify<double>(ctx, tok, img.view(), C, p, TokenGrid{gh, gw}, false);
  CHECK(img(2, 1, 1 * p + 1, 3 * p + 0) == tok(2, 1 * gw + 3, (1 * p + 0) * C + 1));
  ops::unpatchify<double>(ctx, img, tok2.view(), C, p, TokenGrid{gh, gw}, true);
  CHECK(std::equal(tok.data(), tok.data() + tok.numel(), tok2.data()));
  REQUIRE_IREPA_ERROR(ops::unpatchify<double>(ctx, tok, tok2.view(), C, p, TokenGrid{gh, gw}, false), "unpatchify: image has shape");
  // A row added to every image.
  auto acc = test::randn<double>({B, gh, D});
  const auto before = acc.clone();
  const auto row = test::randn<double>({gh, D});
  ops::add_broadcast<double>(ctx, acc.view(), row);
  CHECK(acc(2, 1, 4) == before(2, 1, 4) + row(1, 4));
  REQUIRE_IREPA_ERROR(ops::add_broadcast<double>(ctx, acc.view(), test::randn<double>({7})), "do not repeat a row of 7");

  // A model's host copy carries values (and gradients when asked); copy_params_from takes them back.
  SiTConfig cfg;
  cfg.input_size = 8, cfg.in_channels = 3, cfg.num_classes = 5, cfg.encoder_depth = 1, cfg.z_dims = {6};
  cfg.depth = 1, cfg.hidden_size = 16, cfg.num_heads = 2, cfg.patch_size = 2;
  SiT<Dynamic, DynamicPatch, iREPAHead<Conv3x3, SpatialNorm>, double> a(cfg), b(cfg);
  test::rng().normal(a.params().values());
  test::rng().normal(a.params().grads());
  const auto host = a.to_host_model(/*grads=*/true);
  CHECK(std::equal(a.params().values().data(), a.params().values().data() + a.num_params(), host.params().values().data()));
  CHECK(std::equal(a.params().grads().data(), a.params().grads().data() + a.num_params(), host.params().grads().data()));
  b.copy_params_from(host);
  CHECK(std::equal(a.params().values().data(), a.params().values().data() + a.num_params(), b.params().values().data()));
}

TEST_CASE("The golden checker reads params/ borrowed from another file (params_from), and names a bad borrow", "[sit][golden]") {
  const auto src = extra_golden_dir() / "sit_extra_patch4_conv5_three_encoders.safetensors";
  const auto dir = std::filesystem::temp_directory_path() / ("irepa_params_from_" + std::to_string(test::rng().seed()));
  std::filesystem::create_directories(dir);
  io::SafeTensorsFile f(src.string());
  // The parameters alone in one file, everything else in another that names it.
  io::SafeTensorsWriter params, rest;
  for (const auto& [k, v] : f.metadata()) params.set_metadata(k, v);
  auto cfg = golden::config_of(f);
  cfg["params_from"] = "the_params.safetensors";
  for (const auto& [k, v] : f.metadata()) rest.set_metadata(k, k == "config" ? cfg.dump() : v);
  for (const auto& name : f.names()) {
    auto& w = name.starts_with("params/") ? params : rest;
    if (f.info(name).dtype == DType::I64)
      w.add<std::int64_t>(name, f.load<std::int64_t>(name));
    else
      w.add<double>(name, f.load<double>(name));
  }
  params.write((dir / "the_params.safetensors").string());
  rest.write((dir / "borrowing.safetensors").string());
  const auto want = golden::check_sit<double>(f, 1e-9);
  const auto got = golden::check_sit<double>(io::SafeTensorsFile((dir / "borrowing.safetensors").string()), 1e-9);
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO(got[i].name);
    CHECK(got[i].name == want[i].name);
    CHECK(got[i].rel == want[i].rel);
    CHECK(got[i].ok());
  }
  // A borrow from a file that is not there, and a file that names a borrow but holds params/ itself.
  std::filesystem::rename(dir / "the_params.safetensors", dir / "moved.safetensors");
  REQUIRE_IREPA_ERROR(golden::check_sit<double>(io::SafeTensorsFile((dir / "borrowing.safetensors").string()), 1e-9),
                      "borrows its params/ from", "does not exist");
  io::SafeTensorsWriter both;
  for (const auto& [k, v] : f.metadata()) both.set_metadata(k, k == "config" ? golden::config_of(f).dump() : v);
  auto cfg2 = golden::config_of(f);
  cfg2["params_from"] = "moved.safetensors";
  both.set_metadata("config", cfg2.dump());
  for (const auto& name : f.names())
    if (f.info(name).dtype != DType::I64) both.add<double>(name, f.load<double>(name));
  both.write((dir / "both.safetensors").string());
  REQUIRE_IREPA_ERROR(golden::check_sit<double>(io::SafeTensorsFile((dir / "both.safetensors").string()), 1e-9), "names params_from",
                      "holds 'params/");
  std::filesystem::remove_all(dir);
}

TEST_CASE("SiT: the sampling forward (infer) gives the training forward's output bit for bit, with far less memory", "[sit]") {
  auto cfg = small_config();
  cfg.kernel_size = 3;
  cfg.depth = 4;
  cfg.encoder_depth = 2;
  SiT<Dynamic, DynamicPatch, iREPAHead<Conv3x3, SpatialNorm>, float> m(cfg);
  randomize(m);
  const auto data = random_batch(m, 3);
  const CpuContext ctx(2);
  const std::size_t before = Cpu::memory_stats().in_use;
  Cpu::reset_peak();
  const auto cache = m.forward(ctx, data.x, data.t, data.y);
  const std::size_t train_peak = Cpu::memory_stats().peak_in_use - before;
  Cpu::reset_peak();
  const std::size_t before_infer = Cpu::memory_stats().in_use;
  const auto out = m.infer(ctx, data.x, data.t, data.y);
  const std::size_t infer_peak = Cpu::memory_stats().peak_in_use - before_infer;
  REQUIRE(out.shape() == cache.output().shape());
  CHECK(std::memcmp(out.data(), cache.output().data(), sizeof(float) * static_cast<std::size_t>(out.numel())) == 0);
  INFO("training forward " << train_peak << " bytes, infer " << infer_peak);
  CHECK(infer_peak * 2 < train_peak);  // four blocks: the cache holds all of them, infer one at a time
  CHECK(infer_peak > 0);
}
