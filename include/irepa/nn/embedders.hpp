#pragma once
// The embedders of SiT / DiT, with the reference's parameter names:
//  - PatchEmbed        "proj.weight" [D, C, p, p], "proj.bias" [D]: image -> tokens
//  - TimestepEmbedder  "mlp.0.*", "mlp.2.*": 256 sinusoidal features -> Linear, SiLU, Linear
//  - LabelEmbedder     "embedding_table.weight" [classes (+1 null row), D]

#include <string_view>

#include "irepa/core/arena.hpp"
#include "irepa/nn/init.hpp"
#include "irepa/nn/linear.hpp"
#include "irepa/ops/activation.hpp"
#include "irepa/ops/conv.hpp"
#include "irepa/ops/embedding.hpp"

namespace irepa::nn {

template <class T, class D = Cpu>
struct PatchEmbed {
  using scalar_type = T;
  using device_type = D;
  using Context = ContextOf<D>;

  Param<T, D> weight;  // proj.weight [D, C, p, p]
  Param<T, D> bias;    // proj.bias [D] (absent when built without: PE's and CLIP's conv1)
  bool has_bias = true;

  PatchEmbed() = default;
  PatchEmbed(std::int64_t in_channels, std::int64_t dim, std::int64_t patch, bool with_bias = true)
      : weight(Shape{dim, in_channels, patch, patch}), bias(Shape{with_bias ? dim : 0}), has_bias(with_bias) {}

  std::int64_t patch() const { return weight.shape[2]; }

  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    v(join_name(prefix, "proj.weight"), weight);
    if (has_bias) v(join_name(prefix, "proj.bias"), bias);
  }

  /// The reference re-initialises the conv as a Linear: xavier on [D, C p p], zero bias.
  void init(Philox& rng) {
    xavier_uniform(rng, weight.value);
    if (has_bias) zeros(bias.value);
  }

  /// x [B, C, H, W] -> y [B, (H/p)(W/p), D], tokens row-major.
  void forward(const Context& ctx, ConstView<T, D> x, TensorView<T, D> y) const {
    ops::patchify_forward<T>(ctx, x, weight.value, has_bias ? ConstView<T, D>(bias.value) : ConstView<T, D>{}, y);
  }
  /// Parameter gradients accumulated; the image gradient is not needed by the models.
  void backward(const Context& ctx, ConstView<T, D> x, ConstView<T, D> dy) const {
    ops::patchify_backward<T>(ctx, x, weight.value, dy, TensorView<T, D>{}, weight.grad, has_bias ? bias.grad : TensorView<T, D>{});
  }
};

template <class T, class D = Cpu>
struct TimestepEmbedder {
  using scalar_type = T;
  using device_type = D;
  using Context = ContextOf<D>;
  static constexpr std::int64_t frequency_dim = 256;

  Linear<T, D> fc0;  // mlp.0: [D, 256]
  Linear<T, D> fc2;  // mlp.2: [D, D]

  TimestepEmbedder() = default;
  explicit TimestepEmbedder(std::int64_t dim) : fc0(frequency_dim, dim), fc2(dim, dim) {}

  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    fc0.visit_params(v, join_name(prefix, "mlp.0"));
    fc2.visit_params(v, join_name(prefix, "mlp.2"));
  }

  /// Both weights N(0, 0.02), biases zero (the reference's init order: basic init, then normal).
  void init(Philox& rng) {
    normal_init(rng, fc0.weight.value, 0.02);
    normal_init(rng, fc2.weight.value, 0.02);
    zeros(fc0.bias.value);
    zeros(fc2.bias.value);
  }

  struct Cache {
    Tensor<T, D> freq;  // [B, 256]
    typename Linear<T, D>::Cache h;  // [B, D] before SiLU
    Tensor<T, D> a;     // [B, D] after SiLU
    typename Linear<T, D>::Cache out;  // [B, D]
    ConstView<T, D> output() const { return out.output(); }
  };

  /// t [B] -> [B, D]
  Cache forward(const Context& ctx, ConstView<T, D> t) const {
    Cache c;
    c.freq = Tensor<T, D>(Shape{t.size(0), frequency_dim});
    ops::timestep_features_forward<T>(ctx, t, frequency_dim, c.freq.view());
    c.h = fc0.forward(ctx, c.freq);
    c.a = Tensor<T, D>(c.h.y.shape());
    ops::silu_forward<T>(ctx, c.h.y, c.a.view());
    c.out = fc2.forward(ctx, c.a);
    return c;
  }

  /// Parameter gradients accumulated (t is not differentiated).
  void backward(const Context& ctx, const Cache& c, ConstView<T, D> dout) const {
    Tensor<T, D> da(c.a.shape()), dh(c.a.shape());
    fc2.backward(ctx, c.out, dout, da.view());
    ops::silu_backward<T>(ctx, c.h.y, da, dh.view());
    fc0.backward(ctx, c.h, dh, TensorView<T, D>{});
  }
};

template <class T, class D = Cpu>
struct LabelEmbedder {
  using scalar_type = T;
  using device_type = D;
  using Context = ContextOf<D>;

  Param<T, D> table;  // embedding_table.weight [num_classes + use_null, D]
  std::int64_t num_classes = 0;

  LabelEmbedder() = default;
  /// The null class (row num_classes) exists only when labels may be dropped, as in the reference.
  LabelEmbedder(std::int64_t classes, std::int64_t dim, bool null_class)
      : table(Shape{classes + (null_class ? 1 : 0), dim}), num_classes(classes) {}

  bool has_null_class() const { return table.shape[0] > num_classes; }

  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    v(join_name(prefix, "embedding_table.weight"), table);
  }

  void init(Philox& rng) { normal_init(rng, table.value, 0.02); }

  /// y [B] int64 on the model's device (num_classes = the null class) -> out [B, D].
  void forward(const Context& ctx, ConstView<std::int64_t, D> y, TensorView<T, D> out) const {
    ops::embedding_forward<T>(ctx, table.value, y, out);
  }
  void backward(const Context& ctx, ConstView<std::int64_t, D> y, ConstView<T, D> dout) const {
    ops::embedding_backward<T>(ctx, y, dout, table.grad);
  }
};

/// Classifier-free-guidance label dropout: each label becomes the null class (= num_classes)
/// with probability prob, decided by one uniform draw per image (torch.rand(B) < prob).
inline void drop_labels(Philox& rng, TensorView<std::int64_t> y, double prob, std::int64_t num_classes) {
  if (prob <= 0) return;
  Tensor<double> u(Shape{y.numel()});
  rng.uniform(u.view());
  for (std::int64_t i = 0; i < y.numel(); ++i)
    if (u[i] < prob) y.data()[i] = num_classes;
}

}  // namespace irepa::nn
