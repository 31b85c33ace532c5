#pragma once
// adaLN-Zero transformer pieces of SiT / DiT, with the reference's parameter names:
//  - SiTBlock:   "attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "adaLN_modulation.1"
//  - FinalLayer: "linear", "adaLN_modulation.1"
// Both are conditioned on s = SiLU(c) [B, D], which the model computes once for all blocks;
// their backward passes ADD d(loss)/ds into a shared buffer.

#include <string_view>

#include "irepa/core/arena.hpp"
#include "irepa/nn/linear.hpp"
#include "irepa/ops/activation.hpp"
#include "irepa/ops/attention.hpp"
#include "irepa/ops/modulate.hpp"
#include "irepa/ops/norm.hpp"
#include "irepa/ops/tensor_ops.hpp"

namespace irepa::nn {

namespace detail {
/// [B, k D] -> [k, B, D]: adaLN's chunk(k, dim=-1), each chunk made contiguous.
template <class T, class Ctx>
Tensor<T, typename Ctx::device_type> split_chunks(const Ctx& ctx, In<T, typename Ctx::device_type> m, std::int64_t k) {
  Tensor<T, typename Ctx::device_type> out(Shape{k, m.size(0), m.size(1) / k});
  ops::split_chunks<T>(ctx, m, out.view());
  return out;
}
/// [k, B, D] -> [B, k D], the inverse of split_chunks.
template <class T, class Ctx>
Tensor<T, typename Ctx::device_type> merge_chunks(const Ctx& ctx, In<T, typename Ctx::device_type> c) {
  Tensor<T, typename Ctx::device_type> out(Shape{c.size(1), c.size(0) * c.size(2)});
  ops::merge_chunks<T>(ctx, c, out.view());
  return out;
}
/// acc += x, elementwise (same shapes).
template <class T, class Ctx>
void add_into(const Ctx& ctx, TensorView<T, typename Ctx::device_type> acc, In<T, typename Ctx::device_type> x) {
  ops::add_into<T>(ctx, acc, x);
}
/// The tail of every adaLN block's backward: the chunks' gradients [k, B, D] back through the
/// modulation Linear (its parameter gradients accumulate), d(loss)/ds added into ds [B, D].
template <class T, class D, class Ctx>
void modulation_backward(const Ctx& ctx, const Linear<T, D>& adaLN, const typename Linear<T, D>::Cache& mod, In<T, D> dchunks,
                         TensorView<T, D> ds) {
  Tensor<T, D> dmod = merge_chunks<T>(ctx, dchunks);
  Tensor<T, D> dsi(ds.shape());
  adaLN.backward(ctx, mod, dmod, dsi.view());
  add_into<T>(ctx, ds, dsi);
}
}  // namespace detail

template <class T, class D = Cpu>
struct SiTBlock {
  using scalar_type = T;
  using device_type = D;
  using Context = ContextOf<D>;

  Linear<T, D> qkv, proj, fc1, fc2, adaLN;
  std::int64_t num_heads = 1;
  static constexpr double ln_eps = 1e-6;

  SiTBlock() = default;
  SiTBlock(std::int64_t dim, std::int64_t heads, double mlp_ratio = 4.0)
      : qkv(dim, 3 * dim), proj(dim, dim), fc1(dim, static_cast<std::int64_t>(static_cast<double>(dim) * mlp_ratio)),
        fc2(static_cast<std::int64_t>(static_cast<double>(dim) * mlp_ratio), dim), adaLN(dim, 6 * dim), num_heads(heads) {
    IREPA_CHECK(heads > 0 && dim % heads == 0, "SiTBlock: width {} is not divisible by {} heads", dim, heads);
  }

  std::int64_t dim() const { return proj.out_features(); }

  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    qkv.visit_params(v, join_name(prefix, "attn.qkv"));
    proj.visit_params(v, join_name(prefix, "attn.proj"));
    fc1.visit_params(v, join_name(prefix, "mlp.fc1"));
    fc2.visit_params(v, join_name(prefix, "mlp.fc2"));
    adaLN.visit_params(v, join_name(prefix, "adaLN_modulation.1"));
  }

  /// Xavier for every Linear, zero biases, and adaLN-Zero: the modulation layer starts at zero.
  void init(Philox& rng) {
    qkv.init_xavier(rng);
    proj.init_xavier(rng);
    fc1.init_xavier(rng);
    fc2.init_xavier(rng);
    zeros(adaLN.weight.value);
    zeros(adaLN.bias.value);
  }

