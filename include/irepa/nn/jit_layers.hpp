#pragma once
// The pieces of JiT (pixel-space transformer, REFERENCE.md section 5) that SiT does not have,
// with the reference's parameter names:
//  - BottleneckPatchEmbed: "proj1" (p x p conv, stride p, no bias, 3 -> bottleneck) and "proj2"
//    (1x1 conv with bias, bottleneck -> D)
//  - JiTBlock: RMSNorm "norm1" / "norm2" (weights, eps 1e-6), "attn.qkv", per-head RMSNorm
//    "attn.q_norm" / "attn.k_norm", 2-D RoPE (tables given per call), "attn.proj", SwiGLU
//    "mlp.w12" / "mlp.w3", adaLN-Zero "adaLN_modulation.1" as SiT's block
//  - JiTFinalLayer: RMSNorm "norm_final", adaLN "adaLN_modulation.1", "linear"
// Conditioned on s = SiLU(c) [B, D] like the SiT pieces; backward ADDs d(loss)/ds.

#include <string_view>

#include "irepa/nn/adaln.hpp"
#include "irepa/ops/conv.hpp"

namespace irepa::nn {

template <class T, class D = Cpu>
struct BottleneckPatchEmbed {
  using scalar_type = T;
  using device_type = D;
  using Context = ContextOf<D>;

  Param<T, D> proj1;                  // [bn, C, p, p]
  Param<T, D> proj2_w, proj2_b;       // [D, bn, 1, 1], [D]

  BottleneckPatchEmbed() = default;
  BottleneckPatchEmbed(std::int64_t in_channels, std::int64_t bottleneck, std::int64_t dim, std::int64_t patch)
      : proj1(Shape{bottleneck, in_channels, patch, patch}), proj2_w(Shape{dim, bottleneck, 1, 1}), proj2_b(Shape{dim}) {}

  std::int64_t bottleneck() const { return proj1.shape[0]; }
  std::int64_t dim() const { return proj2_w.shape[0]; }

  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    v(join_name(prefix, "proj1.weight"), proj1);
    v(join_name(prefix, "proj2.weight"), proj2_w);
    v(join_name(prefix, "proj2.bias"), proj2_b);
  }

  /// The reference initialises both convs as Linears (xavier on [out, in k k]), zero bias.
  void init(Philox& rng) {
    xavier_uniform(rng, proj1.value);
    xavier_uniform(rng, proj2_w.value);
    zeros(proj2_b.value);
  }

  struct Cache {
    ConstView<T, D> x;  // [B, C, H, W] (viewed)
    Tensor<T, D> u;     // [B, N, bn] after proj1
  };

  /// x [B, C, H, W] -> y [B, N, D] (assigned), tokens row-major.
  Cache forward(const Context& ctx, ConstView<T, D> x, TensorView<T, D> y) const {
    Cache c{x, Tensor<T, D>(Shape{y.size(0), y.size(1), bottleneck()})};
    ops::patchify_forward<T>(ctx, x, proj1.value, ConstView<T, D>{}, c.u.view());
    ops::linear_forward<T>(ctx, c.u, w2(), proj2_b.value, y);
    return c;
  }
  /// Parameter gradients accumulated (no image gradient: the models never need it).
  void backward(const Context& ctx, const Cache& c, ConstView<T, D> dy) const {
    Tensor<T, D> du(c.u.shape());
    ops::linear_backward<T>(ctx, c.u, w2(), dy, du.view(), proj2_w.grad.reshape(Shape{dim(), bottleneck()}), proj2_b.grad);
    ops::patchify_backward<T>(ctx, c.x, proj1.value, du, TensorView<T, D>{}, proj1.grad, TensorView<T, D>{});
  }

 private:
  ConstView<T, D> w2() const { return proj2_w.value.reshape(Shape{dim(), bottleneck()}); }
};

template <class T, class D = Cpu>
struct JiTBlock {
  using scalar_type = T;
  using device_type = D;
  using Context = ContextOf<D>;

