#pragma once
// What every diffusion transformer of the library (SiT, JiT) does the same way: its flat
// parameter arena, the reference's initialisation, saving and loading by state_dict name and
// host copies, for a model on any device (through its host twin, core/host_twin.hpp); and the
// parts of the transformer they share by name: the label table (y_embedder), the fixed sin-cos
// pos_embed, the block stack (blocks, projectors, final_layer), unpatchify, the inputs' checks.
// A model derives from TransformerBase<itself, T, D> and provides:
//   - config (in_channels, input_size, num_classes, z_dims ...), head, grid, hidden, patch;
//   - visit_params(v, prefix), its parameters with the reference's names (visit_stack for the
//     shared tail), init_params(Philox&) (init_stack for the shared tail), kInitStream;
//   - HostModel (itself on the CPU); and calls bind_params() at the end of its constructor.

#include <algorithm>
#include <string>
#include <utility>
#include <string_view>
#include <vector>

#include "irepa/core/arena.hpp"
#include "irepa/core/host_twin.hpp"
#include "irepa/core/rng.hpp"
#include "irepa/io/params.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/core/concepts.hpp"
#include "irepa/nn/init.hpp"
#include "irepa/ops/embedding.hpp"
#include "irepa/ops/tensor_ops.hpp"

namespace irepa {

namespace detail {
/// A size fixed by the model type (fixed > 0) or taken from the configuration (Dynamic).
inline std::int64_t resolve_size(std::string_view model, const char* what, int fixed, std::int64_t configured) {
  if (fixed > 0) {
    IREPA_CHECK(configured == 0 || configured == fixed, "{}: the configuration asks for {} = {}, the model type fixes {}", model,
                what, configured, fixed);
    return fixed;
  }
  IREPA_CHECK(configured > 0, "{}: {} must be positive for a Dynamic size (got {})", model, what, configured);
  return configured;
}

/// Checks a model's inputs x [B, C, H, H] (the configuration's channels and size), t [B] and
/// labels y [B]; returns B.
template <class Config, class X, class Tt, class Y>
std::int64_t check_model_inputs(std::string_view model, const Config& cfg, const X& x, const Tt& t, const Y& y) {
  IREPA_CHECK(x.rank() == 4 && x.size(1) == cfg.in_channels && x.size(2) == cfg.input_size && x.size(3) == cfg.input_size,
              "{}: input has shape {}, expected [B, {}, {}, {}]", model, x.shape().str(), cfg.in_channels, cfg.input_size,
              cfg.input_size);
  const std::int64_t B = x.size(0);
  check_shape(model, "t", t.shape(), Shape{B});
  check_shape(model, "labels", y.shape(), Shape{B});
  return B;
}

/// Projectors by their own init, or, for a user policy without one, N(0, 0.02) weights and zero
/// vectors.
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

template <class Derived, class T, class D>
class TransformerBase {
 public:
  using scalar_type = T;
  using device_type = D;
  using Context = ContextOf<D>;

  /// The flat parameter arena (values and gradients), in state_dict order.
  const ParamArena<T, D>& params() const { return arena_; }
  std::int64_t num_params() const { return arena_.numel(); }

  /// The reference's initialisation drawn from Philox(seed, Derived::kInitStream), on the host;
  /// a device model draws the same values on its twin and copies them over.
  void init(std::uint64_t seed) {
    update_through_host(self(), /*from_model=*/false, [&](auto& host) {
      Philox rng(seed, Derived::kInitStream);
      host.init_params(rng);
    });
  }

  /// Saves parameters and buffers under prefix + state_dict name.
  void save(io::SafeTensorsWriter& w, std::string_view prefix = {}) const {
    read_through_host(self(), [&](const auto& host) {
      io::add_params(w, host.params(), prefix);
      for (const auto& b : host.buffers()) w.add<T>(std::string(prefix) + b.name, b.view);
    });
  }

  /// Loads parameters and buffers from prefix + state_dict name: every missing, unexpected or
  /// mis-shaped tensor is named in one error, and nothing is changed then. (A device model's
  /// buffers are the fixed tables it builds itself; only its parameters are copied over.)
  void load(const io::SafeTensorsFile& f, std::string_view prefix = {}, io::LoadParamsOptions opt = {}) {
    update_through_host(self(), /*from_model=*/true,
                        [&](auto& host) { io::load_params(f, host.params(), prefix, opt, host.buffers()); });
  }

