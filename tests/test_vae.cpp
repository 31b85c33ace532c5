// The SD-VAE: its ops (general conv, GroupNorm, nearest upsampling, layouts, latent arithmetic)
// against direct loops, the model against the reference's golden file in double and float, its
// two checkpoint layouts (the reference's names and diffusers', both attention spellings) and
// the errors a wrong file gets.

#include <cmath>
#include <filesystem>

#include <unistd.h>

#include "golden/vae.hpp"
#include "irepa/models/sd_vae.hpp"
#include "test_support.hpp"

using namespace irepa;

namespace {

/// Direct 7-loop convolution on channels-last maps with the spec's padding, in double.
Tensor<double> naive_conv(const Tensor<double>& x, const Tensor<double>& w, const Tensor<double>& b, const ops::Conv2dSpec& s) {
  const std::int64_t B = x.size(0), H = x.size(1), W = x.size(2), Ci = x.size(3), Co = w.size(0), k = w.size(2);
  const std::int64_t Ho = s.out_h(H, k), Wo = s.out_w(W, k);
  Tensor<double> y(Shape{B, Ho, Wo, Co});
  for (std::int64_t n = 0; n < B; ++n)
    for (std::int64_t oh = 0; oh < Ho; ++oh)
      for (std::int64_t ow = 0; ow < Wo; ++ow)
        for (std::int64_t o = 0; o < Co; ++o) {
          double acc = b.numel() ? b[o] : 0.0;
          for (std::int64_t i = 0; i < k; ++i)
            for (std::int64_t j = 0; j < k; ++j) {
              const std::int64_t h = oh * s.stride - s.pad_top + i, ww = ow * s.stride - s.pad_left + j;
              if (h < 0 || h >= H || ww < 0 || ww >= W) continue;
              for (std::int64_t c = 0; c < Ci; ++c) acc += x[((n * H + h) * W + ww) * Ci + c] * w[((o * Ci + c) * k + i) * k + j];
            }
          y[((n * Ho + oh) * Wo + ow) * Co + o] = acc;
        }
  return y;
}

SdVaeConfig tiny_config() {
  SdVaeConfig c;
  c.ch = 8, c.ch_mult = {1, 2, 2}, c.num_res_blocks = 1, c.groups = 4, c.resolution = 16, c.attn_resolutions = {8};
  return c;  // attention in level 1 (nominal 8) as well as the mid blocks
}

Tensor<float> to_float(const Tensor<double>& x) {
  Tensor<float> y(x.shape());
  for (std::int64_t i = 0; i < x.numel(); ++i) y[i] = static_cast<float>(x[i]);
  return y;
}

std::uint64_t fresh_seed() {
  Tensor<std::int64_t> s(Shape{1});
  test::rng().randint(s.view(), 0, std::int64_t{1} << 40);
  return static_cast<std::uint64_t>(s[0]);
}

std::filesystem::path temp_dir(const char* name) {
  const auto d = std::filesystem::temp_directory_path() / (std::string("irepa_vae_") + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

}  // namespace

TEST_CASE("conv2d_forward matches a direct convolution: same 3x3, 1x1, pad-then-stride-2, several column blocks", "[vae][ops]") {
  CpuContext ctx(2);
  struct Case {
    std::int64_t B, H, W, Ci, Co, k;
    ops::Conv2dSpec s;
  };
  const std::vector<Case> cases = {
      {2, 7, 5, 3, 6, 3, ops::Conv2dSpec::same(3)},
      {2, 6, 6, 5, 4, 1, ops::Conv2dSpec{}},
      {2, 8, 6, 4, 5, 3, ops::Conv2dSpec::pad_after_stride2()},
      {1, 5, 9, 2, 3, 3, ops::Conv2dSpec{2, 1, 0, 2, 1}},
      {1, 64, 64, 256, 2, 3, ops::Conv2dSpec::same(3)},  // 4096 pixels x 2304 columns: two blocks of columns
  };
  for (const auto& c : cases) {
    INFO("x [" << c.B << ", " << c.H << ", " << c.W << ", " << c.Ci << "], k " << c.k << ", stride " << c.s.stride);
    const auto x = test::randn<double>(Shape{c.B, c.H, c.W, c.Ci});
    const auto w = test::randn<double>(Shape{c.Co, c.Ci, c.k, c.k}, 0.3);
    const auto b = test::randn<double>(Shape{c.Co});
    const auto ref = naive_conv(x, w, b, c.s);
    Tensor<double> y(ref.shape());
    ops::conv2d_forward<double>(ctx, x, w, b, c.s, y.view());
    CHECK(test::rel_error(y, ref) < 1e-13);
    Tensor<float> yf(ref.shape());
    const auto xf = to_float(x), wf = to_float(w), bf = to_float(b);
    ops::conv2d_forward<float>(ctx, xf, wf, bf, c.s, yf.view());
    CHECK(test::rel_error(yf, ref) < 1e-5);
  }
  const auto x = test::randn<double>(Shape{1, 4, 4, 3});
  const auto w = test::randn<double>(Shape{2, 3, 3, 3});
  Tensor<double> wrong(Shape{1, 4, 4, 2});
  REQUIRE_IREPA_ERROR(ops::conv2d_forward<double>(ctx, x, w, Tensor<double>{}, ops::Conv2dSpec::pad_after_stride2(), wrong.view()),
                      "conv2d_forward", "[1, 2, 2, 2]");
  const auto w_bad = test::randn<double>(Shape{2, 4, 3, 3});
  REQUIRE_IREPA_ERROR(ops::conv2d_forward<double>(ctx, x, w_bad, Tensor<double>{}, ops::Conv2dSpec::same(3), wrong.view()),
                      "conv2d_forward", "[B, H, W, 4]");
}

TEST_CASE("group_norm_forward matches nn.GroupNorm's formula, with and without the SiLU", "[vae][ops]") {
  CpuContext ctx(2);
  for (const std::int64_t G : {1, 4, 12}) {
    for (const bool silu : {false, true}) {
      INFO("groups " << G << ", silu " << silu);
      const std::int64_t B = 3, H = 5, W = 7, C = 12;
      auto x = test::randn<double>(Shape{B, H, W, C}, 2.0);
      for (std::int64_t i = 0; i < x.numel(); ++i) x[i] += 3.0;  // a mean far from zero: the two-pass variance matters
      const auto w = test::randn<double>(Shape{C}), b = test::randn<double>(Shape{C});
      Tensor<double> ref(x.shape());
      const std::int64_t Cg = C / G, P = H * W;
      for (std::int64_t n = 0; n < B; ++n)
        for (std::int64_t g = 0; g < G; ++g) {
          double m = 0, v = 0;
          for (std::int64_t p = 0; p < P; ++p)
            for (std::int64_t c = g * Cg; c < (g + 1) * Cg; ++c) m += x[(n * P + p) * C + c];
          m /= double(P * Cg);
          for (std::int64_t p = 0; p < P; ++p)
            for (std::int64_t c = g * Cg; c < (g + 1) * Cg; ++c) v += std::pow(x[(n * P + p) * C + c] - m, 2);
          v /= double(P * Cg);
          for (std::int64_t p = 0; p < P; ++p)
            for (std::int64_t c = g * Cg; c < (g + 1) * Cg; ++c) {
              double y = (x[(n * P + p) * C + c] - m) / std::sqrt(v + 1e-6) * w[c] + b[c];
              if (silu) y = y / (1 + std::exp(-y));
              ref[(n * P + p) * C + c] = y;
            }
        }
      Tensor<double> y(x.shape());
      ops::group_norm_forward<double>(ctx, x, G, 1e-6, w, b, silu, y.view());
      CHECK(test::rel_error(y, ref) < 1e-13);
      ops::group_norm_forward<double>(ctx, x, G, 1e-6, w, b, silu, x.view());  // in place
      CHECK(test::rel_error(x, ref) < 1e-13);
    }
  }
  const auto x = test::randn<double>(Shape{1, 2, 2, 6});
  Tensor<double> y(x.shape());
  REQUIRE_IREPA_ERROR(ops::group_norm_forward<double>(ctx, x, 4, 1e-6, test::randn<double>(Shape{6}), test::randn<double>(Shape{6}),
                                                      false, y.view()),
                      "group_norm_forward", "4 groups");
}

TEST_CASE("nearest x2 upsampling, channels_first as channels_last's inverse, and the latent arithmetic", "[vae][ops]") {
  CpuContext ctx(2);
  const auto x = test::randn<double>(Shape{2, 3, 4, 5});  // [B, H, W, C]
  Tensor<double> up(Shape{2, 6, 8, 5});
  ops::upsample_nearest2x<double>(ctx, x, up.view());
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t i = 0; i < 6; ++i)
      for (std::int64_t j = 0; j < 8; ++j)
        for (std::int64_t c = 0; c < 5; ++c) REQUIRE(up[((b * 6 + i) * 8 + j) * 5 + c] == x[((b * 3 + i / 2) * 4 + j / 2) * 5 + c]);
  Tensor<double> nchw(Shape{2, 5, 3, 4}), back(x.shape());
  ops::channels_first<double>(ctx, x, nchw.view());
  CHECK(nchw[((1 * 5 + 3) * 3 + 2) * 4 + 1] == x[((1 * 3 + 2) * 4 + 1) * 5 + 3]);
  ops::channels_last<double>(ctx, nchw, back.view());
  CHECK(test::rel_error(back, x) == 0);

  // Posterior, sample_posterior and the inverse scaling against their formulas.
  const std::int64_t B = 2, E = 3, h = 2, w = 3, P = h * w;
  auto moments = test::randn<double>(Shape{B, 2 * E, h, w}, 20.0);  // logvar values past both clamps
  moments[E * P] = -45, moments[E * P + 1] = 33;
  Tensor<double> mean_std(moments.shape()), logvar(Shape{B, E, h, w});
  ops::posterior_from_moments<double>(ctx, moments, -30, 20, mean_std.view(), logvar.view());
  CHECK(logvar[0] == -30);
  CHECK(logvar[1] == 20);
  const auto eps = test::randn<double>(Shape{B, E, h, w}), scale = test::rand_uniform<double>(Shape{E}, 0.1, 1.0),
             bias = test::randn<double>(Shape{E});
  Tensor<double> z(eps.shape()), un(eps.shape());
  ops::sample_posterior<double>(ctx, mean_std, eps, scale, bias, z.view());
  ops::unscale_latents<double>(ctx, z, scale, bias, un.view());
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t c = 0; c < E; ++c)
      for (std::int64_t p = 0; p < P; ++p) {
        const double m = moments[(b * 2 * E + c) * P + p], lv = std::clamp(moments[(b * 2 * E + E + c) * P + p], -30.0, 20.0);
        const double sd = std::exp(0.5 * lv), e = eps[(b * E + c) * P + p];
        REQUIRE(mean_std[(b * 2 * E + c) * P + p] == m);
        REQUIRE(mean_std[(b * 2 * E + E + c) * P + p] == Approx(sd).epsilon(1e-14));
        REQUIRE(logvar[(b * E + c) * P + p] == lv);
        REQUIRE(z[(b * E + c) * P + p] == Approx((m + sd * e - bias[c]) * scale[c]).epsilon(1e-13));
        REQUIRE(un[(b * E + c) * P + p] == Approx(m + sd * e).epsilon(1e-12).margin(1e-12));
      }
  REQUIRE_IREPA_ERROR(ops::sample_posterior<double>(ctx, mean_std, eps, test::randn<double>(Shape{E + 1}), bias, z.view()),
                      "sample_posterior", "4 values", "expected 3");
}

