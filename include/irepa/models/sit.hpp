#pragma once
// SiT, the latent diffusion transformer of the reference, with an alignment head:
//
//   irepa::SiT<irepa::B, 2, irepa::iREPAHead<irepa::Conv3x3, irepa::SpatialNorm>> model(cfg);
//
// Members are named as the reference's modules, and visit_params yields the reference's
// state_dict names (x_embedder.proj.weight, blocks.3.attn.qkv.weight, projectors.0.*, ...), so
// converted reference checkpoints load as they are. The model owns one flat parameter arena
// (params()); pos_embed is a buffer, not a parameter (saved and loaded, never trained).
//
// forward(ctx, x, t, y) returns the cache backward consumes: every block's activations, the
// projected tokens after block encoder_depth (one tensor per target encoder) and the output;
// infer(ctx, x, t, y) is the sampling forward, which keeps no training cache. Inputs, labels
// included, are on the model's device.

#include <span>
#include <string>
#include <vector>

#include "irepa/align/head.hpp"
#include "irepa/core/arena.hpp"
#include "irepa/io/params.hpp"
#include "irepa/models/transformer_base.hpp"
#include "irepa/models/sizes.hpp"
#include "irepa/nn/adaln.hpp"
#include "irepa/nn/embedders.hpp"
#include "irepa/ops/tensor_ops.hpp"

namespace irepa {

/// Run-time settings of a SiT. Sizes set here must agree with the template's fixed sizes
/// (0 = take the template's); with Dynamic / DynamicPatch they are required.
struct SiTConfig {
  std::int64_t input_size = 32;   // latent height = width
  std::int64_t in_channels = 4;
  std::int64_t num_classes = 1000;
  double class_dropout_prob = 0.1;  // > 0 adds the null class row (index num_classes)
  std::int64_t encoder_depth = 8;   // projectors read the tokens after this block (1-based)
  std::vector<std::int64_t> z_dims = {768};  // one projector per target encoder (may be empty)
  std::int64_t projector_dim = 2048;         // MLP projectors' hidden width
  int kernel_size = 0;                       // conv projectors (0: the projector's default)
  double mlp_ratio = 4.0;
  bool qk_norm = false;  // the reference cannot enable it; kept for configs that name it
  // Dynamic sizes.
  std::int64_t depth = 0, hidden_size = 0, num_heads = 0, patch_size = 0;
};

/// Sets depth, width, heads and patch of cfg from a model name: "SiT-B/2" (or "B/2"), sizes S,
/// B, L, XL and patch 2, 4 or 8, as the reference's --model flag.
inline void apply_model_name(SiTConfig& cfg, std::string_view name) {
  std::string_view n = name;
  if (n.starts_with("SiT-")) n.remove_prefix(4);
  const auto slash = n.find('/');
  const std::string_view size = n.substr(0, slash);
  const std::string_view patch = slash == std::string_view::npos ? std::string_view{} : n.substr(slash + 1);
  auto set = [&](auto tag) {
    using Sz = decltype(tag);
    cfg.depth = Sz::depth, cfg.hidden_size = Sz::hidden, cfg.num_heads = Sz::heads;
  };
  if (size == "S")
    set(S{});
  else if (size == "B")
    set(B{});
  else if (size == "L")
    set(L{});
  else if (size == "XL")
    set(XL{});
  else
    fail("model '{}' is not known; expected SiT-S/2, SiT-B/2, SiT-L/2 or SiT-XL/2 (patch 2, 4 or 8)", name);
  IREPA_CHECK(patch == "2" || patch == "4" || patch == "8", "model '{}': patch size must be 2, 4 or 8", name);
  cfg.patch_size = patch[0] - '0';
}


template <class Size, int Patch, class Head, class T = float, class D = Cpu>
  requires SizeTag<Size> && AlignmentHead<Head> && (Patch >= 0)
struct SiT : TransformerBase<SiT<Size, Patch, Head, T, D>, T, D> {
  using Base = TransformerBase<SiT<Size, Patch, Head, T, D>, T, D>;
  using typename Base::Context;
  friend Base;
  using head_type = Head;
  using config_type = SiTConfig;
  using ProjectorLayer = projector_layer_t<typename Head::projector, T, D>;
  /// The same model on the host: what a device model is initialised, saved and loaded through.
  using HostModel = SiT<Size, Patch, Head, T, Cpu>;
  static constexpr std::uint64_t kInitStream = 0x5174;  // the Philox stream of init()
  static_assert(std::is_same_v<typename ProjectorLayer::device_type, D>,
                "SiT: the projector policy has no layer<T, D> for this device (a policy that declares only layer<T> runs on the CPU)");

