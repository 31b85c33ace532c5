#pragma once
// Optimisation over a flat parameter arena, each a single pass over memory:
//  - AdamW with PyTorch's semantics: decoupled weight decay (p -= lr wd p first), bias-corrected
//    moments, eps added outside the square root; weight decay chosen per parameter (a predicate
//    on the name and shape: biases and 1-D tensors are usually excluded).
//  - clip_grad_norm: the global L2 norm over every gradient, and scaling by
//    max_norm / (norm + 1e-6) when that is below 1 (torch.nn.utils.clip_grad_norm_).
//  - Ema: ema = decay ema + (1 - decay) param every k steps, starting as a copy.
//  - One fused pass for a training step (AdamW::step with a gradient scale and EMAs): the clip
//    factor applied as the gradients are read and every due EMA updated from the new values,
//    so the 135 M-value arena of SiT-B is streamed once instead of three times. Its results
//    are bit-identical to clip_grad_norm + AdamW::step + Ema::update.
//  - LrSchedule: constant, or linear warm-up then constant or cosine to a floor.
// AdamW, Ema and grad_norm take a device D (default Cpu); their passes are the ops of
// ops/optim.hpp (CPU, and the CUDA kernels when nvcc compiles the including file).

#include <cmath>
#include <functional>
#include <initializer_list>
#include <numbers>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "irepa/core/arena.hpp"
#include "irepa/core/context.hpp"
#include "irepa/ops/optim.hpp"
#include "irepa/ops/tensor_ops.hpp"

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

template <class T, class D = Cpu>
class Ema;

/// A run of the arena updated with one weight-decay flag.
struct AdamWSegment {
  std::int64_t offset, count;
  bool decay;
};

/// The arena's parameters as AdamW segments: one per parameter, or with merge, adjacent
/// parameters with the same decay flag joined into one run (see ops::adamw_merges_segments: the
/// GPU merges, ~25 launches instead of ~150 for SiT-B; the CPU does not).
template <class T, class D>
std::vector<AdamWSegment> adamw_segments(const ParamArena<T, D>& arena, const DecayPredicate& pred, bool merge) {
  std::vector<AdamWSegment> out;
  for (const auto& e : arena.entries()) {
    const bool decay = pred ? pred(e.name, e.shape) : true;
    if (merge && !out.empty() && out.back().decay == decay && out.back().offset + out.back().count == e.offset)
      out.back().count += e.shape.numel();
    else
      out.push_back({e.offset, e.shape.numel(), decay});
  }
  return out;
}

template <class T, class D = Cpu>
class AdamW {
 public:
  using Context = ContextOf<D>;

  AdamW(const ParamArena<T, D>& arena, AdamWOptions o) : opt_(std::move(o)), m_(Shape{arena.numel()}), v_(Shape{arena.numel()}) {
    D::zero_sync(m_.data(), sizeof(T) * static_cast<std::size_t>(m_.numel()));
    D::zero_sync(v_.data(), sizeof(T) * static_cast<std::size_t>(v_.numel()));
    segments_ = adamw_segments(arena, opt_.decay, ops::adamw_merges_segments<D>);
  }

  /// One update with learning rate lr (the schedule's value for this step) from arena.grads().
  void step(const Context& ctx, const ParamArena<T, D>& arena, double lr) { step(ctx, arena, lr, 1.0, {}, 0); }

  /// The fused step with a gradient scale given on the host (see the device-scalar overload).
  void step(const Context& ctx, const ParamArena<T, D>& arena, double lr, double grad_scale, std::initializer_list<Ema<T, D>*> emas,
            std::int64_t ema_step) {
    Tensor<double, D> gs(Shape{1});
    fill(ctx, gs.view(), grad_scale);
    step(ctx, arena, lr, gs.cview(), emas, ema_step);
  }

