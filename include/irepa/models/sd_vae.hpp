#pragma once
// The SD-VAE (the reference's AutoencoderKL as VAE_F8D4 builds it: ldm/models/autoencoder.py),
// forward only, in inference mode, float or double, on device Dev.
//
//   encode:  x [B, 3, H, W] in [-1, 1] -> conv_in -> L levels of ResNet blocks (attention where
//            the nominal resolution is in attn_resolutions), pad-then-stride-2 downsampling
//            after every level but the last -> mid (block, attention, block) -> GroupNorm + SiLU
//            -> conv_out [2z] -> quant_conv -> moments [B, 2E, H/f, W/f] (mean | logvar)
//   posterior: mean, logvar clamped to [-30, 20], std = exp(logvar / 2); mean_std = (mean | std)
//   decode:  z [B, E, h, w] -> post_quant_conv -> conv_in -> mid -> L levels (one more ResNet
//            block each, nearest x2 + conv upsampling before every level but the first)
//            -> GroupNorm + SiLU -> conv_out -> [B, 3, h f, w f]
//
// ResNet block: GroupNorm(32, eps 1e-6) + SiLU, 3x3 conv, GroupNorm + SiLU, 3x3 conv, plus the
// input (through a 1x1 nin_shortcut when the width changes). Attention: GroupNorm, 1x1 q, k, v,
// one head over the h w pixels, scale C^-1/2, 1x1 proj_out, plus the input.
// Activations run channels-last [B, H, W, C] through the conv, GroupNorm and attention ops.
//
// Parameters are named as the reference's state_dict (encoder.down.0.block.0.norm1.weight, ...,
// quant_conv.weight); load() also reads diffusers' AutoencoderKL layout (down_blocks / up_blocks,
// resnets, mid_block, conv_norm_out, conv_shortcut; attention as query/key/value/proj_attn or
// to_q/to_k/to_v/to_out.0, 1x1 convs or linear weights).

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "irepa/core/arena.hpp"
#include "irepa/core/context.hpp"
#include "irepa/core/host_twin.hpp"
#include "irepa/core/rng.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/nn/vit_layers.hpp"
#include "irepa/ops/attention.hpp"
#include "irepa/ops/conv.hpp"
#include "irepa/ops/latent.hpp"
#include "irepa/ops/linear.hpp"
#include "irepa/ops/norm.hpp"
#include "irepa/ops/tensor_ops.hpp"

namespace irepa {

struct SdVaeConfig {
  std::int64_t ch = 128;  // base width; level i has ch * ch_mult[i] channels
  std::vector<std::int64_t> ch_mult = {1, 2, 4, 4};
  std::int64_t num_res_blocks = 2;  // per encoder level (the decoder has one more)
  std::vector<std::int64_t> attn_resolutions = {16};
  std::int64_t resolution = 256;  // nominal: only decides where attention goes
  std::int64_t in_channels = 3, out_ch = 3;
  std::int64_t z_channels = 4, embed_dim = 4;
  bool double_z = true;
  std::int64_t groups = 32;
  double eps = 1e-6;
  double logvar_min = -30, logvar_max = 20;

  std::int64_t levels() const { return static_cast<std::int64_t>(ch_mult.size()); }
  std::int64_t factor() const { return std::int64_t{1} << (levels() - 1); }  // image side / latent side
  std::int64_t width(std::int64_t level) const { return ch * ch_mult[static_cast<std::size_t>(level)]; }
  /// Attention at the level whose nominal resolution is resolution / 2^level.
  bool attention_at(std::int64_t level) const {
    const std::int64_t r = resolution >> level;
    return std::find(attn_resolutions.begin(), attn_resolutions.end(), r) != attn_resolutions.end();
  }
  void validate() const {
    IREPA_CHECK(ch > 0 && !ch_mult.empty() && num_res_blocks > 0 && z_channels > 0 && embed_dim > 0 && in_channels > 0 && out_ch > 0,
                "SdVaeConfig: ch {}, {} levels, {} res blocks, z_channels {}, embed_dim {}: all must be positive", ch, ch_mult.size(),
                num_res_blocks, z_channels, embed_dim);
    IREPA_CHECK(groups > 0 && eps > 0, "SdVaeConfig: GroupNorm with {} groups and eps {}", groups, eps);
    for (std::int64_t l = 0; l < levels(); ++l)
      IREPA_CHECK(ch_mult[static_cast<std::size_t>(l)] > 0 && width(l) % groups == 0,
                  "SdVaeConfig: level {} has {} channels, not a positive multiple of the {} GroupNorm groups", l, width(l), groups);
    IREPA_CHECK(ch % groups == 0, "SdVaeConfig: ch {} is not a multiple of the {} GroupNorm groups", ch, groups);
    IREPA_CHECK(logvar_min < logvar_max, "SdVaeConfig: logvar clamp [{}, {}]", logvar_min, logvar_max);
  }
};

/// The reference's VAE_F8D4 (sd-vae-ft-mse / ema): base width 128.
inline SdVaeConfig sd_vae_f8d4() { return SdVaeConfig{}; }

/// The posterior of a batch: mean_std [B, 2E, h, w] (mean | std, the stored latents' layout) and
/// the clamped logvar [B, E, h, w].
template <class T, class Dev>
struct VaePosterior {
  Tensor<T, Dev> mean_std, logvar;
};

template <class T, class Dev = Cpu>
struct SdVae {
  using scalar_type = T;
  using device_type = Dev;
  using Context = ContextOf<Dev>;
  using HostModel = SdVae<T, Cpu>;
  template <class D2>
  using On = SdVae<T, D2>;

