// Target encoders: the weight-free HOG encoder against the reference's golden file and
// scikit-image cases (tests/data/golden/hog_extra_*), its name parsing, and what HOG means.

#include "golden/encoders.hpp"
#include <irepa/models/hog.hpp>

#include <map>

#include "test_support.hpp"
#include "vit_variants.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {

const std::filesystem::path kExtra = std::filesystem::path(IREPA_TEST_DATA_DIR) / "golden";

Tensor<float> random_images(std::int64_t B, std::int64_t C, std::int64_t H) {
  auto t = test::rand_uniform<float>(Shape{B, C, H, H}, 0.0f, 255.0f);
  for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = std::floor(t[i]);
  return t;
}

}  // namespace

TEST_CASE("HOG encoder matches the reference's golden file and scikit-image cases", "[hog][golden]") {
  std::vector<std::filesystem::path> files;
  if (test::have_golden()) files.push_back(test::golden_dir() / "encoder_hog_g8_d32.safetensors");
  for (const auto& e : std::filesystem::directory_iterator(kExtra))
    if (e.path().filename().string().starts_with("hog_extra_")) files.push_back(e.path());
  REQUIRE(files.size() >= 3);
  for (const auto& p : files) {
    io::SafeTensorsFile f(p.string());
    for (const auto& r : golden::check_hog(f, 1e-5)) {
      INFO(p.filename().string() << " " << r.name << " rel " << r.rel);
      CHECK(r.ok());
    }
  }
}

TEST_CASE("HOG names follow the reference (hog-x-g16_d128) and bad ones are errors", "[hog]") {
  const auto c = parse_hog_name("hog-x-g16_d128", 256);
  CHECK(c.grid == 16);
  CHECK(c.dim == 128);
  CHECK(c.orientations() == 8);
  CHECK(c.pixels_per_cell == 2);
  CHECK(c.cells_per_block == 4);
  CHECK(c.blocks() == 125);
  CHECK(c.name() == "hog-x-g16_d128");
  const auto d = parse_hog_name("hog-x-g6_d36_ppc1_cb3", 24);
  CHECK(d.orientations() == 4);
  CHECK(d.name() == "hog-x-g6_d36_ppc1_cb3");
  CHECK(parse_hog_name("g8_d32", 64).grid == 8);
  REQUIRE_IREPA_ERROR(parse_hog_name("hog-x-g16_d100", 256), "dim 100", "multiple of cells_per_block^2 = 16");
  REQUIRE_IREPA_ERROR(parse_hog_name("hog-x-g16_q3", 256), "part 'q3' is not known");
  REQUIRE_IREPA_ERROR(parse_hog_name("hog-x-gA_d128", 256), "part 'gA'");
  REQUIRE_IREPA_ERROR(parse_hog_name("hog-x-g16_d128", 6), "resolution 6", "fewer than a block");
  REQUIRE_IREPA_ERROR(parse_hog_name("hog-g16", 256), "expected hog-<arch>-<config>");
}

TEST_CASE("HOG puts a ramp's gradient in the bin of its direction", "[hog]") {
  // Intensity rising along x: every gradient points at 0 degrees (bin 0); along y: 90 degrees,
  // the first bin of the second half. Border pixels have no gradient.
  const HogEncoder enc(HogConfig{{.resolution = 16, .grid = 2, .dim = 64, .pixels_per_cell = 2, .cells_per_block = 4}});
  const std::int64_t nb = enc.config().orientations(), NB = enc.config().blocks(), R = 16;
  REQUIRE(nb == 4);
  for (const bool along_x : {true, false}) {
    const float slope = test::rand_uniform<float>(Shape{1}, 0.01f, 0.05f)[0];
    std::vector<float> g(static_cast<std::size_t>(R * R));
    for (std::int64_t y = 0; y < R; ++y)
      for (std::int64_t x = 0; x < R; ++x) g[static_cast<std::size_t>(y * R + x)] = slope * static_cast<float>(along_x ? x : y);
    const auto blocks = enc.blocks(g.data());  // [NB, NB, 4*4*nb]
    const std::int64_t want = along_x ? 0 : nb / 2;
    double in_bin = 0, elsewhere = 0;
    for (std::int64_t p = 0; p < NB * NB * 16; ++p)
      for (std::int64_t o = 0; o < nb; ++o) (o == want ? in_bin : elsewhere) += blocks[static_cast<std::size_t>(p * nb + o)];
    CHECK(in_bin > 1.0);
    CHECK(elsewhere == 0.0);
  }
}

TEST_CASE("HOG tokens: a grey image equals its RGB copy, shapes and errors", "[hog]") {
  CpuContext ctx(2);
  const HogEncoder enc("hog-x-g4_d32", 20);
  const auto grey = random_images(3, 1, 23);
  Tensor<float> rgb(Shape{3, 3, 23, 23});
  for (std::int64_t b = 0; b < 3; ++b)
    for (std::int64_t c = 0; c < 3; ++c)
      for (std::int64_t i = 0; i < 23 * 23; ++i) rgb[(b * 3 + c) * 23 * 23 + i] = grey[b * 23 * 23 + i];
  const auto a = enc.encode(ctx, grey), b = enc.encode(ctx, rgb);
  REQUIRE(a.shape() == Shape{3, 16, 32});
  for (std::int64_t i = 0; i < a.numel(); ++i) REQUIRE(a[i] == b[i]);
  // Per-block vectors are unit before the resize; their bilinear mixes have norm <= 1.
  for (std::int64_t t = 0; t < 3 * 16; ++t) {
    double s = 0;
    for (std::int64_t d = 0; d < 32; ++d) s += double(a[t * 32 + d]) * a[t * 32 + d];
    CHECK(std::sqrt(s) <= 1.0 + 1e-6);
    CHECK(std::sqrt(s) > 0.2);
  }
  // Images differ -> tokens differ (the encoder looks at its input).
  CHECK(test::rel_error(enc.encode(ctx, random_images(3, 1, 23)), a) > 0.05);
  REQUIRE_IREPA_ERROR(enc.encode(ctx, random_images(2, 2, 23)), "expected contiguous [B, 3 or 1, H, W]", "[2, 2, 23, 23]");
  // The op checks the output it is given.
  Tensor<float> wrong(Shape{3, 16, 31});
  REQUIRE_IREPA_ERROR(ops::hog_tokens(ctx, grey, enc.config().params(), wrong.view()), "output has shape [3, 16, 31]", "[3, 16, 32]");
}

// ---------------------------------------------------------------------------------------------
// Resizing (encoder preprocessing) and the DINOv2 ViT.

#include <irepa/models/target_encoder.hpp>
#include <irepa/ops/resize.hpp>

#include <nlohmann/json.hpp>

TEST_CASE("interpolate matches torch's F.interpolate (bilinear / bicubic, with and without antialias)", "[resize]") {
  io::SafeTensorsFile f((std::filesystem::path(IREPA_TEST_DATA_DIR) / "resize_cases.safetensors").string());
  const auto cases = nlohmann::json::parse(*f.metadata("cases"));
  REQUIRE(cases.size() == 8);
  CpuContext ctx(2);
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const auto x = f.load<double>("case" + std::to_string(i) + "/input");
    const auto want = f.load<double>("case" + std::to_string(i) + "/output");
    const auto y = ops::interpolate<double>(ctx, x, c["size"][0], c["size"][1],
                                            c["mode"] == "bicubic" ? ops::ResizeMode::Bicubic : ops::ResizeMode::Bilinear,
                                            c["antialias"].get<bool>());
    REQUIRE(y.shape() == want.shape());
    INFO("case " << i << ": " << c.dump());
    CHECK(test::rel_error(y, want) < 1e-13);
  }
  // A constant image stays constant under every mode (the weights sum to one).
  Tensor<double> k(Shape{1, 1, 9, 13});
  k.fill(test::rand_uniform<double>(Shape{1}, 1.0, 2.0)[0]);
  for (auto mode : {ops::ResizeMode::Bilinear, ops::ResizeMode::Bicubic})
    for (bool aa : {false, true}) {
      const auto y = ops::interpolate<double>(ctx, k, 4, 20, mode, aa);
      for (std::int64_t i = 0; i < y.numel(); ++i) REQUIRE(y[i] == Approx(k[0]).epsilon(1e-12));
    }
  REQUIRE_IREPA_ERROR(ops::interpolate<double>(ctx, Tensor<double>(Shape{3, 4}), 2, 2, ops::ResizeMode::Bilinear),
                      "expected a contiguous [N, C, H, W]");
}

TEST_CASE("DINOv2 and DINOv3 encoders match the reference's golden files (double and float)", "[vit][golden]") {
  if (!test::have_golden()) return;
  for (const char* name :
       {"encoder_dinov2_tiny.safetensors", "encoder_dinov2_tiny_reg4.safetensors", "encoder_dinov3_tiny.safetensors"}) {
    io::SafeTensorsFile f((test::golden_dir() / name).string());
    for (const auto& r : golden::check_vit_encoder<double>(f, 1e-9)) {
      INFO(name << " " << r.name << " rel " << r.rel);
      CHECK(r.ok());
    }
    for (const auto& r : golden::check_vit_encoder<float>(f, 1e-4)) {
      INFO(name << " float " << r.name << " rel " << r.rel);
      CHECK(r.ok());
    }
  }
}