  Param<T, D> norm1, norm2, q_norm, k_norm;  // RMSNorm weights [D], [D], [hd], [hd]
  Linear<T, D> qkv, proj, w12, w3, adaLN;
  std::int64_t num_heads = 1;
  static constexpr double eps = 1e-6;

  JiTBlock() = default;
  /// SwiGLU hidden width int(int(D mlp_ratio) * 2 / 3), as the reference.
  JiTBlock(std::int64_t dim, std::int64_t heads, double mlp_ratio = 4.0)
      : norm1(Shape{dim}), norm2(Shape{dim}), q_norm(Shape{dim / heads}), k_norm(Shape{dim / heads}), qkv(dim, 3 * dim),
        proj(dim, dim), w12(dim, 2 * hidden_width(dim, mlp_ratio)), w3(hidden_width(dim, mlp_ratio), dim),
        adaLN(dim, 6 * dim), num_heads(heads) {
    IREPA_CHECK(heads > 0 && dim % heads == 0, "JiTBlock: width {} is not divisible by {} heads", dim, heads);
  }
  static std::int64_t hidden_width(std::int64_t dim, double mlp_ratio) {
    return static_cast<std::int64_t>(static_cast<double>(static_cast<std::int64_t>(static_cast<double>(dim) * mlp_ratio)) * 2.0 / 3.0);
  }

