#pragma once
// SAM2 image encoder, as the reference's SAM2Encoder uses it: the Hiera trunk of HuggingFace's
// Sam2Model (facebook/sam2-hiera-{small,base-plus,large}), whose last_hidden_state is the target;
// the FPN neck, prompt encoder and mask decoder are not used. Parameter names are those of the
// model.safetensors files (the trunk under "vision_encoder.backbone.").
//
//   uint8 [B, 3, R, R] -> /255 -> bicubic to 2R -> ImageNet mean/std
//   -> conv 7x7 stride 4 padding 3 -> [B, R/2, R/2, C0]
//      + bicubic resize of the background table pos_embed [1, C0, bh, bw] to the grid
//      + the window table pos_embed_window [1, C0, w0, w0] tiled over it
//   -> blocks, per stage (widths C0..C3, heads, window sizes): h = shortcut + proj(attention(LN1 h))
//      in windows of the grid zero-padded to a multiple of the window (padded tokens are keys),
//      or over the whole grid in the global blocks; h += MLP(LN2 h) (exact GELU).
//      A stage's first block (stages 1..3) widens and halves the grid: its queries are 2x2
//      max-pooled inside each window (of the previous stage's size), its shortcut is
//      maxpool(linear(LN1 h)).
//   -> last_hidden_state [B, R/16, R/16, C3] = tokens [B, (R/16)^2, C3].
//
// Forward only, float or double. Softmax runs in T (HF's eager path computes it in float32).

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

#include "irepa/core/arena.hpp"
#include "irepa/core/context.hpp"
#include "irepa/io/params.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/models/vit_encoder.hpp"
#include "irepa/ops/attention.hpp"
#include "irepa/ops/linear.hpp"
#include "irepa/ops/pool.hpp"
#include "irepa/ops/resize.hpp"

namespace irepa {

/// Sam2HieraDetConfig's fields (defaults: SAM2 Hiera-S) and the working resolution.
struct Sam2Config {
  std::vector<std::int64_t> blocks = {1, 2, 11, 2};       // blocks_per_stage
  std::vector<std::int64_t> dims = {96, 192, 384, 768};   // embed_dim_per_stage
  std::vector<std::int64_t> heads = {1, 2, 4, 8};         // num_attention_heads_per_stage
  std::vector<std::int64_t> windows = {8, 4, 14, 7};      // window_size_per_stage
  std::vector<std::int64_t> global_attn = {7, 10, 13};    // global_attention_blocks
  std::int64_t pos_bkg_h = 7, pos_bkg_w = 7;              // window_positional_embedding_background_size
  std::int64_t q_pool_stages = 3, q_stride = 2;
  std::int64_t patch_kernel = 7, patch_stride = 4, patch_padding = 3;
  double mlp_ratio = 4.0, norm_eps = 1e-6;
  std::int64_t resolution = 256;  // the uint8 images' size; the reference resizes them to 2R

  /// One block's shape, as Sam2MultiScaleBlock derives it from the stage lists.
  struct Block {
    std::int64_t stage, dim, dim_out, heads, window;  // window 0: global attention
    bool pool;                                        // queries and shortcut max-pooled by q_stride
  };

  std::int64_t depth() const { return std::accumulate(blocks.begin(), blocks.end(), std::int64_t{0}); }
  std::int64_t input_size() const { return 2 * resolution; }
  std::int64_t grid() const { return (input_size() + 2 * patch_padding - patch_kernel) / patch_stride + 1; }
  Block block(std::int64_t index) const {
    std::int64_t stage = 0, first = 0;
    while (index >= first + blocks[static_cast<std::size_t>(stage)]) first += blocks[static_cast<std::size_t>(stage++)];
    const auto s = static_cast<std::size_t>(stage);
    const bool opens = stage > 0 && index == first;  // takes the previous stage's width and window
    Block b{stage, opens ? dims[s - 1] : dims[s], dims[s], heads[s], opens ? windows[s - 1] : windows[s],
            opens && stage <= q_pool_stages};
    if (std::find(global_attn.begin(), global_attn.end(), index) != global_attn.end()) b.window = 0;
    return b;
  }
  /// The output grid's side: the patch grid halved at every pooling block (R / 16 for the
  /// released models).
  std::int64_t side() const {
    std::int64_t g = grid();
    for (std::int64_t i = 0; i < depth(); ++i)
      if (block(i).pool) g /= q_stride;
    return g;
  }

