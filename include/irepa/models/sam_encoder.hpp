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
// Forward only, float or double. Softmax runs in T (the HF code computes it in float32).

#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "irepa/core/arena.hpp"
#include "irepa/core/context.hpp"
#include "irepa/io/params.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/models/vit_encoder.hpp"
#include "irepa/ops/attention.hpp"
#include "irepa/ops/conv.hpp"
#include "irepa/ops/linear.hpp"
#include "irepa/ops/resize.hpp"

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

template <class T>
struct SamEncoder {
  using scalar_type = T;
  using device_type = Cpu;

  struct Layer {
    Param<T> ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, rel_h, rel_w, ln2_w, ln2_b, lin1_w, lin1_b, lin2_w, lin2_b;
  };

  SamConfig config;
  Param<T> patch_w, patch_b, pos_embed;
  std::vector<Layer> layers;
  Param<T> neck_conv1, neck_ln1_w, neck_ln1_b, neck_conv2, neck_ln2_w, neck_ln2_b;

  explicit SamEncoder(const SamConfig& c) : config(c) {
    const std::int64_t D = c.hidden, hd = D / std::max<std::int64_t>(c.heads, 1), g = c.grid(), O = c.out_channels;
    IREPA_CHECK(D > 0 && c.heads > 0 && D % c.heads == 0 && c.depth > 0 && c.patch > 0 && c.image_size % c.patch == 0 &&
                    c.window > 0 && c.resolution % 16 == 0,
                "SamEncoder: width {}, {} heads, depth {}, patch {}, image {}, window {}, resolution {} do not make an encoder", D,
                c.heads, c.depth, c.patch, c.image_size, c.window, c.resolution);
    patch_w = Param<T>(Shape{D, 3, c.patch, c.patch}), patch_b = Param<T>(Shape{D});
    pos_embed = Param<T>(Shape{1, g, g, D});
    layers.resize(static_cast<std::size_t>(c.depth));
    for (std::int64_t i = 0; i < c.depth; ++i) {
      Layer& l = layers[static_cast<std::size_t>(i)];
      const std::int64_t rel = 2 * c.span(i) - 1;
      l.ln1_w = Param<T>(Shape{D}), l.ln1_b = Param<T>(Shape{D}), l.ln2_w = Param<T>(Shape{D}), l.ln2_b = Param<T>(Shape{D});
      l.qkv_w = Param<T>(Shape{3 * D, D}), l.qkv_b = Param<T>(Shape{3 * D});
      l.proj_w = Param<T>(Shape{D, D}), l.proj_b = Param<T>(Shape{D});
      l.rel_h = Param<T>(Shape{rel, hd}), l.rel_w = Param<T>(Shape{rel, hd});
      l.lin1_w = Param<T>(Shape{c.mlp_dim(), D}), l.lin1_b = Param<T>(Shape{c.mlp_dim()});
      l.lin2_w = Param<T>(Shape{D, c.mlp_dim()}), l.lin2_b = Param<T>(Shape{D});
    }
    neck_conv1 = Param<T>(Shape{O, D, 1, 1}), neck_conv2 = Param<T>(Shape{O, O, 3, 3});
    neck_ln1_w = Param<T>(Shape{O}), neck_ln1_b = Param<T>(Shape{O}), neck_ln2_w = Param<T>(Shape{O}), neck_ln2_b = Param<T>(Shape{O});
    arena_ = ParamArena<T>(*this);
  }
  SamEncoder(SamEncoder&&) noexcept = default;

  std::int64_t tokens() const { return config.side() * config.side(); }
  std::int64_t dim() const { return config.out_channels; }
  const ParamArena<T>& params() const { return arena_; }