TEST_CASE("decoded images to uint8 as generate.py converts them: clamp(255 (x + 1) / 2), truncated", "[vae]") {
  Tensor<double> x(Shape{1, 2, 1, 3});
  const double v[6] = {-1.5, 0.0, 1.2, -0.999, 0.99999, 0.5};
  for (int i = 0; i < 6; ++i) x[i] = v[i];
  const auto u = decoded_to_uint8<double>(x);
  REQUIRE(u.shape() == Shape{1, 1, 3, 2});
  // channel 0 holds -1.5, 0, 1.2; channel 1 holds -0.999, 0.99999, 0.5 (NHWC: c fastest).
  CHECK(u[0] == 0);
  CHECK(u[2] == 127);  // 127.5 truncated
  CHECK(u[4] == 255);
  CHECK(u[1] == 0);    // 0.1275
  CHECK(u[3] == 254);  // 254.99...
  CHECK(u[5] == 191);  // 191.25
}

TEST_CASE("SD-VAE matches the reference's golden file (double and float)", "[vae][golden]") {
  if (!test::have_golden()) return;
  io::SafeTensorsFile f((test::golden_dir() / "vae_f8d4_ch32.safetensors").string());
  for (const auto& r : golden::check_sd_vae<double>(f, 1e-9)) {
    INFO(r.name << " double: " << r.rel);
    CHECK(r.ok());
  }
  for (const auto& r : golden::check_sd_vae<float>(f, 1e-4)) {
    INFO(r.name << " float: " << r.rel);
    CHECK(r.ok());
  }
}