  /// Refuses what HF's code could not run: lists of different lengths, a window table that does
  /// not tile the grid, a pooled grid of odd size or window, a global pooling block.
  void validate(std::string_view what) const {
    const std::size_t n = blocks.size();
    IREPA_CHECK(n > 0 && dims.size() == n && heads.size() == n && windows.size() == n,
                "{}: {} stages, but {} widths, {} head counts and {} window sizes", what, n, dims.size(), heads.size(),
                windows.size());
    for (std::size_t s = 0; s < n; ++s)
      IREPA_CHECK(blocks[s] > 0 && dims[s] > 0 && heads[s] > 0 && dims[s] % heads[s] == 0 && windows[s] > 0,
                  "{}: stage {} has {} blocks, width {}, {} heads, window {}", what, s, blocks[s], dims[s], heads[s], windows[s]);
    IREPA_CHECK(resolution > 0 && grid() > 0 && grid() % windows[0] == 0 && pos_bkg_h > 0 && pos_bkg_w > 0,
                "{}: resolution {} gives a {}x{} patch grid, which the {}x{} window table does not tile", what, resolution,
                grid(), grid(), windows[0], windows[0]);
    std::int64_t g = grid();
    for (std::int64_t i = 0; i < depth(); ++i) {
      const Block b = block(i);
      if (!b.pool) continue;
      IREPA_CHECK(b.window > 0, "{}: block {} pools its queries but is global (HF's code cannot run it)", what, i);
      IREPA_CHECK(g % q_stride == 0 && b.window % q_stride == 0,
                  "{}: block {} pools a {}x{} grid in windows of {} by {}; both must divide by the stride (resolution {})", what,
                  i, g, g, b.window, q_stride, resolution);
      g /= q_stride;
    }
  }
};

/// sam2-vit-{s,b,l} as the reference maps them: facebook/sam2-hiera-small, -base-plus, -large.
inline Sam2Config sam2_config_from_name(std::string_view name, std::int64_t resolution = 256) {
  IREPA_CHECK(name.starts_with("sam2-vit-"), "SAM2 encoder '{}': expected sam2-vit-{{s,b,l}}", name);
  const std::string_view size = name.substr(9);
  Sam2Config c;  // Hiera-S
  if (size == "s") c.blocks = {1, 2, 11, 2}, c.global_attn = {7, 10, 13};
  else if (size == "b")
    c.blocks = {2, 3, 16, 3}, c.dims = {112, 224, 448, 896}, c.heads = {2, 4, 8, 16}, c.global_attn = {12, 16, 20},
    c.pos_bkg_h = c.pos_bkg_w = 14;
  else if (size == "l")
    c.blocks = {2, 6, 36, 4}, c.dims = {144, 288, 576, 1152}, c.heads = {2, 4, 8, 16}, c.global_attn = {23, 33, 43},
    c.windows = {8, 4, 16, 8};
  else fail("SAM2 encoder '{}': size '{}' is not known (s, b, l)", name, size);
  c.resolution = resolution;
  IREPA_CHECK(resolution >= 256 && resolution % 256 == 0, "SAM2 encoder '{}': resolution {} is not supported (a multiple of 256)",
              name, resolution);
  c.validate(name);
  return c;
}

template <class T>
struct Sam2Encoder {
  using scalar_type = T;
  using device_type = Cpu;

