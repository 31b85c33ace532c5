#pragma once
// The layers of the frozen target encoders (the ViT families, SAM, SAM2), forward only and in
// inference mode: no caches; each layer writes into buffers its caller owns, so one encoder
// pass allocates its activations once (VitBlock::Workspace).
//  - LayerNorm:    over the last axis, with weight and bias
//  - LayerScale:   the residual add h += gamma * o, or h += o in a model without it
//  - VitAttention: one [3D, D] qkv projection, softmax attention (with the spec's RoPE), proj.
//                  Checkpoints that keep q, k and v apart have them fused at load; DINOv3's
//                  k-bias mask is applied at load; a model without qkv bias gets zeros.
//  - VitMlp:       fc1 -> GELU / QuickGELU / gelu-tanh -> fc2, or SwiGLU from one [2H, D]
//                  input projection (fused at load where a checkpoint splits it, as DINOv3's)
//  - VitBlock:     pre-norm h + ls1 * attn(norm1 h), then h + ls2 * mlp(norm2 h)
// Parameter names are the checkpoints', given by each family's file (models/vit/); these
// layers only hold the tensors. What load prepares (fused weights, the bias as used) is built
// on the host from a host twin's values and copied to the layer's device once.

#include <string_view>

#include "irepa/core/arena.hpp"
#include "irepa/core/context.hpp"
#include "irepa/nn/linear.hpp"
#include "irepa/ops/activation.hpp"
#include "irepa/ops/attention.hpp"
#include "irepa/ops/norm.hpp"
#include "irepa/ops/tensor_ops.hpp"

namespace irepa {

enum class VitActivation { Gelu, QuickGelu, GeluTanh };

namespace detail {

/// The MLP's activation in place, on the context's device.
template <class T, class Ctx, class D = typename Ctx::device_type>
void vit_activate(const Ctx& ctx, TensorView<T, D> m, VitActivation act) {
  if (act == VitActivation::Gelu) ops::gelu_forward<T>(ctx, m, m);
  else if (act == VitActivation::QuickGelu) ops::quick_gelu_forward<T>(ctx, m, m);
  else ops::gelu_tanh_forward<T>(ctx, m, m);  // SigLIP's gelu_pytorch_tanh
}

/// A host tensor's copy on device D (a plain copy on the CPU); set-up only.
template <class T, class D>
Tensor<T, D> device_copy(const Tensor<T>& host) {
  if (host.rank() == 0 && !host.data()) return {};  // never allocated (a part this model has not)
  Tensor<T, D> t(host.shape());
  if (host.numel() > 0) copy_from_host(t.view(), host.cview());
  return t;
}

}  // namespace detail

namespace nn {

template <class T, class D = Cpu>
struct LayerNorm {
  using Context = ContextOf<D>;
  Param<T, D> weight, bias;  // [dim], [dim]
  double eps = 1e-6;

  LayerNorm() = default;
  LayerNorm(std::int64_t dim, double eps_) : weight(Shape{dim}), bias(Shape{dim}), eps(eps_) {}

  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    v(join_name(prefix, "weight"), weight);
    v(join_name(prefix, "bias"), bias);
  }

  /// y [rows, dim] = (x - mean) / sqrt(var + eps) * weight + bias, from x [rows, dim].
  void infer(const Context& ctx, ConstView<T, D> x, TensorView<T, D> y) const {
    Tensor<T, D> rstd(Shape{x.shape().rows()});
    ops::layer_norm_forward<T>(ctx, x, static_cast<T>(eps), y, rstd.view());
    ops::scale_shift_rows<T>(ctx, y, weight.value, bias.value);
  }
};

template <class T, class D = Cpu>
struct LayerScale {
  using Context = ContextOf<D>;
  Param<T, D> gamma;  // [dim]; unbound in a model without LayerScale
  bool enabled = false;

  LayerScale() = default;
  LayerScale(std::int64_t dim, bool on) : gamma(Shape{on ? dim : 0}), enabled(on) {}

  /// The checkpoints name the vector itself ("ls1.gamma", "layer_scale1.lambda1").
  template <class V>
  void visit_params(V&& v, std::string_view name) {
    if (enabled) v(std::string(name), gamma);
  }

