#pragma once
// nn::Linear: y = x W^T + b with PyTorch's parameter layout and names ("weight", "bias").

#include <string_view>

#include "irepa/core/arena.hpp"
#include "irepa/nn/init.hpp"
#include "irepa/ops/linear.hpp"

namespace irepa::nn {

template <class T, class D = Cpu>
struct Linear {
  using scalar_type = T;
  using device_type = D;
  using Context = ContextOf<D>;

  Param<T, D> weight;  // [out, in]
  Param<T, D> bias;    // [out] (absent when built without bias)
  bool has_bias = true;

  Linear() = default;
  Linear(std::int64_t in, std::int64_t out, bool with_bias = true)
      : weight(Shape{out, in}), bias(with_bias ? Shape{out} : Shape{0}), has_bias(with_bias) {}

  std::int64_t in_features() const { return weight.shape[1]; }
  std::int64_t out_features() const { return weight.shape[0]; }

  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    v(join_name(prefix, "weight"), weight);
    if (has_bias) v(join_name(prefix, "bias"), bias);
  }

  /// The reference's _basic_init: xavier-uniform weight, zero bias.
  void init_xavier(Philox& rng) {
    xavier_uniform(rng, weight.value);
    if (has_bias) zeros(bias.value);
  }

  /// Views its input: x must outlive backward.
  struct Cache {
    ConstView<T, D> x;  // [N.., in]
    Tensor<T, D> y;     // [N.., out]
    ConstView<T, D> output() const { return y.cview(); }
  };

  Cache forward(const Context& ctx, ConstView<T, D> x) const {
    Shape ys = x.shape();
    IREPA_CHECK(ys.rank() >= 1, "Linear: input is a scalar, expected [..., {}]", in_features());
    ys[-1] = out_features();
    Cache c{x, Tensor<T, D>(ys)};
    ops::linear_forward<T>(ctx, x, weight.value, has_bias ? ConstView<T, D>(bias.value) : ConstView<T, D>{}, c.y.view());
    return c;
  }

  /// dx assigned (skipped when empty); weight and bias gradients accumulated.
  void backward(const Context& ctx, const Cache& c, ConstView<T, D> dy, TensorView<T, D> dx) const {
    ops::linear_backward<T>(ctx, c.x, weight.value, dy, dx, weight.grad, has_bias ? bias.grad : TensorView<T, D>{});
  }
};

}  // namespace irepa::nn