TEST_CASE("DINOv2 weights as released (blocks.<i>, 37x37 positions, float32) load and give the same tokens", "[vit]") {
  if (!test::have_golden()) return;
  io::SafeTensorsFile g((test::golden_dir() / "encoder_dinov2_tiny_reg4.safetensors").string());
  // Rewrite the golden parameters the way tools/convert_encoder.py writes a hub checkpoint.
  const auto dir = std::filesystem::temp_directory_path() / ("irepa_vit_" + std::to_string(test::rng().seed()));
  std::filesystem::create_directories(dir);
  io::SafeTensorsWriter w;
  for (const auto& k : g.names()) {
    if (!k.starts_with("params/") || k == "params/pos_embed") continue;
    std::string name = k.substr(7);
    if (name.starts_with("blocks.0.")) name = "blocks." + name.substr(9);
    w.add(name, g.load<float>(k));
  }
  w.add("pos_embed", g.load<float>("params_original/pos_embed"));
  const auto path = (dir / "released.safetensors").string();
  w.write(path);

  io::SafeTensorsFile f(path);
  VitConfig cfg = golden::dinov2_setup(golden::config_of(g));
  CHECK(VitEncoder<float>::detect_block_chunks(f, "", cfg.depth) == 0);
  CHECK(VitEncoder<float>::detect_block_chunks(g, "params/", cfg.depth) == 1);
  VitEncoder<float> enc(cfg);
  enc.load(f);
  CpuContext ctx(2);
  const auto u8 = g.load<std::uint8_t>("inputs/image");
  Tensor<float> img(u8.shape());
  for (std::int64_t i = 0; i < u8.numel(); ++i) img[i] = u8[i];
  const auto tokens = enc.encode(ctx, img);
  CHECK(test::rel_error(tokens, g.load<double>("outputs/patch_tokens")) < 1e-4);

  // dinov2mixed: the same weights, each patch token mixed with the normed class token as the
  // reference's DINOv2MixedEncoder does (cls * 0.1 + patch * 0.9).
  {
    VitConfig mixed_cfg = cfg;
    mixed_cfg.cls_mix = 0.1;
    VitEncoder<float> mixed(mixed_cfg);
    mixed.load(f);
    const auto got = mixed.encode(ctx, img);
    const auto all = enc.tokens(ctx, enc.preprocess(ctx, img));  // [B, 1 + 4 + N, D]
    const std::int64_t B = got.size(0), N = got.size(1), D = got.size(2), T1 = all.size(1);
    REQUIRE(T1 == 1 + cfg.registers + N);
    double err = 0, moved = 0;
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t t = 0; t < N; ++t)
        for (std::int64_t d = 0; d < D; ++d) {
          const double want = static_cast<double>(all[b * T1 * D + d]) * 0.1 + static_cast<double>(tokens[(b * N + t) * D + d]) * 0.9;
          err = std::max(err, std::abs(got[(b * N + t) * D + d] - want));
          moved = std::max<double>(moved, std::abs(got[(b * N + t) * D + d] - tokens[(b * N + t) * D + d]));
        }
    CHECK(err < 1e-5);
    CHECK(moved > 1e-3);
    const VitConfig by_name = vit_config_from_name("dinov2mixedreg-vit-l");
    CHECK(by_name.cls_mix == 0.1);
    CHECK(by_name.registers == 4);
    CHECK(by_name.embed_dim == 1024);
    CHECK(vit_config_from_name("dinov2mixed-vit-b").registers == 0);
    CHECK(vit_config_from_name("dinov2reg-vit-b").cls_mix == 0.0);
    // It reads DINOv2's own weights file.
    REQUIRE_IREPA_ERROR(make_target_encoder("dinov2mixedreg-vit-b", 256, dir.string()), "dinov2reg-vit-b.safetensors' not found");
  }

  // A missing tensor and a position table that is not a square grid are named.
  {
    io::SafeTensorsWriter bad;
    for (const auto& k : f.names())
      if (k != "blocks.1.ls2.gamma") bad.add(k, f.load<float>(k));
    bad.write((dir / "missing.safetensors").string());
    REQUIRE_IREPA_ERROR(enc.load(io::SafeTensorsFile((dir / "missing.safetensors").string())), "missing 'blocks.1.ls2.gamma' [48]");
    io::SafeTensorsWriter odd;
    for (const auto& k : f.names()) odd.add(k, k == "pos_embed" ? test::randn<float>(Shape{1, 11, 48}) : f.load<float>(k));
    odd.write((dir / "odd.safetensors").string());
    REQUIRE_IREPA_ERROR(enc.load(io::SafeTensorsFile((dir / "odd.safetensors").string())), "'pos_embed' has shape [1, 11, 48]",
                        "square grid");
  }
  // By name, through the trainer's factory: missing weights say where they were looked for.
  REQUIRE_IREPA_ERROR(make_target_encoder("dinov2-vit-b", 256, dir.string()), "dinov2-vit-b.safetensors' not found",
                      "tools/convert_encoder.py");
  REQUIRE_IREPA_ERROR(make_target_encoder("dinov2-vit-q", 256, dir.string()), "size 'q' is not known");
  REQUIRE_IREPA_ERROR(make_target_encoder("dinov3-vit-b16", 256, dir.string()), "dinov3-vit-b16.safetensors' not found");
  CHECK(vit_config_from_name("dinov3-vit-b16").norm_eps == 1e-5);  // released models: layernormbf16
  CHECK(vit_config_from_name("dinov3-vit-l16").registers == 4);
  CHECK(vit_config_from_name("dinov2reg-vit-l").registers == 4);
  REQUIRE_IREPA_ERROR(make_target_encoder("sam2-vit-l", 256, dir.string()), "sam2-vit-l.safetensors' not found",
                      "facebook/sam2-hiera-");
  REQUIRE_IREPA_ERROR(make_target_encoder("radio-vit-h", 256, dir.string()), "'radio-vit-h' is not available");
  REQUIRE_IREPA_ERROR(make_target_encoder("pe-vit-l", 256, dir.string()), "pe-vit-l.safetensors' not found");
  std::filesystem::remove_all(dir);
}

TEST_CASE("Perception Encoder matches the reference's golden files, with and without class token (double and float)",
          "[vit][pe][golden]") {
  if (!test::have_golden()) return;
  for (const char* name : {"encoder_pe_tiny_nocls.safetensors", "encoder_pe_tiny_cls_ls.safetensors"}) {
    io::SafeTensorsFile f((test::golden_dir() / name).string());
    const auto rows = golden::check_vit_encoder<double>(f, 1e-9);
    REQUIRE(rows.size() == 2);  // preprocessed input and patch tokens
    for (const auto& r : rows) {
      INFO(name << " " << r.name << " rel " << r.rel);
      CHECK(r.ok());
    }
    for (const auto& r : golden::check_vit_encoder<float>(f, 1e-4)) {
      INFO(name << " float " << r.name << " rel " << r.rel);
      CHECK(r.ok());
    }
  }
}

TEST_CASE("Perception Encoder: names, released checkpoints with their pooling head, ln_post variant, errors", "[vit][pe]") {
  const VitConfig g = vit_config_from_name("pe-vit-g");
  CHECK(g.embed_dim == 1536);
  CHECK(g.depth == 50);
  CHECK(g.mlp_hidden() == 8960);
  CHECK_FALSE(g.cls_token);
  CHECK_FALSE(g.final_norm);
  CHECK(g.patch == 14);
  CHECK(g.input_size() == 224);  // patch * 16, as the reference's preprocessing
  CHECK(vit_config_from_name("pe-vit-lnorm").final_norm);
  CHECK(vit_config_from_name("pe-vit-b", 512).input_size() == 512);
  CHECK(vit_config_from_name("langpe-vit-l").depth == 23);
  CHECK(vit_config_from_name("langpe-vit-l").layerscale);
  CHECK(vit_config_from_name("spatialpe-vit-g").layerscale);
  CHECK_FALSE(vit_config_from_name("spatialpe-vit-l").layerscale);
  REQUIRE_IREPA_ERROR(vit_config_from_name("spatialpe-vit-lnorm"), "no ln_post");
  REQUIRE_IREPA_ERROR(vit_config_from_name("pe-vit-q"), "'pe-vit-q' is not known");
  if (!test::have_golden()) return;

  io::SafeTensorsFile g_file((test::golden_dir() / "encoder_pe_tiny_cls_ls.safetensors").string());
  const auto dir = std::filesystem::temp_directory_path() / ("irepa_pe_" + std::to_string(test::rng().seed()));
  std::filesystem::create_directories(dir);
  // The released layout: every tensor of the checkpoint (pooling head and projection too), float32.
  const auto path = (dir / "pe.safetensors").string();
  {
    io::SafeTensorsWriter w;
    for (const auto& k : g_file.names())
      if (k.starts_with("params/")) w.add(k.substr(7), g_file.load<float>(k));
    w.write(path);
  }
  io::SafeTensorsFile f(path);
  VitConfig cfg = golden::pe_setup(golden::config_of(g_file));
  VitEncoder<double> plain(cfg);
  plain.load(f);
  cfg.final_norm = true;
  VitEncoder<double> normed(cfg);
  normed.load(f);
  const auto u8 = g_file.load<std::uint8_t>("inputs/image");
  Tensor<double> img(u8.shape());
  for (std::int64_t i = 0; i < u8.numel(); ++i) img[i] = u8[i];
  CpuContext ctx(2);
  const auto a = plain.encode(ctx, img), b = normed.encode(ctx, img);
  CHECK(test::rel_error(a, g_file.load<double>("outputs/patch_tokens")) < 1e-6);  // float32 weights
  // The "norm" variant is ln_post (eps 1e-5) of the same tokens.
  const auto w = f.load<double>("ln_post.weight"), bias = f.load<double>("ln_post.bias");
  const std::int64_t D = a.size(2);
  Tensor<double> expect(a.shape());
  for (std::int64_t r = 0; r < a.numel() / D; ++r) {
    double m = 0, v = 0;
    for (std::int64_t d = 0; d < D; ++d) m += a[r * D + d] / static_cast<double>(D);
    for (std::int64_t d = 0; d < D; ++d) v += (a[r * D + d] - m) * (a[r * D + d] - m) / static_cast<double>(D);
    for (std::int64_t d = 0; d < D; ++d) expect[r * D + d] = (a[r * D + d] - m) / std::sqrt(v + 1e-5) * w[d] + bias[d];
  }
  CHECK(test::rel_error(b, expect) < 1e-12);
  CHECK(test::rel_error(b, a) > 0.01);

  // A missing LayerScale and a table that is not a class row plus a square grid are named.
  io::SafeTensorsWriter bad, odd;
  for (const auto& k : f.names()) {
    if (k != "transformer.resblocks.1.ls_2.gamma") bad.add(k, f.load<float>(k));
    odd.add(k, k == "positional_embedding" ? test::randn<float>(Shape{1 + 15, 64}) : f.load<float>(k));
  }
  bad.write((dir / "bad.safetensors").string());
  odd.write((dir / "odd.safetensors").string());
  REQUIRE_IREPA_ERROR(plain.load(io::SafeTensorsFile((dir / "bad.safetensors").string())),
                      "missing 'transformer.resblocks.1.ls_2.gamma' [64]");
  REQUIRE_IREPA_ERROR(plain.load(io::SafeTensorsFile((dir / "odd.safetensors").string())),
                      "'positional_embedding' has shape [16, 64]", "square grid");
  std::filesystem::remove_all(dir);
}

namespace {

/// What a plain ViT family does, written out naively (loops, double, one image) from the
/// released models' code, to check VitEncoder's wiring of the families without golden files.
struct NaiveVit {
  std::int64_t D = 16, heads = 2, depth = 2, patch = 2, H = 40, grid = 16;
  bool cls = true, conv_bias = true, ln_pre = false, final_norm = true, layerscale = false, swiglu = false;
  double eps = 1e-6;
  VitActivation act = VitActivation::Gelu;
  std::map<std::string, Tensor<double>> w;  // weights by role: "conv", "conv_b", "cls", "pos", "ln_pre.w", "b0.ln1.w", ...

  Tensor<double>& make(const std::string& role, const Shape& s, double scale) { return w[role] = test::randn<double>(s, scale); }
  const double* at(const std::string& role) const { return w.at(role).data(); }