  struct Block {
    Param<T> ln1_w, ln1_b, qkv_w, qkv_b, attn_proj_w, attn_proj_b, ln2_w, ln2_b, mlp_in_w, mlp_in_b, mlp_out_w, mlp_out_b;
    Param<T> proj_w, proj_b;  // the widening shortcut (empty when the width stays)
  };

  Sam2Config config;
  Param<T> patch_w, patch_b, pos_embed, pos_embed_window;
  std::vector<Block> blocks;

  explicit Sam2Encoder(const Sam2Config& c) : config(c) {
    c.validate("Sam2Encoder");
    const std::int64_t C0 = c.dims[0], k = c.patch_kernel;
    patch_w = Param<T>(Shape{C0, 3, k, k}), patch_b = Param<T>(Shape{C0});
    pos_embed = Param<T>(Shape{1, C0, c.pos_bkg_h, c.pos_bkg_w});
    pos_embed_window = Param<T>(Shape{1, C0, c.windows[0], c.windows[0]});
    blocks.resize(static_cast<std::size_t>(c.depth()));
    for (std::int64_t i = 0; i < c.depth(); ++i) {
      const auto s = c.block(i);
      Block& b = blocks[static_cast<std::size_t>(i)];
      const std::int64_t d = s.dim, o = s.dim_out, m = static_cast<std::int64_t>(static_cast<double>(o) * c.mlp_ratio);
      b.ln1_w = Param<T>(Shape{d}), b.ln1_b = Param<T>(Shape{d}), b.ln2_w = Param<T>(Shape{o}), b.ln2_b = Param<T>(Shape{o});
      b.qkv_w = Param<T>(Shape{3 * o, d}), b.qkv_b = Param<T>(Shape{3 * o});
      b.attn_proj_w = Param<T>(Shape{o, o}), b.attn_proj_b = Param<T>(Shape{o});
      b.mlp_in_w = Param<T>(Shape{m, o}), b.mlp_in_b = Param<T>(Shape{m});
      b.mlp_out_w = Param<T>(Shape{o, m}), b.mlp_out_b = Param<T>(Shape{o});
      if (d != o) b.proj_w = Param<T>(Shape{o, d}), b.proj_b = Param<T>(Shape{o});
    }
    arena_ = ParamArena<T>(*this);
  }
  Sam2Encoder(Sam2Encoder&&) noexcept = default;

  std::int64_t tokens() const { return config.side() * config.side(); }
  std::int64_t dim() const { return config.dims.back(); }
  const ParamArena<T>& params() const { return arena_; }