  /// h += gamma * o (h += o without LayerScale).
  void add(const Context& ctx, TensorView<T, D> h, ConstView<T, D> o) const {
    ops::add_scaled_rows<T>(ctx, h, enabled ? ConstView<T, D>(gamma.value) : ConstView<T, D>{}, o);
  }
};

struct VitAttentionOptions {
  bool bias = true;       // qkv bias in the checkpoint (DINOv3-7B has none)
  bool separate = false;  // q, k, v apart in the checkpoint (SigLIP, HF Dinov2)
  bool k_mask = false;    // DINOv3: the qkv bias times bias_mask (zero on the k part)
};

template <class T, class D = Cpu>
struct VitAttention {
  using Context = ContextOf<D>;
  Linear<T, D> qkv, proj;  // [3 dim, dim] (+ [3 dim]), [dim, dim] + [dim]
  Linear<T, D> q, k, v;    // the separate projections, each [dim, dim] + [dim]
  Param<T, D> bias_mask;   // [3 dim]
  VitAttentionOptions options;
  // Prepared at load:
  Tensor<T, D> fused_w;  // [3 dim, dim]: q, k, v stacked (separate checkpoints only)
  Tensor<T, D> used_b;   // [3 dim]: the bias as the forward adds it

  VitAttention() = default;
  VitAttention(std::int64_t dim, VitAttentionOptions o)
      : qkv(dim, o.separate ? 0 : 3 * dim, o.bias && !o.separate),
        proj(dim, dim),
        q(dim, o.separate ? dim : 0),
        k(dim, o.separate ? dim : 0),
        v(dim, o.separate ? dim : 0),
        bias_mask(Shape{o.k_mask ? 3 * dim : 0}),
        options(o) {}

  std::int64_t dim() const { return proj.out_features(); }
  ConstView<T, D> weight() const { return options.separate ? fused_w.cview() : ConstView<T, D>(qkv.weight.value); }

  /// From a host twin's loaded values (this layer itself on the CPU).
  void prepare(const VitAttention<T, Cpu>& host) {
    const std::int64_t Dm = dim();
    Tensor<T> b(Shape{3 * Dm});
    b.fill(T(0));
    if (options.separate) {
      Tensor<T> w(Shape{3 * Dm, Dm});
      int j = 0;
      for (const auto* l : {&host.q, &host.k, &host.v}) {
        std::copy_n(l->weight.value.data(), Dm * Dm, w.data() + j * Dm * Dm);
        std::copy_n(l->bias.value.data(), Dm, b.data() + j * Dm);
        ++j;
      }
      fused_w = irepa::detail::device_copy<T, D>(w);
    } else if (options.bias) {
      for (std::int64_t i = 0; i < 3 * Dm; ++i)
        b[i] = host.qkv.bias.value.data()[i] * (options.k_mask ? host.bias_mask.value.data()[i] : T(1));
    }
    used_b = irepa::detail::device_copy<T, D>(b);
  }

  /// out [B, T, dim] = proj(attention(x)); qkv_buf [B, T, 3 dim] and a [B, T, dim] are scratch.
  void infer(const Context& ctx, ConstView<T, D> x, const ops::AttentionSpec<T, D>& spec, TensorView<T, D> qkv_buf,
             TensorView<T, D> a, TensorView<T, D> out) const {
    ops::linear_forward<T>(ctx, x, weight(), used_b.cview(), qkv_buf);
    ops::attention_forward<T>(ctx, qkv_buf, spec, a);
    ops::linear_forward<T>(ctx, a, proj.weight.value, proj.bias.value, out);
  }
};

struct VitMlpOptions {
  VitActivation activation = VitActivation::Gelu;
  bool swiglu = false;  // SwiGLU: fc1 gives both halves [2H, D]
  bool split = false;   // SwiGLU with the halves apart in the checkpoint (fc1 = w1, gate = w2)
};

template <class T, class D = Cpu>
struct VitMlp {
  using Context = ContextOf<D>;
  Linear<T, D> fc1, fc2;  // [H1, dim] + [H1] (H1 = 2H with SwiGLU, else H), [dim, H] + [dim]
  Linear<T, D> gate;      // the split SwiGLU's second input projection [H, dim] + [H]
  VitMlpOptions options;
  // Prepared at load (split SwiGLU only): [fc1; gate] as one [2H, dim], [2H].
  Tensor<T, D> fused_w, fused_b;

  VitMlp() = default;
  VitMlp(std::int64_t dim, std::int64_t hidden, VitMlpOptions o)
      : fc1(dim, o.swiglu && !o.split ? 2 * hidden : hidden),
        fc2(hidden, dim),
        gate(dim, o.split ? hidden : 0),
        options(o) {}