  static void layer_norm(std::vector<double>& x, const double* g, const double* b, double eps) {
    double m = 0, v = 0;
    for (double a : x) m += a / static_cast<double>(x.size());
    for (double a : x) v += (a - m) * (a - m) / static_cast<double>(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = (x[i] - m) / std::sqrt(v + eps) * g[i] + b[i];
  }
  static std::vector<double> linear(const std::vector<double>& x, const double* W, const double* b, std::int64_t out) {
    std::vector<double> y(static_cast<std::size_t>(out));
    for (std::int64_t o = 0; o < out; ++o) {
      double s = b ? b[o] : 0.0;
      for (std::size_t i = 0; i < x.size(); ++i) s += W[o * static_cast<std::int64_t>(x.size()) + static_cast<std::int64_t>(i)] * x[i];
      y[static_cast<std::size_t>(o)] = s;
    }
    return y;
  }
  double activate(double x) const {
    if (act == VitActivation::QuickGelu) return x / (1 + std::exp(-1.702 * x));
    if (act == VitActivation::GeluTanh) return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
  }

  /// x [1, 3, S, S] preprocessed -> patch tokens [grid^2, D]
  std::vector<std::vector<double>> forward(const Tensor<double>& x) const {
    const std::int64_t S = grid * patch, N = grid * grid, C = cls ? 1 : 0, T = C + N, hd = D / heads;
    std::vector<std::vector<double>> h(static_cast<std::size_t>(T), std::vector<double>(static_cast<std::size_t>(D)));
    for (std::int64_t d = 0; d < D && cls; ++d) h[0][static_cast<std::size_t>(d)] = at("cls")[d] + at("pos")[d];
    for (std::int64_t r = 0; r < grid; ++r)
      for (std::int64_t c = 0; c < grid; ++c)
        for (std::int64_t d = 0; d < D; ++d) {
          double s = conv_bias ? at("conv_b")[d] : 0.0;
          for (std::int64_t ch = 0; ch < 3; ++ch)
            for (std::int64_t i = 0; i < patch; ++i)
              for (std::int64_t j = 0; j < patch; ++j)
                s += at("conv")[((d * 3 + ch) * patch + i) * patch + j] * x[(ch * S + r * patch + i) * S + c * patch + j];
          const std::int64_t t = C + r * grid + c;
          h[static_cast<std::size_t>(t)][static_cast<std::size_t>(d)] = s + at("pos")[t * D + d];
        }
    if (ln_pre)
      for (auto& row : h) layer_norm(row, at("ln_pre.w"), at("ln_pre.b"), eps);
    for (std::int64_t l = 0; l < depth; ++l) {
      const std::string p = "b" + std::to_string(l) + ".";
      std::vector<std::vector<double>> q, k, v;
      for (auto row : h) {
        layer_norm(row, at(p + "ln1.w"), at(p + "ln1.b"), eps);
        q.push_back(linear(row, at(p + "q.w"), at(p + "q.b"), D));
        k.push_back(linear(row, at(p + "k.w"), at(p + "k.b"), D));
        v.push_back(linear(row, at(p + "v.w"), at(p + "v.b"), D));
      }
      std::vector<std::vector<double>> a(static_cast<std::size_t>(T), std::vector<double>(static_cast<std::size_t>(D)));
      for (std::int64_t hh = 0; hh < heads; ++hh)
        for (std::int64_t i = 0; i < T; ++i) {
          std::vector<double> logit(static_cast<std::size_t>(T));
          double mx = -1e300, z = 0;
          for (std::int64_t j = 0; j < T; ++j) {
            double s = 0;
            for (std::int64_t e = 0; e < hd; ++e) s += q[i][hh * hd + e] * k[j][hh * hd + e];
            logit[j] = s / std::sqrt(static_cast<double>(hd));
            mx = std::max(mx, logit[j]);
          }
          for (auto& g : logit) z += (g = std::exp(g - mx));
          for (std::int64_t e = 0; e < hd; ++e) {
            double s = 0;
            for (std::int64_t j = 0; j < T; ++j) s += logit[j] / z * v[j][hh * hd + e];
            a[i][hh * hd + e] = s;
          }
        }
      for (std::int64_t i = 0; i < T; ++i) {
        const auto o = linear(a[i], at(p + "proj.w"), at(p + "proj.b"), D);
        for (std::int64_t d = 0; d < D; ++d) h[i][d] += (layerscale ? at(p + "ls1")[d] : 1.0) * o[d];
        auto row = h[i];
        layer_norm(row, at(p + "ln2.w"), at(p + "ln2.b"), eps);
        auto u = linear(row, at(p + "fc1.w"), at(p + "fc1.b"), swiglu ? 2 * H : H);
        if (swiglu) {  // silu(first half) * second half
          for (std::int64_t e = 0; e < H; ++e) u[e] = u[e] / (1 + std::exp(-u[e])) * u[H + e];
          u.resize(static_cast<std::size_t>(H));
        } else {
          for (auto& e : u) e = activate(e);
        }
        const auto m = linear(u, at(p + "fc2.w"), at(p + "fc2.b"), D);
        for (std::int64_t d = 0; d < D; ++d) h[i][d] += (layerscale ? at(p + "ls2")[d] : 1.0) * m[d];
      }
    }
    if (final_norm)
      for (auto& row : h) layer_norm(row, at("norm.w"), at("norm.b"), eps);
    return {h.begin() + C, h.end()};
  }

  /// Random weights for every role.
  void randomize() {
    const double s = 1.0 / std::sqrt(static_cast<double>(D));
    make("conv", Shape{D, 3, patch, patch}, 0.3), make("conv_b", Shape{D}, 0.1), make("cls", Shape{D}, 0.5);
    make("pos", Shape{(cls ? 1 : 0) + grid * grid, D}, 0.5);
    for (const char* n : {"ln_pre", "norm"}) make(std::string(n) + ".b", Shape{D}, 0.1), w[std::string(n) + ".w"] = plus_one(Shape{D});
    for (std::int64_t l = 0; l < depth; ++l) {
      const std::string p = "b" + std::to_string(l) + ".";
      for (const char* n : {"ln1", "ln2"}) w[p + n + ".w"] = plus_one(Shape{D}), make(p + n + ".b", Shape{D}, 0.1);
      for (const char* n : {"q", "k", "v", "proj"}) make(p + n + ".w", Shape{D, D}, s), make(p + n + ".b", Shape{D}, 0.1);
      make(p + "fc1.w", Shape{swiglu ? 2 * H : H, D}, s), make(p + "fc1.b", Shape{swiglu ? 2 * H : H}, 0.1);
      make(p + "fc2.w", Shape{D, H}, 1.0 / std::sqrt(static_cast<double>(H))), make(p + "fc2.b", Shape{D}, 0.1);
      w[p + "ls1"] = plus_one(Shape{D}), w[p + "ls2"] = plus_one(Shape{D});
    }
  }
  static Tensor<double> plus_one(const Shape& s) {
    auto t = test::randn<double>(s, 0.2);
    for (std::int64_t i = 0; i < t.numel(); ++i) t[i] += 1;
    return t;
  }
  /// [q; k; v] stacked, as timm / open_clip store them.
  Tensor<double> stacked(const std::string& p, const char* what) const {
    const std::int64_t n = std::string(what) == "w" ? D * D : D;
    Tensor<double> t(std::string(what) == "w" ? Shape{3 * D, D} : Shape{3 * D});
    int j = 0;
    for (const char* r : {"q.", "k.", "v."}) std::copy_n(at(p + r + what), n, t.data() + (j++) * n);
    return t;
  }
};

/// Writes `m`'s weights under a family's released names, loads them into VitEncoder, and
/// compares its tokens with the naive computation.
void check_family(const std::string& family, NaiveVit& m, VitConfig cfg, const std::string& prefix = {}) {
  m.randomize();
  io::SafeTensorsWriter wr;
  auto put = [&](const std::string& name, const Tensor<double>& t) { wr.add<double>(prefix + name, t.cview()); };
  auto reshape = [](const Tensor<double>& t, const Shape& s) { return Tensor<double>::copy_of(t.cview().reshape(s)); };
  const std::int64_t D = m.D, T = (m.cls ? 1 : 0) + m.grid * m.grid;
  if (family == "clip") {
    put("conv1.weight", m.w["conv"]), put("class_embedding", m.w["cls"]), put("positional_embedding", m.w["pos"]);
    put("ln_pre.weight", m.w["ln_pre.w"]), put("ln_pre.bias", m.w["ln_pre.b"]);
    put("ln_post.weight", m.w["norm.w"]), put("ln_post.bias", m.w["norm.b"]), put("proj", test::randn<double>(Shape{D, 8}));
  } else if (family == "siglip") {
    put("embeddings.patch_embedding.weight", m.w["conv"]), put("embeddings.patch_embedding.bias", m.w["conv_b"]);
    put("embeddings.position_embedding.weight", m.w["pos"]);
    put("post_layernorm.weight", m.w["norm.w"]), put("post_layernorm.bias", m.w["norm.b"]);
    put("head.probe", test::randn<double>(Shape{1, 1, D}));
    wr.add<double>("text_model.embeddings.token_embedding.weight", test::randn<double>(Shape{5, D}).cview());
  } else if (family == "hf_dinov2") {
    put("embeddings.cls_token", reshape(m.w["cls"], Shape{1, 1, D})), put("embeddings.mask_token", test::randn<double>(Shape{1, D}));
    put("embeddings.position_embeddings", reshape(m.w["pos"], Shape{1, T, D}));
    put("embeddings.patch_embeddings.projection.weight", m.w["conv"]), put("embeddings.patch_embeddings.projection.bias", m.w["conv_b"]);
    put("layernorm.weight", m.w["norm.w"]), put("layernorm.bias", m.w["norm.b"]);
  } else {  // timm (and DINOv2: a mask token, LayerScale, SwiGLU's w12 / w3 for g)
    if (family == "dinov2") put("mask_token", test::randn<double>(Shape{1, D}));
    put("patch_embed.proj.weight", m.w["conv"]), put("patch_embed.proj.bias", m.w["conv_b"]);
    if (m.cls) put("cls_token", reshape(m.w["cls"], Shape{1, 1, D}));
    put("pos_embed", reshape(m.w["pos"], Shape{1, T, D}));
    put("norm.weight", m.w["norm.w"]), put("norm.bias", m.w["norm.b"]);  // MAE's checkpoint has it though unused
  }
  for (std::int64_t l = 0; l < m.depth; ++l) {
    const std::string p = "b" + std::to_string(l) + ".", i = std::to_string(l);
    if (family == "clip") {
      const std::string b = "transformer.resblocks." + i + ".";
      put(b + "ln_1.weight", m.w[p + "ln1.w"]), put(b + "ln_1.bias", m.w[p + "ln1.b"]);
      put(b + "attn.in_proj_weight", m.stacked(p, "w")), put(b + "attn.in_proj_bias", m.stacked(p, "b"));
      put(b + "attn.out_proj.weight", m.w[p + "proj.w"]), put(b + "attn.out_proj.bias", m.w[p + "proj.b"]);
      put(b + "ln_2.weight", m.w[p + "ln2.w"]), put(b + "ln_2.bias", m.w[p + "ln2.b"]);
      put(b + "mlp.c_fc.weight", m.w[p + "fc1.w"]), put(b + "mlp.c_fc.bias", m.w[p + "fc1.b"]);
      put(b + "mlp.c_proj.weight", m.w[p + "fc2.w"]), put(b + "mlp.c_proj.bias", m.w[p + "fc2.b"]);
    } else if (family == "hf_dinov2") {
      const std::string b = "encoder.layer." + i + ".";
      put(b + "norm1.weight", m.w[p + "ln1.w"]), put(b + "norm1.bias", m.w[p + "ln1.b"]);
      for (const auto& [r, hf] : {std::pair{"q", "query"}, std::pair{"k", "key"}, std::pair{"v", "value"}}) {
        put(b + "attention.attention." + hf + ".weight", m.w[p + r + ".w"]);
        put(b + "attention.attention." + hf + ".bias", m.w[p + r + ".b"]);
      }
      put(b + "attention.output.dense.weight", m.w[p + "proj.w"]), put(b + "attention.output.dense.bias", m.w[p + "proj.b"]);
      put(b + "layer_scale1.lambda1", m.w[p + "ls1"]), put(b + "layer_scale2.lambda1", m.w[p + "ls2"]);
      put(b + "norm2.weight", m.w[p + "ln2.w"]), put(b + "norm2.bias", m.w[p + "ln2.b"]);
      put(b + "mlp.weights_in.weight", m.w[p + "fc1.w"]), put(b + "mlp.weights_in.bias", m.w[p + "fc1.b"]);
      put(b + "mlp.weights_out.weight", m.w[p + "fc2.w"]), put(b + "mlp.weights_out.bias", m.w[p + "fc2.b"]);
    } else if (family == "siglip") {
      const std::string b = "encoder.layers." + i + ".";
      put(b + "layer_norm1.weight", m.w[p + "ln1.w"]), put(b + "layer_norm1.bias", m.w[p + "ln1.b"]);
      for (const char* r : {"q", "k", "v"}) {
        put(b + "self_attn." + r + "_proj.weight", m.w[p + r + ".w"]);
        put(b + "self_attn." + r + "_proj.bias", m.w[p + r + ".b"]);
      }
      put(b + "self_attn.out_proj.weight", m.w[p + "proj.w"]), put(b + "self_attn.out_proj.bias", m.w[p + "proj.b"]);
      put(b + "layer_norm2.weight", m.w[p + "ln2.w"]), put(b + "layer_norm2.bias", m.w[p + "ln2.b"]);
      put(b + "mlp.fc1.weight", m.w[p + "fc1.w"]), put(b + "mlp.fc1.bias", m.w[p + "fc1.b"]);
      put(b + "mlp.fc2.weight", m.w[p + "fc2.w"]), put(b + "mlp.fc2.bias", m.w[p + "fc2.b"]);
    } else {
      const std::string b = "blocks." + i + ".";
      put(b + "norm1.weight", m.w[p + "ln1.w"]), put(b + "norm1.bias", m.w[p + "ln1.b"]);
      put(b + "attn.qkv.weight", m.stacked(p, "w")), put(b + "attn.qkv.bias", m.stacked(p, "b"));
      put(b + "attn.proj.weight", m.w[p + "proj.w"]), put(b + "attn.proj.bias", m.w[p + "proj.b"]);
      put(b + "norm2.weight", m.w[p + "ln2.w"]), put(b + "norm2.bias", m.w[p + "ln2.b"]);
      const std::string fc1 = m.swiglu ? "mlp.w12." : "mlp.fc1.", fc2 = m.swiglu ? "mlp.w3." : "mlp.fc2.";
      put(b + fc1 + "weight", m.w[p + "fc1.w"]), put(b + fc1 + "bias", m.w[p + "fc1.b"]);
      put(b + fc2 + "weight", m.w[p + "fc2.w"]), put(b + fc2 + "bias", m.w[p + "fc2.b"]);
      if (m.layerscale) put(b + "ls1.gamma", m.w[p + "ls1"]), put(b + "ls2.gamma", m.w[p + "ls2"]);
    }
  }
  const auto path = fs::temp_directory_path() / ("irepa_vitfam_" + family + std::to_string(test::rng().seed()) + ".safetensors");
  wr.write(path.string());
  cfg.embed_dim = m.D, cfg.heads = m.heads, cfg.depth = m.depth, cfg.patch = m.patch, cfg.mlp_dim = m.H;
  VitEncoder<double> enc(cfg);
  enc.load(io::SafeTensorsFile(path.string()), prefix);
  const std::int64_t S = m.grid * m.patch;
  const auto x = test::randn<double>(Shape{1, 3, S, S});
  const auto ours = enc.forward(CpuContext(2), x);
  const auto ref = m.forward(x);
  Tensor<double> r(ours.shape());
  for (std::int64_t t = 0; t < ours.size(1); ++t)
    for (std::int64_t d = 0; d < D; ++d) r[t * D + d] = ref[static_cast<std::size_t>(t)][static_cast<std::size_t>(d)];
  INFO(family << " rel error " << test::rel_error(ours, r));
  CHECK(test::rel_error(ours, r) < 1e-12);
  fs::remove(path);
}

}  // namespace

TEST_CASE("CLIP, SigLIP, DINOv2-g and the timm-style ViTs (MAE, MoCo v3, DINO, JEPA) load their released names and compute the plain ViT",
          "[vit]") {
  SECTION("clip-vit-L: open_clip names, no conv bias, ln_pre, QuickGELU, target before ln_post") {
    NaiveVit m;
    m.conv_bias = false, m.ln_pre = true, m.final_norm = false, m.act = VitActivation::QuickGelu, m.eps = 1e-5;
    check_family("clip", m, vit_config_from_name("clip-vit-L"));
  }
  SECTION("siglip2-vit-b: HuggingFace names under vision_model., separate q / k / v, no class token, gelu-tanh") {
    NaiveVit m;
    m.cls = false, m.act = VitActivation::GeluTanh;
    check_family("siglip", m, vit_config_from_name("siglip2-vit-b"), "vision_model.");
  }
  SECTION("mae-vit-l: timm names, no final norm (the checkpoint's norm is left unused)") {
    NaiveVit m;
    m.final_norm = false;
    check_family("timm", m, vit_config_from_name("mae-vit-l"));
  }
  SECTION("mocov3-vit-b and dino-vit-s: timm names with the final norm") {
    NaiveVit m;
    check_family("timm", m, vit_config_from_name("mocov3-vit-b"));
    check_family("timm", m, vit_config_from_name("dino-vit-s"));
  }
  SECTION("dinov2-vit-g: LayerScale and the SwiGLU MLP (mlp.w12 / mlp.w3)") {
    NaiveVit m;
    m.layerscale = true, m.swiglu = true;
    check_family("dinov2", m, vit_config_from_name("dinov2-vit-g"));
  }
  SECTION("webssl-*: HuggingFace Dinov2Model names (separate q / k / v, lambda1, SwiGLU weights_in / weights_out)") {
    NaiveVit m;
    m.layerscale = true, m.swiglu = true;
    const auto cfg = vit_config_from_hf_dinov2(nlohmann::json::parse(
        R"({"model_type": "dinov2", "hidden_size": 1536, "num_hidden_layers": 40, "num_attention_heads": 24, "patch_size": 14,
            "mlp_ratio": 4, "layer_norm_eps": 1e-06, "use_swiglu_ffn": true, "hidden_act": "gelu", "qkv_bias": true})"));
    CHECK(cfg.mlp_hidden() == 4096);
    CHECK(cfg.input_size() == 224);
    check_family("hf_dinov2", m, cfg);
    REQUIRE_IREPA_ERROR(vit_config_from_hf_dinov2(nlohmann::json::parse(R"({"model_type": "vit"})")), "model_type 'vit'");
    REQUIRE_IREPA_ERROR(make_target_encoder("webssl-vit-dino1b_full2b_224", 256, fs::temp_directory_path().string()),
                        "webssl-vit-dino1b_full2b_224.json' not found", "facebook/webssl-dino1b-full2b-224");
  }
  SECTION("jepa-vit-h: no class token") {
    NaiveVit m;
    m.cls = false;
    check_family("timm", m, vit_config_from_name("jepa-vit-h"));
  }
}

TEST_CASE("DINOv3-H+: the SwiGLU's w1 and w2 load under their names and act as one fused input projection", "[vit]") {
  if (!test::have_golden()) return;
  io::SafeTensorsFile g((test::golden_dir() / "encoder_dinov3_tiny.safetensors").string());
  VitConfig cfg = golden::dinov3_setup(golden::config_of(g));
  cfg.swiglu = true, cfg.mlp_dim = 24;
  const std::int64_t D = cfg.embed_dim, H = 24;
  // The golden DINOv3 with its MLPs replaced by SwiGLUs named as DINOv3 names them.
  io::SafeTensorsWriter w;
  std::map<std::string, Tensor<double>> mlp;
  for (const auto& k : g.names()) {
    if (!k.starts_with("params/") || k.find(".mlp.") != std::string::npos) continue;
    w.add<double>(k.substr(7), g.load<double>(k).cview());
  }
  for (std::int64_t l = 0; l < cfg.depth; ++l) {
    const std::string p = "blocks." + std::to_string(l) + ".mlp.";
    for (const char* n : {"w1", "w2"}) {
      mlp[p + n + ".weight"] = test::randn<double>(Shape{H, D}, 0.2), mlp[p + n + ".bias"] = test::randn<double>(Shape{H}, 0.1);
    }
    mlp[p + "w3.weight"] = test::randn<double>(Shape{D, H}, 0.2), mlp[p + "w3.bias"] = test::randn<double>(Shape{D}, 0.1);
  }
  for (const auto& [k, t] : mlp) w.add<double>(k, t.cview());
  const auto path = fs::temp_directory_path() / ("irepa_dinov3_swiglu_" + std::to_string(test::rng().seed()) + ".safetensors");
  w.write(path.string());
  VitEncoder<double> enc(cfg);
  enc.load(io::SafeTensorsFile(path.string()));
  for (std::int64_t l = 0; l < cfg.depth; ++l) {
    const auto& b = enc.blocks[static_cast<std::size_t>(l)];
    const std::string p = "blocks." + std::to_string(l) + ".mlp.";
    CHECK(test::rel_error(b.mlp.fused_w.cview().slice(0, 0, H), mlp[p + "w1.weight"]) == 0.0);
    CHECK(test::rel_error(b.mlp.fused_w.cview().slice(0, H, H), mlp[p + "w2.weight"]) == 0.0);
    CHECK(test::rel_error(b.mlp.fused_b.cview().slice(0, H, H), mlp[p + "w2.bias"]) == 0.0);
  }
  const auto u8 = g.load<std::uint8_t>("inputs/image");
  Tensor<double> img(u8.shape());
  for (std::int64_t i = 0; i < u8.numel(); ++i) img[i] = u8[i];
  const auto x = enc.preprocess(CpuContext(2), img);
  const auto tokens = enc.forward(CpuContext(2), x);
  CHECK(tokens.shape() == Shape{1, 256, D});
  CHECK(test::rel_error(tokens, g.load<double>("outputs/patch_tokens")) > 1e-3);  // the MLPs changed: so did the tokens
  const VitConfig h = vit_config_from_name("dinov3-vit-h16plus");
  CHECK(h.mlp_hidden() == 5120);  // int(7680 * 2 / 3), aligned to 8
  CHECK(h.split_swiglu());
  fs::remove(path);
}

TEST_CASE("every ViT family and variant: one random checkpoint under the released names gives the same tokens in float as in double",
          "[vit]") {
  const CpuContext ctx(2);
  Tensor<double> imd(Shape{2, 3, 256, 256});
  test::rng().uniform(imd.view(), 0.0, 255.0);
  Tensor<float> imf(imd.shape());
  convert(ctx, imd.cview(), imf.view());
  const Tensor<double>* previous = nullptr;
  Tensor<double> last;
  std::uint64_t k = 0;
  for (const auto& v : test::small_vit_variants()) {
    INFO(v.name);
    const auto path = fs::temp_directory_path() / ("irepa_vitvar_" + std::to_string(test::rng().seed()) + ".safetensors");
    write_random_vit_checkpoint(v.config, path.string(), test::rng().seed() + 11 + k++, 0.3f);
    const io::SafeTensorsFile f(path.string());
    VitEncoder<double> d(v.config);
    VitEncoder<float> s(v.config);
    d.load(f), s.load(f);
    fs::remove(path);
    Tensor<double> td = d.encode(ctx, imd);
    const Tensor<float> ts = s.encode(ctx, imf);
    REQUIRE(td.shape() == Shape{2, 256, 32});
    REQUIRE(ts.shape() == td.shape());
    const double e = test::rel_error(ts, td);
    INFO("float vs double relative error " << e);
    CHECK(e < 1e-5);
    CHECK(e > 0.0);  // the float path really is float
    if (previous) CHECK(test::rel_error(td, *previous) > 1e-3);  // each variant computes something of its own
    last = std::move(td);
    previous = &last;
  }
}

TEST_CASE("DINOv3-7B: no attn.qkv.bias in the file (as zero bias), its unused local_cls_norm ignored, swiglu64 width", "[vit]") {
  if (!test::have_golden()) return;
  io::SafeTensorsFile g((test::golden_dir() / "encoder_dinov3_tiny.safetensors").string());
  const VitConfig with_bias = golden::dinov3_setup(golden::config_of(g));
  VitConfig no_bias = with_bias;
  no_bias.qkv_bias = false;
  const std::int64_t D = with_bias.embed_dim;
  // The golden model's tensors without the qkv biases and masks, plus the 7B's training-only
  // local_cls_norm; and the same with explicit zero biases for the model that has them.
  io::SafeTensorsWriter without, zeros;
  for (const auto& k : g.names()) {
    if (!k.starts_with("params/")) continue;
    const std::string name = k.substr(7);
    const auto t = g.load<double>(k);
    const bool qkv_bias = name.ends_with("attn.qkv.bias") || name.ends_with("attn.qkv.bias_mask");
    if (!qkv_bias) without.add<double>(name, t.cview());
    if (name.ends_with("attn.qkv.bias")) {
      zeros.add<double>(name, Tensor<double>::zeros(t.shape()).cview());
    } else {
      zeros.add<double>(name, t.cview());
    }
  }
  without.add<double>("local_cls_norm.weight", test::randn<double>(Shape{D}).cview());
  without.add<double>("local_cls_norm.bias", test::randn<double>(Shape{D}).cview());
  const auto stem = fs::temp_directory_path() / ("irepa_dinov3_7b_" + std::to_string(test::rng().seed()));
  without.write(stem.string() + "_without.safetensors");
  zeros.write(stem.string() + "_zeros.safetensors");
  VitEncoder<double> a(no_bias), b(with_bias);
  a.load(io::SafeTensorsFile(stem.string() + "_without.safetensors"));
  b.load(io::SafeTensorsFile(stem.string() + "_zeros.safetensors"));
  // The model with biases does not load the file without them: the missing tensor is named.
  VitEncoder<double> c(with_bias);
  REQUIRE_IREPA_ERROR(c.load(io::SafeTensorsFile(stem.string() + "_without.safetensors")), "attn.qkv.bias");
  const auto u8 = g.load<std::uint8_t>("inputs/image");
  Tensor<double> img(u8.shape());
  for (std::int64_t i = 0; i < u8.numel(); ++i) img[i] = u8[i];
  const CpuContext ctx(2);
  const auto ta = a.encode(ctx, img), tb = b.encode(ctx, img);
  CHECK(test::rel_error(ta, tb) == 0.0);
  CHECK(test::rel_error(ta, g.load<double>("outputs/patch_tokens")) > 1e-6);  // the golden biases were not zero
  const VitConfig big = vit_config_from_name("dinov3-vit-7b16");
  CHECK(big.embed_dim == 4096);
  CHECK(big.depth == 40);
  CHECK(big.heads == 32);
  CHECK(big.mlp_hidden() == 8192);  // int(12288 * 2 / 3) rounded up to 64
  CHECK(!big.qkv_bias);
  CHECK(big.split_swiglu());
  CHECK(big.registers == 4);
  fs::remove(stem.string() + "_without.safetensors");
  fs::remove(stem.string() + "_zeros.safetensors");
}

TEST_CASE("ViT families: sizes and preprocessing by the reference's names", "[vit]") {
  struct Want {
    const char* name;
    std::int64_t D, depth, heads, patch, mlp, input;
    bool cls, final_norm;
  };
  for (const Want& w : {Want{"clip-vit-L", 1024, 24, 16, 14, 4096, 224, true, false},
                        Want{"mae-vit-l", 1024, 24, 16, 16, 4096, 256, true, false},
                        Want{"mocov3-vit-s", 384, 12, 12, 16, 1536, 256, true, true},
                        Want{"dino-vit-b", 768, 12, 12, 16, 3072, 256, true, true},
                        Want{"jepa-vit-h", 1280, 32, 16, 14, 5120, 224, false, true},
                        Want{"siglip-vit-so400m", 1152, 27, 16, 14, 4304, 224, false, true},
                        Want{"siglip2-vit-g", 1536, 40, 16, 16, 6144, 256, false, true},
                        Want{"dinov2-vit-g", 1536, 40, 24, 14, 4096, 224, true, true}}) {
    INFO(w.name);
    const VitConfig c = vit_config_from_name(w.name);
    CHECK(c.embed_dim == w.D);
    CHECK(c.depth == w.depth);
    CHECK(c.heads == w.heads);
    CHECK(c.patch == w.patch);
    CHECK(c.mlp_hidden() == w.mlp);
    CHECK(c.input_size() == w.input);
    CHECK(c.cls_token == w.cls);
    CHECK(c.final_norm == w.final_norm);
  }
  CHECK(vit_config_from_name("dinov2-vit-g").swiglu);
  REQUIRE_IREPA_ERROR(vit_config_from_name("siglip-vit-g"), "size 'g' is not known");
  REQUIRE_IREPA_ERROR(vit_config_from_name("mae-vit-l", 512), "256 only");
  REQUIRE_IREPA_ERROR(vit_config_from_name("webssl-vit-dino1b_full2b_224"), "config.json");
  REQUIRE_IREPA_ERROR(vit_config_from_name("sam2-vit-l"), "is not a ViT encoder", "Sam2Encoder");
  REQUIRE_IREPA_ERROR(vit_config_from_name("radio-vit-h"), "not available in this build");

  // Preprocessing order and constants: CLIP resizes (bicubic) then normalises with its own
  // mean/std; JEPA normalises with ImageNet's then resizes. Preprocessing reads only the
  // family's settings, so each model has one block (the full ViT-L and ViT-H in double are
  // 7 GB and most of a minute to build).
  const auto one_block = [](const char* name) {
    VitConfig c = vit_config_from_name(name);
    c.depth = 1;
    return c;
  };
  Tensor<double> img(Shape{1, 3, 256, 256});
  test::rng().uniform(img.view(), 0.0, 255.0);
  CpuContext ctx(2);
  Tensor<double> u(img.shape());
  for (std::int64_t i = 0; i < u.numel(); ++i) u[i] = img[i] / 255.0;
  {
    VitEncoder<double> clip(one_block("clip-vit-L"));
    auto r = ops::interpolate<double>(ctx, u, 224, 224, ops::ResizeMode::Bicubic, false);
    const double mean[3] = {0.48145466, 0.4578275, 0.40821073}, sd[3] = {0.26862954, 0.26130258, 0.27577711};
    for (std::int64_t i = 0; i < r.numel(); ++i) r[i] = (r[i] - mean[(i / (224 * 224)) % 3]) / sd[(i / (224 * 224)) % 3];
    CHECK(test::rel_error(clip.preprocess(ctx, img), r) < 1e-14);
  }
  {
    VitEncoder<double> jepa(one_block("jepa-vit-h"));
    Tensor<double> n(img.shape());
    const double mean[3] = {0.485, 0.456, 0.406}, sd[3] = {0.229, 0.224, 0.225};
    for (std::int64_t i = 0; i < n.numel(); ++i) n[i] = (u[i] - mean[(i / (256 * 256)) % 3]) / sd[(i / (256 * 256)) % 3];
    CHECK(test::rel_error(jepa.preprocess(ctx, img), ops::interpolate<double>(ctx, n, 224, 224, ops::ResizeMode::Bicubic, false)) < 1e-14);
  }
}

namespace {

/// SAM's vision encoder written out naively (loops, double, one image) from HuggingFace's
/// SamVisionEncoder: every window and the zero padding spelled out by grid position.
struct NaiveSam {
  SamConfig c;
  std::map<std::string, Tensor<double>> w;  // by HF name (without "vision_encoder.")

