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
// Forward only, float or double, on device Dev (read on the host and copied up: from_host),
// from the library's layers (nn::LayerNorm, nn::Linear, nn::VitMlp) and ops (im2col, the window
// ops of ops/window.hpp, max_pool_channels_last). Softmax runs in T (HF's eager path computes it
// in float32).

#include <algorithm>
#include <cmath>
#include <numeric>
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
#include "irepa/ops/pool.hpp"
#include "irepa/ops/resize.hpp"
#include "irepa/ops/tensor_ops.hpp"
#include "irepa/ops/window.hpp"

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
  /// not tile the grid, a pooled grid of odd size or window, a global pooling block, a pooling
/// block that does not widen.
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
      IREPA_CHECK(b.dim != b.dim_out,
                  "{}: block {} pools its queries but keeps the width {} (HF pools the shortcut only after a widening projection)", what,
                  i, b.dim);
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

template <class T, class Dev = Cpu>
struct Sam2Encoder {
  using scalar_type = T;
  using device_type = Dev;
  using Context = ContextOf<Dev>;
  using HostModel = Sam2Encoder<T, Cpu>;
  template <class D2>
  using On = Sam2Encoder<T, D2>;  // the same encoder on another device

  struct Block {
    nn::LayerNorm<T, Dev> norm1, norm2;
    nn::Linear<T, Dev> qkv, attn_proj;  // [3 dim_out, dim] + [3 dim_out], [dim_out, dim_out] + [dim_out]
    nn::VitMlp<T, Dev> mlp;             // proj_in -> exact GELU -> proj_out
    nn::Linear<T, Dev> proj;            // the widening shortcut [dim_out, dim] (empty when the width stays)
  };

  Sam2Config config;
  Param<T, Dev> patch_w, patch_b, pos_embed, pos_embed_window;
  std::vector<Block> blocks;
  // Prepared at load: [G, G, C0], the background table resized to the grid plus the window table
  // tiled over it (a function of the weights only, so computed once, on the host).
  Tensor<T, Dev> pos_grid;

  explicit Sam2Encoder(const Sam2Config& c) : config(c) {
    c.validate("Sam2Encoder");
    const std::int64_t C0 = c.dims[0], k = c.patch_kernel;
    patch_w = Param<T, Dev>(Shape{C0, 3, k, k}), patch_b = Param<T, Dev>(Shape{C0});
    pos_embed = Param<T, Dev>(Shape{1, C0, c.pos_bkg_h, c.pos_bkg_w});
    pos_embed_window = Param<T, Dev>(Shape{1, C0, c.windows[0], c.windows[0]});
    blocks.resize(static_cast<std::size_t>(c.depth()));
    for (std::int64_t i = 0; i < c.depth(); ++i) {
      const auto s = c.block(i);
      Block& b = blocks[static_cast<std::size_t>(i)];
      const std::int64_t d = s.dim, o = s.dim_out, m = static_cast<std::int64_t>(static_cast<double>(o) * c.mlp_ratio);
      b.norm1 = nn::LayerNorm<T, Dev>(d, c.norm_eps), b.norm2 = nn::LayerNorm<T, Dev>(o, c.norm_eps);
      b.qkv = nn::Linear<T, Dev>(d, 3 * o), b.attn_proj = nn::Linear<T, Dev>(o, o);
      b.mlp = nn::VitMlp<T, Dev>(o, m, nn::VitMlpOptions{});
      if (d != o) b.proj = nn::Linear<T, Dev>(d, o);
    }
    arena_ = ParamArena<T, Dev>(*this);
  }
  Sam2Encoder(Sam2Encoder&&) noexcept = default;