  SiTConfig config;
  Head head;
  std::int64_t depth = 0, hidden = 0, heads = 0, patch = 0;
  TokenGrid grid;  // tokens: grid.h * grid.w, row-major

  nn::PatchEmbed<T, D> x_embedder;
  nn::TimestepEmbedder<T, D> t_embedder;
  nn::LabelEmbedder<T, D> y_embedder;
  Tensor<T, D> pos_embed;  // [1, T, D] fixed 2-D sin-cos buffer
  std::vector<nn::SiTBlock<T, D>> blocks;
  std::vector<ProjectorLayer> projectors;
  nn::FinalLayer<T, D> final_layer;

  explicit SiT(const SiTConfig& cfg, Head h = {}) : config(cfg), head(std::move(h)) {
    IREPA_CHECK(!cfg.qk_norm, "SiT: qk_norm is not supported (the reference cannot enable it either)");
    this->template resolve_sizes<Size, Patch>("SiT");

    x_embedder = nn::PatchEmbed<T, D>(cfg.in_channels, hidden, patch);
    t_embedder = nn::TimestepEmbedder<T, D>(hidden);
    y_embedder = nn::LabelEmbedder<T, D>(cfg.num_classes, hidden, cfg.class_dropout_prob > 0);
    this->reset_pos_embed();
    blocks.reserve(static_cast<std::size_t>(depth));
    for (std::int64_t i = 0; i < depth; ++i) blocks.emplace_back(hidden, heads, cfg.mlp_ratio);
    projectors = this->template make_projectors<ProjectorLayer>("SiT", cfg, hidden);
    final_layer = nn::FinalLayer<T, D>(hidden, patch, cfg.in_channels);
    this->bind_params();
  }

  SiT(SiT&&) noexcept = default;
  SiT& operator=(SiT&&) noexcept = default;


  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    x_embedder.visit_params(v, join_name(prefix, "x_embedder"));
    t_embedder.visit_params(v, join_name(prefix, "t_embedder"));
    y_embedder.visit_params(v, join_name(prefix, "y_embedder"));
    this->visit_stack(v, prefix);
  }

  /// The reference's initialisation (init(seed) runs it from Philox(seed, kInitStream), on the
  /// host): xavier-uniform Linears with zero biases, N(0, 0.02) label table and time-MLP weights,
  /// zero adaLN and output layers; projectors by their own init (or N(0, 0.02) weights and zero
  /// biases without one).
  void init_params(Philox& rng) {
    x_embedder.init(rng);
    t_embedder.init(rng);
    y_embedder.init(rng);
    this->init_stack(rng);
  }

 public:
  struct Cache {
    Tensor<T, D> x;                  // [B, C, H, W] model input (copied)
    Tensor<std::int64_t, D> y;       // [B] labels as used (after any dropout)
    typename nn::TimestepEmbedder<T, D>::Cache temb;
    Tensor<T, D> c, s;               // [B, D] conditioning and SiLU(conditioning)
    Tensor<T, D> h0;                 // [B, T, D] embedded tokens + position
    std::vector<typename nn::SiTBlock<T, D>::Cache> blocks;
    std::vector<typename ProjectorLayer::Cache> projectors;  // empty when not aligned
    typename nn::FinalLayer<T, D>::Cache final;
    Tensor<T, D> out;                // [B, C, H, W]

    ConstView<T, D> output() const { return out.cview(); }
    /// Projected tokens [B, T, z_dim] for target encoder i.
    ConstView<T, D> projected(std::size_t i) const { return projectors.at(i).output(); }
    /// Hidden tokens [B, T, D] after block i (1-based, as encoder_depth).
    ConstView<T, D> hidden_after(std::size_t i) const { return blocks.at(i - 1).output(); }
  };