  struct Conv {
    Param<T, Dev> weight, bias;  // [Cout, Cin, k, k], [Cout]
    Conv() = default;
    Conv(std::int64_t in, std::int64_t out, std::int64_t k) : weight(Shape{out, in, k, k}), bias(Shape{out}) {}
    std::int64_t out() const { return weight.shape[0]; }
    template <class V>
    void visit(V& v, const std::string& p) {
      v(p + ".weight", weight), v(p + ".bias", bias);
    }
  };
  struct Norm {
    Param<T, Dev> weight, bias;  // [C]
    Norm() = default;
    explicit Norm(std::int64_t c) : weight(Shape{c}), bias(Shape{c}) {}
    template <class V>
    void visit(V& v, const std::string& p) {
      v(p + ".weight", weight), v(p + ".bias", bias);
    }
  };
  struct ResBlock {
    Norm norm1, norm2;
    Conv conv1, conv2;
    std::optional<Conv> nin_shortcut;  // 1x1, when the width changes
    ResBlock(std::int64_t in, std::int64_t out) : norm1(in), norm2(out), conv1(in, out, 3), conv2(out, out, 3) {
      if (in != out) nin_shortcut.emplace(in, out, 1);
    }
    template <class V>
    void visit(V& v, const std::string& p) {
      norm1.visit(v, p + ".norm1"), conv1.visit(v, p + ".conv1"), norm2.visit(v, p + ".norm2"), conv2.visit(v, p + ".conv2");
      if (nin_shortcut) nin_shortcut->visit(v, p + ".nin_shortcut");
    }
  };
  struct Attn {
    Norm norm;
    Conv q, k, v, proj_out;  // 1x1
    Tensor<T, Dev> qkv_w, qkv_b;  // prepared at load: [3C, C], [3C]
    explicit Attn(std::int64_t c) : norm(c), q(c, c, 1), k(c, c, 1), v(c, c, 1), proj_out(c, c, 1) {}
    template <class V>
    void visit(V& vis, const std::string& p) {
      norm.visit(vis, p + ".norm"), q.visit(vis, p + ".q"), k.visit(vis, p + ".k"), v.visit(vis, p + ".v"),
          proj_out.visit(vis, p + ".proj_out");
    }
    /// The fused projection from a host twin's values.
    template <class HostAttn>
    void prepare(const HostAttn& host) {
      const std::int64_t C = norm.weight.shape[0];
      Tensor<T> w(Shape{3 * C, C}), b(Shape{3 * C});
      int j = 0;
      for (const auto* c : {&host.q, &host.k, &host.v}) {
        std::copy_n(c->weight.value.data(), C * C, w.data() + j * C * C);
        std::copy_n(c->bias.value.data(), C, b.data() + j * C);
        ++j;
      }
      qkv_w = detail::device_copy<T, Dev>(w), qkv_b = detail::device_copy<T, Dev>(b);
    }
  };
  struct Level {
    std::vector<ResBlock> block;
    std::vector<Attn> attn;
    std::optional<Conv> resample;  // encoder: downsample.conv; decoder: upsample.conv
  };
  struct Mid {
    ResBlock block_1, block_2;
    Attn attn_1;
    explicit Mid(std::int64_t c) : block_1(c, c), block_2(c, c), attn_1(c) {}
    template <class V>
    void visit(V& v, const std::string& p) {
      block_1.visit(v, p + ".block_1"), attn_1.visit(v, p + ".attn_1"), block_2.visit(v, p + ".block_2");
    }
  };