  explicit NaiveSam(const SamConfig& cfg) : c(cfg) {
    const std::int64_t D = c.hidden, hd = D / c.heads, g = c.grid(), O = c.out_channels, M = c.mlp_dim();
    auto make = [&](const std::string& n, const Shape& s, double scale, double shift = 0.0) {
      Tensor<double> t = test::randn<double>(s, scale);
      for (std::int64_t i = 0; i < t.numel(); ++i) t[i] += shift;
      w[n] = std::move(t);
    };
    make("patch_embed.projection.weight", Shape{D, 3, c.patch, c.patch}, 0.2);
    make("patch_embed.projection.bias", Shape{D}, 0.1);
    make("pos_embed", Shape{1, g, g, D}, 0.1);
    for (std::int64_t l = 0; l < c.depth; ++l) {
      const std::string p = "layers." + std::to_string(l) + ".";
      const std::int64_t rel = 2 * c.span(l) - 1;
      make(p + "layer_norm1.weight", Shape{D}, 0.1, 1.0), make(p + "layer_norm1.bias", Shape{D}, 0.1);
      make(p + "attn.qkv.weight", Shape{3 * D, D}, 0.3), make(p + "attn.qkv.bias", Shape{3 * D}, 0.1);
      make(p + "attn.proj.weight", Shape{D, D}, 0.3), make(p + "attn.proj.bias", Shape{D}, 0.1);
      make(p + "attn.rel_pos_h", Shape{rel, hd}, 0.3), make(p + "attn.rel_pos_w", Shape{rel, hd}, 0.3);
      make(p + "layer_norm2.weight", Shape{D}, 0.1, 1.0), make(p + "layer_norm2.bias", Shape{D}, 0.1);
      make(p + "mlp.lin1.weight", Shape{M, D}, 0.3), make(p + "mlp.lin1.bias", Shape{M}, 0.1);
      make(p + "mlp.lin2.weight", Shape{D, M}, 0.3), make(p + "mlp.lin2.bias", Shape{D}, 0.1);
    }
    make("neck.conv1.weight", Shape{O, D, 1, 1}, 0.3);
    make("neck.layer_norm1.weight", Shape{O}, 0.1, 1.0), make("neck.layer_norm1.bias", Shape{O}, 0.1);
    make("neck.conv2.weight", Shape{O, O, 3, 3}, 0.2);
    make("neck.layer_norm2.weight", Shape{O}, 0.1, 1.0), make("neck.layer_norm2.bias", Shape{O}, 0.1);
  }
  const double* at(const std::string& n) const { return w.at(n).data(); }

