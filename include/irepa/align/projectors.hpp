#pragma once
// The projector policies: what maps the diffusion transformer's hidden tokens [B, T, D] after
// block encoder_depth to the target encoder's width [B, T, Z].
//  - MlpProjector     (REPA)  Linear(D, hidden), SiLU, Linear(hidden, hidden), SiLU, Linear(hidden, Z);
//                             "projection_layer.{0,2,4}.{weight,bias}"
//  - LinearProjector          Linear(D, Z); "projection_layer.{weight,bias}"
//  - ConvProjector<K> (iREPA) K x K conv over the h x w token grid, zero padding K/2;
//                             "projection_layer.{weight [Z, D, K, K],bias}". K = 0 takes the kernel
//                             size from the ProjectorSpec at run time.
// Each policy's layer<T, D = Cpu> runs on device D (its context ContextOf<D>) and, on the CPU, has
// init(Philox&): the reference's initialisation. A user policy that declares only layer<T> runs
// on the CPU.

#include <string_view>

#include "irepa/core/concepts.hpp"
#include "irepa/nn/init.hpp"
#include "irepa/nn/linear.hpp"
#include "irepa/ops/activation.hpp"
#include "irepa/ops/conv.hpp"

namespace irepa {

namespace detail {
inline void check_projector_input(std::string_view who, const Shape& x, std::int64_t D, TokenGrid g) {
  IREPA_CHECK(x.rank() == 3 && x[2] == D && x[1] == g.tokens(),
              "{}: input has shape {}, expected [B, {}, {}] ({}x{} token grid)", who, x.str(), g.tokens(), D, g.h, g.w);
}
}  // namespace detail

struct MlpProjector {
  template <class T, class D = Cpu>
  struct layer {
    using scalar_type = T;
    using device_type = D;
    using Context = ContextOf<D>;
    nn::Linear<T, D> fc0, fc2, fc4;

    explicit layer(const ProjectorSpec& s) : fc0(s.in_dim, s.hidden_dim), fc2(s.hidden_dim, s.hidden_dim), fc4(s.hidden_dim, s.out_dim) {
      IREPA_CHECK(s.in_dim > 0 && s.out_dim > 0 && s.hidden_dim > 0, "MlpProjector: widths in {}, hidden {}, out {} must be positive",
                  s.in_dim, s.hidden_dim, s.out_dim);
    }

    template <class V>
    void visit_params(V&& v, std::string_view prefix) {
      fc0.visit_params(v, join_name(prefix, "projection_layer.0"));
      fc2.visit_params(v, join_name(prefix, "projection_layer.2"));
      fc4.visit_params(v, join_name(prefix, "projection_layer.4"));
    }
    void init(Philox& rng) {
      fc0.init_xavier(rng);
      fc2.init_xavier(rng);
      fc4.init_xavier(rng);
    }

    struct Cache {
      typename nn::Linear<T, D>::Cache l0, l2, l4;
      Tensor<T, D> a0, a2;  // [B, T, hidden] after SiLU
      ConstView<T, D> output() const { return l4.output(); }
    };

    Cache forward(const Context& ctx, ConstView<T, D> x, TokenGrid g) const {
      detail::check_projector_input("MlpProjector", x.shape(), fc0.in_features(), g);
      Cache c;
      c.l0 = fc0.forward(ctx, x);
      c.a0 = Tensor<T, D>(c.l0.y.shape());
      ops::silu_forward<T>(ctx, c.l0.y, c.a0.view());
      c.l2 = fc2.forward(ctx, c.a0);
      c.a2 = Tensor<T, D>(c.l2.y.shape());
      ops::silu_forward<T>(ctx, c.l2.y, c.a2.view());
      c.l4 = fc4.forward(ctx, c.a2);
      return c;
    }
    void backward(const Context& ctx, const Cache& c, ConstView<T, D> dy, TensorView<T, D> dx) const {
      Tensor<T, D> da(c.a0.shape()), dh(c.a0.shape());
      fc4.backward(ctx, c.l4, dy, da.view());
      ops::silu_backward<T>(ctx, c.l2.y, da, dh.view());
      fc2.backward(ctx, c.l2, dh, da.view());
      ops::silu_backward<T>(ctx, c.l0.y, da, dh.view());
      fc0.backward(ctx, c.l0, dh, dx);
    }
  };
};

struct LinearProjector {
  template <class T, class D = Cpu>
  struct layer {
    using scalar_type = T;
    using device_type = D;
    using Context = ContextOf<D>;
    nn::Linear<T, D> fc;

