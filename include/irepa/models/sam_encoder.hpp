#pragma once
// SAM (v1) image encoder, as the reference's SAMEncoder uses it: HuggingFace's SamVisionEncoder of
// facebook/sam-vit-{base,large,huge}, with the parameter names of its model.safetensors (the
// vision tower sits under "vision_encoder."; the prompt encoder and mask decoder are ignored).
//
//   uint8 [B, 3, R, R] -> /255 -> bicubic to 1024 -> ImageNet mean/std
//   -> conv 16x16 stride 16 -> [B, 64, 64, C] + learned positions [1, 64, 64, C]
//   -> blocks: h += proj(attention(LN1 h)), over 14x14 windows of the grid zero-padded to 70x70
//      (global attention at the global_attn_indexes), with decomposed relative positions added to
//      the logits (rel_pos_h / rel_pos_w read by the unscaled query); h += MLP(LN2 h), exact GELU
//   -> neck: 1x1 conv to 256 (no bias) -> LayerNorm over channels -> 3x3 conv (no bias) -> LayerNorm
//   -> bilinear (align_corners false) to (R/16) x (R/16) -> tokens [B, (R/16)^2, 256].
//
// Forward only, float or double, on device Dev (read on the host and copied up: from_host),
// from the library's layers (nn::LayerNorm, nn::Linear, nn::VitMlp) and the window ops
// (ops/window.hpp). Softmax runs in T (the HF code computes it in float32).

#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "irepa/core/arena.hpp"
#include "irepa/core/context.hpp"
#include "irepa/core/host_twin.hpp"
#include "irepa/core/rng.hpp"
#include "irepa/io/params.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/models/vit_encoder.hpp"
#include "irepa/nn/vit_layers.hpp"
#include "irepa/ops/conv.hpp"
#include "irepa/ops/linear.hpp"
#include "irepa/ops/resize.hpp"
#include "irepa/ops/tensor_ops.hpp"
#include "irepa/ops/window.hpp"

namespace irepa {

struct SamConfig {
  std::int64_t hidden = 768, depth = 12, heads = 12;
  std::int64_t patch = 16, image_size = 1024, window = 14, out_channels = 256;
  std::vector<std::int64_t> global_attn = {2, 5, 8, 11};  // blocks with global attention
  double norm_eps = 1e-6;
  std::int64_t resolution = 256;  // the uint8 images' size; the output grid is resolution / 16

  std::int64_t mlp_dim() const { return hidden * 4; }
  std::int64_t grid() const { return image_size / patch; }  // 64: the encoder's own token grid
  std::int64_t side() const { return resolution / 16; }     // the output grid
  bool global(std::int64_t layer) const {
    for (std::int64_t g : global_attn)
      if (g == layer) return true;
    return false;
  }
  /// Attention span of a block: the window, or the whole grid.
  std::int64_t span(std::int64_t layer) const { return global(layer) ? grid() : window; }
};

/// sam-vit-{b,l,h} as the reference maps them (facebook/sam-vit-base, -large, -huge).
inline SamConfig sam_config_from_name(std::string_view name, std::int64_t resolution = 256) {
  IREPA_CHECK(name.starts_with("sam-vit-"), "SAM encoder '{}': expected sam-vit-{{b,l,h}}", name);
  const std::string_view size = name.substr(8);
  SamConfig c;
  if (size == "b") c.hidden = 768, c.depth = 12, c.heads = 12, c.global_attn = {2, 5, 8, 11};
  else if (size == "l") c.hidden = 1024, c.depth = 24, c.heads = 16, c.global_attn = {5, 11, 17, 23};
  else if (size == "h") c.hidden = 1280, c.depth = 32, c.heads = 16, c.global_attn = {7, 15, 23, 31};
  else fail("SAM encoder '{}': size '{}' is not known (b, l, h)", name, size);
  // At 1024 the reference skips its resize and then views channels-first features as tokens.
  IREPA_CHECK(resolution >= 256 && resolution % 256 == 0 && resolution / 16 != c.grid(),
              "SAM encoder '{}': resolution {} is not supported (a multiple of 256 other than 1024)", name, resolution);
  c.resolution = resolution;
  return c;
}

template <class T, class Dev = Cpu>
struct SamEncoder {
  using scalar_type = T;
  using device_type = Dev;
  using Context = ContextOf<Dev>;
  using HostModel = SamEncoder<T, Cpu>;
  template <class D2>
  using On = SamEncoder<T, D2>;  // the same encoder on another device