  /// x: one preprocessed image [3, S, S] -> tokens [side * side, O].
  std::vector<double> forward(const double* x) const {
    const std::int64_t D = c.hidden, H = c.heads, hd = D / H, g = c.grid(), p = c.patch, S = c.image_size, O = c.out_channels;
    using Vec = std::vector<double>;
    std::vector<Vec> h(static_cast<std::size_t>(g * g), Vec(static_cast<std::size_t>(D)));
    for (std::int64_t r = 0; r < g; ++r)
      for (std::int64_t q = 0; q < g; ++q)
        for (std::int64_t d = 0; d < D; ++d) {
          double s = at("patch_embed.projection.bias")[d] + at("pos_embed")[(r * g + q) * D + d];
          for (std::int64_t ch = 0; ch < 3; ++ch)
            for (std::int64_t i = 0; i < p; ++i)
              for (std::int64_t j = 0; j < p; ++j)
                s += at("patch_embed.projection.weight")[((d * 3 + ch) * p + i) * p + j] * x[(ch * S + r * p + i) * S + q * p + j];
          h[static_cast<std::size_t>(r * g + q)][static_cast<std::size_t>(d)] = s;
        }
    for (std::int64_t l = 0; l < c.depth; ++l) {
      const std::string pre = "layers." + std::to_string(l) + ".";
      const std::int64_t s = c.span(l), padded = (g + s - 1) / s * s;
      // qkv of every position of the padded grid; padding rows are zero after the norm.
      std::vector<Vec> qkv(static_cast<std::size_t>(padded * padded));
      for (std::int64_t r = 0; r < padded; ++r)
        for (std::int64_t q = 0; q < padded; ++q) {
          Vec n(static_cast<std::size_t>(D), 0.0);
          if (r < g && q < g) {
            n = h[static_cast<std::size_t>(r * g + q)];
            NaiveVit::layer_norm(n, at(pre + "layer_norm1.weight"), at(pre + "layer_norm1.bias"), c.norm_eps);
          }
          qkv[static_cast<std::size_t>(r * padded + q)] = NaiveVit::linear(n, at(pre + "attn.qkv.weight"), at(pre + "attn.qkv.bias"), 3 * D);
        }
      const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
      const double* rh = at(pre + "attn.rel_pos_h");
      const double* rw = at(pre + "attn.rel_pos_w");
      std::vector<Vec> upd(static_cast<std::size_t>(g * g));
      for (std::int64_t r = 0; r < g; ++r)
        for (std::int64_t q = 0; q < g; ++q) {
          const std::int64_t wr = r / s * s, wq = q / s * s, i = r - wr, j = q - wq;  // window origin, position inside
          Vec att(static_cast<std::size_t>(D), 0.0);
          const Vec& me = qkv[static_cast<std::size_t>(r * padded + q)];
          for (std::int64_t hh = 0; hh < H; ++hh) {
            std::vector<double> logit;
            for (std::int64_t ki = 0; ki < s; ++ki)
              for (std::int64_t kj = 0; kj < s; ++kj) {
                const Vec& other = qkv[static_cast<std::size_t>((wr + ki) * padded + wq + kj)];
                double a = 0, bh = 0, bw = 0;
                for (std::int64_t e = 0; e < hd; ++e) {
                  const double qe = me[static_cast<std::size_t>(hh * hd + e)];
                  a += qe * scale * other[static_cast<std::size_t>(D + hh * hd + e)];
                  bh += qe * rh[(i - ki + s - 1) * hd + e];
                  bw += qe * rw[(j - kj + s - 1) * hd + e];
                }
                logit.push_back(a + bh + bw);
              }
            double mx = -1e300, z = 0;
            for (double v : logit) mx = std::max(mx, v);
            for (double& v : logit) z += (v = std::exp(v - mx));
            for (std::int64_t ki = 0; ki < s; ++ki)
              for (std::int64_t kj = 0; kj < s; ++kj) {
                const Vec& other = qkv[static_cast<std::size_t>((wr + ki) * padded + wq + kj)];
                const double pk = logit[static_cast<std::size_t>(ki * s + kj)] / z;
                for (std::int64_t e = 0; e < hd; ++e)
                  att[static_cast<std::size_t>(hh * hd + e)] += pk * other[static_cast<std::size_t>(2 * D + hh * hd + e)];
              }
          }
          upd[static_cast<std::size_t>(r * g + q)] = NaiveVit::linear(att, at(pre + "attn.proj.weight"), at(pre + "attn.proj.bias"), D);
        }
      for (std::int64_t t = 0; t < g * g; ++t) {
        Vec& ht = h[static_cast<std::size_t>(t)];
        for (std::int64_t d = 0; d < D; ++d) ht[static_cast<std::size_t>(d)] += upd[static_cast<std::size_t>(t)][static_cast<std::size_t>(d)];
        Vec n = ht;
        NaiveVit::layer_norm(n, at(pre + "layer_norm2.weight"), at(pre + "layer_norm2.bias"), c.norm_eps);
        Vec m = NaiveVit::linear(n, at(pre + "mlp.lin1.weight"), at(pre + "mlp.lin1.bias"), c.mlp_dim());
        for (double& v : m) v = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
        const Vec o = NaiveVit::linear(m, at(pre + "mlp.lin2.weight"), at(pre + "mlp.lin2.bias"), D);
        for (std::int64_t d = 0; d < D; ++d) ht[static_cast<std::size_t>(d)] += o[static_cast<std::size_t>(d)];
      }
    }
    // Neck: 1x1 conv, LayerNorm over channels, 3x3 conv with zero padding, LayerNorm.
    std::vector<Vec> n1(static_cast<std::size_t>(g * g));
    for (std::int64_t t = 0; t < g * g; ++t) {
      n1[static_cast<std::size_t>(t)] = NaiveVit::linear(h[static_cast<std::size_t>(t)], at("neck.conv1.weight"), nullptr, O);
      NaiveVit::layer_norm(n1[static_cast<std::size_t>(t)], at("neck.layer_norm1.weight"), at("neck.layer_norm1.bias"), c.norm_eps);
    }
    std::vector<Vec> n2(static_cast<std::size_t>(g * g), Vec(static_cast<std::size_t>(O), 0.0));
    for (std::int64_t r = 0; r < g; ++r)
      for (std::int64_t q = 0; q < g; ++q) {
        Vec& out = n2[static_cast<std::size_t>(r * g + q)];
        for (std::int64_t o = 0; o < O; ++o)
          for (std::int64_t di = -1; di <= 1; ++di)
            for (std::int64_t dj = -1; dj <= 1; ++dj) {
              if (r + di < 0 || r + di >= g || q + dj < 0 || q + dj >= g) continue;
              const Vec& in = n1[static_cast<std::size_t>((r + di) * g + q + dj)];
              for (std::int64_t ci = 0; ci < O; ++ci)
                out[static_cast<std::size_t>(o)] += at("neck.conv2.weight")[((o * O + ci) * 3 + di + 1) * 3 + dj + 1] * in[static_cast<std::size_t>(ci)];
            }
        NaiveVit::layer_norm(out, at("neck.layer_norm2.weight"), at("neck.layer_norm2.bias"), c.norm_eps);
      }
    // Bilinear, align_corners false, g -> side.
    const std::int64_t side = c.side();
    const double sc = static_cast<double>(g) / static_cast<double>(side);
    auto src = [&](std::int64_t d, std::int64_t& i0, std::int64_t& i1, double& f) {
      const double v = std::max(0.0, (static_cast<double>(d) + 0.5) * sc - 0.5);
      i0 = static_cast<std::int64_t>(v), i1 = std::min(i0 + 1, g - 1), f = v - static_cast<double>(i0);
    };
    std::vector<double> tokens(static_cast<std::size_t>(side * side * O));
    for (std::int64_t r = 0; r < side; ++r)
      for (std::int64_t q = 0; q < side; ++q) {
        std::int64_t r0, r1, q0, q1;
        double fr, fq;
        src(r, r0, r1, fr), src(q, q0, q1, fq);
        for (std::int64_t o = 0; o < O; ++o) {
          auto v = [&](std::int64_t a, std::int64_t b) { return n2[static_cast<std::size_t>(a * g + b)][static_cast<std::size_t>(o)]; };
          tokens[static_cast<std::size_t>((r * side + q) * O + o)] =
              (1 - fr) * ((1 - fq) * v(r0, q0) + fq * v(r0, q1)) + fr * ((1 - fq) * v(r1, q0) + fq * v(r1, q1));
        }
      }
    return tokens;
  }
};

}  // namespace

TEST_CASE("SAM encoder: windows with zero padding, global blocks, relative positions and the neck, against a loop-by-loop SAM",
          "[vit][sam]") {
  // A small SAM: a 10x10 grid in windows of 4 (padded to 12, 9 windows), block 1 global;
  // tokens resized 10 -> 3.
  SamConfig cfg;
  cfg.hidden = 16, cfg.heads = 2, cfg.depth = 3, cfg.patch = 4, cfg.image_size = 40, cfg.window = 4, cfg.out_channels = 8;
  cfg.global_attn = {1}, cfg.resolution = 48;
  const NaiveSam naive(cfg);
  // Written as a SamModel checkpoint: the vision tower under "vision_encoder.", beside other parts.
  io::SafeTensorsWriter wr;
  for (const auto& [k, t] : naive.w) wr.add<double>("vision_encoder." + k, t.cview());
  wr.add<double>("prompt_encoder.shared_embedding.positional_embedding", test::randn<double>(Shape{2, 4}).cview());
  wr.add<double>("mask_decoder.iou_token.weight", test::randn<double>(Shape{1, 8}).cview());
  const auto path = fs::temp_directory_path() / ("irepa_sam_" + std::to_string(test::rng().seed()) + ".safetensors");
  wr.write(path.string());
  SamEncoder<double> enc(cfg);
  enc.load(io::SafeTensorsFile(path.string()));

  const CpuContext ctx(2);
  Tensor<double> img(Shape{2, 3, 48, 48});
  test::rng().uniform(img.view(), 0.0, 255.0);
  const Tensor<double> x = enc.preprocess(ctx, img);
  // Preprocessing: /255, bicubic to 40 (no antialias), then ImageNet mean/std.
  {
    Tensor<double> u(img.shape());
    for (std::int64_t i = 0; i < u.numel(); ++i) u[i] = img[i] / 255.0;
    auto r = ops::interpolate<double>(ctx, u, 40, 40, ops::ResizeMode::Bicubic, false);
    const double mean[3] = {0.485, 0.456, 0.406}, sd[3] = {0.229, 0.224, 0.225};
    for (std::int64_t i = 0; i < r.numel(); ++i) r[i] = (r[i] - mean[(i / 1600) % 3]) / sd[(i / 1600) % 3];
    CHECK(test::rel_error(x, r) < 1e-14);
  }
  const Tensor<double> got = enc.forward(ctx, x);
  REQUIRE(got.shape() == Shape{2, 9, 8});
  CHECK(enc.tokens() == 9);
  CHECK(enc.dim() == 8);
  for (std::int64_t b = 0; b < 2; ++b) {
    const std::vector<double> want = naive.forward(x.data() + b * 3 * 40 * 40);
    double err = 0, mag = 0;
    for (std::int64_t i = 0; i < 9 * 8; ++i) {
      err = std::max(err, std::abs(got[b * 72 + i] - want[static_cast<std::size_t>(i)]));
      mag = std::max(mag, std::abs(want[static_cast<std::size_t>(i)]));
    }
    CHECK(mag > 0.1);
    CHECK(err < 1e-12 * mag + 1e-13);
  }
  // float gives the same tokens to float precision.
  SamEncoder<float> encf(cfg);
  encf.load(io::SafeTensorsFile(path.string()));
  Tensor<float> imgf(img.shape());
  for (std::int64_t i = 0; i < img.numel(); ++i) imgf[i] = static_cast<float>(img[i]);
  CHECK(test::rel_error(encf.encode(ctx, imgf), got) < 1e-5);

  // A vision-only file must hold exactly the encoder's tensors; a missing one is named.
  io::SafeTensorsWriter bad;
  for (const auto& [k, t] : naive.w)
    if (k != "layers.2.attn.rel_pos_w") bad.add<double>(k, t.cview());
  const auto bad_path = fs::temp_directory_path() / ("irepa_sam_bad_" + std::to_string(test::rng().seed()) + ".safetensors");
  bad.write(bad_path.string());
  REQUIRE_IREPA_ERROR(enc.load(io::SafeTensorsFile(bad_path.string())), "missing 'layers.2.attn.rel_pos_w'");
  fs::remove(path);
  fs::remove(bad_path);

  // The released sizes by the reference's names.
  const SamConfig l = sam_config_from_name("sam-vit-l");
  CHECK(l.hidden == 1024);
  CHECK(l.depth == 24);
  CHECK(l.global_attn == std::vector<std::int64_t>{5, 11, 17, 23});
  CHECK(l.grid() == 64);
  {
    const SamEncoder<float> b(sam_config_from_name("sam-vit-b"));
    CHECK(b.layers[2].rel_h.value.shape() == Shape{127, 64});  // global: 2 * 64 - 1
    CHECK(b.layers[0].rel_h.value.shape() == Shape{27, 64});   // window 14: 2 * 14 - 1
    CHECK(b.params().numel() == 89'670'912);                    // facebook/sam-vit-base's vision encoder
  }
  CHECK(sam_config_from_name("sam-vit-h", 512).side() == 32);
  REQUIRE_IREPA_ERROR(sam_config_from_name("sam-vit-g"), "size 'g' is not known");
  REQUIRE_IREPA_ERROR(sam_config_from_name("sam-vit-b", 1024), "resolution 1024 is not supported");
  REQUIRE_IREPA_ERROR(make_target_encoder("sam-vit-b", 256, fs::temp_directory_path().string()), "sam-vit-b.safetensors' not found",
                      "facebook/sam-vit-");
}

TEST_CASE("SAM2 encoder (Hiera trunk) matches PyTorch, loads Sam2Model files, names what is missing", "[vit][sam2][golden]") {
  // tests/data/golden/encoder_sam2_tiny.safetensors (scripts/golden/make_sam2_case.py): a small
  // Hiera with q-pooled windows that need padding, windowed blocks on a padded grid, a global
  // block and 1..4 heads, computed in float64 by PyTorch as HF's Sam2HieraDetModel does.
  const io::SafeTensorsFile golden_file((kExtra / "encoder_sam2_tiny.safetensors").string());
  for (const auto& r : golden::check_sam2_encoder<double>(golden_file, 1e-9)) {
    INFO(r.name << " rel " << r.rel);
    CHECK(r.ok());
  }
  for (const auto& r : golden::check_sam2_encoder<float>(golden_file, 1e-5)) {
    INFO("float " << r.name << " rel " << r.rel);
    CHECK(r.ok());
  }
  const Sam2Config cfg = golden::sam2_setup(golden::config_of(golden_file));
  CHECK(cfg.grid() == 24);
  CHECK(cfg.side() == 3);
  CHECK(cfg.block(1).pool);          // first block of stage 1: q-pooled in windows of stage 0's size
  CHECK(cfg.block(6).window == 4);   // stage 3 opens with stage 2's window: 6x6 padded to 8x8, pooled
  CHECK(cfg.block(4).window == 0);   // global
  CHECK(!cfg.block(5).pool);

  // As HuggingFace saves a Sam2Model: the trunk under "vision_encoder.backbone.", beside the neck
  // and the mask decoder, read with no prefix given.
  io::SafeTensorsWriter wr;
  std::vector<std::string> trunk;
  for (const auto& k : golden_file.names())
    if (k.starts_with("params/")) {
      wr.add<double>(k.substr(7), golden_file.load<double>(k).cview());
      if (k.starts_with("params/vision_encoder.backbone.")) trunk.push_back(k.substr(31));
    }
  wr.add<double>("mask_decoder.iou_token.weight", test::randn<double>(Shape{1, 8}).cview());
  const auto path = fs::temp_directory_path() / ("irepa_sam2_" + std::to_string(test::rng().seed()) + ".safetensors");
  wr.write(path.string());
  Sam2Encoder<float> enc(cfg);
  enc.load(io::SafeTensorsFile(path.string()));
  const auto u8 = golden_file.load<std::uint8_t>("inputs/image");
  Tensor<float> images(u8.shape());
  for (std::int64_t i = 0; i < u8.numel(); ++i) images[i] = static_cast<float>(u8[i]);
  const CpuContext ctx(2);
  const Tensor<float> tokens = enc.encode(ctx, images);
  REQUIRE(tokens.shape() == Shape{2, 9, 32});
  CHECK(enc.tokens() == 9);
  CHECK(enc.dim() == 32);
  CHECK(golden::rel_error<float>(tokens, golden_file.load<double>("outputs/patch_tokens").cview()) < 1e-5);
  // Batch-friendly: the second image alone gives its row of the batch.
  Tensor<float> second(Shape{1, 3, 48, 48});
  std::copy_n(images.data() + 3 * 48 * 48, 3 * 48 * 48, second.data());
  const Tensor<float> alone = enc.encode(ctx, second);
  Tensor<float> row(Shape{1, 9, 32});
  std::copy_n(tokens.data() + 9 * 32, 9 * 32, row.data());
  CHECK(test::rel_error(alone, row) < 1e-6);

  // A trunk-only file must hold exactly the trunk's tensors; a missing one is named.
  io::SafeTensorsWriter bad;
  for (const auto& k : trunk)
    if (k != "blocks.6.proj.weight") bad.add<double>(k, golden_file.load<double>("params/vision_encoder.backbone." + k).cview());
  const auto bad_path = fs::temp_directory_path() / ("irepa_sam2_bad_" + std::to_string(test::rng().seed()) + ".safetensors");
  bad.write(bad_path.string());
  REQUIRE_IREPA_ERROR(enc.load(io::SafeTensorsFile(bad_path.string())), "missing 'blocks.6.proj.weight'");
  fs::remove(path);
  fs::remove(bad_path);

  // The released sizes by the reference's names (facebook/sam2-hiera-small, -base-plus, -large).
  const Sam2Config s = sam2_config_from_name("sam2-vit-s");
  CHECK(s.depth() == 16);
  CHECK(s.grid() == 128);  // 512 input, stride 4
  CHECK(s.side() == 16);   // 256 tokens, as the trainer needs
  CHECK(s.block(3).window == 4);  // stage 2 opens with stage 1's window
  CHECK(s.block(3).pool);
  CHECK(s.block(7).window == 0);
  CHECK(s.block(14).window == 14);  // stage 3 opens with stage 2's 14, pooled to 7
  CHECK(Sam2Encoder<float>(s).dim() == 768);
  const Sam2Config b = sam2_config_from_name("sam2-vit-b");
  CHECK(b.depth() == 24);
  CHECK(b.dims.back() == 896);
  CHECK(b.pos_bkg_h == 14);
  const Sam2Config l = sam2_config_from_name("sam2-vit-l", 512);
  CHECK(l.depth() == 48);
  CHECK(l.dims.back() == 1152);
  CHECK(l.block(44).window == 16);  // stage 3 opens with stage 2's 16
  CHECK(l.side() == 32);
  REQUIRE_IREPA_ERROR(sam2_config_from_name("sam2-vit-t"), "size 't' is not known");
  REQUIRE_IREPA_ERROR(sam2_config_from_name("sam2-vit-s", 384), "resolution 384 is not supported");
  Sam2Config odd = cfg;
  odd.global_attn = {3};  // a pooling block cannot be global
  REQUIRE_IREPA_ERROR(Sam2Encoder<float>{odd}, "block 3 pools its queries but is global");
  odd = cfg;
  odd.dims[2] = odd.dims[1];  // stage 2 opens with a pooling block that keeps the width
  REQUIRE_IREPA_ERROR(Sam2Encoder<float>{odd}, "pools its queries but keeps the width");
  odd = cfg;
  odd.resolution = 36;  // grid 18: the 4x4 window table does not tile it
  REQUIRE_IREPA_ERROR(Sam2Encoder<float>{odd}, "18x18 patch grid", "4x4 window table");
}

TEST_CASE("VGG16 pool4 encoder: convs, ReLUs and max pools as torchvision's features[:24], against loops", "[vgg]") {
  // Narrow stages so that the loops stay quick; the structure (2, 2, 3, 3 convs, pools) is VGG16's.
  VggConfig cfg;
  cfg.widths = {2, 3, 4, 5}, cfg.resolution = 32;
  const std::int64_t idx[] = {0, 2, 5, 7, 10, 12, 14, 17, 19, 21};
  std::map<std::string, Tensor<double>> w;
  {
    std::int64_t in = 3, k = 0;
    for (std::size_t s = 0; s < 4; ++s)
      for (std::int64_t c = 0; c < cfg.convs[s]; ++c, ++k) {
        const std::string p = "features." + std::to_string(idx[k]) + ".";
        w[p + "weight"] = test::randn<double>(Shape{cfg.widths[s], in, 3, 3}, 0.4);
        w[p + "bias"] = test::randn<double>(Shape{cfg.widths[s]}, 0.1);
        in = cfg.widths[s];
      }
  }
  io::SafeTensorsWriter wr;
  for (const auto& [k, t] : w) wr.add<double>(k, t.cview());
  wr.add<double>("classifier.0.weight", test::randn<double>(Shape{3, 4}).cview());  // torchvision's head: ignored
  const auto path = fs::temp_directory_path() / ("irepa_vgg_" + std::to_string(test::rng().seed()) + ".safetensors");
  wr.write(path.string());
  VggEncoder<double> enc(cfg);
  enc.load(io::SafeTensorsFile(path.string()));
  fs::remove(path);

  const CpuContext ctx(2);
  Tensor<double> img(Shape{2, 3, 32, 32});
  test::rng().uniform(img.view(), 0.0, 255.0);
  const Tensor<double> x = enc.preprocess(ctx, img);
  const double mean[3] = {0.485, 0.456, 0.406}, sd[3] = {0.229, 0.224, 0.225};
  double pre_err = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i)
    pre_err = std::max(pre_err, std::abs(x[i] - (img[i] / 255.0 - mean[(i / 1024) % 3]) / sd[(i / 1024) % 3]));
  CHECK(pre_err < 1e-14);  // bilinear to the same size is the identity
  const Tensor<double> got = enc.forward(ctx, x);
  REQUIRE(got.shape() == Shape{2, 4, 5});
  CHECK(enc.tokens() == 4);
  CHECK(enc.dim() == 5);