  SdVaeConfig config;
  // encoder.*
  Conv enc_conv_in;
  std::vector<Level> down;
  Mid enc_mid;
  Norm enc_norm_out;
  Conv enc_conv_out;
  // decoder.*
  Conv dec_conv_in;
  Mid dec_mid;
  std::vector<Level> up;  // indexed by level, as the reference's decoder.up
  Norm dec_norm_out;
  Conv dec_conv_out;
  Conv quant_conv, post_quant_conv;  // 1x1

  explicit SdVae(const SdVaeConfig& c)
      : config((c.validate(), c)),
        enc_conv_in(c.in_channels, c.ch, 3),
        enc_mid(c.width(c.levels() - 1)),
        enc_norm_out(c.width(c.levels() - 1)),
        enc_conv_out(c.width(c.levels() - 1), c.double_z ? 2 * c.z_channels : c.z_channels, 3),
        dec_conv_in(c.z_channels, c.width(c.levels() - 1), 3),
        dec_mid(c.width(c.levels() - 1)),
        dec_norm_out(c.ch),
        dec_conv_out(c.ch, c.out_ch, 3),
        quant_conv(c.double_z ? 2 * c.z_channels : c.z_channels, 2 * c.embed_dim, 1),
        post_quant_conv(c.embed_dim, c.z_channels, 1) {
    IREPA_CHECK(c.double_z, "SdVae: double_z false (a deterministic encoder) is not the AutoencoderKL posterior this model computes");
    const std::int64_t L = c.levels();
    std::int64_t in = c.ch;
    for (std::int64_t l = 0; l < L; ++l) {
      Level lv;
      const std::int64_t out = c.width(l);
      for (std::int64_t j = 0; j < c.num_res_blocks; ++j) {
        lv.block.emplace_back(in, out);
        in = out;
        if (c.attention_at(l)) lv.attn.emplace_back(out);
      }
      if (l != L - 1) lv.resample.emplace(out, out, 3);
      down.push_back(std::move(lv));
    }
    up.resize(static_cast<std::size_t>(L));
    in = c.width(L - 1);
    for (std::int64_t l = L - 1; l >= 0; --l) {
      Level& lv = up[static_cast<std::size_t>(l)];
      const std::int64_t out = c.width(l);
      for (std::int64_t j = 0; j <= c.num_res_blocks; ++j) {
        lv.block.emplace_back(in, out);
        in = out;
        if (c.attention_at(l)) lv.attn.emplace_back(out);
      }
      if (l != 0) lv.resample.emplace(out, out, 3);
    }
    arena_ = ParamArena<T, Dev>(*this);
  }
  SdVae(SdVae&&) noexcept = default;

  const ParamArena<T, Dev>& params() const { return arena_; }
  ParamArena<T, Dev>& params() { return arena_; }
  HostModel host_twin() const { return HostModel(config); }
  std::int64_t latent_channels() const { return config.embed_dim; }

  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    const std::string p(prefix);
    enc_conv_in.visit(v, p + "encoder.conv_in");
    for (std::size_t l = 0; l < down.size(); ++l) {
      const std::string lp = p + "encoder.down." + std::to_string(l);
      for (std::size_t j = 0; j < down[l].block.size(); ++j) down[l].block[j].visit(v, lp + ".block." + std::to_string(j));
      for (std::size_t j = 0; j < down[l].attn.size(); ++j) down[l].attn[j].visit(v, lp + ".attn." + std::to_string(j));
      if (down[l].resample) down[l].resample->visit(v, lp + ".downsample.conv");
    }
    enc_mid.visit(v, p + "encoder.mid");
    enc_norm_out.visit(v, p + "encoder.norm_out");
    enc_conv_out.visit(v, p + "encoder.conv_out");
    dec_conv_in.visit(v, p + "decoder.conv_in");
    dec_mid.visit(v, p + "decoder.mid");
    for (std::size_t l = 0; l < up.size(); ++l) {
      const std::string lp = p + "decoder.up." + std::to_string(l);
      for (std::size_t j = 0; j < up[l].block.size(); ++j) up[l].block[j].visit(v, lp + ".block." + std::to_string(j));
      for (std::size_t j = 0; j < up[l].attn.size(); ++j) up[l].attn[j].visit(v, lp + ".attn." + std::to_string(j));
      if (up[l].resample) up[l].resample->visit(v, lp + ".upsample.conv");
    }
    dec_norm_out.visit(v, p + "decoder.norm_out");
    dec_conv_out.visit(v, p + "decoder.conv_out");
    quant_conv.visit(v, p + "quant_conv");
    post_quant_conv.visit(v, p + "post_quant_conv");
  }