    explicit layer(const ProjectorSpec& s) : fc(s.in_dim, s.out_dim) {}

    template <class V>
    void visit_params(V&& v, std::string_view prefix) {
      fc.visit_params(v, join_name(prefix, "projection_layer"));
    }
    void init(Philox& rng) { fc.init_xavier(rng); }

    using Cache = typename nn::Linear<T, D>::Cache;
    Cache forward(const Context& ctx, ConstView<T, D> x, TokenGrid g) const {
      detail::check_projector_input("LinearProjector", x.shape(), fc.in_features(), g);
      return fc.forward(ctx, x);
    }
    void backward(const Context& ctx, const Cache& c, ConstView<T, D> dy, TensorView<T, D> dx) const {
      fc.backward(ctx, c, dy, dx);
    }
  };
};

/// K = 0: the kernel size comes from ProjectorSpec::kernel_size (3 when that is 0 too).
template <int K>
struct ConvProjector {
  static_assert(K == 0 || (K > 0 && K % 2 == 1), "ConvProjector<K>: K must be odd (same padding K/2), or 0 for a run-time size");

  template <class T, class D = Cpu>
  struct layer {
    using scalar_type = T;
    using device_type = D;
    using Context = ContextOf<D>;
    Param<T, D> weight;  // [Z, D, k, k]
    Param<T, D> bias;    // [Z]

    static int kernel_of(const ProjectorSpec& s) {
      const int k = K > 0 ? K : (s.kernel_size > 0 ? s.kernel_size : 3);
      IREPA_CHECK(s.kernel_size == 0 || s.kernel_size == k,
                  "ConvProjector<{}>: the configuration asks for kernel size {}, the type fixes {}", K, s.kernel_size, k);
      IREPA_CHECK(k % 2 == 1, "ConvProjector: kernel size {} must be odd (same padding k/2 keeps the grid)", k);
      return k;
    }
    explicit layer(const ProjectorSpec& s)
        : weight(Shape{s.out_dim, s.in_dim, kernel_of(s), kernel_of(s)}), bias(Shape{s.out_dim}) {}

    int kernel_size() const { return static_cast<int>(weight.shape[2]); }

    template <class V>
    void visit_params(V&& v, std::string_view prefix) {
      v(join_name(prefix, "projection_layer.weight"), weight);
      v(join_name(prefix, "projection_layer.bias"), bias);
    }
    /// The reference leaves nn.Conv2d at PyTorch's default initialisation.
    void init(Philox& rng) { nn::torch_default_init(rng, weight.value, bias.value); }

    struct Cache {
      ConstView<T, D> x;  // [B, h, w, D] (the input viewed on its grid)
      Tensor<T, D> y;     // [B, T, Z]
      ConstView<T, D> output() const { return y.cview(); }
    };
    Cache forward(const Context& ctx, ConstView<T, D> x, TokenGrid g) const {
      detail::check_projector_input("ConvProjector", x.shape(), weight.shape[1], g);
      const std::int64_t B = x.size(0);
      Cache c{x.reshape(Shape{B, g.h, g.w, x.size(2)}), Tensor<T, D>(Shape{B, g.tokens(), weight.shape[0]})};
      ops::conv2d_same_forward<T>(ctx, c.x, weight.value, bias.value, c.y.view().reshape(Shape{B, g.h, g.w, weight.shape[0]}));
      return c;
    }
    void backward(const Context& ctx, const Cache& c, ConstView<T, D> dy, TensorView<T, D> dx) const {
      const Shape& xs = c.x.shape();
      ops::conv2d_same_backward<T>(ctx, c.x, weight.value, dy.reshape(Shape{xs[0], xs[1], xs[2], weight.shape[0]}),
                                   dx.numel() ? dx.reshape(xs) : TensorView<T, D>{}, weight.grad, bias.grad);
    }
  };
};

using Conv3x3 = ConvProjector<3>;

static_assert(Projector<MlpProjector>);
static_assert(Projector<LinearProjector>);
static_assert(Projector<Conv3x3>);
static_assert(Projector<ConvProjector<0>>);

}  // namespace irepa