  struct Layer {
    nn::LayerNorm<T, Dev> norm1, norm2;
    nn::Linear<T, Dev> qkv, proj;  // [3D, D] + [3D], [D, D] + [D]
    Param<T, Dev> rel_h, rel_w;    // [2 span - 1, head dim]: decomposed relative positions
    nn::VitMlp<T, Dev> mlp;        // lin1 -> exact GELU -> lin2
  };

  SamConfig config;
  nn::PatchEmbed<T, Dev> patch_embed;  // [D, 3, 16, 16] + [D]
  Param<T, Dev> pos_embed;             // [1, 64, 64, D]
  std::vector<Layer> layers;
  Param<T, Dev> neck_conv1, neck_conv2;  // [O, D, 1, 1], [O, O, 3, 3], no bias
  nn::LayerNorm<T, Dev> neck_norm1, neck_norm2;

  explicit SamEncoder(const SamConfig& c) : config(c) {
    const std::int64_t D = c.hidden, hd = D / std::max<std::int64_t>(c.heads, 1), g = c.grid(), O = c.out_channels;
    IREPA_CHECK(D > 0 && c.heads > 0 && D % c.heads == 0 && c.depth > 0 && c.patch > 0 && c.image_size % c.patch == 0 &&
                    c.window > 0 && c.resolution % 16 == 0,
                "SamEncoder: width {}, {} heads, depth {}, patch {}, image {}, window {}, resolution {} do not make an encoder", D,
                c.heads, c.depth, c.patch, c.image_size, c.window, c.resolution);
    patch_embed = nn::PatchEmbed<T, Dev>(3, D, c.patch, true);
    pos_embed = Param<T, Dev>(Shape{1, g, g, D});
    layers.resize(static_cast<std::size_t>(c.depth));
    for (std::int64_t i = 0; i < c.depth; ++i) {
      Layer& l = layers[static_cast<std::size_t>(i)];
      const std::int64_t rel = 2 * c.span(i) - 1;
      l.norm1 = nn::LayerNorm<T, Dev>(D, c.norm_eps), l.norm2 = nn::LayerNorm<T, Dev>(D, c.norm_eps);
      l.qkv = nn::Linear<T, Dev>(D, 3 * D), l.proj = nn::Linear<T, Dev>(D, D);
      l.rel_h = Param<T, Dev>(Shape{rel, hd}), l.rel_w = Param<T, Dev>(Shape{rel, hd});
      l.mlp = nn::VitMlp<T, Dev>(D, c.mlp_dim(), nn::VitMlpOptions{});
    }
    neck_conv1 = Param<T, Dev>(Shape{O, D, 1, 1}), neck_conv2 = Param<T, Dev>(Shape{O, O, 3, 3});
    neck_norm1 = nn::LayerNorm<T, Dev>(O, c.norm_eps), neck_norm2 = nn::LayerNorm<T, Dev>(O, c.norm_eps);
    arena_ = ParamArena<T, Dev>(*this);
  }
  SamEncoder(SamEncoder&&) noexcept = default;

  std::int64_t tokens() const { return config.side() * config.side(); }
  std::int64_t dim() const { return config.out_channels; }
  const ParamArena<T, Dev>& params() const { return arena_; }
  ParamArena<T, Dev>& params() { return arena_; }
  HostModel host_twin() const { return HostModel(config); }

