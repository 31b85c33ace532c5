#pragma once
// A small classifier the library trains itself, to score generated images: fixed features
// (e.g. HOG tokens) -> nn::Linear -> ReLU -> nn::Linear -> softmax cross-entropy, trained with
// the library's AdamW (weights decayed, biases not) over a flat arena, on any device. Its accuracy
// on samples against the labels they were conditioned on says whether the classes came out
// right; its hidden activations are a learned feature space for a Frechet distance.
// Features and labels are host arrays (a metric's inputs); each minibatch goes to the device.

#include <algorithm>
#include <cmath>
#include <string_view>
#include <vector>

#include "irepa/core/arena.hpp"
#include "irepa/core/error.hpp"
#include "irepa/core/host_twin.hpp"
#include "irepa/core/rng.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/data/sampler.hpp"
#include "irepa/nn/linear.hpp"
#include "irepa/ops/activation.hpp"
#include "irepa/ops/reduce.hpp"
#include "irepa/ops/tensor_ops.hpp"
#include "irepa/train/optim.hpp"

namespace irepa::metrics {

struct MlpClassifierOptions {
  std::int64_t hidden = 128;
  int epochs = 6;
  std::int64_t batch_size = 256;
  double learning_rate = 2e-3, weight_decay = 1e-4;
  std::uint64_t seed = 0;
};

template <class T = float, class D = Cpu>
class MlpClassifier {
 public:
  using Context = ContextOf<D>;

  /// The layers, with the names a PyTorch nn.Sequential-free MLP would give them.
  struct Net {
    nn::Linear<T, D> fc1, fc2;  // in -> hidden (ReLU), hidden -> classes
    template <class V>
    void visit_params(V&& v, std::string_view prefix) {
      fc1.visit_params(v, join_name(prefix, "fc1"));
      fc2.visit_params(v, join_name(prefix, "fc2"));
    }
  };

  /// What the forward keeps for backward: the input batch, the hidden ReLU output, the logits.
  struct Cache {
    typename nn::Linear<T, D>::Cache fc1, fc2;
    ConstView<T, D> hidden() const { return fc1.y.cview(); }  // [B, hidden] after the ReLU
    ConstView<T, D> logits() const { return fc2.y.cview(); }  // [B, classes]
  };

  MlpClassifier(std::int64_t in, std::int64_t classes, MlpClassifierOptions o = {}) : o_(o), in_(in), k_(classes) {
    IREPA_CHECK(in > 0 && classes > 1 && o.hidden > 0, "MlpClassifier: {} inputs, {} hidden, {} classes", in, o.hidden, classes);
    IREPA_CHECK(o.batch_size > 0 && o.epochs >= 0, "MlpClassifier: batch size {} and {} epochs", o.batch_size, o.epochs);
    net_.fc1 = nn::Linear<T, D>(in, o.hidden);
    net_.fc2 = nn::Linear<T, D>(o.hidden, classes);
    arena_ = ParamArena<T, D>(net_);
    // PyTorch's Linear default: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn on the host.
    Philox rng(o.seed, 11);
    Tensor<T> init(Shape{arena_.numel()});
    for (const auto& e : arena_.entries()) {
      const std::int64_t fan_in = e.name.starts_with("fc1") ? in : o.hidden;
      const T b = T(1) / std::sqrt(static_cast<T>(fan_in));
      rng.uniform(TensorView<T>(init.data() + e.offset, e.shape), -b, b);
    }
    copy_from_host(arena_.values(), init.cview());
  }
  MlpClassifier(MlpClassifier&&) noexcept = default;

  /// Forward of a batch x [B, in] on the device.
  Cache forward(const Context& ctx, ConstView<T, D> x) const {
    Cache c{net_.fc1.forward(ctx, x), {}};
    ops::relu_forward<T>(ctx, c.fc1.y.cview(), c.fc1.y.view());
    c.fc2 = net_.fc2.forward(ctx, c.fc1.y.cview());
    return c;
  }

  /// Accumulates into the arena's gradients d(scale * sum of losses) given dlogits (see
  /// ops::softmax_cross_entropy, which writes it).
  void backward(const Context& ctx, const Cache& c, ConstView<T, D> dlogits) const {
    Tensor<T, D> dh(c.fc1.y.shape());
    net_.fc2.backward(ctx, c.fc2, dlogits, dh.view());
    ops::relu_backward<T>(ctx, c.hidden(), dh.cview(), dh.view());  // the ReLU's output has its input's sign
    net_.fc1.backward(ctx, c.fc1, dh.cview(), TensorView<T, D>{});
  }