  ops::AttentionSpec<T, D> attention_spec() const {
    ops::AttentionSpec<T, D> s;
    s.heads = num_heads;
    return s;
  }

  /// Activations of one block; the block's input is viewed (it is the previous block's output).
  struct Cache {
    ConstView<T, D> x;                         // [B, T, D] block input
    typename Linear<T, D>::Cache mod;          // [B, 6D]
    Tensor<T, D> chunks;                       // [6, B, D]: shift1, scale1, gate1, shift2, scale2, gate2
    Tensor<T, D> xn1, rstd1, h1;               // [B, T, D], [B T], [B, T, D]
    typename Linear<T, D>::Cache qkv;          // [B, T, 3D]
    ops::AttentionCache<T, D> attn;
    Tensor<T, D> a;                            // [B, T, D] attention output (pre-projection)
    typename Linear<T, D>::Cache o;            // [B, T, D]
    Tensor<T, D> x1;                           // [B, T, D] after the attention residual
    Tensor<T, D> xn2, rstd2, h2;
    typename Linear<T, D>::Cache u;            // [B, T, 4D]
    Tensor<T, D> g;                            // [B, T, 4D] GELU(u)
    typename Linear<T, D>::Cache m;            // [B, T, D]
    Tensor<T, D> out;                          // [B, T, D]
    ConstView<T, D> output() const { return out.cview(); }
    ConstView<T, D> chunk(int j) const { return chunks.cview().select(0, j); }
  };

  /// x [B, T, D], s = SiLU(c) [B, D] (viewed: keep both alive until backward).
  Cache forward(const Context& ctx, ConstView<T, D> x, ConstView<T, D> s) const {
    IREPA_CHECK(x.rank() == 3 && x.size(2) == dim(), "SiTBlock: input has shape {}, expected [B, T, {}]", x.shape().str(),
                dim());
    const Shape bt{x.size(0) * x.size(1)};  // one rstd per token
    Cache c;
    c.x = x;
    c.mod = adaLN.forward(ctx, s);
    c.chunks = detail::split_chunks<T>(ctx, c.mod.y, 6);
    c.xn1 = Tensor<T, D>(x.shape());
    c.rstd1 = Tensor<T, D>(bt);
    c.h1 = Tensor<T, D>(x.shape());
    ops::adaln_norm_forward<T>(ctx, x, T(ln_eps), c.chunk(0), c.chunk(1), c.xn1.view(), c.rstd1.view(), c.h1.view());
    c.qkv = qkv.forward(ctx, c.h1);
    c.a = Tensor<T, D>(x.shape());
    c.attn = ops::attention_forward<T>(ctx, c.qkv.y, attention_spec(), c.a.view());
    c.o = proj.forward(ctx, c.a);
    c.x1 = Tensor<T, D>(x.shape());
    ops::gated_residual_forward<T>(ctx, x, c.chunk(2), c.o.y, c.x1.view());

    c.xn2 = Tensor<T, D>(x.shape());
    c.rstd2 = Tensor<T, D>(bt);
    c.h2 = Tensor<T, D>(x.shape());
    ops::adaln_norm_forward<T>(ctx, c.x1, T(ln_eps), c.chunk(3), c.chunk(4), c.xn2.view(), c.rstd2.view(), c.h2.view());
    c.u = fc1.forward(ctx, c.h2);
    c.g = Tensor<T, D>(c.u.y.shape());
    ops::gelu_tanh_forward<T>(ctx, c.u.y, c.g.view());
    c.m = fc2.forward(ctx, c.g);
    c.out = Tensor<T, D>(x.shape());
    ops::gated_residual_forward<T>(ctx, c.x1, c.chunk(5), c.m.y, c.out.view());
    return c;
  }

