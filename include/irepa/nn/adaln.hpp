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

namespace irepa::nn {

namespace detail {
/// [B, k D] -> [k, B, D]: adaLN's chunk(k, dim=-1), each chunk made contiguous.
template <class T>
Tensor<T> split_chunks(ConstView<T> m, std::int64_t k) {
  const std::int64_t B = m.size(0), D = m.size(1) / k;
  Tensor<T> out(Shape{k, B, D});
  for (std::int64_t j = 0; j < k; ++j)
    for (std::int64_t b = 0; b < B; ++b) std::copy_n(m.data() + b * k * D + j * D, D, out.data() + (j * B + b) * D);
  return out;
}
/// [k, B, D] -> [B, k D], the inverse of split_chunks.
template <class T>
Tensor<T> merge_chunks(ConstView<T> c) {
  const std::int64_t k = c.size(0), B = c.size(1), D = c.size(2);
  Tensor<T> out(Shape{B, k * D});
  for (std::int64_t j = 0; j < k; ++j)
    for (std::int64_t b = 0; b < B; ++b) std::copy_n(c.data() + (j * B + b) * D, D, out.data() + b * k * D + j * D);
  return out;
}
/// acc += x, elementwise (same shapes).
template <class T>
void add_into(const CpuContext& ctx, TensorView<T> acc, ConstView<T> x) {
  check_shape("add_into", "addend", x.shape(), acc.shape());
  acc.flat().device(ctx.device()) += x.flat();
}
}  // namespace detail

template <class T>
struct SiTBlock {
  using scalar_type = T;
  using device_type = Cpu;

  Linear<T> qkv, proj, fc1, fc2, adaLN;
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

  ops::AttentionSpec<T> attention_spec() const {
    ops::AttentionSpec<T> s;
    s.heads = num_heads;
    return s;
  }

  /// Activations of one block; the block's input is viewed (it is the previous block's output).
  struct Cache {
    ConstView<T> x;                            // [B, T, D] block input
    typename Linear<T>::Cache mod;             // [B, 6D]
    Tensor<T> chunks;                          // [6, B, D]: shift1, scale1, gate1, shift2, scale2, gate2
    Tensor<T> xn1, rstd1, h1;                  // [B, T, D], [B T], [B, T, D]
    typename Linear<T>::Cache qkv;             // [B, T, 3D]
    ops::AttentionCache<T> attn;
    Tensor<T> a;                               // [B, T, D] attention output (pre-projection)
    typename Linear<T>::Cache o;               // [B, T, D]
    Tensor<T> x1;                              // [B, T, D] after the attention residual
    Tensor<T> xn2, rstd2, h2;
    typename Linear<T>::Cache u;               // [B, T, 4D]
    Tensor<T> g;                               // [B, T, 4D] GELU(u)
    typename Linear<T>::Cache m;               // [B, T, D]
    Tensor<T> out;                             // [B, T, D]
    ConstView<T> output() const { return out.cview(); }
    TensorView<const T> chunk(int j) const { return chunks.cview().select(0, j); }
  };

  /// x [B, T, D], s = SiLU(c) [B, D] (viewed: keep both alive until backward).
  Cache forward(const CpuContext& ctx, ConstView<T> x, ConstView<T> s) const {
    IREPA_CHECK(x.rank() == 3 && x.size(2) == dim(), "SiTBlock: input has shape {}, expected [B, T, {}]", x.shape().str(),
                dim());
    const Shape bt{x.size(0) * x.size(1)};  // one rstd per token
    Cache c;
    c.x = x;
    c.mod = adaLN.forward(ctx, s);
    c.chunks = detail::split_chunks<T>(c.mod.y, 6);
    c.xn1 = Tensor<T>(x.shape());
    c.rstd1 = Tensor<T>(bt);
    ops::layer_norm_forward<T>(ctx, x, T(ln_eps), c.xn1.view(), c.rstd1.view());
    c.h1 = Tensor<T>(x.shape());
    ops::modulate_forward<T>(ctx, c.xn1, c.chunk(0), c.chunk(1), c.h1.view());
    c.qkv = qkv.forward(ctx, c.h1);
    c.a = Tensor<T>(x.shape());
    c.attn = ops::attention_forward<T>(ctx, c.qkv.y, attention_spec(), c.a.view());
    c.o = proj.forward(ctx, c.a);
    c.x1 = Tensor<T>(x.shape());
    ops::gated_residual_forward<T>(ctx, x, c.chunk(2), c.o.y, c.x1.view());

    c.xn2 = Tensor<T>(x.shape());
    c.rstd2 = Tensor<T>(bt);
    ops::layer_norm_forward<T>(ctx, c.x1, T(ln_eps), c.xn2.view(), c.rstd2.view());
    c.h2 = Tensor<T>(x.shape());
    ops::modulate_forward<T>(ctx, c.xn2, c.chunk(3), c.chunk(4), c.h2.view());
    c.u = fc1.forward(ctx, c.h2);
    c.g = Tensor<T>(c.u.y.shape());
    ops::gelu_tanh_forward<T>(ctx, c.u.y, c.g.view());
    c.m = fc2.forward(ctx, c.g);
    c.out = Tensor<T>(x.shape());
    ops::gated_residual_forward<T>(ctx, c.x1, c.chunk(5), c.m.y, c.out.view());
    return c;
  }