  /// The file's layout: the reference's (LDM) names or diffusers'.
  enum class Layout { Ldm, Diffusers };

  /// Every parameter from f under prefix, in either layout (found from the file's names). Missing,
  /// mis-shaped and unexpected tensors are named in one error before anything changes; tensors
  /// under "loss." (a training checkpoint's discriminator) are ignored.
  void load(const io::SafeTensorsFile& f, std::string_view prefix = {}) {
    const Layout layout = detect_layout(f, prefix);
    const bool to_q = layout == Layout::Diffusers && f.contains(std::string(prefix) + "encoder.mid_block.attentions.0.to_q.weight");
    update_through_host(*this, false, [&](HostModel& host) {
      std::vector<std::string> problems;
      std::vector<std::pair<std::string, TensorView<T>>> reads;
      std::vector<std::string> used;
      host.params().for_each([&](std::string_view name, TensorView<T> v, TensorView<T>) {
        const std::string key = std::string(prefix) + (layout == Layout::Ldm ? std::string(name) : diffusers_name(name, to_q));
        used.push_back(key);
        if (!f.contains(key)) {
          problems.push_back("missing '" + key + "' " + v.shape().str());
          return;
        }
        const Shape s = f.info(key).shape;
        // A 1x1 conv's weight may be stored as a linear's [Cout, Cin] (diffusers' attention).
        const bool linear_ok = v.rank() == 4 && v.size(2) == 1 && v.size(3) == 1 && s == Shape{v.size(0), v.size(1)};
        if (!(s == v.shape()) && !linear_ok) {
          problems.push_back("'" + key + "' has shape " + s.str() + ", expected " + v.shape().str());
          return;
        }
        reads.emplace_back(key, v.reshape(s));
      });
      std::sort(used.begin(), used.end());
      for (const auto& k : f.names()) {
        if (k.compare(0, prefix.size(), prefix) != 0) continue;
        if (std::string_view(k).substr(prefix.size()).starts_with("loss.")) continue;
        if (!std::binary_search(used.begin(), used.end(), k)) problems.push_back("unexpected '" + k + "' " + f.info(k).shape.str());
      }
      if (!problems.empty()) {
        std::string msg;
        for (std::size_t i = 0; i < problems.size() && i < 20; ++i) msg += "\n  " + problems[i];
        if (problems.size() > 20) msg += "\n  ... and " + std::to_string(problems.size() - 20) + " more";
        fail("SdVae: '{}' ({} layout, prefix '{}') does not match the VAE's {} parameters:{}", f.path(),
             layout == Layout::Ldm ? "LDM" : "diffusers", prefix, host.params().size(), msg);
      }
      for (auto& [key, view] : reads) f.load_into<T>(key, view);
      prepare(host);
    });
  }

  /// Random weights N(0, std), prepared as load would (benchmarks, tests of the device paths).
  void init_random(std::uint64_t seed, T std) {
    update_through_host(*this, false, [&](HostModel& host) {
      Philox(seed).normal(host.params().values(), T(0), std);
      // GroupNorm scales near 1 keep the activations in range through the depth.
      host.params().for_each([&](std::string_view name, TensorView<T> v, TensorView<T>) {
        if (name.find("norm") != std::string_view::npos && name.ends_with(".weight"))
          for (std::int64_t i = 0; i < v.numel(); ++i) v.data()[i] += T(1);
      });
      prepare(host);
    });
  }

  /// This VAE on Dev from a loaded host one.
  static SdVae from_host(const HostModel& host) {
    SdVae m(host.config);
    copy_from_host(m.params().values(), ConstView<T>(host.params().values()));
    m.prepare(host);
    return m;
  }