  std::int64_t tokens() const { return config.side() * config.side(); }
  std::int64_t dim() const { return config.dims.back(); }
  const ParamArena<T, Dev>& params() const { return arena_; }
  ParamArena<T, Dev>& params() { return arena_; }
  HostModel host_twin() const { return HostModel(config); }

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
      b.norm1.visit_params(v, p + "layer_norm1");
      b.qkv.visit_params(v, p + "attn.qkv"), b.attn_proj.visit_params(v, p + "attn.proj");
      b.norm2.visit_params(v, p + "layer_norm2");
      b.mlp.fc1.visit_params(v, p + "mlp.proj_in"), b.mlp.fc2.visit_params(v, p + "mlp.proj_out");
      const auto spec = config.block(static_cast<std::int64_t>(i));
      if (spec.dim != spec.dim_out) b.proj.visit_params(v, p + "proj");
    }
  }

  /// Reads every trunk tensor. With prefix "" a Sam2Model file ("vision_encoder.backbone.") or a
  /// Sam2VisionModel file ("backbone.") is recognised; its other tensors are left alone. On a
  /// device the file is read into a host twin, the position grid prepared there, both copied up.
  void load(const io::SafeTensorsFile& f, std::string prefix = {}) {
    if (prefix.empty() && f.contains("vision_encoder.backbone.pos_embed")) prefix = "vision_encoder.backbone.";
    else if (prefix.empty() && f.contains("backbone.pos_embed")) prefix = "backbone.";
    update_through_host(*this, false, [&](HostModel& host) {
      io::load_params(f, host.params(), prefix, io::LoadParamsOptions{.allow_unexpected = !prefix.empty(), .read_by_caller = {}});
      pos_grid = detail::device_copy<T, Dev>(host.positions());
    });
  }

  /// Random weights N(0, std), prepared as load would (benchmarks; speed does not depend on values).
  void init_random(std::uint64_t seed, T std) {
    update_through_host(*this, false, [&](HostModel& host) {
      Philox(seed).normal(host.params().values(), T(0), std);
      pos_grid = detail::device_copy<T, Dev>(host.positions());
    });
  }

  /// This encoder on Dev from a loaded host one (the trainer places its online targets so).
  static Sam2Encoder from_host(const HostModel& host) {
    Sam2Encoder e(host.config);
    copy_from_host(e.params().values(), ConstView<T>(host.params().values()));
    e.pos_grid = detail::device_copy<T, Dev>(host.positions());
    return e;
  }

  /// uint8-valued images [B, 3, R, R] -> [B, 3, 2R, 2R]: /255, bicubic, then mean/std.
  Tensor<T, Dev> preprocess(const Context& ctx, ConstView<T, Dev> images) const {
    const std::int64_t R = config.resolution;
    IREPA_CHECK(images.rank() == 4 && images.size(1) == 3 && images.size(2) == R && images.size(3) == R,
                "Sam2Encoder: images have shape {}, expected [B, 3, {}, {}]", images.shape().str(), R, R);
    return detail::resize_then_imagenet_normalise<T>(ctx, images, config.input_size(), ops::ResizeMode::Bicubic);
  }

  /// x [B, 3, 2R, 2R] preprocessed -> tokens [B, side^2, C3] (the trunk's last_hidden_state).
  Tensor<T, Dev> forward(const Context& ctx, ConstView<T, Dev> x) const {
    const std::int64_t S = config.input_size(), G = config.grid();
    IREPA_CHECK(x.rank() == 4 && x.size(1) == 3 && x.size(2) == S && x.size(3) == S,
                "Sam2Encoder: input has shape {}, expected [B, 3, {}, {}] (preprocess first)", x.shape().str(), S, S);
    IREPA_CHECK(pos_grid.numel() == G * G * config.dims[0], "Sam2Encoder: forward before load or init_random (no position grid)");
    const std::int64_t B = x.size(0);
    Tensor<T, Dev> h = patch_embed(ctx, x);  // [B, G, G, C0]
    ops::add_broadcast<T>(ctx, h.view(), pos_grid);
    std::int64_t side = G;
    for (std::int64_t bi = 0; bi < config.depth(); ++bi) {
      const auto spec = config.block(bi);
      const Block& blk = blocks[static_cast<std::size_t>(bi)];
      Tensor<T, Dev> n(h.shape());
      blk.norm1.infer(ctx, h, n.view());
      const std::int64_t out_side = spec.pool ? side / config.q_stride : side;
      Tensor<T, Dev> shortcut;
      if (spec.dim != spec.dim_out) {
        Tensor<T, Dev> p(Shape{B, side, side, spec.dim_out});
        ops::linear_forward<T>(ctx, n, blk.proj.weight.value, blk.proj.bias.value, p.view());
        shortcut = spec.pool ? ops::max_pool_channels_last<T>(ctx, p, config.q_stride) : std::move(p);
      } else {
        shortcut = std::move(h);
      }
      Tensor<T, Dev> a = attention(ctx, blk, spec, n, side);  // [B, out_side, out_side, dim_out]
      ops::add_into<T>(ctx, a.view(), shortcut);
      h = std::move(a);
      side = out_side;
      Tensor<T, Dev> n2(h.shape()), m(Shape{B, side, side, blk.mlp.hidden()}), o(h.shape());
      blk.norm2.infer(ctx, h, n2.view());
      blk.mlp.infer(ctx, n2, m.view(), {}, o.view());
      ops::add_into<T>(ctx, h.view(), o);
    }
    Tensor<T, Dev> out(Shape{B, side * side, dim()});  // [B, side, side, C] is already token-major
    ops::copy<T>(ctx, h.cview().reshape(out.shape()), out.view());
    return out;
  }

  Tensor<T, Dev> encode(const Context& ctx, ConstView<T, Dev> images) const { return forward(ctx, preprocess(ctx, images)); }

  /// [G, G, C0]: the background table resized (bicubic) to the grid plus the window table tiled
  /// (what load prepares; called on the host model only).
  Tensor<T> positions() const {
    const CpuContext ctx;
    const std::int64_t G = config.grid(), C0 = config.dims[0], w = config.windows[0];
    const Tensor<T> r = ops::interpolate<T>(ctx, pos_embed.value, G, G, ops::ResizeMode::Bicubic, false);  // [1, C0, G, G]
    Tensor<T> pos(Shape{G, G, C0});
    for (std::int64_t c = 0; c < C0; ++c)
      for (std::int64_t y = 0; y < G; ++y)
        for (std::int64_t x = 0; x < G; ++x)
          pos[(y * G + x) * C0 + c] = r[(c * G + y) * G + x] + pos_embed_window.value.data()[(c * w + y % w) * w + x % w];
    return pos;
  }

 private:
  /// The 7x7 stride-4 convolution with zero padding as unfolded columns times the weight, a few
  /// images at a time (the columns of a 2R input are 147 values per output pixel; up to 2^25 of them):
  /// x [B, 3, S, S] -> [B, G, G, C0] channels-last.
  Tensor<T, Dev> patch_embed(const Context& ctx, ConstView<T, Dev> x) const {
    const std::int64_t B = x.size(0), G = config.grid(), C0 = config.dims[0], k = config.patch_kernel, K = 3 * k * k;
    const std::int64_t chunk = std::clamp<std::int64_t>((std::int64_t{1} << 25) / std::max<std::int64_t>(G * G * K, 1), 1, B);
    Tensor<T, Dev> h(Shape{B, G, G, C0}), cols(Shape{chunk, G * G, K});
    for (std::int64_t b0 = 0; b0 < B; b0 += chunk) {
      const std::int64_t n = std::min(chunk, B - b0);
      const auto c = cols.view().slice(0, 0, n);
      ops::im2col<T>(ctx, x.slice(0, b0, n), k, config.patch_stride, config.patch_padding, c);
      ops::linear_forward<T>(ctx, c, patch_w.value.reshape({C0, K}), patch_b.value,
                             h.view().reshape(Shape{B, G * G, C0}).slice(0, b0, n));
    }
    return h;
  }

  /// proj(attention(n)) for n [B, side, side, dim]: in windows of the grid zero-padded to a
  /// multiple of the window, or over the whole grid; pooling blocks max-pool each window's queries
  /// (s x s within the window) and so return [B, side / s, side / s, dim_out].
  Tensor<T, Dev> attention(const Context& ctx, const Block& blk, const Sam2Config::Block& spec, const Tensor<T, Dev>& n,
                           std::int64_t side) const {
    const std::int64_t B = n.size(0), d = spec.dim, D = spec.dim_out;
    const std::int64_t s = spec.pool ? config.q_stride : 1;
    const std::int64_t ws = spec.window > 0 ? spec.window : side;  // the attention span
    const std::int64_t per = ops::detail::windows_per_side(side, ws), units = B * per * per, L = ws * ws;
    const std::int64_t qs = ws / s, Lq = qs * qs, out_side = side / s;
    Tensor<T, Dev> win(Shape{units, L, d}), qkv(Shape{units, L, 3 * D}), att(Shape{units, Lq, D}), proj(Shape{units, Lq, D});
    ops::window_partition<T>(ctx, n, ws, win.view());
    ops::linear_forward<T>(ctx, win, blk.qkv.weight.value, blk.qkv.bias.value, qkv.view());
    ops::window_attention_forward<T>(ctx, qkv, ops::WindowAttentionSpec<T, Dev>{spec.heads, ws, s, {}, {}}, att.view());
    ops::linear_forward<T>(ctx, att, blk.attn_proj.weight.value, blk.attn_proj.bias.value, proj.view());
    Tensor<T, Dev> out(Shape{B, out_side, out_side, D});  // windows back onto the grid, padding dropped
    ops::window_merge<T>(ctx, proj, out.view());
    return out;
  }

  ParamArena<T, Dev> arena_;
};

}  // namespace irepa
