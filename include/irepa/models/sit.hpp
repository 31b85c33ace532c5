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
// projected tokens after block encoder_depth (one tensor per target encoder) and the output.

#include <span>
#include <string>
#include <vector>

#include "irepa/align/head.hpp"
#include "irepa/core/arena.hpp"
#include "irepa/io/params.hpp"
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

namespace detail {
/// A device model's parameter values from its host twin's arena (same configuration).
template <class T, class D>
void upload_params(std::string_view model, const ParamArena<T, D>& dst, const ParamArena<T>& src) {
  IREPA_CHECK(src.numel() == dst.numel(), "{}: copying {} parameter values into a model with {}", model, src.numel(), dst.numel());
  D::upload_sync(dst.values().data(), src.values().data(), sizeof(T) * static_cast<std::size_t>(dst.numel()));
}
/// The reverse: values (and, with grads, gradients) into the host twin's arena.
template <class T, class D>
void download_params(const ParamArena<T, D>& src, const ParamArena<T>& dst, bool grads) {
  const std::size_t bytes = sizeof(T) * static_cast<std::size_t>(src.numel());
  D::download_sync(dst.values().data(), src.values().data(), bytes);
  if (grads) D::download_sync(dst.grads().data(), src.grads().data(), bytes);
}
inline std::int64_t resolve_size(const char* what, int fixed, std::int64_t configured) {
  if (fixed > 0) {
    IREPA_CHECK(configured == 0 || configured == fixed, "SiT: the configuration asks for {} = {}, the model type fixes {}",
                what, configured, fixed);
    return fixed;
  }
  IREPA_CHECK(configured > 0, "SiT: {} must be positive for a Dynamic size (got {})", what, configured);
  return configured;
}

/// Projectors by their own init, or, for a user policy without one, N(0, 0.02) weights and zero
/// vectors (SiT and JiT alike).
template <class Layers>
void init_projectors(Layers& projectors, Philox& rng) {
  for (auto& p : projectors) {
    if constexpr (requires { p.init(rng); }) {
      p.init(rng);
    } else {
      p.visit_params([&](const std::string&, auto& q) {
        if (q.shape.rank() >= 2)
          nn::normal_init(rng, q.value, 0.02);
        else
          nn::zeros(q.value);
      }, std::string_view{});
    }
  }
}
}  // namespace detail

template <class Size, int Patch, class Head, class T = float, class D = Cpu>
  requires SizeTag<Size> && AlignmentHead<Head> && (Patch >= 0)
struct SiT {
  using scalar_type = T;
  using device_type = D;
  using Context = ContextOf<D>;
  using head_type = Head;
  using ProjectorLayer = projector_layer_t<typename Head::projector, T, D>;
  /// The same model on the host: what a device model is initialised, saved and loaded through.
  using HostModel = SiT<Size, Patch, Head, T, Cpu>;
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
    depth = detail::resolve_size("depth", Size::depth, cfg.depth);
    hidden = detail::resolve_size("hidden_size", Size::hidden, cfg.hidden_size);
    heads = detail::resolve_size("num_heads", Size::heads, cfg.num_heads);
    patch = detail::resolve_size("patch_size", Patch, cfg.patch_size);
    IREPA_CHECK(!cfg.qk_norm, "SiT: qk_norm is not supported (the reference cannot enable it either)");
    IREPA_CHECK(cfg.input_size > 0 && cfg.input_size % patch == 0, "SiT: input size {} is not a positive multiple of patch {}",
                cfg.input_size, patch);
    IREPA_CHECK(cfg.in_channels > 0 && cfg.num_classes > 0, "SiT: in_channels {} and num_classes {} must be positive",
                cfg.in_channels, cfg.num_classes);
    IREPA_CHECK(hidden % heads == 0, "SiT: width {} is not divisible by {} heads", hidden, heads);
    IREPA_CHECK(hidden % 4 == 0, "SiT: width {} must be a multiple of 4 (2-D sin-cos position table)", hidden);
    IREPA_CHECK(cfg.z_dims.empty() || (cfg.encoder_depth >= 1 && cfg.encoder_depth <= depth),
                "SiT: encoder_depth {} must be in [1, {}] (the block whose output is aligned)", cfg.encoder_depth, depth);
    grid = TokenGrid{cfg.input_size / patch, cfg.input_size / patch};