  /// x [B, in_channels, H, W] (H, W multiples of the factor), values in [-1, 1] -> moments
  /// [B, 2E, H/f, W/f] (mean | logvar, before the clamp).
  Tensor<T, Dev> encode_moments(const Context& ctx, ConstView<T, Dev> x) const {
    const std::int64_t f = config.factor();
    IREPA_CHECK(x.rank() == 4 && x.size(1) == config.in_channels && x.size(2) % f == 0 && x.size(3) % f == 0 && x.size(2) > 0 &&
                    x.size(3) > 0,
                "SdVae: images have shape {}, expected [B, {}, H, W] with H and W multiples of {}", x.shape().str(), config.in_channels, f);
    Tensor<T, Dev> h(Shape{x.size(0), x.size(2), x.size(3), x.size(1)});
    ops::channels_last<T>(ctx, x, h.view());
    h = conv(ctx, enc_conv_in, h, ops::Conv2dSpec::same(3));
    for (const Level& lv : down) {
      for (std::size_t j = 0; j < lv.block.size(); ++j) {
        h = res_block(ctx, lv.block[j], h);
        if (!lv.attn.empty()) h = attention(ctx, lv.attn[j], h);
      }
      if (lv.resample) h = conv(ctx, *lv.resample, h, ops::Conv2dSpec::pad_after_stride2());
    }
    h = mid(ctx, enc_mid, h);
    h = norm_silu(ctx, enc_norm_out, h);
    h = conv(ctx, enc_conv_out, h, ops::Conv2dSpec::same(3));
    h = conv(ctx, quant_conv, h, {});
    Tensor<T, Dev> out(Shape{h.size(0), h.size(3), h.size(1), h.size(2)});
    ops::channels_first<T>(ctx, h, out.view());
    return out;
  }

  /// The posterior of moments [B, 2E, h, w]: mean_std = (mean | std) and the clamped logvar.
  VaePosterior<T, Dev> posterior(const Context& ctx, ConstView<T, Dev> moments) const {
    IREPA_CHECK(moments.rank() == 4 && moments.size(1) == 2 * config.embed_dim, "SdVae: moments have shape {}, expected [B, {}, h, w]",
                moments.shape().str(), 2 * config.embed_dim);
    VaePosterior<T, Dev> p{Tensor<T, Dev>(moments.shape()),
                           Tensor<T, Dev>(Shape{moments.size(0), config.embed_dim, moments.size(2), moments.size(3)})};
    ops::posterior_from_moments<T>(ctx, moments, static_cast<T>(config.logvar_min), static_cast<T>(config.logvar_max), p.mean_std.view(),
                                   p.logvar.view());
    return p;
  }

  /// Images -> mean_std [B, 2E, H/f, W/f], what a latent dataset stores per image.
  Tensor<T, Dev> encode(const Context& ctx, ConstView<T, Dev> x) const { return posterior(ctx, encode_moments(ctx, x)).mean_std; }

  /// z [B, E, h, w] (unscaled: what the posterior's mean or a draw from it is) -> images
  /// [B, out_ch, h f, w f], roughly in [-1, 1].
  Tensor<T, Dev> decode(const Context& ctx, ConstView<T, Dev> z) const {
    IREPA_CHECK(z.rank() == 4 && z.size(1) == config.embed_dim && z.size(2) > 0 && z.size(3) > 0,
                "SdVae: latents have shape {}, expected [B, {}, h, w]", z.shape().str(), config.embed_dim);
    Tensor<T, Dev> h(Shape{z.size(0), z.size(2), z.size(3), z.size(1)});
    ops::channels_last<T>(ctx, z, h.view());
    h = conv(ctx, post_quant_conv, h, {});
    h = conv(ctx, dec_conv_in, h, ops::Conv2dSpec::same(3));
    h = mid(ctx, dec_mid, h);
    for (std::size_t l = up.size(); l-- > 0;) {
      const Level& lv = up[l];
      for (std::size_t j = 0; j < lv.block.size(); ++j) {
        h = res_block(ctx, lv.block[j], h);
        if (!lv.attn.empty()) h = attention(ctx, lv.attn[j], h);
      }
      if (lv.resample) {
        Tensor<T, Dev> u(Shape{h.size(0), 2 * h.size(1), 2 * h.size(2), h.size(3)});
        ops::upsample_nearest2x<T>(ctx, h, u.view());
        h = conv(ctx, *lv.resample, u, ops::Conv2dSpec::same(3));
      }
    }
    h = norm_silu(ctx, dec_norm_out, h);
    h = conv(ctx, dec_conv_out, h, ops::Conv2dSpec::same(3));
    Tensor<T, Dev> out(Shape{h.size(0), h.size(3), h.size(1), h.size(2)});
    ops::channels_first<T>(ctx, h, out.view());
    return out;
  }