TEST_CASE("SD-VAE names: the reference's state_dict and diffusers' AutoencoderKL", "[vae]") {
  SdVae<double> vae(sd_vae_f8d4());
  CHECK(vae.params().size() == 248);
  std::int64_t n = 0;
  vae.params().for_each([&](std::string_view, TensorView<double> v, TensorView<double>) { n += v.numel(); });
  CHECK(n == 83653863);  // AutoencoderKL with VAE_F8D4's ddconfig, as PyTorch counts it
  CHECK(vae.params().contains("decoder.up.0.block.0.nin_shortcut.weight"));
  CHECK(vae.params().contains("encoder.down.2.downsample.conv.weight"));
  CHECK(!vae.params().contains("encoder.down.3.downsample.conv.weight"));
  CHECK(!vae.params().contains("decoder.up.0.upsample.conv.weight"));
  CHECK(vae.diffusers_name("decoder.up.0.block.2.nin_shortcut.weight", true) == "decoder.up_blocks.3.resnets.2.conv_shortcut.weight");
  CHECK(vae.diffusers_name("decoder.up.3.upsample.conv.bias", true) == "decoder.up_blocks.0.upsamplers.0.conv.bias");
  CHECK(vae.diffusers_name("encoder.down.1.downsample.conv.weight", true) == "encoder.down_blocks.1.downsamplers.0.conv.weight");
  CHECK(vae.diffusers_name("encoder.mid.block_2.norm1.bias", true) == "encoder.mid_block.resnets.1.norm1.bias");
  CHECK(vae.diffusers_name("encoder.mid.attn_1.q.weight", true) == "encoder.mid_block.attentions.0.to_q.weight");
  CHECK(vae.diffusers_name("decoder.mid.attn_1.proj_out.bias", true) == "decoder.mid_block.attentions.0.to_out.0.bias");
  CHECK(vae.diffusers_name("decoder.mid.attn_1.proj_out.bias", false) == "decoder.mid_block.attentions.0.proj_attn.bias");
  CHECK(vae.diffusers_name("encoder.mid.attn_1.v.weight", false) == "encoder.mid_block.attentions.0.value.weight");
  CHECK(vae.diffusers_name("encoder.mid.attn_1.norm.weight", false) == "encoder.mid_block.attentions.0.group_norm.weight");
  CHECK(vae.diffusers_name("decoder.norm_out.weight", true) == "decoder.conv_norm_out.weight");
  CHECK(vae.diffusers_name("quant_conv.weight", true) == "quant_conv.weight");
}