  /// Sam2HieraDetModel names (prefix "vision_encoder.backbone." in a Sam2Model checkpoint).
  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    v(join_name(prefix, "patch_embed.projection.weight"), patch_w);
    v(join_name(prefix, "patch_embed.projection.bias"), patch_b);
    v(join_name(prefix, "pos_embed"), pos_embed);
    v(join_name(prefix, "pos_embed_window"), pos_embed_window);
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      Block& b = blocks[i];
      const std::string p = join_name(prefix, "blocks." + std::to_string(i) + ".");
      v(p + "layer_norm1.weight", b.ln1_w), v(p + "layer_norm1.bias", b.ln1_b);
      v(p + "attn.qkv.weight", b.qkv_w), v(p + "attn.qkv.bias", b.qkv_b);
      v(p + "attn.proj.weight", b.attn_proj_w), v(p + "attn.proj.bias", b.attn_proj_b);
      v(p + "layer_norm2.weight", b.ln2_w), v(p + "layer_norm2.bias", b.ln2_b);
      v(p + "mlp.proj_in.weight", b.mlp_in_w), v(p + "mlp.proj_in.bias", b.mlp_in_b);
      v(p + "mlp.proj_out.weight", b.mlp_out_w), v(p + "mlp.proj_out.bias", b.mlp_out_b);
      if (b.proj_w.shape.rank() > 0) v(p + "proj.weight", b.proj_w), v(p + "proj.bias", b.proj_b);
    }
  }

  /// Reads every trunk tensor. With prefix "" a Sam2Model file ("vision_encoder.backbone.") or a
  /// Sam2VisionModel file ("backbone.") is recognised; its other tensors are left alone.
  void load(const io::SafeTensorsFile& f, std::string prefix = {}) {
    if (prefix.empty() && f.contains("vision_encoder.backbone.pos_embed")) prefix = "vision_encoder.backbone.";
    else if (prefix.empty() && f.contains("backbone.pos_embed")) prefix = "backbone.";
    io::load_params(f, arena_, prefix, io::LoadParamsOptions{.allow_unexpected = !prefix.empty(), .read_by_caller = {}});
  }

  /// uint8-valued images [B, 3, R, R] -> [B, 3, 2R, 2R]: /255, bicubic, then mean/std.
  Tensor<T> preprocess(const CpuContext& ctx, ConstView<T> images) const {
    const std::int64_t R = config.resolution;
    IREPA_CHECK(images.rank() == 4 && images.size(1) == 3 && images.size(2) == R && images.size(3) == R,
                "Sam2Encoder: images have shape {}, expected [B, 3, {}, {}]", images.shape().str(), R, R);
    return detail::resize_then_imagenet_normalise(ctx, images, config.input_size(), ops::ResizeMode::Bicubic);
  }

  /// x [B, 3, 2R, 2R] preprocessed -> tokens [B, side^2, C3] (the trunk's last_hidden_state).
  Tensor<T> forward(const CpuContext& ctx, ConstView<T> x) const {
    const std::int64_t S = config.input_size(), G = config.grid();
    IREPA_CHECK(x.rank() == 4 && x.size(1) == 3 && x.size(2) == S && x.size(3) == S,
                "Sam2Encoder: input has shape {}, expected [B, 3, {}, {}] (preprocess first)", x.shape().str(), S, S);
    const std::int64_t B = x.size(0);
    Tensor<T> h = patch_embed(ctx, x);  // [B, G, G, C0]
    const Tensor<T> pos = positions(ctx);
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t i = 0; i < pos.numel(); ++i) h[b * pos.numel() + i] += pos[i];
    std::int64_t side = G;
    const T eps = static_cast<T>(config.norm_eps);
    for (std::int64_t bi = 0; bi < config.depth(); ++bi) {
      const auto spec = config.block(bi);
      const Block& blk = blocks[static_cast<std::size_t>(bi)];
      Tensor<T> n(h.shape());
      detail::affine_layer_norm(ctx, h, blk.ln1_w.value, blk.ln1_b.value, eps, n);
      const std::int64_t out_side = spec.pool ? side / config.q_stride : side;
      Tensor<T> shortcut;
      if (spec.dim != spec.dim_out) {
        Tensor<T> p(Shape{B, side, side, spec.dim_out});
        ops::linear_forward<T>(ctx, n, blk.proj_w.value, blk.proj_b.value, p.view());
        shortcut = spec.pool ? ops::max_pool_channels_last<T>(ctx, p, config.q_stride) : std::move(p);
      } else {
        shortcut = std::move(h);
      }
      Tensor<T> a = attention(ctx, blk, spec, n, side);  // [B, out_side, out_side, dim_out]
      for (std::int64_t i = 0; i < a.numel(); ++i) a[i] += shortcut[i];
      h = std::move(a);
      side = out_side;
      Tensor<T> n2(h.shape()), m(Shape{B, side, side, blk.mlp_in_w.value.size(0)}), o(h.shape());
      detail::affine_layer_norm(ctx, h, blk.ln2_w.value, blk.ln2_b.value, eps, n2);
      ops::linear_forward<T>(ctx, n2, blk.mlp_in_w.value, blk.mlp_in_b.value, m.view());
      detail::vit_activate(ctx, m.view(), VitActivation::Gelu);
      ops::linear_forward<T>(ctx, m, blk.mlp_out_w.value, blk.mlp_out_b.value, o.view());
      for (std::int64_t i = 0; i < h.numel(); ++i) h[i] += o[i];
    }
    Tensor<T> out(Shape{B, side * side, dim()});  // [B, side, side, C] is already token-major
    std::copy_n(h.data(), h.numel(), out.data());
    return out;
  }

  Tensor<T> encode(const CpuContext& ctx, ConstView<T> images) const { return forward(ctx, preprocess(ctx, images)); }

 private:
  /// The 7x7 stride-4 convolution with zero padding, one image at a time as an unfolded GEMM:
  /// x [B, 3, S, S] -> [B, G, G, C0] channels-last.
  Tensor<T> patch_embed(const CpuContext& ctx, ConstView<T> x) const {
    const std::int64_t B = x.size(0), S = x.size(2), G = config.grid(), C0 = config.dims[0];
    const std::int64_t k = config.patch_kernel, st = config.patch_stride, pad = config.patch_padding, K = 3 * k * k;
    Tensor<T> h(Shape{B, G, G, C0}), cols(Shape{G * G, K});
    for (std::int64_t b = 0; b < B; ++b) {
      const T* img = x.data() + b * 3 * S * S;
      ctx.parallel_for(G * G, static_cast<double>(K), [&](std::int64_t p0, std::int64_t p1) {
        for (std::int64_t p = p0; p < p1; ++p) {
          const std::int64_t r = p / G, q = p % G;
          T* col = cols.data() + p * K;
          for (std::int64_t c = 0; c < 3; ++c)
            for (std::int64_t i = 0; i < k; ++i)
              for (std::int64_t j = 0; j < k; ++j) {
                const std::int64_t y = r * st - pad + i, xx = q * st - pad + j;
                col[(c * k + i) * k + j] = y >= 0 && y < S && xx >= 0 && xx < S ? img[(c * S + y) * S + xx] : T(0);
              }
        }
      });
      ops::linear_forward<T>(ctx, cols, patch_w.value.reshape({C0, K}), patch_b.value,
                             h.view().reshape(Shape{B * G * G, C0}).slice(0, b * G * G, G * G));
    }
    return h;
  }

  /// [G, G, C0]: the background table resized (bicubic) to the grid plus the window table tiled.
  Tensor<T> positions(const CpuContext& ctx) const {
    const std::int64_t G = config.grid(), C0 = config.dims[0], w = config.windows[0];
    const Tensor<T> r = ops::interpolate<T>(ctx, pos_embed.value, G, G, ops::ResizeMode::Bicubic, false);  // [1, C0, G, G]
    Tensor<T> pos(Shape{G, G, C0});
    for (std::int64_t c = 0; c < C0; ++c)
      for (std::int64_t y = 0; y < G; ++y)
        for (std::int64_t x = 0; x < G; ++x)
          pos[(y * G + x) * C0 + c] = r[(c * G + y) * G + x] + pos_embed_window.value.data()[(c * w + y % w) * w + x % w];
    return pos;
  }

  /// proj(attention(n)) for n [B, side, side, dim]: in windows of the grid zero-padded to a
  /// multiple of the window, or over the whole grid; pooling blocks max-pool each window's queries
  /// (s x s within the window) and so return [B, side / s, side / s, dim_out].
  Tensor<T> attention(const CpuContext& ctx, const Block& blk, const Sam2Config::Block& spec, const Tensor<T>& n,
                      std::int64_t side) const {
    const std::int64_t B = n.size(0), d = spec.dim, D = spec.dim_out, H = spec.heads, hd = D / H;
    const std::int64_t s = spec.pool ? config.q_stride : 1;
    const std::int64_t ws = spec.window > 0 ? spec.window : side;   // the attention span
    const std::int64_t per = (side + ws - 1) / ws, units = B * per * per, L = ws * ws;
    const std::int64_t qs = ws / s, Lq = qs * qs, out_side = side / s;
    Tensor<T> win(Shape{units, L, d});
    win.fill(T(0));
    for (std::int64_t u = 0; u < units; ++u) {
      const std::int64_t b = u / (per * per), wr = (u % (per * per)) / per * ws, wc = u % per * ws;
      for (std::int64_t t = 0; t < L; ++t) {
        const std::int64_t r = wr + t / ws, c = wc + t % ws;
        if (r < side && c < side) std::copy_n(n.data() + ((b * side + r) * side + c) * d, d, win.data() + (u * L + t) * d);
      }
    }
    Tensor<T> qkv(Shape{units, L, 3 * D}), att(Shape{units, Lq, D});
    ops::linear_forward<T>(ctx, win, blk.qkv_w.value, blk.qkv_b.value, qkv.view());
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hd)));
    const double cost = 4.0 * static_cast<double>(Lq * L * hd) + static_cast<double>(L * hd * 3);
    ctx.parallel_for(units * H, cost, [&](std::int64_t i0, std::int64_t i1) {
      ops::detail::RowMat<T> Q(Lq, hd), K(L, hd), V(L, hd), P(Lq, L), O(Lq, hd);
      Eigen::Array<T, 1, Eigen::Dynamic> e(L);
      for (std::int64_t i = i0; i < i1; ++i) {
        const std::int64_t u = i / H, hh = i % H;
        const T* base = qkv.data() + u * L * 3 * D + hh * hd;
        for (std::int64_t t = 0; t < L; ++t)
          for (std::int64_t j = 0; j < hd; ++j) K(t, j) = base[t * 3 * D + D + j], V(t, j) = base[t * 3 * D + 2 * D + j];
        for (std::int64_t a = 0; a < qs; ++a)  // query (a, c) of the pooled window: max over its s x s
          for (std::int64_t c = 0; c < qs; ++c)
            for (std::int64_t j = 0; j < hd; ++j) {
              T m = base[((a * s) * ws + c * s) * 3 * D + j];
              for (std::int64_t di = 0; di < s; ++di)
                for (std::int64_t dj = 0; dj < s; ++dj) m = std::max(m, base[((a * s + di) * ws + c * s + dj) * 3 * D + j]);
              Q(a * qs + c, j) = m * scale;
            }
        ops::detail::head_gemm<T>(Lq, L, hd, Q.data(), false, K.data(), true, P.data());
        for (std::int64_t t = 0; t < Lq; ++t) {
          auto row = P.row(t).array();
          row -= row.maxCoeff();
          e = row.exp();
          row = e / e.sum();
        }
        ops::detail::head_gemm<T>(Lq, hd, L, P.data(), false, V.data(), false, O.data());
        for (std::int64_t t = 0; t < Lq; ++t) std::copy_n(O.data() + t * hd, hd, att.data() + (u * Lq + t) * D + hh * hd);
      }
    });
    Tensor<T> proj(Shape{units, Lq, D});
    ops::linear_forward<T>(ctx, att, blk.attn_proj_w.value, blk.attn_proj_b.value, proj.view());
    Tensor<T> out(Shape{B, out_side, out_side, D});  // windows back onto the grid, padding dropped
    for (std::int64_t u = 0; u < units; ++u) {
      const std::int64_t b = u / (per * per), wr = (u % (per * per)) / per * qs, wc = u % per * qs;
      for (std::int64_t t = 0; t < Lq; ++t) {
        const std::int64_t r = wr + t / qs, c = wc + t % qs;
        if (r < out_side && c < out_side)
          std::copy_n(proj.data() + (u * Lq + t) * D, D, out.data() + ((b * out_side + r) * out_side + c) * D);
      }
    }
    return out;
  }

  ParamArena<T> arena_;
};

}  // namespace irepa
