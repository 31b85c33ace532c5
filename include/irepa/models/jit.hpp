#pragma once
// JiT, the pixel-space transformer of the reference (REFERENCE.md section 5), with an alignment head:
//
//   irepa::JiT<irepa::B, 16, irepa::iREPAHead<irepa::Conv3x3, irepa::SpatialNorm>> model(cfg);
//
// Bottleneck patch embedding + fixed sin-cos positions; in_context_len class tokens (the label
// embedding repeated, plus in_context_posemb) are prepended before block in_context_start and
// dropped before the final layer; RMSNorm blocks with per-head q/k RMSNorm, 2-D RoPE (identity
// for the in-context tokens) and SwiGLU; adaLN-Zero as SiT. The projectors read the tokens after
// block encoder_depth with the in-context tokens stripped when present. The network predicts
// the clean image x.
//
// Members are named as the reference's modules; visit_params yields its state_dict names. The
// label table always has the null row (index num_classes). pos_embed is a buffer.

#include <span>
#include <string>
#include <vector>

#include "irepa/align/head.hpp"
#include "irepa/core/arena.hpp"
#include "irepa/io/params.hpp"
#include "irepa/models/sit.hpp"
#include "irepa/models/sizes.hpp"
#include "irepa/nn/embedders.hpp"
#include "irepa/nn/jit_layers.hpp"

namespace irepa {

/// Run-time settings of a JiT; 0 / -1 fields take the size's defaults (JiT-B: bottleneck 128,
/// in-context start 4; L: 128, 8; H: 256, 10). Sizes must agree with the template's fixed ones.
struct JiTConfig {
  std::int64_t input_size = 256;  // image height = width
  std::int64_t in_channels = 3;
  std::int64_t num_classes = 1000;
  std::int64_t bottleneck_dim = 0;
  std::int64_t in_context_len = 32;
  std::int64_t in_context_start = -1;
  std::int64_t encoder_depth = 8;             // projectors read the tokens after this block (1-based)
  std::vector<std::int64_t> z_dims = {768};   // one projector per target encoder (may be empty)
  std::int64_t projector_dim = 2048;
  int kernel_size = 0;
  double mlp_ratio = 4.0;
  std::int64_t depth = 0, hidden_size = 0, num_heads = 0, patch_size = 0;  // Dynamic sizes
};

/// Sets depth, width, heads, patch, bottleneck and in-context start from "JiT-B/16" (B, L, H;
/// patch 16 or 32), as the reference's --model flag.
inline void apply_jit_model_name(JiTConfig& cfg, std::string_view name) {
  std::string_view n = name;
  if (n.starts_with("JiT-")) n.remove_prefix(4);
  const auto slash = n.find('/');
  const std::string_view size = n.substr(0, slash);
  const std::string_view patch = slash == std::string_view::npos ? std::string_view{} : n.substr(slash + 1);
  auto set = [&](auto tag, std::int64_t bottleneck, std::int64_t start) {
    using Sz = decltype(tag);
    cfg.depth = Sz::depth, cfg.hidden_size = Sz::hidden, cfg.num_heads = Sz::heads;
    cfg.bottleneck_dim = bottleneck, cfg.in_context_start = start;
  };
  if (size == "B")
    set(B{}, 128, 4);
  else if (size == "L")
    set(L{}, 128, 8);
  else if (size == "H")
    set(H{}, 256, 10);
  else
    fail("model '{}' is not known; expected JiT-B/16, JiT-L/16, JiT-H/16 (or patch 32)", name);
  IREPA_CHECK(patch == "16" || patch == "32", "model '{}': patch size must be 16 or 32", name);
  cfg.patch_size = patch == "16" ? 16 : 32;
}

template <class Size, int Patch, class Head, class T = float>
  requires SizeTag<Size> && AlignmentHead<Head> && (Patch >= 0)
struct JiT {
  using scalar_type = T;
  using device_type = Cpu;
  using Context = CpuContext;
  using head_type = Head;
  using ProjectorLayer = typename Head::projector::template layer<T>;

  JiTConfig config;
  Head head;
  std::int64_t depth = 0, hidden = 0, heads = 0, patch = 0, bottleneck = 0, ctx_len = 0, ctx_start = 0;
  TokenGrid grid;