TEST_CASE("SD-VAE loads both layouts to the same outputs, and names what is wrong in a file", "[vae]") {
  CpuContext ctx(2);
  const SdVaeConfig cfg = tiny_config();
  SdVae<double> ref(cfg);
  ref.init_random(fresh_seed(), 0.2);
  const auto dir = temp_dir("layouts");
  const auto x = test::rand_uniform<double>(Shape{2, 3, 8, 12}, -1.0, 1.0);
  const auto moments = ref.encode_moments(ctx, x);
  REQUIRE(moments.shape() == Shape{2, 8, 2, 3});
  const auto z = test::randn<double>(Shape{2, 4, 2, 3});
  const auto decoded = ref.decode(ctx, z);
  REQUIRE(decoded.shape() == Shape{2, 3, 8, 12});

  // The same values under diffusers' names, attention as linear [C, C] weights, under a prefix.
  for (const bool to_q : {true, false}) {
    INFO("diffusers attention names " << (to_q ? "to_q/to_k/to_v/to_out.0" : "query/key/value/proj_attn"));
    io::SafeTensorsWriter w;
    ref.params().for_each([&](std::string_view name, TensorView<double> v, TensorView<double>) {
      const std::string dn = "vae." + ref.diffusers_name(name, to_q);
      const bool attn_w = dn.find("attentions") != std::string::npos && v.rank() == 4 && dn.ends_with(".weight");
      w.add<double>(dn, attn_w ? v.reshape(Shape{v.size(0), v.size(1)}) : v);
    });
    const auto path = (dir / (to_q ? "diffusers_to_q.safetensors" : "diffusers_query.safetensors")).string();
    w.write(path);
    SdVae<double> d(cfg);
    d.load(io::SafeTensorsFile(path), "vae.");
    CHECK(test::rel_error(d.encode_moments(ctx, x), moments) == 0);
    CHECK(test::rel_error(d.decode(ctx, z), decoded) == 0);
  }

  // The reference's names, in float32 as released files hold them, plus a training checkpoint's loss.* tensors.
  {
    io::SafeTensorsWriter w;
    ref.params().for_each([&](std::string_view name, TensorView<double> v, TensorView<double>) { w.add_as<double>(name, v, DType::F32); });
    w.add<double>("loss.logvar", test::randn<double>(Shape{1}));
    const auto path = (dir / "ldm.safetensors").string();
    w.write(path);
    SdVae<float> m(cfg);
    m.load(io::SafeTensorsFile(path));
    const auto xf = to_float(x);
    CHECK(test::rel_error(m.encode_moments(ctx, xf), moments) < 1e-5);
  }

  // Wrong files: a missing tensor, a wrong shape and an unexpected name in one message; neither layout.
  {
    io::SafeTensorsWriter w;
    ref.params().for_each([&](std::string_view name, TensorView<double> v, TensorView<double>) {
      if (name == "decoder.conv_out.bias") return;
      if (name == "encoder.conv_in.weight")
        w.add<double>(name, test::randn<double>(Shape{8, 3, 1, 1}));
      else
        w.add<double>(name, v);
    });
    w.add<double>("encoder.extra.weight", test::randn<double>(Shape{2}));
    const auto path = (dir / "bad.safetensors").string();
    w.write(path);
    SdVae<double> m(cfg);
    const auto before = Tensor<double>::copy_of(m.params().values());
    REQUIRE_IREPA_ERROR(m.load(io::SafeTensorsFile(path)), "missing 'decoder.conv_out.bias' [3]",
                        "'encoder.conv_in.weight' has shape [8, 3, 1, 1], expected [8, 3, 3, 3]", "unexpected 'encoder.extra.weight'",
                        "LDM layout");
    CHECK(test::rel_error(m.params().values(), before) == 0);  // nothing changed
  }
  {
    io::SafeTensorsWriter w;
    w.add<double>("model.weight", test::randn<double>(Shape{2}));
    const auto path = (dir / "other.safetensors").string();
    w.write(path);
    SdVae<double> m(cfg);
    REQUIRE_IREPA_ERROR(m.load(io::SafeTensorsFile(path)), "neither the reference's VAE names", "encoder.down_blocks.0.resnets.0");
  }
  SdVae<double> m(cfg);
  REQUIRE_IREPA_ERROR((void)m.encode_moments(ctx, test::randn<double>(Shape{1, 3, 10, 8})), "multiples of 4", "[1, 3, 10, 8]");
  REQUIRE_IREPA_ERROR((void)m.decode(ctx, test::randn<double>(Shape{1, 3, 2, 2})), "expected [B, 4, h, w]");
  SdVaeConfig bad = cfg;
  bad.ch = 6;
  REQUIRE_IREPA_ERROR(SdVae<double>{bad}, "not a positive multiple of the 4 GroupNorm groups");
  std::filesystem::remove_all(dir);
}