  // Loops: channels-first, zero-padded 3x3 convs, ReLU, 2x2 max pools.
  for (std::int64_t b = 0; b < 2; ++b) {
    std::vector<double> h(x.data() + b * 3 * 1024, x.data() + (b + 1) * 3 * 1024);
    std::int64_t C = 3, S = 32, k = 0;
    for (std::size_t s = 0; s < 4; ++s) {
      for (std::int64_t c = 0; c < cfg.convs[s]; ++c, ++k) {
        const std::string p = "features." + std::to_string(idx[k]) + ".";
        const std::int64_t O = cfg.widths[s];
        std::vector<double> y(static_cast<std::size_t>(O * S * S));
        for (std::int64_t o = 0; o < O; ++o)
          for (std::int64_t i = 0; i < S; ++i)
            for (std::int64_t j = 0; j < S; ++j) {
              double v = w.at(p + "bias")[o];
              for (std::int64_t ci = 0; ci < C; ++ci)
                for (std::int64_t di = 0; di < 3; ++di)
                  for (std::int64_t dj = 0; dj < 3; ++dj) {
                    const std::int64_t r = i + di - 1, q = j + dj - 1;
                    if (r >= 0 && r < S && q >= 0 && q < S)
                      v += w.at(p + "weight")[((o * C + ci) * 3 + di) * 3 + dj] * h[static_cast<std::size_t>((ci * S + r) * S + q)];
                  }
              y[static_cast<std::size_t>((o * S + i) * S + j)] = std::max(v, 0.0);
            }
        h = std::move(y), C = O;
      }
      std::vector<double> pooled(static_cast<std::size_t>(C * (S / 2) * (S / 2)));
      for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t i = 0; i < S / 2; ++i)
          for (std::int64_t j = 0; j < S / 2; ++j) {
            double m = -1e300;
            for (std::int64_t di = 0; di < 2; ++di)
              for (std::int64_t dj = 0; dj < 2; ++dj) m = std::max(m, h[static_cast<std::size_t>((c * S + 2 * i + di) * S + 2 * j + dj)]);
            pooled[static_cast<std::size_t>((c * (S / 2) + i) * (S / 2) + j)] = m;
          }
      h = std::move(pooled), S /= 2;
    }
    double err = 0, mag = 0;
    for (std::int64_t t = 0; t < 4; ++t)
      for (std::int64_t c = 0; c < 5; ++c) {
        err = std::max(err, std::abs(got[(b * 4 + t) * 5 + c] - h[static_cast<std::size_t>(c * 4 + t)]));
        mag = std::max(mag, std::abs(h[static_cast<std::size_t>(c * 4 + t)]));
      }
    CHECK(mag > 1e-3);
    CHECK(err < 1e-12 * mag + 1e-14);
  }
  // Through make_target_encoder the loaded model is kept for placing on the model's device: its
  // twin (VggEncoder<float, D>::from_host) computes what the handle does.
  {
    VggEncoder<float> small(vgg_config_from_name("vgg-cnn-16", 32));  // VGG16's widths: what the factory builds
    Philox r(test::rng().seed() + 7);
    r.normal(small.params().values(), 0.0f, 0.03f);
    io::SafeTensorsWriter ws;
    io::add_params(ws, small.params());
    const auto dir = fs::temp_directory_path() / ("irepa_vggdir_" + std::to_string(test::rng().seed()));
    fs::create_directories(dir);
    ws.write((dir / "vgg-cnn-16.safetensors").string());
    const TargetEncoder e = make_target_encoder("vgg-cnn-16", 32, dir.string());
    REQUIRE(std::holds_alternative<std::shared_ptr<const VggEncoder<float>>>(e.host_model));
    const auto twin = VggEncoder<float>::from_host(*std::get<std::shared_ptr<const VggEncoder<float>>>(e.host_model));
    Tensor<float> im(Shape{2, 3, 32, 32});
    test::rng().uniform(im.view(), 0.0f, 255.0f);
    const Tensor<float> a = e.encode(ctx, im), b = twin.encode(ctx, im);
    REQUIRE(a.shape() == Shape{2, 4, 512});
    CHECK(*std::max_element(a.data(), a.data() + a.numel()) > 1e-4f);  // ReLU features: some positive
    CHECK(std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<std::size_t>(a.numel())) == 0);
    const std::vector<TargetEncoder> online{e};  // the placed encoders refer to it
    const auto placed = place_encoders<Cpu>(online);
    CHECK(describe_placement(placed) == "vgg-cnn-16 on cpu");
    fs::remove_all(dir);
  }
  // The released shape by name: 7.6 M values in features[:24] (conv1_1 .. conv4_3).
  CHECK(VggEncoder<float>(vgg_config_from_name("vgg-cnn-16")).params().numel() == 7'635'264);
  REQUIRE_IREPA_ERROR(vgg_config_from_name("vgg16"), "expected vgg-<arch>-<config>");
  REQUIRE_IREPA_ERROR(make_target_encoder("vgg-x-16", 256, fs::temp_directory_path().string()), "vgg-x-16.safetensors' not found",
                      "vgg16_features");
}

