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
// label table always has the null row (index num_classes). pos_embed is a buffer; the RoPE
// tables are built once, on the model's device. Inputs, labels included, are on that device;
// infer(ctx, x, t, y) is the sampling forward, without a training cache.

#include <span>
#include <string>
#include <vector>

#include "irepa/align/head.hpp"
#include "irepa/core/arena.hpp"
#include "irepa/io/params.hpp"
#include "irepa/models/transformer_base.hpp"
#include "irepa/models/sizes.hpp"
#include "irepa/nn/embedders.hpp"
#include "irepa/nn/jit_layers.hpp"
#include "irepa/ops/rope.hpp"
#include "irepa/ops/tensor_ops.hpp"

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

template <class Size, int Patch, class Head, class T = float, class D = Cpu>
  requires SizeTag<Size> && AlignmentHead<Head> && (Patch >= 0)
struct JiT : TransformerBase<JiT<Size, Patch, Head, T, D>, T, D> {
  using Base = TransformerBase<JiT<Size, Patch, Head, T, D>, T, D>;
  using typename Base::Context;
  friend Base;
  using head_type = Head;
  using config_type = JiTConfig;
  using ProjectorLayer = projector_layer_t<typename Head::projector, T, D>;
  /// The same model on the host: what a device model is initialised, saved and loaded through.
  using HostModel = JiT<Size, Patch, Head, T, Cpu>;
  static constexpr std::uint64_t kInitStream = 0x1175;  // the Philox stream of init()
  static_assert(std::is_same_v<typename ProjectorLayer::device_type, D>,
                "JiT: the projector policy has no layer<T, D> for this device (a policy that declares only layer<T> runs on the CPU)");

  JiTConfig config;
  Head head;
  std::int64_t depth = 0, hidden = 0, heads = 0, patch = 0, bottleneck = 0, ctx_len = 0, ctx_start = 0;
  TokenGrid grid;

  nn::TimestepEmbedder<T, D> t_embedder;
  nn::LabelEmbedder<T, D> y_embedder;
  nn::BottleneckPatchEmbed<T, D> x_embedder;
  Tensor<T, D> pos_embed;          // [1, N, D] fixed 2-D sin-cos buffer
  Param<T, D> in_context_posemb;   // [1, L, D]
  std::vector<nn::JiTBlock<T, D>> blocks;
  std::vector<ProjectorLayer> projectors;
  nn::JiTFinalLayer<T, D> final_layer;

  explicit JiT(const JiTConfig& cfg, Head h = {}) : config(cfg), head(std::move(h)) {
    this->template resolve_sizes<Size, Patch>("JiT");
    IREPA_CHECK((hidden / heads) % 4 == 0, "JiT: width {} over {} heads must give a head dim divisible by 4 (2-D RoPE)", hidden, heads);
    const std::int64_t size_bn = hidden == 1280 ? 256 : 128, size_start = hidden == 1280 ? 10 : hidden == 1024 ? 8 : 4;
    const bool fixed = Size::depth > 0;
    bottleneck = cfg.bottleneck_dim > 0 ? cfg.bottleneck_dim : fixed ? size_bn : 0;
    ctx_len = cfg.in_context_len;
    ctx_start = cfg.in_context_start >= 0 ? cfg.in_context_start : fixed ? size_start : -1;
    IREPA_CHECK(bottleneck > 0, "JiT: bottleneck_dim must be set for a Dynamic size (got {})", cfg.bottleneck_dim);
    IREPA_CHECK(ctx_len >= 0 && (ctx_len == 0 || (ctx_start >= 0 && ctx_start < depth)),
                "JiT: {} in-context tokens entering before block {} of {} (it must be in [0, depth))", ctx_len, ctx_start,
                depth);

    t_embedder = nn::TimestepEmbedder<T, D>(hidden);
    y_embedder = nn::LabelEmbedder<T, D>(cfg.num_classes, hidden, /*null_class=*/true);
    x_embedder = nn::BottleneckPatchEmbed<T, D>(cfg.in_channels, bottleneck, hidden, patch);
    this->reset_pos_embed();
    in_context_posemb = Param<T, D>(Shape{1, ctx_len, hidden});
    blocks.reserve(static_cast<std::size_t>(depth));
    for (std::int64_t i = 0; i < depth; ++i) blocks.emplace_back(hidden, heads, cfg.mlp_ratio);
    projectors = this->template make_projectors<ProjectorLayer>("JiT", cfg, hidden);
    final_layer = nn::JiTFinalLayer<T, D>(hidden, patch, cfg.in_channels);
    build_rope_tables();
    this->bind_params();
  }