  std::int64_t hidden() const { return fc2.in_features(); }
  std::int64_t first_width() const { return options.swiglu ? 2 * hidden() : hidden(); }
  ConstView<T, D> first_weight() const { return options.split ? fused_w.cview() : ConstView<T, D>(fc1.weight.value); }
  ConstView<T, D> first_bias() const { return options.split ? fused_b.cview() : ConstView<T, D>(fc1.bias.value); }

  void prepare(const VitMlp<T, Cpu>& host) {
    if (!options.split) return;
    const std::int64_t H = hidden(), Dm = fc1.in_features();
    Tensor<T> w(Shape{2 * H, Dm}), b(Shape{2 * H});
    std::copy_n(host.fc1.weight.value.data(), H * Dm, w.data());
    std::copy_n(host.gate.weight.value.data(), H * Dm, w.data() + H * Dm);
    std::copy_n(host.fc1.bias.value.data(), H, b.data());
    std::copy_n(host.gate.bias.value.data(), H, b.data() + H);
    fused_w = irepa::detail::device_copy<T, D>(w), fused_b = irepa::detail::device_copy<T, D>(b);
  }

  /// out [rows, dim] = fc2(act(fc1 x)); m1 [rows, first_width()] and m2 [rows, H] (SwiGLU) are scratch.
  void infer(const Context& ctx, ConstView<T, D> x, TensorView<T, D> m1, TensorView<T, D> m2, TensorView<T, D> out) const {
    ops::linear_forward<T>(ctx, x, first_weight(), first_bias(), m1);
    if (options.swiglu) ops::swiglu_forward<T>(ctx, m1, m2);
    else irepa::detail::vit_activate<T>(ctx, m1, options.activation);
    ops::linear_forward<T>(ctx, options.swiglu ? ConstView<T, D>(m2) : ConstView<T, D>(m1), fc2.weight.value, fc2.bias.value, out);
  }
};

struct VitBlockOptions {
  std::int64_t dim = 768, hidden = 3072;
  double norm_eps = 1e-6;
  bool layerscale = true;
  VitAttentionOptions attention;
  VitMlpOptions mlp;
};

template <class T, class D = Cpu>
struct VitBlock {
  using Context = ContextOf<D>;
  LayerNorm<T, D> norm1, norm2;
  VitAttention<T, D> attn;
  VitMlp<T, D> mlp;
  LayerScale<T, D> ls1, ls2;

  /// One pass's activations for [B, T] tokens, allocated once and reused by every block.
  struct Workspace {
    Tensor<T, D> n, qkv, a, o, m1, m2;
    Workspace(std::int64_t B, std::int64_t T1, const VitBlock& b)
        : n(Shape{B, T1, b.attn.dim()}),
          qkv(Shape{B, T1, 3 * b.attn.dim()}),
          a(Shape{B, T1, b.attn.dim()}),
          o(Shape{B, T1, b.attn.dim()}),
          m1(Shape{B, T1, b.mlp.first_width()}),
          m2(b.mlp.options.swiglu ? Tensor<T, D>(Shape{B, T1, b.mlp.hidden()}) : Tensor<T, D>()) {}
  };

  VitBlock() = default;
  explicit VitBlock(const VitBlockOptions& o)
      : norm1(o.dim, o.norm_eps),
        norm2(o.dim, o.norm_eps),
        attn(o.dim, o.attention),
        mlp(o.dim, o.hidden, o.mlp),
        ls1(o.dim, o.layerscale),
        ls2(o.dim, o.layerscale) {}

  void prepare(const VitBlock<T, Cpu>& host) {
    attn.prepare(host.attn);
    mlp.prepare(host.mlp);
  }

  /// h [B, T, dim] in place.
  void infer(const Context& ctx, TensorView<T, D> h, const ops::AttentionSpec<T, D>& spec, Workspace& w) const {
    norm1.infer(ctx, h, w.n.view());
    attn.infer(ctx, w.n, spec, w.qkv.view(), w.a.view(), w.o.view());
    ls1.add(ctx, h, w.o);
    norm2.infer(ctx, h, w.n.view());
    mlp.infer(ctx, w.n, w.m1.view(), w.m2.view(), w.o.view());
    ls2.add(ctx, h, w.o);
  }
};

}  // namespace nn
}  // namespace irepa