  nn::TimestepEmbedder<T> t_embedder;
  nn::LabelEmbedder<T> y_embedder;
  nn::BottleneckPatchEmbed<T> x_embedder;
  Tensor<T> pos_embed;          // [1, N, D] fixed 2-D sin-cos buffer
  Param<T> in_context_posemb;   // [1, L, D]
  std::vector<nn::JiTBlock<T>> blocks;
  std::vector<ProjectorLayer> projectors;
  nn::JiTFinalLayer<T> final_layer;

  explicit JiT(const JiTConfig& cfg, Head h = {}) : config(cfg), head(std::move(h)) {
    depth = detail::resolve_size("depth", Size::depth, cfg.depth);
    hidden = detail::resolve_size("hidden_size", Size::hidden, cfg.hidden_size);
    heads = detail::resolve_size("num_heads", Size::heads, cfg.num_heads);
    patch = detail::resolve_size("patch_size", Patch, cfg.patch_size);
    const std::int64_t size_bn = hidden == 1280 ? 256 : 128, size_start = hidden == 1280 ? 10 : hidden == 1024 ? 8 : 4;
    const bool fixed = Size::depth > 0;
    bottleneck = cfg.bottleneck_dim > 0 ? cfg.bottleneck_dim : fixed ? size_bn : 0;
    ctx_len = cfg.in_context_len;
    ctx_start = cfg.in_context_start >= 0 ? cfg.in_context_start : fixed ? size_start : -1;
    IREPA_CHECK(bottleneck > 0, "JiT: bottleneck_dim must be set for a Dynamic size (got {})", cfg.bottleneck_dim);
    IREPA_CHECK(ctx_len >= 0 && (ctx_len == 0 || (ctx_start >= 0 && ctx_start < depth)),
                "JiT: {} in-context tokens entering before block {} of {} (it must be in [0, depth))", ctx_len, ctx_start,
                depth);
    IREPA_CHECK(cfg.input_size > 0 && cfg.input_size % patch == 0, "JiT: input size {} is not a positive multiple of patch {}",
                cfg.input_size, patch);
    IREPA_CHECK(cfg.in_channels > 0 && cfg.num_classes > 0, "JiT: in_channels {} and num_classes {} must be positive",
                cfg.in_channels, cfg.num_classes);
    IREPA_CHECK(hidden % heads == 0 && (hidden / heads) % 4 == 0,
                "JiT: width {} over {} heads must give a head dim divisible by 4 (2-D RoPE)", hidden, heads);
    IREPA_CHECK(hidden % 4 == 0, "JiT: width {} must be a multiple of 4 (2-D sin-cos position table)", hidden);
    IREPA_CHECK(cfg.z_dims.empty() || (cfg.encoder_depth >= 1 && cfg.encoder_depth <= depth),
                "JiT: encoder_depth {} must be in [1, {}] (the block whose output is aligned)", cfg.encoder_depth, depth);
    grid = TokenGrid{cfg.input_size / patch, cfg.input_size / patch};

    t_embedder = nn::TimestepEmbedder<T>(hidden);
    y_embedder = nn::LabelEmbedder<T>(cfg.num_classes, hidden, /*null_class=*/true);
    x_embedder = nn::BottleneckPatchEmbed<T>(cfg.in_channels, bottleneck, hidden, patch);
    pos_embed = Tensor<T>(Shape{1, grid.tokens(), hidden});
    reset_pos_embed();
    in_context_posemb = Param<T>(Shape{1, ctx_len, hidden});
    blocks.reserve(static_cast<std::size_t>(depth));
    for (std::int64_t i = 0; i < depth; ++i) blocks.emplace_back(hidden, heads, cfg.mlp_ratio);
    for (std::int64_t z : cfg.z_dims) {
      IREPA_CHECK(z > 0, "JiT: target encoder width {} must be positive", z);
      projectors.emplace_back(ProjectorSpec{.in_dim = hidden, .out_dim = z, .hidden_dim = cfg.projector_dim,
                                            .kernel_size = cfg.kernel_size});
    }
    final_layer = nn::JiTFinalLayer<T>(hidden, patch, cfg.in_channels);
    arena_ = ParamArena<T>(*this);
  }

  JiT(JiT&&) noexcept = default;
  JiT& operator=(JiT&&) noexcept = default;