TEST_CASE("HOG as an online target: weight-free, kept by the handle for placing on the model's device", "[hog]") {
  const CpuContext ctx(2);
  const TargetEncoder e = make_target_encoder("hog-x-g4_d32", 20);
  REQUIRE(std::holds_alternative<std::shared_ptr<const HogEncoder>>(e.host_model));
  const HogEncoder twin = HogEncoder::from_host(*std::get<std::shared_ptr<const HogEncoder>>(e.host_model));
  const auto images = random_images(2, 3, 23);
  const Tensor<float> a = e.encode(ctx, images), b = twin.encode(ctx, images);
  REQUIRE(a.shape() == Shape{2, 16, 32});
  CHECK(std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<std::size_t>(a.numel())) == 0);
  const std::vector<TargetEncoder> online{e};
  CHECK(describe_placement(place_encoders<Cpu>(online)) == "hog-x-g4_d32 on cpu");
}

TEST_CASE("SAM's and SAM2's window ops: partition with padding and merge against loops, im2col against a strided conv, errors",
          "[sam][window]") {
  const CpuContext ctx(2);
  // A 10 x 10 grid in windows of 4: padded to 12, 3 x 3 windows per image.
  const auto x = test::randn<double>(Shape{2, 10, 10, 3});
  Tensor<double> w(Shape{18, 16, 3});
  ops::window_partition<double>(ctx, x, 4, w.view());
  double pad_abs = 0, err = 0;
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t wr = 0; wr < 3; ++wr)
      for (std::int64_t wc = 0; wc < 3; ++wc)
        for (std::int64_t i = 0; i < 4; ++i)
          for (std::int64_t j = 0; j < 4; ++j)
            for (std::int64_t c = 0; c < 3; ++c) {
              const double got = w[(((b * 3 + wr) * 3 + wc) * 16 + i * 4 + j) * 3 + c];
              const std::int64_t r = wr * 4 + i, q = wc * 4 + j;
              if (r < 10 && q < 10) err = std::max(err, std::abs(got - x[((b * 10 + r) * 10 + q) * 3 + c]));
              else pad_abs = std::max(pad_abs, std::abs(got));
            }
  CHECK(err == 0);
  CHECK(pad_abs == 0);
  Tensor<double> back(x.shape());
  ops::window_merge<double>(ctx, w, back.view());
  CHECK(test::rel_error(back, x) == 0);
  // Merging pooled windows (2 x 2 each) of the same layout gives the 5 x 5 grid they cover.
  const auto pooled_w = test::randn<double>(Shape{18, 4, 3});
  Tensor<double> small(Shape{2, 5, 5, 3});
  ops::window_merge<double>(ctx, pooled_w, small.view());
  double merr = 0;
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t r = 0; r < 5; ++r)
      for (std::int64_t q = 0; q < 5; ++q)
        for (std::int64_t c = 0; c < 3; ++c)
          merr = std::max(merr, std::abs(small[((b * 5 + r) * 5 + q) * 3 + c] -
                                         pooled_w[(((b * 3 + r / 2) * 3 + q / 2) * 4 + (r % 2) * 2 + q % 2) * 3 + c]));
  CHECK(merr == 0);

  // im2col + a linear is the 7x7 stride-4 zero-padded convolution.
  const auto img = test::randn<double>(Shape{1, 2, 13, 13}), wt = test::randn<double>(Shape{5, 2, 7, 7});
  Tensor<double> cols(Shape{1, 16, 98}), y(Shape{1, 16, 5});
  ops::im2col<double>(ctx, img, 7, 4, 3, cols.view());
  ops::linear_forward<double>(ctx, cols, wt.cview().reshape({5, 98}), ConstView<double>{}, y.view());
  double cerr = 0;
  for (std::int64_t r = 0; r < 4; ++r)
    for (std::int64_t q = 0; q < 4; ++q)
      for (std::int64_t o = 0; o < 5; ++o) {
        double s = 0;
        for (std::int64_t c = 0; c < 2; ++c)
          for (std::int64_t i = 0; i < 7; ++i)
            for (std::int64_t j = 0; j < 7; ++j) {
              const std::int64_t yy = r * 4 - 3 + i, xx = q * 4 - 3 + j;
              if (yy >= 0 && yy < 13 && xx >= 0 && xx < 13) s += img[(c * 13 + yy) * 13 + xx] * wt[((o * 2 + c) * 7 + i) * 7 + j];
            }
        cerr = std::max(cerr, std::abs(y[(r * 4 + q) * 5 + o] - s));
      }
  CHECK(cerr < 1e-12);

  // Wrong shapes are named.
  Tensor<double> wrong(Shape{18, 9, 3});
  REQUIRE_IREPA_ERROR(ops::window_partition<double>(ctx, x, 4, wrong.view()), "window_partition", "expected [18, 16, 3]");
  REQUIRE_IREPA_ERROR(ops::window_merge<double>(ctx, test::randn<double>(Shape{8, 16, 3}), back.view()), "do not tile");
  REQUIRE_IREPA_ERROR(ops::im2col<double>(ctx, img, 7, 4, 3, wrong.view()), "im2col", "expected [1, 16, 98]");
  const auto qkv = test::randn<double>(Shape{3, 16, 24});
  const auto rel = test::randn<double>(Shape{7, 4});
  Tensor<double> att(Shape{3, 16, 8}), pooled(Shape{3, 4, 8});
  REQUIRE_IREPA_ERROR(
      ops::window_attention_forward<double>(ctx, qkv, ops::WindowAttentionSpec<double>{2, 4, 2, rel, rel}, pooled.view()),
      "relative positions with pooled queries");
  ops::window_attention_forward<double>(ctx, qkv, ops::WindowAttentionSpec<double>{2, 4, 1, rel, rel}, att.view());  // the right tables
  bool finite = true;
  for (std::int64_t i = 0; i < att.numel(); ++i) finite = finite && std::isfinite(att[i]);
  CHECK(finite);
  const auto rel_bad = test::randn<double>(Shape{5, 4});
  REQUIRE_IREPA_ERROR(
      ops::window_attention_forward<double>(ctx, qkv, ops::WindowAttentionSpec<double>{2, 4, 1, rel_bad, rel_bad}, att.view()),
      "rel_h has shape [5, 4], expected [7, 4]");
  REQUIRE_IREPA_ERROR(ops::window_attention_forward<double>(ctx, qkv, ops::WindowAttentionSpec<double>{2, 5, 1, {}, {}}, att.view()),
                      "expected [U, ws^2, 3 D]");
}