  /// HuggingFace SamVisionEncoder names (prefix "vision_encoder." in a SamModel checkpoint).
  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    v(join_name(prefix, "patch_embed.projection.weight"), patch_w);
    v(join_name(prefix, "patch_embed.projection.bias"), patch_b);
    v(join_name(prefix, "pos_embed"), pos_embed);
    for (std::size_t i = 0; i < layers.size(); ++i) {
      Layer& l = layers[i];
      const std::string p = join_name(prefix, "layers." + std::to_string(i) + ".");
      v(p + "layer_norm1.weight", l.ln1_w), v(p + "layer_norm1.bias", l.ln1_b);
      v(p + "attn.qkv.weight", l.qkv_w), v(p + "attn.qkv.bias", l.qkv_b);
      v(p + "attn.proj.weight", l.proj_w), v(p + "attn.proj.bias", l.proj_b);
      v(p + "attn.rel_pos_h", l.rel_h), v(p + "attn.rel_pos_w", l.rel_w);
      v(p + "layer_norm2.weight", l.ln2_w), v(p + "layer_norm2.bias", l.ln2_b);
      v(p + "mlp.lin1.weight", l.lin1_w), v(p + "mlp.lin1.bias", l.lin1_b);
      v(p + "mlp.lin2.weight", l.lin2_w), v(p + "mlp.lin2.bias", l.lin2_b);
    }
    v(join_name(prefix, "neck.conv1.weight"), neck_conv1);
    v(join_name(prefix, "neck.layer_norm1.weight"), neck_ln1_w), v(join_name(prefix, "neck.layer_norm1.bias"), neck_ln1_b);
    v(join_name(prefix, "neck.conv2.weight"), neck_conv2);
    v(join_name(prefix, "neck.layer_norm2.weight"), neck_ln2_w), v(join_name(prefix, "neck.layer_norm2.bias"), neck_ln2_b);
  }

  /// Reads every tensor under prefix; "" finds a SamModel checkpoint's "vision_encoder." itself.
  /// Other tensors in the file (prompt encoder, mask decoder) are left alone.
  void load(const io::SafeTensorsFile& f, std::string prefix = {}) {
    if (prefix.empty() && f.contains("vision_encoder.pos_embed")) prefix = "vision_encoder.";
    io::load_params(f, arena_, prefix, io::LoadParamsOptions{.allow_unexpected = !prefix.empty(), .read_by_caller = {}});
  }

  /// uint8-valued images [B, 3, R, R] -> [B, 3, 1024, 1024]: /255, bicubic, then mean/std.
  Tensor<T> preprocess(const CpuContext& ctx, ConstView<T> images) const {
    IREPA_CHECK(images.rank() == 4 && images.size(1) == 3 && images.size(2) == config.resolution &&
                    images.size(3) == config.resolution,
                "SamEncoder: images have shape {}, expected [B, 3, {}, {}]", images.shape().str(), config.resolution,
                config.resolution);
    return detail::resize_then_imagenet_normalise(ctx, images, config.image_size, ops::ResizeMode::Bicubic);
  }

  /// x [B, 3, 1024, 1024] preprocessed -> tokens [B, (R/16)^2, 256].
  Tensor<T> forward(const CpuContext& ctx, ConstView<T> x) const {
    const std::int64_t S = config.image_size, D = config.hidden, g = config.grid(), O = config.out_channels;
    IREPA_CHECK(x.rank() == 4 && x.size(1) == 3 && x.size(2) == S && x.size(3) == S,
                "SamEncoder: input has shape {}, expected [B, 3, {}, {}] (preprocess first)", x.shape().str(), S, S);
    const std::int64_t B = x.size(0), N = g * g;
    Tensor<T> h(Shape{B, N, D});  // [B, 64*64, D], row-major grid
    ops::patchify_forward<T>(ctx, x, patch_w.value, patch_b.value, h.view());
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t i = 0; i < N * D; ++i) h[b * N * D + i] += pos_embed.value.data()[i];
    const T eps = static_cast<T>(config.norm_eps);
    Tensor<T> n(h.shape()), m1(Shape{B, N, config.mlp_dim()}), o(h.shape());
    for (std::int64_t li = 0; li < config.depth; ++li) {
      const Layer& l = layers[static_cast<std::size_t>(li)];
      detail::affine_layer_norm(ctx, h, l.ln1_w.value, l.ln1_b.value, eps, n);
      attention(ctx, l, config.span(li), config.global(li), n, o);
      for (std::int64_t i = 0; i < h.numel(); ++i) h[i] += o[i];
      detail::affine_layer_norm(ctx, h, l.ln2_w.value, l.ln2_b.value, eps, n);
      ops::linear_forward<T>(ctx, n, l.lin1_w.value, l.lin1_b.value, m1.view());
      detail::vit_activate(ctx, m1.view(), VitActivation::Gelu);
      ops::linear_forward<T>(ctx, m1, l.lin2_w.value, l.lin2_b.value, o.view());
      for (std::int64_t i = 0; i < h.numel(); ++i) h[i] += o[i];
    }
    // Neck on the channels-last grid: 1x1 conv = a linear without bias; LayerNorm over channels.
    Tensor<T> c1(Shape{B, N, O}), c1n(Shape{B, N, O}), c2(Shape{B, g, g, O}), c2n(Shape{B, g, g, O});
    ops::linear_forward<T>(ctx, h, neck_conv1.value.reshape({O, D}), ConstView<T>{}, c1.view());
    detail::affine_layer_norm(ctx, c1, neck_ln1_w.value, neck_ln1_b.value, eps, c1n);
    ops::conv2d_same_forward<T>(ctx, c1n.view().reshape({B, g, g, O}), neck_conv2.value, ConstView<T>{}, c2.view());
    detail::affine_layer_norm(ctx, c2, neck_ln2_w.value, neck_ln2_b.value, eps, c2n);
    // [B, 64*64, O] -> [B, O, 64, 64] -> bilinear to side -> [B, side*side, O]
    Tensor<T> cf(Shape{B, O, g, g});
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t t = 0; t < N; ++t)
        for (std::int64_t c = 0; c < O; ++c) cf[(b * O + c) * N + t] = c2n[(b * N + t) * O + c];
    const std::int64_t s = config.side();
    const Tensor<T> r = ops::interpolate<T>(ctx, cf, s, s, ops::ResizeMode::Bilinear, false);
    Tensor<T> out(Shape{B, s * s, O});
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t c = 0; c < O; ++c)
        for (std::int64_t t = 0; t < s * s; ++t) out[(b * s * s + t) * O + c] = r[(b * O + c) * s * s + t];
    return out;
  }

  Tensor<T> encode(const CpuContext& ctx, ConstView<T> images) const { return forward(ctx, preprocess(ctx, images)); }

 private:
  /// o [B, N, D] = proj(attention(n)): windows of span x span over the grid zero-padded to a
  /// multiple of the span (padded tokens take part as keys, as in SAM), or the whole grid.
  void attention(const CpuContext& ctx, const Layer& l, std::int64_t span, bool global, const Tensor<T>& n, Tensor<T>& o) const {
    const std::int64_t B = n.size(0), D = config.hidden, g = config.grid(), H = config.heads, hd = D / H;
    const std::int64_t padded = global ? g : (g + span - 1) / span * span, per_side = padded / span;
    const std::int64_t units = B * per_side * per_side, L = span * span;  // windows (or images), tokens each
    Tensor<T> win(Shape{units, L, D});
    win.fill(T(0));
    auto grid_index = [&](std::int64_t u, std::int64_t t, std::int64_t& b, std::int64_t& row, std::int64_t& col) {
      b = u / (per_side * per_side);
      const std::int64_t w = u % (per_side * per_side);
      row = (w / per_side) * span + t / span, col = (w % per_side) * span + t % span;
    };
    for (std::int64_t u = 0; u < units; ++u)
      for (std::int64_t t = 0; t < L; ++t) {
        std::int64_t b, row, col;
        grid_index(u, t, b, row, col);
        if (row < g && col < g) std::copy_n(n.data() + (b * g * g + row * g + col) * D, D, win.data() + (u * L + t) * D);
      }
    Tensor<T> qkv(Shape{units, L, 3 * D}), att(Shape{units, L, D});
    ops::linear_forward<T>(ctx, win, l.qkv_w.value, l.qkv_b.value, qkv.view());
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hd)));
    const std::int64_t rel = 2 * span - 1;
    IREPA_CHECK(l.rel_h.value.size(0) == rel && l.rel_w.value.size(0) == rel,
                "SamEncoder: relative position tables of {} rows, expected {} for span {}", l.rel_h.value.size(0), rel, span);
    const double cost = 4.0 * static_cast<double>(L * L * hd) + 2.0 * static_cast<double>(L * span * hd);
    ctx.parallel_for(units * H, cost, [&](std::int64_t i0, std::int64_t i1) {
      ops::detail::RowMat<T> Q(L, hd), Qs(L, hd), K(L, hd), V(L, hd), P(L, L), O(L, hd), RH(L, span), RW(L, span);
      Eigen::Array<T, 1, Eigen::Dynamic> e(L);
      for (std::int64_t i = i0; i < i1; ++i) {
        const std::int64_t u = i / H, hh = i % H;
        for (std::int64_t t = 0; t < L; ++t) {
          const T* src = qkv.data() + (u * L + t) * 3 * D + hh * hd;
          for (std::int64_t j = 0; j < hd; ++j) {
            Q(t, j) = src[j], Qs(t, j) = src[j] * scale, K(t, j) = src[D + j], V(t, j) = src[2 * D + j];
          }
        }
        ops::detail::head_gemm<T>(L, L, hd, Qs.data(), false, K.data(), true, P.data());  // (q scale) k^T
        // Decomposed relative positions: rel_h[i, kh] = q_i . rel_pos_h[qh - kh + span - 1], same for w.
        for (std::int64_t t = 0; t < L; ++t) {
          const std::int64_t qh = t / span, qw = t % span;
          for (std::int64_t k = 0; k < span; ++k) {
            const T* rh = l.rel_h.value.data() + (qh - k + span - 1) * hd;
            const T* rw = l.rel_w.value.data() + (qw - k + span - 1) * hd;
            T sh = 0, sw = 0;
            for (std::int64_t j = 0; j < hd; ++j) sh += Q(t, j) * rh[j], sw += Q(t, j) * rw[j];
            RH(t, k) = sh, RW(t, k) = sw;
          }
          T* pr = P.data() + t * L;
          for (std::int64_t kh = 0; kh < span; ++kh)
            for (std::int64_t kw = 0; kw < span; ++kw) pr[kh * span + kw] = (pr[kh * span + kw] + RH(t, kh)) + RW(t, kw);
          auto row = P.row(t).array();
          row -= row.maxCoeff();
          e = row.exp();
          row = e / e.sum();
        }
        ops::detail::head_gemm<T>(L, hd, L, P.data(), false, V.data(), false, O.data());
        for (std::int64_t t = 0; t < L; ++t) std::copy_n(O.data() + t * hd, hd, att.data() + (u * L + t) * D + hh * hd);
      }
    });
    Tensor<T> proj(Shape{units, L, D});
    ops::linear_forward<T>(ctx, att, l.proj_w.value, l.proj_b.value, proj.view());
    for (std::int64_t u = 0; u < units; ++u)
      for (std::int64_t t = 0; t < L; ++t) {
        std::int64_t b, row, col;
        grid_index(u, t, b, row, col);
        if (row < g && col < g) std::copy_n(proj.data() + (u * L + t) * D, D, o.data() + (b * g * g + row * g + col) * D);
      }
  }

  ParamArena<T> arena_;
};

}  // namespace irepa
