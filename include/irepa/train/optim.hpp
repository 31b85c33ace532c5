#pragma once
// Optimisation over a flat parameter arena, each a single pass over memory:
//  - AdamW with PyTorch's semantics: decoupled weight decay (p -= lr wd p first), bias-corrected
//    moments, eps added outside the square root; weight decay chosen per parameter (a predicate
//    on the name and shape: biases and 1-D tensors are usually excluded).
//  - clip_grad_norm: the global L2 norm over every gradient, and scaling by
//    max_norm / (norm + 1e-6) when that is below 1 (torch.nn.utils.clip_grad_norm_).
//  - Ema: ema = decay ema + (1 - decay) param every k steps, starting as a copy.
//  - LrSchedule: constant, or linear warm-up then constant or cosine to a floor.

#include <cmath>
#include <functional>
#include <numbers>
#include <string>
#include <string_view>
#include <vector>

#include "irepa/core/arena.hpp"
#include "irepa/core/context.hpp"

namespace irepa {

/// Which parameters get weight decay: f(name, shape) -> true to decay.
using DecayPredicate = std::function<bool(std::string_view name, const Shape& shape)>;

/// Decay every tensor of rank >= 2 (weights), not biases, norms' gains or 1-D tensors.
inline bool decay_weights_only(std::string_view, const Shape& s) { return s.rank() >= 2; }

struct AdamWOptions {
  double lr = 1e-4;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  DecayPredicate decay = [](std::string_view, const Shape&) { return true; };  // torch's single group
};

template <class T>
class AdamW {
 public:
  AdamW(const ParamArena<T>& arena, AdamWOptions o) : opt_(std::move(o)), m_(Shape{arena.numel()}), v_(Shape{arena.numel()}) {
    m_.fill(T(0));
    v_.fill(T(0));
    for (const auto& e : arena.entries())
      segments_.push_back({e.offset, e.shape.numel(), opt_.decay ? opt_.decay(e.name, e.shape) : true});
  }

  /// One update with learning rate lr (the schedule's value for this step) from arena.grads().
  void step(const CpuContext& ctx, const ParamArena<T>& arena, double lr) {
    IREPA_CHECK(arena.numel() == m_.numel(), "AdamW: the arena has {} values, the optimizer was built for {}", arena.numel(),
                m_.numel());
    ++step_;
    const double bc1 = 1 - std::pow(opt_.beta1, static_cast<double>(step_));
    const double bc2 = 1 - std::pow(opt_.beta2, static_cast<double>(step_));
    const T b1 = static_cast<T>(opt_.beta1), b2 = static_cast<T>(opt_.beta2);
    const T step_size = static_cast<T>(lr / bc1), bc2_sqrt = static_cast<T>(std::sqrt(bc2)), eps = static_cast<T>(opt_.eps);
    T* p = arena.values().data();
    const T* g = arena.grads().data();
    T* m = m_.data();
    T* v = v_.data();
    for (const auto& s : segments_) {
      const T keep = s.decay ? static_cast<T>(1 - lr * opt_.weight_decay) : T(1);
      ctx.parallel_for(s.count, 12.0, [&](std::int64_t i0, std::int64_t i1) {
        for (std::int64_t i = s.offset + i0; i < s.offset + i1; ++i) {
          p[i] *= keep;
          m[i] = b1 * m[i] + (T(1) - b1) * g[i];
          v[i] = b2 * v[i] + (T(1) - b2) * g[i] * g[i];
          p[i] -= step_size * m[i] / (std::sqrt(v[i]) / bc2_sqrt + eps);
        }
      });
    }
  }

  std::int64_t steps() const { return step_; }
  void set_steps(std::int64_t s) { step_ = s; }
  const AdamWOptions& options() const { return opt_; }
  /// First and second moments, laid out as the arena (for checkpoints).
  TensorView<T> exp_avg() const { return m_.view(); }
  TensorView<T> exp_avg_sq() const { return v_.view(); }