  /// x [B, C, H, W], t [B], y [B] (int64; num_classes is the null class), all on the model's
  /// device. With align = false the projectors are skipped.
  Cache forward(const Context& ctx, ConstView<T, D> x, ConstView<T, D> t, ConstView<std::int64_t, D> y, bool align = true) const {
    const std::int64_t B = this->check_inputs("SiT", x, t, y);
    Cache c;
    this->copy_inputs(ctx, x, y, c.x, c.y);
    c.temb = t_embedder.forward(ctx, t);
    c.c = Tensor<T, D>(Shape{B, hidden});
    c.s = Tensor<T, D>(Shape{B, hidden});
    condition(ctx, c.temb, c.y, c.c.view(), c.s.view());
    c.h0 = embed(ctx, c.x);

    c.blocks.reserve(blocks.size());
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      ConstView<T, D> in = i == 0 ? c.h0.cview() : c.blocks[i - 1].output();
      c.blocks.push_back(blocks[i].forward(ctx, in, c.s));
      if (align && static_cast<std::int64_t>(i + 1) == config.encoder_depth) {
        c.projectors.reserve(projectors.size());
        for (const auto& p : projectors) c.projectors.push_back(p.forward(ctx, c.blocks[i].output(), grid));
      }
    }
    ConstView<T, D> last = blocks.empty() ? c.h0.cview() : c.blocks.back().output();
    c.final = final_layer.forward(ctx, last, c.s);
    c.out = Tensor<T, D>(x.shape());
    this->unpatchify(ctx, c.final.output(), c.out.view(), /*inverse=*/false);
    return c;
  }

  /// The sampling forward: the output [B, C, H, W] of forward(x, t, y) with no training cache.
  /// Each block's activations are dropped once the next block has its input, so the peak is one
  /// block's, not depth times that.
  Tensor<T, D> infer(const Context& ctx, ConstView<T, D> x, ConstView<T, D> t, ConstView<std::int64_t, D> y) const {
    const std::int64_t B = this->check_inputs("SiT", x, t, y);
    Tensor<T, D> c(Shape{B, hidden}), s(Shape{B, hidden});
    condition(ctx, t_embedder.forward(ctx, t), y, c.view(), s.view());
    Tensor<T, D> h = embed(ctx, x);
    for (const auto& b : blocks) h = std::move(b.forward(ctx, h, s).out);
    Tensor<T, D> out(x.shape());
    this->unpatchify(ctx, final_layer.forward(ctx, h, s).output(), out.view(), /*inverse=*/false);
    return out;
  }

  /// dout [B, C, H, W]; dzs[i] [B, T, z_dim_i] the gradients of the projected tokens (empty span:
  /// no alignment gradient). Parameter gradients accumulate into params().grads().
  void backward(const Context& ctx, const Cache& c, ConstView<T, D> dout, std::span<const ConstView<T, D>> dzs = {},
                const GradReady& ready = {}) const {
    check_shape("SiT::backward", "dout", dout.shape(), c.out.shape());
    IREPA_CHECK(dzs.empty() || (dzs.size() == projectors.size() && c.projectors.size() == projectors.size()),
                "SiT::backward: {} projected-token gradients for {} projectors ({} run in forward)", dzs.size(),
                projectors.size(), c.projectors.size());
    const std::int64_t B = c.x.size(0);
    const Shape tok{B, grid.tokens(), hidden};
    Tensor<T, D> dy(c.final.output().shape());
    this->unpatchify(ctx, dout, dy.view(), /*inverse=*/true);

    Tensor<T, D> ds(Shape{B, hidden}), dx(tok), dxin(tok), dp(tok);
    fill(ctx, ds.view(), T(0));
    final_layer.backward(ctx, c.final, dy, dx.view(), ds.view());
    this->final_layer_ready(ready);
    for (std::size_t i = blocks.size(); i-- > 0;) {
      if (!dzs.empty() && static_cast<std::int64_t>(i + 1) == config.encoder_depth) {
        for (std::size_t j = 0; j < projectors.size(); ++j) {
          check_shape("SiT::backward", "projected-token gradient", dzs[j].shape(), c.projectors[j].output().shape());
          projectors[j].backward(ctx, c.projectors[j], dzs[j], dp.view());
          this->projector_ready(ready, j);
          ops::add_into<T>(ctx, dx.view(), dp);
        }
      }
      blocks[i].backward(ctx, c.blocks[i], dx, dxin.view(), ds.view());
      this->block_ready(ready, i);
      std::swap(dx, dxin);
    }
    x_embedder.backward(ctx, c.x, dx);
    Tensor<T, D> dc(ds.shape());
    ops::silu_backward<T>(ctx, c.c, ds, dc.view());
    t_embedder.backward(ctx, c.temb, dc);
    y_embedder.backward(ctx, c.y, dc);
  }

 private:


  /// c = t_embedder(t) + y_embedder(y), s = SiLU(c), both [B, D].
  void condition(const Context& ctx, const typename nn::TimestepEmbedder<T, D>::Cache& temb, ConstView<std::int64_t, D> y,
                 TensorView<T, D> c, TensorView<T, D> s) const {
    y_embedder.forward(ctx, y, c);
    ops::add_into<T>(ctx, c, temb.output());
    ops::silu_forward<T>(ctx, c, s);
  }
  /// Embedded tokens plus positions [B, T, D].
  Tensor<T, D> embed(const Context& ctx, ConstView<T, D> x) const {
    Tensor<T, D> h(Shape{x.size(0), grid.tokens(), hidden});
    x_embedder.forward(ctx, x, h.view());
    ops::add_broadcast<T>(ctx, h.view(), pos_embed.cview());
    return h;
  }
};

}  // namespace irepa
