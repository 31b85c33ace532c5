// Target encoders: the weight-free HOG encoder against the reference's golden file and
// scikit-image cases (tests/data/golden/hog_extra_*), its name parsing, and what HOG means.

#include <irepa/check/golden.hpp>
#include <irepa/models/hog.hpp>

#include "test_support.hpp"

using namespace irepa;

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
  const HogEncoder enc(HogConfig{.resolution = 16, .grid = 2, .dim = 64, .pixels_per_cell = 2, .cells_per_block = 4});
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
  REQUIRE_IREPA_ERROR(make_target_encoder("siglip2-vit-b", 256, dir.string()), "'siglip2-vit-b' is not available");
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