  /// The fused step: the gradients read as grad_scale[0] * g (clip_scale's factor, a [1] double
  /// on the arena's device; the arena's gradients are left as they are), then each EMA in `emas`
  /// that is due at `ema_step` updated from the new values in the same pass. Same results as
  /// scaling the gradients, step(), and Ema::update(ctx, arena, ema_step) for each.
  void step(const Context& ctx, const ParamArena<T, D>& arena, double lr, ConstView<double, D> grad_scale,
            std::initializer_list<Ema<T, D>*> emas, std::int64_t ema_step) {
    step(ctx, arena, lr, grad_scale, std::span<Ema<T, D>* const>(emas.begin(), emas.size()), ema_step);
  }
  void step(const Context& ctx, const ParamArena<T, D>& arena, double lr, ConstView<double, D> grad_scale,
            std::span<Ema<T, D>* const> emas, std::int64_t ema_step) {
    IREPA_CHECK(arena.numel() == m_.numel(), "AdamW: the arena has {} values, the optimizer was built for {}", arena.numel(),
                m_.numel());
    ops::EmaTarget<T> ema[2] = {};
    int n_ema = 0;
    for (Ema<T, D>* e : emas) {
      IREPA_CHECK(e && e->values().numel() == arena.numel(), "AdamW::step: an EMA of {} values for an arena of {}",
                  e ? e->values().numel() : 0, arena.numel());
      if (!e->due(ema_step)) continue;
      IREPA_CHECK(n_ema < 2, "AdamW::step: at most 2 EMAs are fused into the step; update further ones with Ema::update");
      ema[n_ema++] = {e->values().data(), e->decay()};
    }
    // Checked above before anything changes, the step counter included.
    ++step_;
    const double bc1 = 1 - std::pow(opt_.beta1, static_cast<double>(step_));
    const double bc2 = 1 - std::pow(opt_.beta2, static_cast<double>(step_));
    for (const auto& s : segments_) {
      const ops::AdamWCoefficients c{.beta1 = opt_.beta1, .beta2 = opt_.beta2, .eps = opt_.eps, .step_size = lr / bc1,
                                     .bc2_sqrt = std::sqrt(bc2), .keep = s.decay ? 1 - lr * opt_.weight_decay : 1.0};
      auto seg = [&](const TensorView<T, D>& t) { return TensorView<T, D>(t.data() + s.offset, Shape{s.count}); };
      auto at = [&](const ops::EmaTarget<T>& e) { return ops::EmaTarget<T>{e.values ? e.values + s.offset : nullptr, e.decay}; };
      ops::adamw_ema_update<T>(ctx, seg(arena.values()), seg(arena.grads()), seg(m_.view()), seg(v_.view()), c, grad_scale, at(ema[0]),
                               at(ema[1]));
    }
  }

  std::int64_t steps() const { return step_; }
  /// The update's segments (see adamw_segments: merged on a GPU, one per parameter on the CPU).
  std::size_t segments() const { return segments_.size(); }
  void set_steps(std::int64_t s) { step_ = s; }
  const AdamWOptions& options() const { return opt_; }
  /// First and second moments, laid out as the arena (for checkpoints).
  TensorView<T, D> exp_avg() const { return m_.view(); }
  TensorView<T, D> exp_avg_sq() const { return v_.view(); }

 private:
  AdamWOptions opt_;
  Tensor<T, D> m_, v_;
  std::vector<AdamWSegment> segments_;
  std::int64_t step_ = 0;
};

/// The global L2 norm of the gradients (summed in double), brought to the host; the gradients
/// are not changed. A non-finite norm is an error (a NaN loss upstream). A training step keeps
/// the norm on the device instead (ops::grad_sq_sum, ops::clip_scale).
template <class T, class D>
double grad_norm(const ContextOf<D>& ctx, const ParamArena<T, D>& arena) {
  Tensor<double, D> sq(Shape{1});
  ops::grad_sq_sum<T>(ctx, arena.grads(), sq.view());
  const double norm = std::sqrt(to_host<double>(ctx, sq.cview())[0]);
  IREPA_CHECK(std::isfinite(norm), "clip_grad_norm: the gradient norm is {} (a NaN or infinite loss or gradient)", norm);
  return norm;
}

/// The factor torch's clip_grad_norm_ scales the gradients by: max_norm / (norm + 1e-6) when
/// that is below 1, else 1.
inline double clip_coefficient(double norm, double max_norm) {
  const double coef = max_norm / (norm + 1e-6);
  return coef < 1.0 ? coef : 1.0;
}

/// Scales every gradient so that the global L2 norm is at most max_norm; returns the norm
/// before clipping. A non-finite norm is an error (a NaN loss upstream), nothing is changed then.
template <class T>
double clip_grad_norm(const CpuContext& ctx, const ParamArena<T>& arena, double max_norm) {
  const double norm = grad_norm<T, Cpu>(ctx, arena);
  const double coef = clip_coefficient(norm, max_norm);
  if (coef < 1.0) {
    const TensorView<T> g = arena.grads();
    g.flat().device(ctx.device()) = g.flat() * static_cast<T>(coef);
  }
  return norm;
}

/// An exponential moving average of a model's parameters.
template <class T, class D>
class Ema {
 public:
  Ema(const ParamArena<T, D>& arena, double decay, std::int64_t every = 1) : decay_(decay), every_(every) {
    IREPA_CHECK(decay >= 0 && decay <= 1 && every >= 1, "Ema: decay {} must be in [0, 1] and every {} >= 1", decay, every);
    values_ = Tensor<T, D>(Shape{arena.numel()});
    D::copy_sync(values_.data(), arena.values().data(), sizeof(T) * static_cast<std::size_t>(arena.numel()));
  }
  /// Call after the optimizer's step `step` (1-based): updates when step % every == 0.
  void update(const ContextOf<D>& ctx, const ParamArena<T, D>& arena, std::int64_t step) {
    if (step % every_ != 0) return;
    ops::ema_update<T>(ctx, values_.view(), arena.values(), decay_);
  }
  /// Whether update(.., step) changes the average.
  bool due(std::int64_t step) const { return step % every_ == 0; }
  double decay() const { return decay_; }
  std::int64_t every() const { return every_; }
  TensorView<T, D> values() const { return values_.view(); }

 private:
  double decay_;
  std::int64_t every_;
  Tensor<T, D> values_;
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