  /// diffusers' name of one of ours (the LDM name): down.i.block.j -> down_blocks.i.resnets.j,
  /// up.i -> up_blocks.(L-1-i), mid.block_1 / block_2 / attn_1 -> mid_block.resnets.0 / 1 /
  /// attentions.0, norm_out -> conv_norm_out, nin_shortcut -> conv_shortcut, attention's
  /// norm / q / k / v / proj_out -> group_norm / to_q (query) / to_k (key) / to_v (value) /
  /// to_out.0 (proj_attn).
  std::string diffusers_name(std::string_view ldm, bool to_q) const {
    std::vector<std::string> parts;
    for (std::size_t i = 0; i <= ldm.size();) {
      const std::size_t j = std::min(ldm.find('.', i), ldm.size());
      parts.emplace_back(ldm.substr(i, j - i));
      i = j + 1;
    }
    std::vector<std::string> out;
    bool in_attn = false;
    for (std::size_t i = 0; i < parts.size(); ++i) {
      const std::string& s = parts[i];
      if ((s == "down" || s == "up") && i + 1 < parts.size()) {
        const std::int64_t l = std::stoll(parts[i + 1]);
        out.push_back(s == "down" ? "down_blocks" : "up_blocks");
        out.push_back(std::to_string(s == "down" ? l : config.levels() - 1 - l));
        ++i;
      } else if (s == "block" && i + 1 < parts.size()) {
        out.push_back("resnets"), out.push_back(parts[++i]);
      } else if (s == "attn" && i + 1 < parts.size()) {
        out.push_back("attentions"), out.push_back(parts[++i]), in_attn = true;
      } else if (s == "mid") {
        out.push_back("mid_block");
      } else if (s == "block_1" || s == "block_2") {
        out.push_back("resnets"), out.push_back(s == "block_1" ? "0" : "1");
      } else if (s == "attn_1") {
        out.push_back("attentions"), out.push_back("0"), in_attn = true;
      } else if (s == "downsample" || s == "upsample") {
        out.push_back(s == "downsample" ? "downsamplers" : "upsamplers"), out.push_back("0");
      } else if (s == "norm_out") {
        out.push_back("conv_norm_out");
      } else if (s == "nin_shortcut") {
        out.push_back("conv_shortcut");
      } else if (in_attn && s == "norm") {
        out.push_back("group_norm");
      } else if (in_attn && (s == "q" || s == "k" || s == "v")) {
        out.push_back(to_q ? "to_" + s : (s == "q" ? "query" : s == "k" ? "key" : "value"));
      } else if (in_attn && s == "proj_out") {
        if (to_q) out.push_back("to_out"), out.push_back("0");
        else out.push_back("proj_attn");
      } else {
        out.push_back(s);
      }
    }
    std::string r;
    for (const auto& s : out) r += (r.empty() ? "" : ".") + s;
    return r;
  }

  static Layout detect_layout(const io::SafeTensorsFile& f, std::string_view prefix) {
    const std::string p(prefix);
    if (f.contains(p + "encoder.down.0.block.0.conv1.weight")) return Layout::Ldm;
    if (f.contains(p + "encoder.down_blocks.0.resnets.0.conv1.weight")) return Layout::Diffusers;
    fail("SdVae: '{}' holds neither the reference's VAE names ('{}encoder.down.0.block.0.conv1.weight') nor diffusers' "
         "('{}encoder.down_blocks.0.resnets.0.conv1.weight')",
         f.path(), p, p);
  }

 private:
  ParamArena<T, Dev> arena_;