  /// HuggingFace SamVisionEncoder names (prefix "vision_encoder." in a SamModel checkpoint).
  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    v(join_name(prefix, "patch_embed.projection.weight"), patch_embed.weight);
    v(join_name(prefix, "patch_embed.projection.bias"), patch_embed.bias);
    v(join_name(prefix, "pos_embed"), pos_embed);
    for (std::size_t i = 0; i < layers.size(); ++i) {
      Layer& l = layers[i];
      const std::string p = join_name(prefix, "layers." + std::to_string(i) + ".");
      l.norm1.visit_params(v, p + "layer_norm1");
      l.qkv.visit_params(v, p + "attn.qkv"), l.proj.visit_params(v, p + "attn.proj");
      v(p + "attn.rel_pos_h", l.rel_h), v(p + "attn.rel_pos_w", l.rel_w);
      l.norm2.visit_params(v, p + "layer_norm2");
      l.mlp.fc1.visit_params(v, p + "mlp.lin1"), l.mlp.fc2.visit_params(v, p + "mlp.lin2");
    }
    v(join_name(prefix, "neck.conv1.weight"), neck_conv1);
    neck_norm1.visit_params(v, join_name(prefix, "neck.layer_norm1"));
    v(join_name(prefix, "neck.conv2.weight"), neck_conv2);
    neck_norm2.visit_params(v, join_name(prefix, "neck.layer_norm2"));
  }

  /// Reads every tensor under prefix; "" finds a SamModel checkpoint's "vision_encoder." itself.
  /// Other tensors in the file (prompt encoder, mask decoder) are left alone. On a device the
  /// file is read into a host twin and copied up.
  void load(const io::SafeTensorsFile& f, std::string prefix = {}) {
    if (prefix.empty() && f.contains("vision_encoder.pos_embed")) prefix = "vision_encoder.";
    update_through_host(*this, false, [&](HostModel& host) {
      io::load_params(f, host.params(), prefix, io::LoadParamsOptions{.allow_unexpected = !prefix.empty(), .read_by_caller = {}});
    });
  }

  /// Random weights N(0, std) (benchmarks; speed does not depend on values).
  void init_random(std::uint64_t seed, T std) {
    update_through_host(*this, false, [&](HostModel& host) { Philox(seed).normal(host.params().values(), T(0), std); });
  }

  /// This encoder on Dev from a loaded host one (the trainer places its online targets so).
  static SamEncoder from_host(const HostModel& host) {
    SamEncoder e(host.config);
    copy_from_host(e.params().values(), ConstView<T>(host.params().values()));
    return e;
  }

  /// uint8-valued images [B, 3, R, R] -> [B, 3, 1024, 1024]: /255, bicubic, then mean/std.
  Tensor<T, Dev> preprocess(const Context& ctx, ConstView<T, Dev> images) const {
    IREPA_CHECK(images.rank() == 4 && images.size(1) == 3 && images.size(2) == config.resolution &&
                    images.size(3) == config.resolution,
                "SamEncoder: images have shape {}, expected [B, 3, {}, {}]", images.shape().str(), config.resolution,
                config.resolution);
    return detail::resize_then_imagenet_normalise<T>(ctx, images, config.image_size, ops::ResizeMode::Bicubic);
  }