  /// Parameter values from a host model of the same configuration (a device model's upload).
  template <class Host>
  void copy_params_from(const Host& host) {
    IREPA_CHECK(host.params().numel() == arena_.numel(), "copy_params_from: {} parameter values into a model with {}",
                host.params().numel(), arena_.numel());
    copy_from_host(arena_.values(), ConstView<T>(host.params().values()));
  }
  /// The model on the host, with these parameter values (and, with grads, these gradients).
  auto to_host_model(bool grads = false) const { return host_copy(self(), grads); }
  /// A host model of the same configuration (values not copied: see to_host_model).
  auto host_twin() const { return typename Derived::HostModel(self().config, self().head); }

  std::int64_t out_channels() const { return self().config.in_channels; }
  /// Rows of the label table: num_classes, plus the null class when labels may be dropped.
  std::int64_t label_rows() const { return self().y_embedder.table.shape[0]; }
  std::size_t num_projectors() const { return self().projectors.size(); }
  /// Non-trainable state saved with the parameters (read on a host model).
  std::vector<io::NamedView<T>> buffers() const { return {{"pos_embed", self().pos_embed.view()}}; }

 protected:
  /// Lays out the arena over the derived model's parameters (the last step of its constructor),
  /// and notes where each block's, projector's and the final layer's gradients lie in it.
  void bind_params() {
    arena_ = ParamArena<T, D>(self());
    auto& m = self();
    block_spans_.clear(), projector_spans_.clear();
    for (auto& b : m.blocks) block_spans_.push_back(span_of(b));
    for (auto& p : m.projectors) projector_spans_.push_back(span_of(p));
    final_span_ = span_of(m.final_layer);
  }

  /// Tells `ready` (when set) that block i's / projector j's / the final layer's gradients are done.
  void block_ready(const GradReady& ready, std::size_t i) const { report(ready, block_spans_.at(i)); }
  void projector_ready(const GradReady& ready, std::size_t j) const { report(ready, projector_spans_.at(j)); }
  void final_layer_ready(const GradReady& ready) const { report(ready, final_span_); }