  std::int64_t dim() const { return proj.out_features(); }

  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    v(join_name(prefix, "norm1.weight"), norm1);
    v(join_name(prefix, "attn.q_norm.weight"), q_norm);
    v(join_name(prefix, "attn.k_norm.weight"), k_norm);
    qkv.visit_params(v, join_name(prefix, "attn.qkv"));
    proj.visit_params(v, join_name(prefix, "attn.proj"));
    v(join_name(prefix, "norm2.weight"), norm2);
    w12.visit_params(v, join_name(prefix, "mlp.w12"));
    w3.visit_params(v, join_name(prefix, "mlp.w3"));
    adaLN.visit_params(v, join_name(prefix, "adaLN_modulation.1"));
  }

  /// Xavier Linears with zero biases, unit norm weights, adaLN-Zero.
  void init(Philox& rng) {
    for (auto* p : {&norm1, &norm2, &q_norm, &k_norm}) p->value.fill(T(1));
    for (auto* l : {&qkv, &proj, &w12, &w3}) l->init_xavier(rng);
    zeros(adaLN.weight.value);
    zeros(adaLN.bias.value);
  }

  /// Tokens [B, T, D] with RoPE tables cos, sin [T, hd/2] (viewed: keep them alive until backward).
  ops::AttentionSpec<T, D> attention_spec(ConstView<T, D> cos, ConstView<T, D> sin) const {
    ops::AttentionSpec<T, D> s;
    s.heads = num_heads;
    s.q_norm_weight = q_norm.value, s.k_norm_weight = k_norm.value, s.norm_eps = T(eps);
    s.rope_cos = cos, s.rope_sin = sin, s.rope_mode = ops::RopeMode::Interleaved;
    return s;
  }

  struct Cache {
    ConstView<T, D> x, cos, sin;                  // [B, T, D] block input; RoPE tables [T, hd/2]
    typename Linear<T, D>::Cache mod;             // [B, 6D]
    Tensor<T, D> chunks;                          // [6, B, D]
    Tensor<T, D> xn1, r1, h1;                     // [B, T, D], [B T], [B, T, D]
    typename Linear<T, D>::Cache qkv;             // [B, T, 3D]
    ops::AttentionCache<T, D> attn;
    Tensor<T, D> a;                               // [B, T, D]
    typename Linear<T, D>::Cache o;
    Tensor<T, D> x1;                              // after the attention residual
    Tensor<T, D> xn2, r2, h2;
    typename Linear<T, D>::Cache u;               // [B, T, 2h]
    Tensor<T, D> g;                               // [B, T, h] silu(u1) * u2
    typename Linear<T, D>::Cache m;               // [B, T, D]
    Tensor<T, D> out;
    ConstView<T, D> output() const { return out.cview(); }
    ConstView<T, D> chunk(int j) const { return chunks.cview().select(0, j); }
  };

  Cache forward(const Context& ctx, ConstView<T, D> x, ConstView<T, D> s, ConstView<T, D> cos, ConstView<T, D> sin) const {
    IREPA_CHECK(x.rank() == 3 && x.size(2) == dim(), "JiTBlock: input has shape {}, expected [B, T, {}]", x.shape().str(),
                dim());
    const Shape bt{x.size(0) * x.size(1)};
    Cache c;
    c.x = x, c.cos = cos, c.sin = sin;
    c.mod = adaLN.forward(ctx, s);
    c.chunks = detail::split_chunks<T>(ctx, c.mod.y, 6);
    c.xn1 = Tensor<T, D>(x.shape()), c.r1 = Tensor<T, D>(bt), c.h1 = Tensor<T, D>(x.shape());
    ops::rms_norm_forward<T>(ctx, x, norm1.value, T(eps), c.xn1.view(), c.r1.view());
    ops::modulate_forward<T>(ctx, c.xn1, c.chunk(0), c.chunk(1), c.h1.view());
    c.qkv = qkv.forward(ctx, c.h1);
    c.a = Tensor<T, D>(x.shape());
    c.attn = ops::attention_forward<T>(ctx, c.qkv.y, attention_spec(cos, sin), c.a.view());
    c.o = proj.forward(ctx, c.a);
    c.x1 = Tensor<T, D>(x.shape());
    ops::gated_residual_forward<T>(ctx, x, c.chunk(2), c.o.y, c.x1.view());

    c.xn2 = Tensor<T, D>(x.shape()), c.r2 = Tensor<T, D>(bt), c.h2 = Tensor<T, D>(x.shape());
    ops::rms_norm_forward<T>(ctx, c.x1, norm2.value, T(eps), c.xn2.view(), c.r2.view());
    ops::modulate_forward<T>(ctx, c.xn2, c.chunk(3), c.chunk(4), c.h2.view());
    c.u = w12.forward(ctx, c.h2);
    Shape gs = c.u.y.shape();
    gs[-1] /= 2;
    c.g = Tensor<T, D>(gs);
    ops::swiglu_forward<T>(ctx, c.u.y, c.g.view());
    c.m = w3.forward(ctx, c.g);
    c.out = Tensor<T, D>(x.shape());
    ops::gated_residual_forward<T>(ctx, c.x1, c.chunk(5), c.m.y, c.out.view());
    return c;
  }

  /// dout [B, T, D] -> dx (assigned); ds [B, D] accumulated; parameter grads accumulated.
  void backward(const Context& ctx, const Cache& c, ConstView<T, D> dout, TensorView<T, D> dx, TensorView<T, D> ds) const {
    const Shape& xs = c.x.shape();
    const std::int64_t B = xs[0], W = xs[2];
    Tensor<T, D> dchunks(Shape{6, B, W});
    auto dchunk = [&](int j) { return dchunks.view().select(0, j); };

    Tensor<T, D> dm(xs), dg(c.g.shape()), du(c.u.y.shape()), dh(xs), dxn(xs), dx1(xs);
    ops::gated_residual_backward<T>(ctx, c.chunk(5), c.m.y, dout, dm.view(), dchunk(5));
    w3.backward(ctx, c.m, dm, dg.view());
    ops::swiglu_backward<T>(ctx, c.u.y, dg, du.view());
    w12.backward(ctx, c.u, du, dh.view());
    ops::modulate_backward<T>(ctx, c.xn2, c.chunk(4), dh, dxn.view(), dchunk(3), dchunk(4));
    ops::rms_norm_backward<T>(ctx, c.x1, norm2.value, c.r2, dxn, dx1.view(), norm2.grad);
    detail::add_into<T>(ctx, dx1.view(), dout);

    Tensor<T, D> d_o(xs), da(xs), dqkv(c.qkv.y.shape());
    ops::gated_residual_backward<T>(ctx, c.chunk(2), c.o.y, dx1, d_o.view(), dchunk(2));
    proj.backward(ctx, c.o, d_o, da.view());
    ops::attention_backward<T>(ctx, attention_spec(c.cos, c.sin), c.attn, da, dqkv.view(), q_norm.grad, k_norm.grad);
    qkv.backward(ctx, c.qkv, dqkv, dh.view());
    ops::modulate_backward<T>(ctx, c.xn1, c.chunk(1), dh, dxn.view(), dchunk(0), dchunk(1));
    ops::rms_norm_backward<T>(ctx, c.x, norm1.value, c.r1, dxn, dx, norm1.grad);
    detail::add_into<T>(ctx, dx, dx1);

    detail::modulation_backward<T, D>(ctx, adaLN, c.mod, dchunks, ds);
  }
};