  /// dout [B, T, D] -> dx [B, T, D] (assigned); ds [B, D] accumulated; parameter grads accumulated.
  void backward(const Context& ctx, const Cache& c, ConstView<T, D> dout, TensorView<T, D> dx, TensorView<T, D> ds) const {
    const Shape& xs = c.x.shape();
    Tensor<T, D> dchunks(Shape{6, xs[0], xs[2]});
    auto dchunk = [&](int j) { return dchunks.view().select(0, j); };

    // out = x1 + gate2 * m
    Tensor<T, D> dm(xs), dg(c.g.shape()), du(c.g.shape()), dh(xs), dx1(xs);
    ops::gated_residual_backward<T>(ctx, c.chunk(5), c.m.y, dout, dm.view(), dchunk(5));
    fc2.backward(ctx, c.m, dm, dg.view());
    ops::gelu_tanh_backward<T>(ctx, c.u.y, dg, du.view());
    fc1.backward(ctx, c.u, du, dh.view());
    ops::adaln_norm_backward<T>(ctx, c.xn2, c.rstd2, c.chunk(4), dh, dout, dx1.view(), dchunk(3), dchunk(4));  // + dout: the residual

    // x1 = x + gate1 * o
    Tensor<T, D> d_o(xs), da(xs), dqkv(c.qkv.y.shape());
    ops::gated_residual_backward<T>(ctx, c.chunk(2), c.o.y, dx1, d_o.view(), dchunk(2));
    proj.backward(ctx, c.o, d_o, da.view());
    ops::attention_backward<T>(ctx, attention_spec(), c.attn, da, dqkv.view());
    qkv.backward(ctx, c.qkv, dqkv, dh.view());
    ops::adaln_norm_backward<T>(ctx, c.xn1, c.rstd1, c.chunk(1), dh, dx1, dx, dchunk(0), dchunk(1));

    detail::modulation_backward<T, D>(ctx, adaLN, c.mod, dchunks, ds);
  }
};

template <class T, class D = Cpu>
struct FinalLayer {
  using scalar_type = T;
  using device_type = D;
  using Context = ContextOf<D>;

  Linear<T, D> linear, adaLN;
  static constexpr double ln_eps = 1e-6;

  FinalLayer() = default;
  FinalLayer(std::int64_t dim, std::int64_t patch, std::int64_t out_channels)
      : linear(dim, patch * patch * out_channels), adaLN(dim, 2 * dim) {}

  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    linear.visit_params(v, join_name(prefix, "linear"));
    adaLN.visit_params(v, join_name(prefix, "adaLN_modulation.1"));
  }

  /// adaLN-Zero: both the modulation and the output projection start at zero.
  void init(Philox&) {
    zeros(linear.weight.value);
    zeros(linear.bias.value);
    zeros(adaLN.weight.value);
    zeros(adaLN.bias.value);
  }

  struct Cache {
    typename Linear<T, D>::Cache mod;  // [B, 2D]
    Tensor<T, D> chunks;               // [2, B, D]: shift, scale
    Tensor<T, D> xn, rstd, h;          // [B, T, D], [B T], [B, T, D]
    typename Linear<T, D>::Cache y;    // [B, T, p p C]
    ConstView<T, D> output() const { return y.output(); }
  };

  Cache forward(const Context& ctx, ConstView<T, D> x, ConstView<T, D> s) const {
    Cache c;
    c.mod = adaLN.forward(ctx, s);
    c.chunks = detail::split_chunks<T>(ctx, c.mod.y, 2);
    c.xn = Tensor<T, D>(x.shape());
    c.rstd = Tensor<T, D>(Shape{x.size(0) * x.size(1)});
    c.h = Tensor<T, D>(x.shape());
    ops::adaln_norm_forward<T>(ctx, x, T(ln_eps), c.chunks.cview().select(0, 0), c.chunks.cview().select(0, 1), c.xn.view(),
                               c.rstd.view(), c.h.view());
    c.y = linear.forward(ctx, c.h);
    return c;
  }

  /// dx assigned; ds accumulated; parameter grads accumulated.
  void backward(const Context& ctx, const Cache& c, ConstView<T, D> dy, TensorView<T, D> dx, TensorView<T, D> ds) const {
    const Shape& xs = c.xn.shape();
    Tensor<T, D> dh(xs), dchunks(Shape{2, xs[0], xs[2]});
    linear.backward(ctx, c.y, dy, dh.view());
    ops::adaln_norm_backward<T>(ctx, c.xn, c.rstd, c.chunks.cview().select(0, 1), dh, {}, dx, dchunks.view().select(0, 0),
                                dchunks.view().select(0, 1));
    detail::modulation_backward<T, D>(ctx, adaLN, c.mod, dchunks, ds);
  }
};

}  // namespace irepa::nn
