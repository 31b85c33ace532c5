// A user-written alignment projector, end to end: a policy type that satisfies
// irepa::Projector, parameters named as a PyTorch state_dict would name them, laid out in a flat
// ParamArena, and its hand-written backward pass verified with the public gradient checker.
//
// The projector: a depthwise k x k convolution over the token grid followed by a pointwise
// (1x1) convolution to the target width, the cheap cousin of iREPA's dense 3x3 conv.
//
//   irepa-example-custom-projector [--tokens-grid 5x7]    (exit code 0 when the check passes)

#include <irepa/irepa.hpp>

#include <cstdio>
#include <cstring>
#include <string>
#include "fail_safe.hpp"

namespace {

using namespace irepa;

template <int K>
struct DepthwisePointwiseProjector {
  template <class T>
  struct layer {
    using scalar_type = T;
    using device_type = Cpu;
    // Parameters, with the names a torch.nn.Sequential(dw, pw) would give them.
    Param<T> dw_weight, dw_bias, pw_weight, pw_bias;

    explicit layer(const ProjectorSpec& s)
        : dw_weight(Shape{s.in_dim, 1, K, K}), dw_bias(Shape{s.in_dim}), pw_weight(Shape{s.out_dim, s.in_dim}),
          pw_bias(Shape{s.out_dim}) {}

    template <class V>
    void visit_params(V&& v, std::string_view prefix) {
      v(join_name(prefix, "projection_layer.0.weight"), dw_weight);
      v(join_name(prefix, "projection_layer.0.bias"), dw_bias);
      v(join_name(prefix, "projection_layer.1.weight"), pw_weight);
      v(join_name(prefix, "projection_layer.1.bias"), pw_bias);
    }

    struct Cache {
      ConstView<T> x;       // [B, T, D] input (viewed, not copied)
      TokenGrid grid;
      Tensor<T> h;          // [B, T, D] after the depthwise conv
      Tensor<T> y;          // [B, T, Z]
      ConstView<T> output() const { return y.cview(); }
    };

    Cache forward(const CpuContext& ctx, ConstView<T> x, TokenGrid g) const {
      IREPA_CHECK(x.rank() == 3 && x.size(1) == g.tokens() && x.size(2) == dw_weight.shape[0],
                  "DepthwisePointwiseProjector: input {} does not match grid {}x{} and width {}", x.shape().str(), g.h, g.w,
                  dw_weight.shape[0]);
      const auto B = x.size(0), D = x.size(2);
      Cache c{x, g, Tensor<T>(x.shape()), Tensor<T>(Shape{B, g.tokens(), pw_weight.shape[0]})};
      // Depthwise conv: each channel with its own k x k filter, zero padding k/2.
      ctx.parallel_for(B * g.tokens(), double(D * K * K), [&](std::int64_t r0, std::int64_t r1) {
        for (auto r = r0; r < r1; ++r) {
          const auto b = r / g.tokens(), i = (r % g.tokens()) / g.w, j = r % g.w;
          for (std::int64_t d = 0; d < D; ++d) {
            T s = dw_bias.value[d];
            for (int u = 0; u < K; ++u)
              for (int v = 0; v < K; ++v) {
                const auto ii = i + u - K / 2, jj = j + v - K / 2;
                if (ii >= 0 && ii < g.h && jj >= 0 && jj < g.w) s += x(b, ii * g.w + jj, d) * dw_weight.value(d, 0, u, v);
              }
            c.h(b, i * g.w + j, d) = s;
          }
        }
      });
      ops::linear_forward<T>(ctx, c.h, pw_weight.value, pw_bias.value, c.y.view());
      return c;
    }

    void backward(const CpuContext& ctx, const Cache& c, ConstView<T> dy, TensorView<T> dx) const {
      const auto B = c.x.size(0), D = c.x.size(2);
      const TokenGrid g = c.grid;
      Tensor<T> dh(c.h.shape());
      ops::linear_backward<T>(ctx, c.h, pw_weight.value, dy, dh.view(), pw_weight.grad, pw_bias.grad);
      // dx by gathering (each output pixel written by one thread); filter grads summed serially.
      dx.fill(T(0));
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t i = 0; i < g.h; ++i)
          for (std::int64_t j = 0; j < g.w; ++j)
            for (std::int64_t d = 0; d < D; ++d) {
              const T gd = dh(b, i * g.w + j, d);
              dw_bias.grad[d] += gd;
              for (int u = 0; u < K; ++u)
                for (int v = 0; v < K; ++v) {
                  const auto ii = i + u - K / 2, jj = j + v - K / 2;
                  if (ii < 0 || ii >= g.h || jj < 0 || jj >= g.w) continue;
                  dw_weight.grad(d, 0, u, v) += gd * c.x(b, ii * g.w + jj, d);
                  dx(b, ii * g.w + jj, d) += gd * dw_weight.value(d, 0, u, v);
                }
            }
    }
  };
};

// The concept is the contract: a projector that did not fit would fail here, with one message.
static_assert(Projector<DepthwisePointwiseProjector<5>>);

}  // namespace

int main(int argc, char** argv) {
  TokenGrid grid{5, 7};
  if (argc != 1 && !(argc == 3 && std::strcmp(argv[1], "--tokens-grid") == 0 &&
                     std::sscanf(argv[2], "%ldx%ld", &grid.h, &grid.w) == 2 && grid.h > 0 && grid.w > 0)) {
    std::fprintf(stderr, "usage: %s [--tokens-grid HxW]\n", argv[0]);
    return 2;
  }
  CpuContext ctx;
  using Layer = DepthwisePointwiseProjector<5>::layer<double>;
  Layer proj(ProjectorSpec{.in_dim = 12, .out_dim = 9});
  ParamArena<double> arena(proj);
  Philox rng(2025);
  rng.normal(arena.values(), 0.0, 0.3);  // one pass over the flat arena initialises everything

  std::printf("parameters (%lld values in one arena):\n", static_cast<long long>(arena.numel()));
  arena.for_each([](std::string_view name, TensorView<double> v, TensorView<double>) {
    std::printf("  %-28.*s %s\n", static_cast<int>(name.size()), name.data(), v.shape().str().c_str());
  });

  Tensor<double> x(Shape{3, grid.tokens(), 12}), dx(x.shape());
  rng.normal(x.view());
  std::vector<check::GradTarget> targets{check::input("x", x.view(), dx.view())};
  arena.for_each([&](std::string_view name, TensorView<double> v, TensorView<double> g) {
    targets.push_back(check::param(std::string(name), v, g));
  });
  auto report = check::gradient_check(
      [&] { return Tensor<double>::copy_of(proj.forward(ctx, x, grid).output()); },
      [&](const std::vector<Tensor<double>>& g) {
        auto cache = proj.forward(ctx, x, grid);
        proj.backward(ctx, cache, g[0], dx.view());
      },
      targets);
  std::printf("%s", report.report().c_str());
  std::printf("custom projector gradient check: %s (worst relative error %.2e)\n", report.ok() ? "passed" : "FAILED",
              report.worst());
  return report.ok() ? 0 : 1;
}