  /// x [N, in], y [N] in 0..classes-1 (host). Minibatch AdamW; returns each epoch's mean
  /// training loss.
  std::vector<double> fit(const Context& ctx, ConstView<float> x, ConstView<std::int64_t> y) {
    check_x(x);
    IREPA_CHECK(y.rank() == 1 && y.size(0) == x.size(0) && y.is_contiguous(), "MlpClassifier::fit: labels {} for features {}",
                y.shape().str(), x.shape().str());
    const std::int64_t N = x.size(0);
    for (std::int64_t i = 0; i < N; ++i)
      IREPA_CHECK(y.data()[i] >= 0 && y.data()[i] < k_, "MlpClassifier::fit: label {} of sample {} is not in 0..{}", y.data()[i], i, k_ - 1);
    AdamW<T, D> opt(arena_, {.lr = o_.learning_rate, .weight_decay = o_.weight_decay, .decay = decay_weights_only});
    std::vector<double> losses;
    const std::int64_t steps = (N + o_.batch_size - 1) / o_.batch_size;
    for (int e = 0; e < o_.epochs; ++e) {
      const auto perm = data::epoch_permutation(N, o_.seed, static_cast<std::uint64_t>(e));
      Tensor<double, D> batch_loss(Shape{std::max<std::int64_t>(steps, 1)});  // each batch's summed loss, read once per epoch
      for (std::int64_t s = 0, step = 0; s < N; s += o_.batch_size, ++step) {
        const std::int64_t B = std::min(o_.batch_size, N - s);
        Tensor<T> xb(Shape{B, in_});
        Tensor<std::int64_t> yb(Shape{B});
        for (std::int64_t i = 0; i < B; ++i) {
          const auto g = perm[static_cast<std::size_t>(s + i)];
          std::transform(x.data() + g * in_, x.data() + (g + 1) * in_, xb.data() + i * in_, [](float v) { return static_cast<T>(v); });
          yb[i] = y.data()[g];
        }
        const Tensor<T, D> xd = to_device(ctx, xb.cview());
        const Tensor<std::int64_t, D> yd = to_device(ctx, yb.cview());
        const Cache c = forward(ctx, xd.cview());
        Tensor<double, D> loss(Shape{B});
        Tensor<T, D> dlogits(c.fc2.y.shape());
        ops::softmax_cross_entropy<T>(ctx, c.logits(), yd.cview(), loss.view(), dlogits.view(), 1.0 / static_cast<double>(B));
        ops::row_mean<double>(ctx, loss.cview(), static_cast<double>(B), TensorView<double, D>(batch_loss.data() + step, Shape{1}));
        fill(ctx, arena_.grads(), T(0));
        backward(ctx, c, dlogits.cview());
        opt.step(ctx, arena_, o_.learning_rate);
      }
      const Tensor<double> sums = to_host(ctx, batch_loss.cview());
      double total = 0;
      for (std::int64_t k = 0; k < steps; ++k) total += sums[k];
      losses.push_back(total / static_cast<double>(std::max<std::int64_t>(N, 1)));
    }
    return losses;
  }

  /// x [N, in] (host) -> hidden ReLU activations [N, hidden] (host, float).
  Tensor<float> hidden(const Context& ctx, ConstView<float> x) const {
    Tensor<float> out(Shape{x.size(0), o_.hidden});
    each_batch(ctx, x, [&](std::int64_t s, const Cache& c) { copy_rows(ctx, c.hidden(), out, s); });
    return out;
  }

  /// x [N, in] (host) -> the most likely class of each row.
  std::vector<std::int64_t> predict(const Context& ctx, ConstView<float> x) const {
    std::vector<std::int64_t> out(static_cast<std::size_t>(x.size(0)));
    each_batch(ctx, x, [&](std::int64_t s, const Cache& c) {
      const Tensor<T> logits = to_host(ctx, c.logits());
      for (std::int64_t i = 0; i < logits.size(0); ++i) {
        const T* row = logits.data() + i * k_;
        out[static_cast<std::size_t>(s + i)] = std::max_element(row, row + k_) - row;
      }
    });
    return out;
  }

  double accuracy(const Context& ctx, ConstView<float> x, ConstView<std::int64_t> y) const {
    IREPA_CHECK(y.rank() == 1 && y.size(0) == x.size(0), "MlpClassifier::accuracy: labels {} for features {}", y.shape().str(),
                x.shape().str());
    const auto p = predict(ctx, x);
    std::int64_t right = 0;
    for (std::int64_t i = 0; i < y.size(0); ++i) right += p[static_cast<std::size_t>(i)] == y.data()[i];
    return static_cast<double>(right) / static_cast<double>(std::max<std::int64_t>(1, y.size(0)));
  }

  std::int64_t inputs() const { return in_; }
  std::int64_t classes() const { return k_; }
  const ParamArena<T, D>& params() const { return arena_; }
  ParamArena<T, D>& params() { return arena_; }

 private:
  void check_x(ConstView<float> x) const {
    IREPA_CHECK(x.rank() == 2 && x.size(1) == in_ && x.is_contiguous(), "MlpClassifier: features have shape {}, expected [N, {}]",
                x.shape().str(), in_);
  }

  /// f(first row, cache) for each batch of x, forward only.
  template <class F>
  void each_batch(const Context& ctx, ConstView<float> x, F&& f) const {
    check_x(x);
    for (std::int64_t s = 0; s < x.size(0); s += o_.batch_size) {
      const std::int64_t B = std::min(o_.batch_size, x.size(0) - s);
      Tensor<T> xb(Shape{B, in_});
      std::transform(x.data() + s * in_, x.data() + (s + B) * in_, xb.data(), [](float v) { return static_cast<T>(v); });
      const Tensor<T, D> xd = to_device(ctx, xb.cview());
      f(s, forward(ctx, xd.cview()));
    }
  }

  static void copy_rows(const Context& ctx, ConstView<T, D> rows, Tensor<float>& out, std::int64_t first) {
    const Tensor<T> h = to_host(ctx, rows);
    std::transform(h.data(), h.data() + h.numel(), out.data() + first * out.size(1), [](T v) { return static_cast<float>(v); });
  }

  MlpClassifierOptions o_;
  std::int64_t in_, k_;
  Net net_;
  ParamArena<T, D> arena_;
};

}  // namespace irepa::metrics
