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

template <class Size, int Patch, class Head, class T = float, class D = Cpu>
  requires SizeTag<Size> && AlignmentHead<Head> && (Patch >= 0)
struct JiT {
  using scalar_type = T;
  using device_type = D;
  using Context = ContextOf<D>;
  using head_type = Head;
  using ProjectorLayer = projector_layer_t<typename Head::projector, T, D>;
  /// The same model on the host: what a device model is initialised, saved and loaded through.
  using HostModel = JiT<Size, Patch, Head, T, Cpu>;
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

    t_embedder = nn::TimestepEmbedder<T, D>(hidden);
    y_embedder = nn::LabelEmbedder<T, D>(cfg.num_classes, hidden, /*null_class=*/true);
    x_embedder = nn::BottleneckPatchEmbed<T, D>(cfg.in_channels, bottleneck, hidden, patch);
    pos_embed = Tensor<T, D>(Shape{1, grid.tokens(), hidden});
    reset_pos_embed();
    in_context_posemb = Param<T, D>(Shape{1, ctx_len, hidden});
    blocks.reserve(static_cast<std::size_t>(depth));
    for (std::int64_t i = 0; i < depth; ++i) blocks.emplace_back(hidden, heads, cfg.mlp_ratio);
    for (std::int64_t z : cfg.z_dims) {
      IREPA_CHECK(z > 0, "JiT: target encoder width {} must be positive", z);
      projectors.emplace_back(ProjectorSpec{.in_dim = hidden, .out_dim = z, .hidden_dim = cfg.projector_dim,
                                            .kernel_size = cfg.kernel_size});
    }
    final_layer = nn::JiTFinalLayer<T, D>(hidden, patch, cfg.in_channels);
    arena_ = ParamArena<T, D>(*this);
  }

  JiT(JiT&&) noexcept = default;
  JiT& operator=(JiT&&) noexcept = default;

  const ParamArena<T, D>& params() const { return arena_; }
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
  std::vector<io::NamedView<T>> buffers() const
    requires(D::host_accessible)
  {
    return {{"pos_embed", pos_embed.view()}};
  }

  /// The reference's initialisation from Philox(seed): xavier Linears and patch convs, zero
  /// biases, N(0, 0.02) label table, time-MLP weights and in-context positions, unit RMSNorm
  /// weights, zero adaLN and output layers; projectors by their own init. A device model draws
  /// the same values on the host and copies them over.
  void init(std::uint64_t seed) {
    if constexpr (!std::is_same_v<D, Cpu>) {
      HostModel host(config, head);
      host.init(seed);
      copy_params_from(host);
    } else {
      init_on_host(seed);
    }
  }

  /// Parameter values from a host model of the same configuration (a device model's upload).
  void copy_params_from(const HostModel& host) { detail::upload_params("JiT", arena_, host.params()); }
  /// The model on the host, with these parameter values (and, with grads, these gradients).
  HostModel to_host_model(bool grads = false) const {
    HostModel host(config, head);
    detail::download_params(arena_, host.params(), grads);
    return host;
  }

 private:
  void init_on_host(std::uint64_t seed) {
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

 public:
  struct Cache {
    Tensor<T, D> x;                          // [B, C, H, W] model input (copied)
    Tensor<std::int64_t> y;                  // [B] on the host
    typename nn::TimestepEmbedder<T, D>::Cache temb;
    Tensor<T, D> yemb, c, s;                 // [B, D] label embedding, conditioning, SiLU(conditioning)
    typename nn::BottleneckPatchEmbed<T, D>::Cache embed;
    Tensor<T, D> h0;                         // [B, N, D] embedded tokens + positions
    Tensor<T, D> rope_cos, rope_sin;         // [N, hd/2] patch tokens only
    Tensor<T, D> rope_cos_ctx, rope_sin_ctx; // [L + N, hd/2] identity rows for the in-context tokens
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

  /// x [B, C, H, W] (the noisy image z), t [B] (1 = clean) on the model's device, y [B] on the
  /// host (num_classes = null).
  Cache forward(const Context& ctx, ConstView<T, D> x, ConstView<T, D> t, ConstView<std::int64_t> y, bool align = true) const {
    IREPA_CHECK(x.rank() == 4 && x.size(1) == config.in_channels && x.size(2) == config.input_size &&
                    x.size(3) == config.input_size,
                "JiT: input has shape {}, expected [B, {}, {}, {}]", x.shape().str(), config.in_channels, config.input_size,
                config.input_size);
    const std::int64_t B = x.size(0), N = grid.tokens(), W = hidden, Lc = ctx_len;
    check_shape("JiT", "t", t.shape(), Shape{B});
    check_shape("JiT", "labels", y.shape(), Shape{B});
    Cache c;
    c.x = Tensor<T, D>(x.shape());
    ops::copy<T>(ctx, x, c.x.view());
    c.y = Tensor<std::int64_t>::copy_of(y);
    c.temb = t_embedder.forward(ctx, t);
    c.yemb = Tensor<T, D>(Shape{B, W});
    y_embedder.forward(ctx, c.y, c.yemb.view());
    c.c = Tensor<T, D>(c.yemb.shape());
    ops::copy<T>(ctx, c.yemb, c.c.view());
    nn::detail::add_into<T>(ctx, c.c.view(), c.temb.output());
    c.s = Tensor<T, D>(c.c.shape());
    ops::silu_forward<T>(ctx, c.c, c.s.view());

    c.h0 = Tensor<T, D>(Shape{B, N, W});
    c.embed = x_embedder.forward(ctx, c.x, c.h0.view());
    ops::add_broadcast<T>(ctx, c.h0.view(), pos_embed.cview());
    {  // RoPE tables: built on the host, on the model's device for the blocks
      auto [cs, sn] = ops::rope_table_axial_2d<T>(grid.h, grid.w, head_dim());
      c.rope_cos = to_device(ctx, cs.cview()), c.rope_sin = to_device(ctx, sn.cview());
      if (Lc > 0) {
        auto [cc, sc] = ops::rope_table_axial_2d<T>(grid.h, grid.w, head_dim(), 10000.0, Lc);
        c.rope_cos_ctx = to_device(ctx, cc.cview()), c.rope_sin_ctx = to_device(ctx, sc.cview());
      }
    }

    c.blocks.reserve(blocks.size());
    for (std::int64_t i = 0; i < depth; ++i) {
      ConstView<T, D> in = i == 0 ? c.h0.cview() : c.blocks[static_cast<std::size_t>(i - 1)].output();
      if (Lc > 0 && i == ctx_start) {  // prepend the in-context class tokens
        c.with_ctx = Tensor<T, D>(Shape{B, Lc + N, W});
        ops::prepend_context<T>(ctx, c.yemb, in_context_posemb.value.reshape(Shape{Lc, W}), in, c.with_ctx.view());
        in = c.with_ctx.cview();
      }
      const bool has_ctx = Lc > 0 && i >= ctx_start;
      c.blocks.push_back(blocks[static_cast<std::size_t>(i)].forward(
          ctx, in, c.s, has_ctx ? c.rope_cos_ctx.cview() : c.rope_cos.cview(), has_ctx ? c.rope_sin_ctx.cview() : c.rope_sin.cview()));
      if (align && !projectors.empty() && i + 1 == config.encoder_depth) {
        ConstView<T, D> tokens = c.blocks.back().output();
        if (has_ctx) {
          c.aligned = strip(ctx, tokens);
          tokens = c.aligned.cview();
        }
        for (const auto& p : projectors) c.projectors.push_back(p.forward(ctx, tokens, grid));
      }
    }
    c.final_in = strip(ctx, c.blocks.back().output());
    c.final = final_layer.forward(ctx, c.final_in, c.s);
    c.out = Tensor<T, D>(x.shape());
    unpatchify(ctx, c.final.output(), c.out.view(), false);
    return c;
  }

  /// dout [B, C, H, W]; dzs[i] the gradients of projector i's output (empty: no alignment).
  /// Parameter gradients accumulate into params().grads().
  void backward(const Context& ctx, const Cache& c, ConstView<T, D> dout, std::span<const ConstView<T, D>> dzs = {}) const {
    check_shape("JiT::backward", "dout", dout.shape(), c.out.shape());
    IREPA_CHECK(dzs.empty() || (dzs.size() == projectors.size() && c.projectors.size() == projectors.size()),
                "JiT::backward: {} projected-token gradients for {} projectors ({} run in forward)", dzs.size(),
                projectors.size(), c.projectors.size());
    const std::int64_t B = c.x.size(0), N = grid.tokens(), W = hidden, Lc = ctx_len;
    Tensor<T, D> dy(c.final.output().shape());
    unpatchify(ctx, dout, dy.view(), true);
    Tensor<T, D> ds(Shape{B, W}), dfin(Shape{B, N, W});
    fill(ctx, ds.view(), T(0));
    final_layer.backward(ctx, c.final, dy, dfin.view(), ds.view());

    // dx: gradient of the current block's output; with in-context tokens [B, L + N, D].
    Tensor<T, D> dx = Lc > 0 ? Tensor<T, D>(Shape{B, Lc + N, W}) : std::move(dfin);
    if (Lc > 0) {
      fill(ctx, dx.view(), T(0));
      ops::add_slice_tokens<T>(ctx, dx.view(), Lc, dfin);
    }
    Tensor<T, D> dyemb(Shape{B, W});
    fill(ctx, dyemb.view(), T(0));
    for (std::int64_t i = depth; i-- > 0;) {
      const bool has_ctx = Lc > 0 && i >= ctx_start;
      if (!dzs.empty() && i + 1 == config.encoder_depth) {
        Tensor<T, D> dp(Shape{B, N, W});
        for (std::size_t j = 0; j < projectors.size(); ++j) {
          check_shape("JiT::backward", "projected-token gradient", dzs[j].shape(), c.projectors[j].output().shape());
          projectors[j].backward(ctx, c.projectors[j], dzs[j], dp.view());
          if (has_ctx)
            ops::add_slice_tokens<T>(ctx, dx.view(), dx.size(1) - N, dp);
          else
            nn::detail::add_into<T>(ctx, dx.view(), dp);
        }
      }
      const auto& bc = c.blocks[static_cast<std::size_t>(i)];
      Tensor<T, D> dxin(bc.x.shape());
      blocks[static_cast<std::size_t>(i)].backward(ctx, bc, dx, dxin.view(), ds.view());
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
    nn::detail::add_into<T>(ctx, dyemb.view(), dc);
    y_embedder.backward(ctx, c.y, dyemb);
  }

  /// Saves parameters and buffers under prefix + state_dict name (a device model through its
  /// host copy).
  void save(io::SafeTensorsWriter& w, std::string_view prefix = {}) const {
    if constexpr (!D::host_accessible) {
      to_host_model().save(w, prefix);
    } else {
      io::add_params(w, arena_, prefix);
      for (const auto& b : buffers()) w.add<T>(std::string(prefix) + b.name, b.view);
    }
  }
  void load(const io::SafeTensorsFile& f, std::string_view prefix = {}, io::LoadParamsOptions opt = {}) {
    if constexpr (!D::host_accessible) {
      HostModel host(config, head);
      host.load(f, prefix, opt);
      copy_params_from(host);  // pos_embed is the fixed table both sides
    } else {
      io::load_params(f, arena_, prefix, opt, buffers());
    }
  }

 private:
  void reset_pos_embed() {
    const Tensor<T> table = ops::sincos_2d_table<T>(grid.h, grid.w, hidden);
    D::upload_sync(pos_embed.data(), table.data(), sizeof(T) * static_cast<std::size_t>(table.numel()));
  }
  /// [B, M, D] -> [B, N, D]: the last N (patch) tokens, the in-context ones dropped (a copy when M = N).
  Tensor<T, D> strip(const Context& ctx, ConstView<T, D> x) const {
    const std::int64_t N = grid.tokens();
    Tensor<T, D> out(Shape{x.size(0), N, hidden});
    ops::slice_tokens<T>(ctx, x, x.size(1) - N, out.view());
    return out;
  }
  void unpatchify(const Context& ctx, ConstView<T, D> src, TensorView<T, D> dst, bool inverse) const {
    ops::unpatchify<T>(ctx, src, dst, config.in_channels, patch, grid, inverse);
  }

  ParamArena<T, D> arena_;
};

}  // namespace irepa