    x_embedder = nn::PatchEmbed<T, D>(cfg.in_channels, hidden, patch);
    t_embedder = nn::TimestepEmbedder<T, D>(hidden);
    y_embedder = nn::LabelEmbedder<T, D>(cfg.num_classes, hidden, cfg.class_dropout_prob > 0);
    pos_embed = Tensor<T, D>(Shape{1, grid.tokens(), hidden});
    reset_pos_embed();
    blocks.reserve(static_cast<std::size_t>(depth));
    for (std::int64_t i = 0; i < depth; ++i) blocks.emplace_back(hidden, heads, cfg.mlp_ratio);
    projectors.reserve(cfg.z_dims.size());
    for (std::int64_t z : cfg.z_dims) {
      IREPA_CHECK(z > 0, "SiT: target encoder width {} must be positive", z);
      projectors.emplace_back(ProjectorSpec{.in_dim = hidden, .out_dim = z, .hidden_dim = cfg.projector_dim,
                                            .kernel_size = cfg.kernel_size});
    }
    final_layer = nn::FinalLayer<T, D>(hidden, patch, cfg.in_channels);
    arena_ = ParamArena<T, D>(*this);
  }

  SiT(SiT&&) noexcept = default;
  SiT& operator=(SiT&&) noexcept = default;

  /// The flat parameter arena (values and gradients), in state_dict order.
  const ParamArena<T, D>& params() const { return arena_; }
  std::int64_t num_params() const { return arena_.numel(); }
  std::int64_t out_channels() const { return config.in_channels; }

  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    x_embedder.visit_params(v, join_name(prefix, "x_embedder"));
    t_embedder.visit_params(v, join_name(prefix, "t_embedder"));
    y_embedder.visit_params(v, join_name(prefix, "y_embedder"));
    for (std::size_t i = 0; i < blocks.size(); ++i) blocks[i].visit_params(v, join_name(prefix, "blocks." + std::to_string(i)));
    for (std::size_t i = 0; i < projectors.size(); ++i)
      projectors[i].visit_params(v, join_name(prefix, "projectors." + std::to_string(i)));
    final_layer.visit_params(v, join_name(prefix, "final_layer"));
  }
  /// Non-trainable state saved with the parameters.
  std::vector<io::NamedView<T>> buffers() const
    requires(D::host_accessible)
  {
    return {{"pos_embed", pos_embed.view()}};
  }

  /// The reference's initialisation, drawn from Philox(seed): xavier-uniform Linears with zero
  /// biases, N(0, 0.02) label table and time-MLP weights, zero adaLN and output layers;
  /// projectors by their own init (or N(0, 0.02) weights and zero biases without one). A device
  /// model draws the same values on the host and copies them over.
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
  void copy_params_from(const HostModel& host) { detail::upload_params("SiT", arena_, host.params()); }
  /// The model on the host, with these parameter values (and, with grads, these gradients).
  HostModel to_host_model(bool grads = false) const {
    HostModel host(config, head);
    detail::download_params(arena_, host.params(), grads);
    return host;
  }

 private:
  void init_on_host(std::uint64_t seed) {
    Philox rng(seed, /*stream=*/0x5174);
    x_embedder.init(rng);
    t_embedder.init(rng);
    y_embedder.init(rng);
    for (auto& b : blocks) b.init(rng);
    detail::init_projectors(projectors, rng);
    final_layer.init(rng);
    reset_pos_embed();
  }

 public:
  struct Cache {
    Tensor<T, D> x;                  // [B, C, H, W] model input (copied)
    Tensor<std::int64_t> y;          // [B] labels as used (after any dropout), on the host
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

  /// x [B, C, H, W], t [B] on the model's device, y [B] on the host (int64; num_classes is the
  /// null class). With align = false the projectors are skipped (sampling).
  Cache forward(const Context& ctx, ConstView<T, D> x, ConstView<T, D> t, ConstView<std::int64_t> y, bool align = true) const {
    IREPA_CHECK(x.rank() == 4 && x.size(1) == config.in_channels && x.size(2) == config.input_size &&
                    x.size(3) == config.input_size,
                "SiT: input has shape {}, expected [B, {}, {}, {}]", x.shape().str(), config.in_channels, config.input_size,
                config.input_size);
    const std::int64_t B = x.size(0);
    check_shape("SiT", "t", t.shape(), Shape{B});
    check_shape("SiT", "labels", y.shape(), Shape{B});
    Cache c;
    c.x = Tensor<T, D>(x.shape());
    ops::copy<T>(ctx, x, c.x.view());
    c.y = Tensor<std::int64_t>::copy_of(y);

    c.temb = t_embedder.forward(ctx, t);
    c.c = Tensor<T, D>(Shape{B, hidden});
    y_embedder.forward(ctx, c.y, c.c.view());
    ops::add_into<T>(ctx, c.c.view(), c.temb.output());
    c.s = Tensor<T, D>(c.c.shape());
    ops::silu_forward<T>(ctx, c.c, c.s.view());

    const Shape tok{B, grid.tokens(), hidden};
    c.h0 = Tensor<T, D>(tok);
    x_embedder.forward(ctx, c.x, c.h0.view());
    ops::add_broadcast<T>(ctx, c.h0.view(), pos_embed.cview());

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
    unpatchify(ctx, c.final.output(), c.out.view(), /*inverse=*/false);
    return c;
  }

  /// dout [B, C, H, W]; dzs[i] [B, T, z_dim_i] the gradients of the projected tokens (empty span:
  /// no alignment gradient). Parameter gradients accumulate into params().grads().
  void backward(const Context& ctx, const Cache& c, ConstView<T, D> dout, std::span<const ConstView<T, D>> dzs = {}) const {
    check_shape("SiT::backward", "dout", dout.shape(), c.out.shape());
    IREPA_CHECK(dzs.empty() || (dzs.size() == projectors.size() && c.projectors.size() == projectors.size()),
                "SiT::backward: {} projected-token gradients for {} projectors ({} run in forward)", dzs.size(),
                projectors.size(), c.projectors.size());
    const std::int64_t B = c.x.size(0);
    const Shape tok{B, grid.tokens(), hidden};
    Tensor<T, D> dy(c.final.output().shape());
    unpatchify(ctx, dout, dy.view(), /*inverse=*/true);

    Tensor<T, D> ds(Shape{B, hidden}), dx(tok), dxin(tok), dp(tok);
    fill(ctx, ds.view(), T(0));
    final_layer.backward(ctx, c.final, dy, dx.view(), ds.view());
    for (std::size_t i = blocks.size(); i-- > 0;) {
      if (!dzs.empty() && static_cast<std::int64_t>(i + 1) == config.encoder_depth) {
        for (std::size_t j = 0; j < projectors.size(); ++j) {
          check_shape("SiT::backward", "projected-token gradient", dzs[j].shape(), c.projectors[j].output().shape());
          projectors[j].backward(ctx, c.projectors[j], dzs[j], dp.view());
          ops::add_into<T>(ctx, dx.view(), dp);
        }
      }
      blocks[i].backward(ctx, c.blocks[i], dx, dxin.view(), ds.view());
      std::swap(dx, dxin);
    }
    x_embedder.backward(ctx, c.x, dx);
    Tensor<T, D> dc(ds.shape());
    ops::silu_backward<T>(ctx, c.c, ds, dc.view());
    t_embedder.backward(ctx, c.temb, dc);
    y_embedder.backward(ctx, c.y, dc);
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
  /// Loads parameters and buffers from prefix + state_dict name: every missing, unexpected or
  /// mis-shaped tensor is named in one error, and nothing is changed then.
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
    const Tensor<T> table = ops::sincos_2d_table<T>(grid.h, grid.w, hidden);  // [T, D]
    D::upload_sync(pos_embed.data(), table.data(), sizeof(T) * static_cast<std::size_t>(table.numel()));
  }

  void unpatchify(const Context& ctx, ConstView<T, D> src, TensorView<T, D> dst, bool inverse) const {
    ops::unpatchify<T>(ctx, src, dst, config.in_channels, patch, grid, inverse);
  }

  ParamArena<T, D> arena_;  // last: built from the members above
};

}  // namespace irepa