  const ParamArena<T>& params() const { return arena_; }
  std::int64_t num_params() const { return arena_.numel(); }
  std::int64_t out_channels() const { return config.in_channels; }
  std::int64_t head_dim() const { return hidden / heads; }

  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    t_embedder.visit_params(v, join_name(prefix, "t_embedder"));
    y_embedder.visit_params(v, join_name(prefix, "y_embedder"));
    x_embedder.visit_params(v, join_name(prefix, "x_embedder"));
    if (ctx_len > 0) v(join_name(prefix, "in_context_posemb"), in_context_posemb);
    for (std::size_t i = 0; i < blocks.size(); ++i) blocks[i].visit_params(v, join_name(prefix, "blocks." + std::to_string(i)));
    for (std::size_t i = 0; i < projectors.size(); ++i)
      projectors[i].visit_params(v, join_name(prefix, "projectors." + std::to_string(i)));
    final_layer.visit_params(v, join_name(prefix, "final_layer"));
  }
  std::vector<io::NamedView<T>> buffers() const { return {{"pos_embed", pos_embed.view()}}; }

  /// The reference's initialisation from Philox(seed): xavier Linears and patch convs, zero
  /// biases, N(0, 0.02) label table, time-MLP weights and in-context positions, unit RMSNorm
  /// weights, zero adaLN and output layers; projectors by their own init.
  void init(std::uint64_t seed) {
    Philox rng(seed, /*stream=*/0x1175);
    t_embedder.init(rng);
    y_embedder.init(rng);
    x_embedder.init(rng);
    if (ctx_len > 0) nn::normal_init(rng, in_context_posemb.value, 0.02);
    for (auto& b : blocks) b.init(rng);
    detail::init_projectors(projectors, rng);
    final_layer.init(rng);
    reset_pos_embed();
  }

  struct Cache {
    Tensor<T> x;                          // [B, C, H, W] model input (copied)
    Tensor<std::int64_t> y;               // [B]
    typename nn::TimestepEmbedder<T>::Cache temb;
    Tensor<T> yemb, c, s;                 // [B, D] label embedding, conditioning, SiLU(conditioning)
    typename nn::BottleneckPatchEmbed<T>::Cache embed;
    Tensor<T> h0;                         // [B, N, D] embedded tokens + positions
    Tensor<T> rope_cos, rope_sin;         // [N, hd/2] patch tokens only
    Tensor<T> rope_cos_ctx, rope_sin_ctx; // [L + N, hd/2] identity rows for the in-context tokens
    Tensor<T> with_ctx;                   // [B, L + N, D] input of block in_context_start
    std::vector<typename nn::JiTBlock<T>::Cache> blocks;
    Tensor<T> aligned;                    // [B, N, D] tokens the projectors read (stripped copy), if needed
    std::vector<typename ProjectorLayer::Cache> projectors;
    Tensor<T> final_in;                   // [B, N, D] tokens without the in-context ones
    typename nn::JiTFinalLayer<T>::Cache final;
    Tensor<T> out;                        // [B, C, H, W] predicted clean image

    ConstView<T> output() const { return out.cview(); }
    ConstView<T> projected(std::size_t i) const { return projectors.at(i).output(); }
  };

  /// x [B, C, H, W] (the noisy image z), t [B] (1 = clean), y [B] (num_classes = null).
  Cache forward(const CpuContext& ctx, ConstView<T> x, ConstView<T> t, ConstView<std::int64_t> y, bool align = true) const {
    IREPA_CHECK(x.rank() == 4 && x.size(1) == config.in_channels && x.size(2) == config.input_size &&
                    x.size(3) == config.input_size,
                "JiT: input has shape {}, expected [B, {}, {}, {}]", x.shape().str(), config.in_channels, config.input_size,
                config.input_size);
    const std::int64_t B = x.size(0), N = grid.tokens(), D = hidden, Lc = ctx_len;
    check_shape("JiT", "t", t.shape(), Shape{B});
    check_shape("JiT", "labels", y.shape(), Shape{B});
    Cache c;
    c.x = Tensor<T>::copy_of(x);
    c.y = Tensor<std::int64_t>::copy_of(y);
    c.temb = t_embedder.forward(ctx, t);
    c.yemb = Tensor<T>(Shape{B, D});
    y_embedder.forward(ctx, c.y, c.yemb.view());
    c.c = Tensor<T>::copy_of(c.yemb);
    nn::detail::add_into<T>(ctx, c.c.view(), c.temb.output());
    c.s = Tensor<T>(c.c.shape());
    ops::silu_forward<T>(ctx, c.c, c.s.view());

    c.h0 = Tensor<T>(Shape{B, N, D});
    c.embed = x_embedder.forward(ctx, c.x, c.h0.view());
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t i = 0; i < N * D; ++i) c.h0[b * N * D + i] += pos_embed[i];
    std::tie(c.rope_cos, c.rope_sin) = ops::rope_table_axial_2d<T>(grid.h, grid.w, head_dim());
    if (Lc > 0) std::tie(c.rope_cos_ctx, c.rope_sin_ctx) = ops::rope_table_axial_2d<T>(grid.h, grid.w, head_dim(), 10000.0, Lc);