template <class T, class D = Cpu>
struct JiTFinalLayer {
  using scalar_type = T;
  using device_type = D;
  using Context = ContextOf<D>;

  Param<T, D> norm_final;  // [D]
  Linear<T, D> linear, adaLN;
  static constexpr double eps = 1e-6;

  JiTFinalLayer() = default;
  JiTFinalLayer(std::int64_t dim, std::int64_t patch, std::int64_t out_channels)
      : norm_final(Shape{dim}), linear(dim, patch * patch * out_channels), adaLN(dim, 2 * dim) {}

  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    v(join_name(prefix, "norm_final.weight"), norm_final);
    linear.visit_params(v, join_name(prefix, "linear"));
    adaLN.visit_params(v, join_name(prefix, "adaLN_modulation.1"));
  }

  void init(Philox&) {
    norm_final.value.fill(T(1));
    for (auto* l : {&linear, &adaLN}) zeros(l->weight.value), zeros(l->bias.value);
  }

  struct Cache {
    ConstView<T, D> x;                 // [B, T, D] (viewed)
    typename Linear<T, D>::Cache mod;  // [B, 2D]
    Tensor<T, D> chunks;               // [2, B, D]: shift, scale
    Tensor<T, D> xn, r, h;
    typename Linear<T, D>::Cache y;    // [B, T, p p C]
    ConstView<T, D> output() const { return y.output(); }
  };

  Cache forward(const Context& ctx, ConstView<T, D> x, ConstView<T, D> s) const {
    Cache c;
    c.x = x;
    c.mod = adaLN.forward(ctx, s);
    c.chunks = detail::split_chunks<T>(ctx, c.mod.y, 2);
    c.xn = Tensor<T, D>(x.shape()), c.r = Tensor<T, D>(Shape{x.size(0) * x.size(1)}), c.h = Tensor<T, D>(x.shape());
    ops::rms_norm_forward<T>(ctx, x, norm_final.value, T(eps), c.xn.view(), c.r.view());
    ops::modulate_forward<T>(ctx, c.xn, c.chunks.cview().select(0, 0), c.chunks.cview().select(0, 1), c.h.view());
    c.y = linear.forward(ctx, c.h);
    return c;
  }

  void backward(const Context& ctx, const Cache& c, ConstView<T, D> dy, TensorView<T, D> dx, TensorView<T, D> ds) const {
    const Shape& xs = c.xn.shape();
    Tensor<T, D> dh(xs), dxn(xs), dchunks(Shape{2, xs[0], xs[2]});
    linear.backward(ctx, c.y, dy, dh.view());
    ops::modulate_backward<T>(ctx, c.xn, c.chunks.cview().select(0, 1), dh, dxn.view(), dchunks.view().select(0, 0),
                              dchunks.view().select(0, 1));
    ops::rms_norm_backward<T>(ctx, c.x, norm_final.value, c.r, dxn, dx, norm_final.grad);
    detail::modulation_backward<T, D>(ctx, adaLN, c.mod, dchunks, ds);
  }
};

}  // namespace irepa::nn