  void prepare(const HostModel& host) {
    for (std::size_t l = 0; l < down.size(); ++l)
      for (std::size_t j = 0; j < down[l].attn.size(); ++j) down[l].attn[j].prepare(host.down[l].attn[j]);
    for (std::size_t l = 0; l < up.size(); ++l)
      for (std::size_t j = 0; j < up[l].attn.size(); ++j) up[l].attn[j].prepare(host.up[l].attn[j]);
    enc_mid.attn_1.prepare(host.enc_mid.attn_1);
    dec_mid.attn_1.prepare(host.dec_mid.attn_1);
  }
  /// h [B, H, W, Cin] -> [B, Ho, Wo, Cout].
  Tensor<T, Dev> conv(const Context& ctx, const Conv& c, ConstView<T, Dev> h, const ops::Conv2dSpec& s) const {
    const std::int64_t k = c.weight.shape[2];
    Tensor<T, Dev> y(Shape{h.size(0), s.out_h(h.size(1), k), s.out_w(h.size(2), k), c.out()});
    ops::conv2d_forward<T>(ctx, h, c.weight.value, c.bias.value, s, y.view());
    return y;
  }
  Tensor<T, Dev> norm_silu(const Context& ctx, const Norm& n, ConstView<T, Dev> h, bool silu = true) const {
    Tensor<T, Dev> y(h.shape());
    ops::group_norm_forward<T>(ctx, h, config.groups, static_cast<T>(config.eps), n.weight.value, n.bias.value, silu, y.view());
    return y;
  }
  Tensor<T, Dev> res_block(const Context& ctx, const ResBlock& r, ConstView<T, Dev> h) const {
    Tensor<T, Dev> t = conv(ctx, r.conv1, norm_silu(ctx, r.norm1, h), ops::Conv2dSpec::same(3));
    ops::group_norm_forward<T>(ctx, t.cview(), config.groups, static_cast<T>(config.eps), r.norm2.weight.value, r.norm2.bias.value, true,
                               t.view());
    Tensor<T, Dev> out = conv(ctx, r.conv2, t, ops::Conv2dSpec::same(3));
    if (r.nin_shortcut)
      ops::add_into<T>(ctx, out.view(), conv(ctx, *r.nin_shortcut, h, {}).cview());
    else
      ops::add_into<T>(ctx, out.view(), h);
    return out;
  }
  /// h + proj_out(attention(norm(h))), one head over the H W pixels.
  Tensor<T, Dev> attention(const Context& ctx, const Attn& a, ConstView<T, Dev> h) const {
    const std::int64_t B = h.size(0), N = h.size(1) * h.size(2), C = h.size(3);
    const Tensor<T, Dev> t = norm_silu(ctx, a.norm, h, false);
    Tensor<T, Dev> qkv(Shape{B, N, 3 * C}), o(Shape{B, N, C}), out(h.shape());
    ops::linear_forward<T>(ctx, t.cview().reshape(Shape{B, N, C}), a.qkv_w.cview(), a.qkv_b.cview(), qkv.view());
    ops::AttentionSpec<T, Dev> spec;
    spec.heads = 1;
    (void)ops::attention_forward<T>(ctx, qkv.cview(), spec, o.view());
    ops::linear_forward<T>(ctx, o.cview(), a.proj_out.weight.value.reshape(Shape{C, C}), a.proj_out.bias.value,
                           out.view().reshape(Shape{B, N, C}));
    ops::add_into<T>(ctx, out.view(), h);
    return out;
  }
  Tensor<T, Dev> mid(const Context& ctx, const Mid& m, ConstView<T, Dev> h) const {
    Tensor<T, Dev> y = res_block(ctx, m.block_1, h);
    y = attention(ctx, m.attn_1, y);
    return res_block(ctx, m.block_2, y);
  }
};