  /// The blocks, projectors and final layer under their reference names.
  template <class V>
  void visit_stack(V& v, std::string_view prefix) {
    auto& m = self();
    for (std::size_t i = 0; i < m.blocks.size(); ++i) m.blocks[i].visit_params(v, join_name(prefix, "blocks." + std::to_string(i)));
    for (std::size_t i = 0; i < m.projectors.size(); ++i)
      m.projectors[i].visit_params(v, join_name(prefix, "projectors." + std::to_string(i)));
    m.final_layer.visit_params(v, join_name(prefix, "final_layer"));
  }
  /// The blocks', projectors' and final layer's initialisation, then the fixed position table.
  void init_stack(Philox& rng) {
    auto& m = self();
    for (auto& b : m.blocks) b.init(rng);
    detail::init_projectors(m.projectors, rng);
    m.final_layer.init(rng);
    reset_pos_embed();
  }
  /// depth, hidden, heads and patch from the model type's fixed sizes or the configuration, the
  /// checks every transformer's configuration must pass, and the token grid.
  template <class Size, int Patch>
  void resolve_sizes(std::string_view model) {
    auto& m = self();
    const auto& cfg = m.config;
    m.depth = detail::resolve_size(model, "depth", Size::depth, cfg.depth);
    m.hidden = detail::resolve_size(model, "hidden_size", Size::hidden, cfg.hidden_size);
    m.heads = detail::resolve_size(model, "num_heads", Size::heads, cfg.num_heads);
    m.patch = detail::resolve_size(model, "patch_size", Patch, cfg.patch_size);
    IREPA_CHECK(cfg.input_size > 0 && cfg.input_size % m.patch == 0, "{}: input size {} is not a positive multiple of patch {}", model,
                cfg.input_size, m.patch);
    IREPA_CHECK(cfg.in_channels > 0 && cfg.num_classes > 0, "{}: in_channels {} and num_classes {} must be positive", model,
                cfg.in_channels, cfg.num_classes);
    IREPA_CHECK(m.hidden % m.heads == 0, "{}: width {} is not divisible by {} heads", model, m.hidden, m.heads);
    IREPA_CHECK(m.hidden % 4 == 0, "{}: width {} must be a multiple of 4 (2-D sin-cos position table)", model, m.hidden);
    IREPA_CHECK(cfg.z_dims.empty() || (cfg.encoder_depth >= 1 && cfg.encoder_depth <= m.depth),
                "{}: encoder_depth {} must be in [1, {}] (the block whose output is aligned)", model, cfg.encoder_depth, m.depth);
    m.grid = TokenGrid{cfg.input_size / m.patch, cfg.input_size / m.patch};
  }
  /// pos_embed [1, T, D] = the fixed 2-D sin-cos table of the token grid.
  void reset_pos_embed() {
    auto& m = self();
    if (m.pos_embed.numel() != m.grid.tokens() * m.hidden) m.pos_embed = Tensor<T, D>(Shape{1, m.grid.tokens(), m.hidden});
    const Tensor<T> table = ops::sincos_2d_table<T>(m.grid.h, m.grid.w, m.hidden);  // [T, D]
    copy_from_host(m.pos_embed.view(), table.cview());
  }
  /// One projector per target encoder width, built for tokens of width hidden.
  template <class Layer>
  static std::vector<Layer> make_projectors(std::string_view model, const auto& cfg, std::int64_t hidden) {
    std::vector<Layer> out;
    out.reserve(cfg.z_dims.size());
    for (std::int64_t z : cfg.z_dims) {
      IREPA_CHECK(z > 0, "{}: target encoder width {} must be positive", model, z);
      out.emplace_back(ProjectorSpec{.in_dim = hidden, .out_dim = z, .hidden_dim = cfg.projector_dim, .kernel_size = cfg.kernel_size});
    }
    return out;
  }
  /// The reference's unpatchify: tokens [B, T, p p C] -> image [B, C, H, W] (inverse: back).
  void unpatchify(const Context& ctx, ConstView<T, D> src, TensorView<T, D> dst, bool inverse) const {
    const auto& m = self();
    ops::unpatchify<T>(ctx, src, dst, m.config.in_channels, m.patch, m.grid, inverse);
  }
  /// Checks x [B, C, H, H], t [B], y [B] against the configuration; returns B.
  std::int64_t check_inputs(std::string_view model, ConstView<T, D> x, ConstView<T, D> t, ConstView<std::int64_t, D> y) const {
    return detail::check_model_inputs(model, self().config, x, t, y);
  }
  /// The cache's own copies of the inputs x and labels y.
  static void copy_inputs(const Context& ctx, ConstView<T, D> x, ConstView<std::int64_t, D> y, Tensor<T, D>& cx,
                          Tensor<std::int64_t, D>& cy) {
    cx = Tensor<T, D>(x.shape());
    ops::copy<T>(ctx, x, cx.view());
    cy = Tensor<std::int64_t, D>(y.shape());
    ops::copy<std::int64_t>(ctx, y, cy.view());
  }

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }
  Derived& self() { return static_cast<Derived&>(*this); }

  using Span = std::pair<std::int64_t, std::int64_t>;  // [first, last) in arena elements
  template <class Module>
  Span span_of(Module& mod) {
    const T* base = arena_.grads().data();
    std::int64_t lo = arena_.numel(), hi = 0;
    mod.visit_params([&](const std::string&, auto& p) {
      const std::int64_t off = p.grad.data() - base;
      lo = std::min(lo, off), hi = std::max(hi, off + p.grad.numel());
    }, std::string_view{});
    return hi > lo ? Span{lo, hi} : Span{0, 0};
  }
  static void report(const GradReady& ready, const Span& s) {
    if (ready && s.second > s.first) ready(s.first, s.second);
  }

  ParamArena<T, D> arena_;
  std::vector<Span> block_spans_, projector_spans_;
  Span final_span_{0, 0};
};


}  // namespace irepa