  /// x [B, 3, 1024, 1024] preprocessed -> tokens [B, (R/16)^2, 256].
  Tensor<T, Dev> forward(const Context& ctx, ConstView<T, Dev> x) const {
    const std::int64_t S = config.image_size, D = config.hidden, g = config.grid(), O = config.out_channels;
    IREPA_CHECK(x.rank() == 4 && x.size(1) == 3 && x.size(2) == S && x.size(3) == S,
                "SamEncoder: input has shape {}, expected [B, 3, {}, {}] (preprocess first)", x.shape().str(), S, S);
    const std::int64_t B = x.size(0), N = g * g;
    Tensor<T, Dev> h(Shape{B, N, D});  // [B, 64*64, D], row-major grid
    ops::patchify_forward<T>(ctx, x, patch_embed.weight.value, patch_embed.bias.value, h.view());
    ops::add_broadcast<T>(ctx, h.view(), pos_embed.value);
    Tensor<T, Dev> n(h.shape()), m1(Shape{B, N, config.mlp_dim()}), o(h.shape());
    for (std::int64_t li = 0; li < config.depth; ++li) {
      const Layer& l = layers[static_cast<std::size_t>(li)];
      l.norm1.infer(ctx, h, n.view());
      attention(ctx, l, config.span(li), n, o);
      ops::add_into<T>(ctx, h.view(), o);
      l.norm2.infer(ctx, h, n.view());
      l.mlp.infer(ctx, n, m1.view(), {}, o.view());
      ops::add_into<T>(ctx, h.view(), o);
    }
    // Neck on the channels-last grid: 1x1 conv = a linear without bias; LayerNorm over channels.
    Tensor<T, Dev> c1(Shape{B, N, O}), c1n(Shape{B, N, O}), c2(Shape{B, g, g, O}), c2n(Shape{B, g, g, O});
    ops::linear_forward<T>(ctx, h, neck_conv1.value.reshape({O, D}), ConstView<T, Dev>{}, c1.view());
    neck_norm1.infer(ctx, c1, c1n.view());
    ops::conv2d_same_forward<T>(ctx, c1n.view().reshape({B, g, g, O}), neck_conv2.value, ConstView<T, Dev>{}, c2.view());
    neck_norm2.infer(ctx, c2, c2n.view());
    // [B, 64*64, O] -> [B, O, 64, 64] (channels_last of the grid read as [B, N, O, 1] is that
    // transpose) -> bilinear to side -> back to tokens [B, side*side, O].
    Tensor<T, Dev> cf(Shape{B, O, 1, N});
    ops::channels_last<T>(ctx, c2n.cview().reshape({B, N, O, 1}), cf.view());
    const std::int64_t s = config.side();
    const Tensor<T, Dev> r = ops::interpolate<T>(ctx, cf.cview().reshape({B, O, g, g}), s, s, ops::ResizeMode::Bilinear, false);
    Tensor<T, Dev> out(Shape{B, s * s, O});
    ops::channels_last<T>(ctx, r, out.view().reshape({B, s, s, O}));
    return out;
  }

  Tensor<T, Dev> encode(const Context& ctx, ConstView<T, Dev> images) const { return forward(ctx, preprocess(ctx, images)); }

 private:
  /// o [B, N, D] = proj(attention(n)): windows of span x span over the grid zero-padded to a
  /// multiple of the span (padded tokens take part as keys, as in SAM), or the whole grid.
  void attention(const Context& ctx, const Layer& l, std::int64_t span, const Tensor<T, Dev>& n, Tensor<T, Dev>& o) const {
    const std::int64_t B = n.size(0), D = config.hidden, g = config.grid();
    const std::int64_t per = ops::detail::windows_per_side(g, span), units = B * per * per, L = span * span;
    Tensor<T, Dev> win(Shape{units, L, D}), qkv(Shape{units, L, 3 * D}), att(Shape{units, L, D});
    ops::window_partition<T>(ctx, n.cview().reshape({B, g, g, D}), span, win.view());
    ops::linear_forward<T>(ctx, win, l.qkv.weight.value, l.qkv.bias.value, qkv.view());
    const ops::WindowAttentionSpec<T, Dev> spec{config.heads, span, 1, l.rel_h.value, l.rel_w.value};
    ops::window_attention_forward<T>(ctx, qkv, spec, att.view());
    ops::linear_forward<T>(ctx, att, l.proj.weight.value, l.proj.bias.value, win.view());
    ops::window_merge<T>(ctx, win, o.view().reshape({B, g, g, D}));
  }

  ParamArena<T, Dev> arena_;
};

}  // namespace irepa