    c.blocks.reserve(blocks.size());
    for (std::int64_t i = 0; i < depth; ++i) {
      ConstView<T> in = i == 0 ? c.h0.cview() : c.blocks[static_cast<std::size_t>(i - 1)].output();
      if (Lc > 0 && i == ctx_start) {  // prepend the in-context class tokens
        c.with_ctx = Tensor<T>(Shape{B, Lc + N, D});
        for (std::int64_t b = 0; b < B; ++b) {
          T* row = c.with_ctx.data() + b * (Lc + N) * D;
          for (std::int64_t l = 0; l < Lc; ++l)
            for (std::int64_t d = 0; d < D; ++d) row[l * D + d] = c.yemb[b * D + d] + in_context_posemb.value.data()[l * D + d];
          std::copy_n(in.data() + b * N * D, N * D, row + Lc * D);
        }
        in = c.with_ctx.cview();
      }
      const bool has_ctx = Lc > 0 && i >= ctx_start;
      c.blocks.push_back(blocks[static_cast<std::size_t>(i)].forward(
          ctx, in, c.s, has_ctx ? c.rope_cos_ctx.cview() : c.rope_cos.cview(), has_ctx ? c.rope_sin_ctx.cview() : c.rope_sin.cview()));
      if (align && !projectors.empty() && i + 1 == config.encoder_depth) {
        ConstView<T> tokens = c.blocks.back().output();
        if (has_ctx) {
          c.aligned = strip(tokens);
          tokens = c.aligned.cview();
        }
        for (const auto& p : projectors) c.projectors.push_back(p.forward(ctx, tokens, grid));
      }
    }
    c.final_in = Lc > 0 ? strip(c.blocks.back().output()) : Tensor<T>::copy_of(c.blocks.back().output());
    c.final = final_layer.forward(ctx, c.final_in, c.s);
    c.out = Tensor<T>(x.shape());
    unpatchify(ctx, c.final.output(), c.out.view(), false);
    return c;
  }

  /// dout [B, C, H, W]; dzs[i] the gradients of projector i's output (empty: no alignment).
  /// Parameter gradients accumulate into params().grads().
  void backward(const CpuContext& ctx, const Cache& c, ConstView<T> dout, std::span<const ConstView<T>> dzs = {}) const {
    check_shape("JiT::backward", "dout", dout.shape(), c.out.shape());
    IREPA_CHECK(dzs.empty() || (dzs.size() == projectors.size() && c.projectors.size() == projectors.size()),
                "JiT::backward: {} projected-token gradients for {} projectors ({} run in forward)", dzs.size(),
                projectors.size(), c.projectors.size());
    const std::int64_t B = c.x.size(0), N = grid.tokens(), D = hidden, Lc = ctx_len;
    Tensor<T> dy(c.final.output().shape());
    unpatchify(ctx, dout, dy.view(), true);
    Tensor<T> ds(Shape{B, D}), dfin(Shape{B, N, D});
    ds.fill(T(0));
    final_layer.backward(ctx, c.final, dy, dfin.view(), ds.view());

    // dx: gradient of the current block's output; with in-context tokens [B, L + N, D].
    Tensor<T> dx = Lc > 0 ? Tensor<T>(Shape{B, Lc + N, D}) : std::move(dfin);
    if (Lc > 0) {
      dx.fill(T(0));
      unstrip_add(dfin, dx);
    }
    Tensor<T> dyemb(Shape{B, D});
    dyemb.fill(T(0));
    for (std::int64_t i = depth; i-- > 0;) {
      const bool has_ctx = Lc > 0 && i >= ctx_start;
      if (!dzs.empty() && i + 1 == config.encoder_depth) {
        Tensor<T> dp(Shape{B, N, D});
        for (std::size_t j = 0; j < projectors.size(); ++j) {
          check_shape("JiT::backward", "projected-token gradient", dzs[j].shape(), c.projectors[j].output().shape());
          projectors[j].backward(ctx, c.projectors[j], dzs[j], dp.view());
          if (has_ctx)
            unstrip_add(dp, dx);
          else
            nn::detail::add_into<T>(ctx, dx.view(), dp);
        }
      }
      const auto& bc = c.blocks[static_cast<std::size_t>(i)];
      Tensor<T> dxin(bc.x.shape());
      blocks[static_cast<std::size_t>(i)].backward(ctx, bc, dx, dxin.view(), ds.view());
      if (Lc > 0 && i == ctx_start) {  // the in-context tokens: label embedding + in_context_posemb
        Tensor<T> rest(Shape{B, N, D});
        for (std::int64_t b = 0; b < B; ++b) {
          const T* row = dxin.data() + b * (Lc + N) * D;
          for (std::int64_t l = 0; l < Lc; ++l)
            for (std::int64_t d = 0; d < D; ++d) {
              in_context_posemb.grad.data()[l * D + d] += row[l * D + d];
              dyemb[b * D + d] += row[l * D + d];
            }
          std::copy_n(row + Lc * D, N * D, rest.data() + b * N * D);
        }
        dxin = std::move(rest);
      }
      dx = std::move(dxin);
    }
    x_embedder.backward(ctx, c.embed, dx);
    Tensor<T> dc(ds.shape());
    ops::silu_backward<T>(ctx, c.c, ds, dc.view());
    t_embedder.backward(ctx, c.temb, dc);
    nn::detail::add_into<T>(ctx, dyemb.view(), dc);
    y_embedder.backward(ctx, c.y, dyemb);
  }

  void save(io::SafeTensorsWriter& w, std::string_view prefix = {}) const {
    io::add_params(w, arena_, prefix);
    for (const auto& b : buffers()) w.add<T>(std::string(prefix) + b.name, b.view);
  }
  void load(const io::SafeTensorsFile& f, std::string_view prefix = {}, io::LoadParamsOptions opt = {}) {
    io::load_params(f, arena_, prefix, opt, buffers());
  }

 private:
  void reset_pos_embed() {
    const Tensor<T> table = ops::sincos_2d_table<T>(grid.h, grid.w, hidden);
    std::copy_n(table.data(), table.numel(), pos_embed.data());
  }
  /// [B, L + N, D] -> [B, N, D] (the in-context tokens dropped).
  Tensor<T> strip(ConstView<T> x) const {
    const std::int64_t B = x.size(0), N = grid.tokens(), D = hidden, Lc = x.size(1) - N;
    Tensor<T> out(Shape{B, N, D});
    for (std::int64_t b = 0; b < B; ++b) std::copy_n(x.data() + (b * (Lc + N) + Lc) * D, N * D, out.data() + b * N * D);
    return out;
  }
  /// dst [B, L + N, D] patch part += src [B, N, D].
  void unstrip_add(const Tensor<T>& src, Tensor<T>& dst) const {
    const std::int64_t B = src.size(0), N = grid.tokens(), D = hidden, Lc = dst.size(1) - N;
    for (std::int64_t b = 0; b < B; ++b) {
      T* d = dst.data() + (b * (Lc + N) + Lc) * D;
      const T* s = src.data() + b * N * D;
      for (std::int64_t i = 0; i < N * D; ++i) d[i] += s[i];
    }
  }
  void unpatchify(const CpuContext& ctx, ConstView<T> src, TensorView<T> dst, bool inverse) const {
    ops::unpatchify<T>(ctx, src, dst, config.in_channels, patch, grid, inverse);
  }

  ParamArena<T> arena_;
};

}  // namespace irepa