 private:
  struct Segment {
    std::int64_t offset, count;
    bool decay;
  };
  AdamWOptions opt_;
  Tensor<T> m_, v_;
  std::vector<Segment> segments_;
  std::int64_t step_ = 0;
};

/// Scales every gradient so that the global L2 norm is at most max_norm; returns the norm
/// before clipping. A non-finite norm is an error (a NaN loss upstream), nothing is changed then.
template <class T>
double clip_grad_norm(const CpuContext& ctx, const ParamArena<T>& arena, double max_norm) {
  const TensorView<T> g = arena.grads();
  const std::int64_t n = g.numel();
  const int chunks = std::max(1, ctx.threads());
  std::vector<double> part(static_cast<std::size_t>(chunks), 0.0);
  ctx.parallel_for(chunks, static_cast<double>(n) / chunks * 2.0 + 1e6, [&](std::int64_t c0, std::int64_t c1) {
    for (std::int64_t c = c0; c < c1; ++c) {
      double s = 0;
      for (std::int64_t i = c * n / chunks; i < (c + 1) * n / chunks; ++i) s += static_cast<double>(g[i]) * static_cast<double>(g[i]);
      part[static_cast<std::size_t>(c)] = s;
    }
  });
  double total = 0;
  for (double s : part) total += s;
  const double norm = std::sqrt(total);
  IREPA_CHECK(std::isfinite(norm), "clip_grad_norm: the gradient norm is {} (a NaN or infinite loss or gradient)", norm);
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) g.flat().device(ctx.device()) = g.flat() * static_cast<T>(coef);
  return norm;
}

/// An exponential moving average of a model's parameters.
template <class T>
class Ema {
 public:
  Ema(const ParamArena<T>& arena, double decay, std::int64_t every = 1) : decay_(decay), every_(every) {
    IREPA_CHECK(decay >= 0 && decay <= 1 && every >= 1, "Ema: decay {} must be in [0, 1] and every {} >= 1", decay, every);
    values_ = Tensor<T>::copy_of(arena.values());
  }
  /// Call after the optimizer's step `step` (1-based): updates when step % every == 0.
  void update(const CpuContext& ctx, const ParamArena<T>& arena, std::int64_t step) {
    if (step % every_ != 0) return;
    const T d = static_cast<T>(decay_);
    values_.flat().device(ctx.device()) = values_.flat() * d + arena.values().flat() * (T(1) - d);
  }
  double decay() const { return decay_; }
  std::int64_t every() const { return every_; }
  TensorView<T> values() const { return values_.view(); }

 private:
  double decay_;
  std::int64_t every_;
  Tensor<T> values_;
};

/// The learning rate at a (1-based) step.
struct LrSchedule {
  enum class Kind { Constant, WarmupConstant, WarmupCosine };
  Kind kind = Kind::Constant;
  double lr = 1e-4;
  std::int64_t warmup_steps = 0;
  std::int64_t total_steps = 0;  // cosine: the step at which it reaches min_lr
  double min_lr = 0.0;

  static Kind parse(std::string_view s) {
    if (s == "constant") return Kind::Constant;
    if (s == "warmup_constant") return Kind::WarmupConstant;
    if (s == "warmup_cosine" || s == "cosine") return Kind::WarmupCosine;
    fail("learning-rate schedule '{}' is not known; expected constant, warmup_constant or warmup_cosine", s);
  }

  double at(std::int64_t step) const {
    if (kind == Kind::Constant) return lr;
    if (step <= warmup_steps && warmup_steps > 0) return lr * static_cast<double>(step) / static_cast<double>(warmup_steps);
    if (kind == Kind::WarmupConstant) return lr;
    IREPA_CHECK(total_steps > warmup_steps, "LrSchedule: cosine needs total_steps {} > warmup_steps {}", total_steps, warmup_steps);
    const double progress = std::min(1.0, static_cast<double>(step - warmup_steps) / static_cast<double>(total_steps - warmup_steps));
    return min_lr + (lr - min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * progress));
  }
};

}  // namespace irepa