  JiT(JiT&&) noexcept = default;
  JiT& operator=(JiT&&) noexcept = default;

  std::int64_t head_dim() const { return hidden / heads; }

  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    t_embedder.visit_params(v, join_name(prefix, "t_embedder"));
    y_embedder.visit_params(v, join_name(prefix, "y_embedder"));
    x_embedder.visit_params(v, join_name(prefix, "x_embedder"));
    if (ctx_len > 0) v(join_name(prefix, "in_context_posemb"), in_context_posemb);
    this->visit_stack(v, prefix);
  }

  /// The reference's initialisation (init(seed) runs it from Philox(seed, kInitStream), on the
  /// host): xavier Linears and patch convs, zero biases, N(0, 0.02) label table, time-MLP weights
  /// and in-context positions, unit RMSNorm weights, zero adaLN and output layers; projectors by
  /// their own init.
  void init_params(Philox& rng) {
    t_embedder.init(rng);
    y_embedder.init(rng);
    x_embedder.init(rng);
    if (ctx_len > 0) nn::normal_init(rng, in_context_posemb.value, 0.02);
    this->init_stack(rng);
  }

 public:
  struct Cache {
    Tensor<T, D> x;                          // [B, C, H, W] model input (copied)
    Tensor<std::int64_t, D> y;               // [B] labels as used
    typename nn::TimestepEmbedder<T, D>::Cache temb;
    Tensor<T, D> yemb, c, s;                 // [B, D] label embedding, conditioning, SiLU(conditioning)
    typename nn::BottleneckPatchEmbed<T, D>::Cache embed;
    Tensor<T, D> h0;                         // [B, N, D] embedded tokens + positions
    Tensor<T, D> with_ctx;                   // [B, L + N, D] input of block in_context_start
    std::vector<typename nn::JiTBlock<T, D>::Cache> blocks;
    Tensor<T, D> aligned;                    // [B, N, D] tokens the projectors read (stripped copy), if needed
    std::vector<typename ProjectorLayer::Cache> projectors;
    Tensor<T, D> final_in;                   // [B, N, D] tokens without the in-context ones
    typename nn::JiTFinalLayer<T, D>::Cache final;
    Tensor<T, D> out;                        // [B, C, H, W] predicted clean image

    ConstView<T, D> output() const { return out.cview(); }
    ConstView<T, D> projected(std::size_t i) const { return projectors.at(i).output(); }
  };

  /// x [B, C, H, W] (the noisy image z), t [B] (1 = clean), y [B] (num_classes = null), all on
  /// the model's device.
  Cache forward(const Context& ctx, ConstView<T, D> x, ConstView<T, D> t, ConstView<std::int64_t, D> y, bool align = true) const {
    const std::int64_t B = this->check_inputs("JiT", x, t, y), N = grid.tokens(), W = hidden;
    Cache c;
    this->copy_inputs(ctx, x, y, c.x, c.y);
    c.temb = t_embedder.forward(ctx, t);
    c.yemb = Tensor<T, D>(Shape{B, W});
    c.c = Tensor<T, D>(Shape{B, W});
    c.s = Tensor<T, D>(Shape{B, W});
    condition(ctx, c.temb, c.y, c.yemb.view(), c.c.view(), c.s.view());
    c.h0 = Tensor<T, D>(Shape{B, N, W});
    c.embed = x_embedder.forward(ctx, c.x, c.h0.view());
    ops::add_broadcast<T>(ctx, c.h0.view(), pos_embed.cview());

    c.blocks.reserve(blocks.size());
    for (std::int64_t i = 0; i < depth; ++i) {
      ConstView<T, D> in = i == 0 ? c.h0.cview() : c.blocks[static_cast<std::size_t>(i - 1)].output();
      if (ctx_len > 0 && i == ctx_start) {  // prepend the in-context class tokens
        c.with_ctx = prepend(ctx, c.yemb, in);
        in = c.with_ctx.cview();
      }
      c.blocks.push_back(run_block(ctx, i, in, c.s));
      if (align && !projectors.empty() && i + 1 == config.encoder_depth) {
        ConstView<T, D> tokens = c.blocks.back().output();
        if (has_context(i)) {
          c.aligned = strip(ctx, tokens);
          tokens = c.aligned.cview();
        }
        for (const auto& p : projectors) c.projectors.push_back(p.forward(ctx, tokens, grid));
      }
    }
    c.final_in = strip(ctx, c.blocks.back().output());
    c.final = final_layer.forward(ctx, c.final_in, c.s);
    c.out = Tensor<T, D>(x.shape());
    this->unpatchify(ctx, c.final.output(), c.out.view(), false);
    return c;
  }

  /// The sampling forward: the output [B, C, H, W] of forward(x, t, y) with no training cache
  /// (each block's activations are dropped once the next block has its input).
  Tensor<T, D> infer(const Context& ctx, ConstView<T, D> x, ConstView<T, D> t, ConstView<std::int64_t, D> y) const {
    const std::int64_t B = this->check_inputs("JiT", x, t, y), W = hidden;
    Tensor<T, D> yemb(Shape{B, W}), c(Shape{B, W}), s(Shape{B, W});
    condition(ctx, t_embedder.forward(ctx, t), y, yemb.view(), c.view(), s.view());
    Tensor<T, D> h(Shape{B, grid.tokens(), W});
    x_embedder.forward(ctx, x, h.view());
    ops::add_broadcast<T>(ctx, h.view(), pos_embed.cview());
    for (std::int64_t i = 0; i < depth; ++i) {
      if (ctx_len > 0 && i == ctx_start) h = prepend(ctx, yemb, h);
      h = std::move(run_block(ctx, i, h, s).out);
    }
    const Tensor<T, D> tokens = strip(ctx, h);
    Tensor<T, D> out(x.shape());
    this->unpatchify(ctx, final_layer.forward(ctx, tokens, s).output(), out.view(), false);
    return out;
  }

  /// dout [B, C, H, W]; dzs[i] the gradients of projector i's output (empty: no alignment).
  /// Parameter gradients accumulate into params().grads().
  void backward(const Context& ctx, const Cache& c, ConstView<T, D> dout, std::span<const ConstView<T, D>> dzs = {},
                const GradReady& ready = {}) const {
    check_shape("JiT::backward", "dout", dout.shape(), c.out.shape());
    IREPA_CHECK(dzs.empty() || (dzs.size() == projectors.size() && c.projectors.size() == projectors.size()),
                "JiT::backward: {} projected-token gradients for {} projectors ({} run in forward)", dzs.size(),
                projectors.size(), c.projectors.size());
    const std::int64_t B = c.x.size(0), N = grid.tokens(), W = hidden, Lc = ctx_len;
    Tensor<T, D> dy(c.final.output().shape());
    this->unpatchify(ctx, dout, dy.view(), true);
    Tensor<T, D> ds(Shape{B, W}), dfin(Shape{B, N, W});
    fill(ctx, ds.view(), T(0));
    final_layer.backward(ctx, c.final, dy, dfin.view(), ds.view());
    this->final_layer_ready(ready);

    // dx: gradient of the current block's output; with in-context tokens [B, L + N, D].
    Tensor<T, D> dx = Lc > 0 ? Tensor<T, D>(Shape{B, Lc + N, W}) : std::move(dfin);
    if (Lc > 0) {
      fill(ctx, dx.view(), T(0));
      ops::add_slice_tokens<T>(ctx, dx.view(), Lc, dfin);
    }
    Tensor<T, D> dyemb(Shape{B, W});
    fill(ctx, dyemb.view(), T(0));
    for (std::int64_t i = depth; i-- > 0;) {
      const bool has_ctx = has_context(i);
      if (!dzs.empty() && i + 1 == config.encoder_depth) {
        Tensor<T, D> dp(Shape{B, N, W});
        for (std::size_t j = 0; j < projectors.size(); ++j) {
          check_shape("JiT::backward", "projected-token gradient", dzs[j].shape(), c.projectors[j].output().shape());
          projectors[j].backward(ctx, c.projectors[j], dzs[j], dp.view());
          this->projector_ready(ready, j);
          if (has_ctx)
            ops::add_slice_tokens<T>(ctx, dx.view(), dx.size(1) - N, dp);
          else
            ops::add_into<T>(ctx, dx.view(), dp);
        }
      }
      const auto& bc = c.blocks[static_cast<std::size_t>(i)];
      Tensor<T, D> dxin(bc.x.shape());
      blocks[static_cast<std::size_t>(i)].backward(ctx, bc, dx, dxin.view(), ds.view());
      this->block_ready(ready, static_cast<std::size_t>(i));
      if (Lc > 0 && i == ctx_start) {  // the in-context tokens: label embedding + in_context_posemb
        Tensor<T, D> rest(Shape{B, N, W});
        ops::prepend_context_backward<T>(ctx, dxin, dyemb.view(), in_context_posemb.grad.reshape(Shape{Lc, W}), rest.view());
        dxin = std::move(rest);
      }
      dx = std::move(dxin);
    }
    x_embedder.backward(ctx, c.embed, dx);
    Tensor<T, D> dc(ds.shape());
    ops::silu_backward<T>(ctx, c.c, ds, dc.view());
    t_embedder.backward(ctx, c.temb, dc);
    ops::add_into<T>(ctx, dyemb.view(), dc);
    y_embedder.backward(ctx, c.y, dyemb);
  }

 private:
  /// [B, M, D] -> [B, N, D]: the last N (patch) tokens, the in-context ones dropped (a copy when M = N).
  Tensor<T, D> strip(const Context& ctx, ConstView<T, D> x) const {
    const std::int64_t N = grid.tokens();
    Tensor<T, D> out(Shape{x.size(0), N, hidden});
    ops::slice_tokens<T>(ctx, x, x.size(1) - N, out.view());
    return out;
  }

  /// yemb = y_embedder(y), c = yemb + t_embedder(t), s = SiLU(c), all [B, D].
  void condition(const Context& ctx, const typename nn::TimestepEmbedder<T, D>::Cache& temb, ConstView<std::int64_t, D> y,
                 TensorView<T, D> yemb, TensorView<T, D> c, TensorView<T, D> s) const {
    y_embedder.forward(ctx, y, yemb);
    ops::copy<T>(ctx, yemb, c);
    ops::add_into<T>(ctx, c, temb.output());
    ops::silu_forward<T>(ctx, c, s);
  }
  /// Whether block i sees the in-context tokens.
  bool has_context(std::int64_t i) const { return ctx_len > 0 && i >= ctx_start; }
  /// Block i on x with the RoPE tables of its token count.
  typename nn::JiTBlock<T, D>::Cache run_block(const Context& ctx, std::int64_t i, ConstView<T, D> x, ConstView<T, D> s) const {
    const bool c = has_context(i);
    return blocks[static_cast<std::size_t>(i)].forward(ctx, x, s, c ? rope_cos_ctx_.cview() : rope_cos_.cview(),
                                                       c ? rope_sin_ctx_.cview() : rope_sin_.cview());
  }
  /// [B, L + N, D]: the label embedding + in_context_posemb rows, then the tokens x [B, N, D].
  Tensor<T, D> prepend(const Context& ctx, ConstView<T, D> yemb, ConstView<T, D> x) const {
    Tensor<T, D> out(Shape{x.size(0), ctx_len + x.size(1), hidden});
    ops::prepend_context<T>(ctx, yemb, in_context_posemb.value.reshape(Shape{ctx_len, hidden}), x, out.view());
    return out;
  }
  /// The RoPE tables, built on the host once and kept on the model's device: [N, hd/2] for the
  /// patch tokens, [L + N, hd/2] with identity rows for the in-context ones.
  void build_rope_tables() {
    auto up = [](const Tensor<T>& host) {
      Tensor<T, D> d(host.shape());
      copy_from_host(d.view(), host.cview());
      return d;
    };
    auto [cs, sn] = ops::rope_table_axial_2d<T>(grid.h, grid.w, head_dim());
    rope_cos_ = up(cs), rope_sin_ = up(sn);
    if (ctx_len > 0) {
      auto [cc, sc] = ops::rope_table_axial_2d<T>(grid.h, grid.w, head_dim(), 10000.0, ctx_len);
      rope_cos_ctx_ = up(cc), rope_sin_ctx_ = up(sc);
    }
  }

  Tensor<T, D> rope_cos_, rope_sin_, rope_cos_ctx_, rope_sin_ctx_;
};

}  // namespace irepa