TEST_CASE("SAM2 as an online target: the loaded host model is kept for placing, and its twin gives the same tokens", "[sam2]") {
  Sam2Config cfg;
  cfg.blocks = {1, 1, 1, 1}, cfg.dims = {8, 16, 20, 24}, cfg.heads = {1, 2, 2, 3}, cfg.windows = {4, 2, 2, 2}, cfg.global_attn = {};
  cfg.resolution = 32;  // a 16 x 16 grid -> 8 -> 4 -> 2
  Sam2Encoder<float> host(cfg);
  Philox(test::rng().seed()).normal(host.params().values(), 0.0f, 0.2f);
  io::SafeTensorsWriter wr;
  io::add_params(wr, host.params());
  const auto path = fs::temp_directory_path() / ("irepa_sam2_online_" + std::to_string(test::rng().seed()) + ".safetensors");
  wr.write(path.string());
  const TargetEncoder e = detail::load_encoder<Sam2Encoder<float>>("sam2-vit-s", cfg, path, "a test file");
  REQUIRE(std::holds_alternative<std::shared_ptr<const Sam2Encoder<float>>>(e.host_model));
  const auto twin = Sam2Encoder<float>::from_host(*std::get<std::shared_ptr<const Sam2Encoder<float>>>(e.host_model));
  const CpuContext ctx(2);
  const auto images = random_images(2, 3, 32);
  const Tensor<float> a = e.encode(ctx, images), b = twin.encode(ctx, images);
  REQUIRE(a.shape() == Shape{2, 4, 24});
  CHECK(std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<std::size_t>(a.numel())) == 0);
  float largest = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) largest = std::max(largest, std::abs(a[i]));
  CHECK(largest > 0.1f);  // real tokens, not zeros
  const std::vector<TargetEncoder> online{e};
  CHECK(describe_placement(place_encoders<Cpu>(online)) == "sam2-vit-s on cpu");
  fs::remove(path);
}