  /// dout [B, T, D] -> dx [B, T, D] (assigned); ds [B, D] accumulated; parameter grads accumulated.
  void backward(const CpuContext& ctx, const Cache& c, ConstView<T> dout, TensorView<T> dx, TensorView<T> ds) const {
    const Shape& xs = c.x.shape();
    const std::int64_t B = xs[0], D = xs[2];
    Tensor<T> dchunks(Shape{6, B, D});
    auto dchunk = [&](int j) { return dchunks.view().select(0, j); };

    // out = x1 + gate2 * m
    Tensor<T> dm(xs), dg(c.g.shape()), du(c.g.shape()), dh(xs), dxn(xs), dx1(xs);
    ops::gated_residual_backward<T>(ctx, c.chunk(5), c.m.y, dout, dm.view(), dchunk(5));
    fc2.backward(ctx, c.m, dm, dg.view());
    ops::gelu_tanh_backward<T>(ctx, c.u.y, dg, du.view());
    fc1.backward(ctx, c.u, du, dh.view());
    ops::modulate_backward<T>(ctx, c.xn2, c.chunk(4), dh, dxn.view(), dchunk(3), dchunk(4));
    ops::layer_norm_backward<T>(ctx, c.xn2, c.rstd2, dxn, dx1.view());
    detail::add_into<T>(ctx, dx1.view(), dout);

    // x1 = x + gate1 * o
    Tensor<T> d_o(xs), da(xs), dqkv(c.qkv.y.shape());
    ops::gated_residual_backward<T>(ctx, c.chunk(2), c.o.y, dx1, d_o.view(), dchunk(2));
    proj.backward(ctx, c.o, d_o, da.view());
    ops::attention_backward<T>(ctx, attention_spec(), c.attn, da, dqkv.view());
    qkv.backward(ctx, c.qkv, dqkv, dh.view());
    ops::modulate_backward<T>(ctx, c.xn1, c.chunk(1), dh, dxn.view(), dchunk(0), dchunk(1));
    ops::layer_norm_backward<T>(ctx, c.xn1, c.rstd1, dxn, dx);
    detail::add_into<T>(ctx, dx, dx1);

    // the modulation vectors come from adaLN(s)
    Tensor<T> dmod = detail::merge_chunks<T>(dchunks);
    Tensor<T> dsi(ds.shape());
    adaLN.backward(ctx, c.mod, dmod, dsi.view());
    detail::add_into<T>(ctx, ds, dsi);
  }
};

template <class T>
struct FinalLayer {
  using scalar_type = T;
  using device_type = Cpu;

  Linear<T> linear, adaLN;
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
    typename Linear<T>::Cache mod;  // [B, 2D]
    Tensor<T> chunks;               // [2, B, D]: shift, scale
    Tensor<T> xn, rstd, h;          // [B, T, D], [B T], [B, T, D]
    typename Linear<T>::Cache y;    // [B, T, p p C]
    ConstView<T> output() const { return y.output(); }
  };

  Cache forward(const CpuContext& ctx, ConstView<T> x, ConstView<T> s) const {
    Cache c;
    c.mod = adaLN.forward(ctx, s);
    c.chunks = detail::split_chunks<T>(c.mod.y, 2);
    c.xn = Tensor<T>(x.shape());
    c.rstd = Tensor<T>(Shape{x.size(0) * x.size(1)});
    ops::layer_norm_forward<T>(ctx, x, T(ln_eps), c.xn.view(), c.rstd.view());
    c.h = Tensor<T>(x.shape());
    ops::modulate_forward<T>(ctx, c.xn, c.chunks.cview().select(0, 0), c.chunks.cview().select(0, 1), c.h.view());
    c.y = linear.forward(ctx, c.h);
    return c;
  }

  /// dx assigned; ds accumulated; parameter grads accumulated.
  void backward(const CpuContext& ctx, const Cache& c, ConstView<T> dy, TensorView<T> dx, TensorView<T> ds) const {
    const Shape& xs = c.xn.shape();
    Tensor<T> dh(xs), dxn(xs), dchunks(Shape{2, xs[0], xs[2]});
    linear.backward(ctx, c.y, dy, dh.view());
    ops::modulate_backward<T>(ctx, c.xn, c.chunks.cview().select(0, 1), dh, dxn.view(), dchunks.view().select(0, 0),
                              dchunks.view().select(0, 1));
    ops::layer_norm_backward<T>(ctx, c.xn, c.rstd, dxn, dx);
    Tensor<T> dmod = detail::merge_chunks<T>(dchunks);
    Tensor<T> dsi(ds.shape());
    adaLN.backward(ctx, c.mod, dmod, dsi.view());
    detail::add_into<T>(ctx, ds, dsi);
  }
};

}  // namespace irepa::nn