/// The architecture of a VAE checkpoint (either layout, under prefix), read off its tensors:
/// ch and in_channels from encoder.conv_in, the levels' widths and ResNet blocks from
/// encoder.down.*, attention where a level has it (at nominal resolution 256 >> level), z_channels
/// from encoder.conv_out, embed_dim from quant_conv, out_ch from decoder.conv_out. The GroupNorm
/// groups cannot be seen in the shapes: the file's metadata "groupnorm_groups" (SdVae::save
/// writes it), else the reference's 32. load() then checks every tensor against this config.
inline SdVaeConfig sd_vae_config_of(const io::SafeTensorsFile& f, std::string_view prefix = {}) {
  const bool ldm = SdVae<float>::detect_layout(f, prefix) == SdVae<float>::Layout::Ldm;
  const std::string p(prefix);
  const auto shape = [&](const std::string& name) -> const Shape& {
    IREPA_CHECK(f.contains(p + name), "SdVae: '{}' has no '{}{}' to read the architecture from", f.path(), p, name);
    return f.info(p + name).shape;
  };
  const auto level = [&](std::int64_t l) { return p + (ldm ? "encoder.down." : "encoder.down_blocks.") + std::to_string(l); };
  const auto block = [&](std::int64_t l, std::int64_t j) {
    return level(l).substr(p.size()) + (ldm ? ".block." : ".resnets.") + std::to_string(j);
  };
  SdVaeConfig c;
  const Shape& conv_in = shape("encoder.conv_in.weight");
  IREPA_CHECK(conv_in.rank() == 4, "SdVae: '{}' encoder.conv_in.weight has shape {}, expected [ch, C, 3, 3]", f.path(), conv_in.str());
  c.ch = conv_in[0], c.in_channels = conv_in[1];
  c.ch_mult.clear(), c.attn_resolutions.clear(), c.resolution = 256;
  for (std::int64_t l = 0; f.contains(p + block(l, 0) + ".conv1.weight"); ++l) {
    IREPA_CHECK(l < 16, "SdVae: '{}' has more than 16 encoder levels", f.path());
    const Shape& w = shape(block(l, 0) + ".conv2.weight");
    IREPA_CHECK(w.rank() == 4 && w[0] % c.ch == 0, "SdVae: '{}' level {} is {} wide, not a multiple of ch {}", f.path(), l,
                w.rank() ? w[0] : 0, c.ch);
    c.ch_mult.push_back(w[0] / c.ch);
    if (f.contains(level(l) + (ldm ? ".attn.0.norm.weight" : ".attentions.0.group_norm.weight"))) c.attn_resolutions.push_back(256 >> l);
  }
  IREPA_CHECK(!c.ch_mult.empty(), "SdVae: '{}' has no encoder level", f.path());
  c.num_res_blocks = 0;
  while (f.contains(p + block(0, c.num_res_blocks) + ".conv1.weight")) ++c.num_res_blocks;
  c.z_channels = shape("encoder.conv_out.weight")[0] / 2;
  c.embed_dim = shape("quant_conv.weight")[0] / 2;
  c.out_ch = shape("decoder.conv_out.weight")[0];
  if (const auto g = f.metadata("groupnorm_groups")) {
    try {
      c.groups = std::stoll(*g);
    } catch (const std::exception&) {
      fail("SdVae: '{}' metadata groupnorm_groups is '{}', expected an integer", f.path(), *g);
    }
  }
  c.validate();
  return c;
}

/// A VAE with the architecture and weights of a checkpoint (sd_vae_config_of, then load).
template <class T>
SdVae<T> load_sd_vae(const std::string& path, std::string_view prefix = {}) {
  io::SafeTensorsFile f(path);
  SdVae<T> vae(sd_vae_config_of(f, prefix));
  vae.load(f, prefix);
  return vae;
}

/// Writes a host VAE's weights under the reference's names (float32), with its GroupNorm groups
/// in the metadata, atomically.
template <class T>
void save_sd_vae(const SdVae<T>& vae, const std::string& path) {
  io::SafeTensorsWriter w;
  vae.params().for_each(
      [&](std::string_view name, TensorView<T> v, TensorView<T>) { w.add_as<T>(name, ConstView<T>(v), DType::F32); });
  w.set_metadata("groupnorm_groups", std::to_string(vae.config.groups));
  w.write(path);
}

/// Decoded images [B, C, H, W] (roughly [-1, 1]) as the reference's generate.py stores them:
/// clamp(255 (x + 1) / 2, 0, 255), channels-last, truncated to uint8 -> [B, H, W, C].
template <class T>
Tensor<std::uint8_t> decoded_to_uint8(ConstView<T> x) {
  IREPA_CHECK(x.rank() == 4, "decoded_to_uint8: images have shape {}, expected [B, C, H, W]", x.shape().str());
  check_contiguous("decoded_to_uint8", x);
  const std::int64_t B = x.size(0), C = x.size(1), P = x.size(2) * x.size(3);
  Tensor<std::uint8_t> out(Shape{B, x.size(2), x.size(3), C});
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t p = 0; p < P; ++p) {
        const T v = std::clamp(T(255) * (x.data()[(b * C + c) * P + p] + T(1)) / T(2), T(0), T(255));
        out.data()[(b * P + p) * C + c] = static_cast<std::uint8_t>(v);  // truncation, as .to(torch.uint8)
      }
  return out;
}

}  // namespace irepa
