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
// AdamW, Ema and grad_norm take a device D (default Cpu): on Cuda the same passes run as the
// kernels of ops/cuda/optim.cuh (included when nvcc compiles the including file).

#include <cmath>
#include <functional>
#include <initializer_list>
#include <numbers>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "irepa/core/arena.hpp"
#include "irepa/core/context.hpp"
#if defined(__CUDACC__)
#include "irepa/ops/cuda/optim.cuh"
#endif

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
/// parameters with the same decay flag joined into one run. The GPU merges (one kernel launch per
/// segment: ~25 instead of ~150 for SiT-B; its update is per element, so the values do not
/// change). The CPU does not: its blocks follow the segments, and an element's rounding can
/// depend on whether it falls in a block's vector body or its scalar tail (FP contraction), so
/// merging there would change a run's bits.
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
    segments_ = adamw_segments(arena, opt_.decay, /*merge=*/!std::is_same_v<D, Cpu>);
  }

  /// One update with learning rate lr (the schedule's value for this step) from arena.grads().
  void step(const Context& ctx, const ParamArena<T, D>& arena, double lr) { step(ctx, arena, lr, 1.0, {}, 0); }

  /// The fused step: the gradients read as grad_scale * g (clip_coefficient's factor; the arena's
  /// gradients are left as they are), then each EMA in `emas` that is due at `ema_step` updated
  /// from the new values in the same pass. Same results as scaling the gradients, step(), and
  /// Ema::update(ctx, arena, ema_step) for each.
  void step(const Context& ctx, const ParamArena<T, D>& arena, double lr, double grad_scale,
            std::initializer_list<Ema<T, D>*> emas, std::int64_t ema_step) {
    IREPA_CHECK(arena.numel() == m_.numel(), "AdamW: the arena has {} values, the optimizer was built for {}", arena.numel(),
                m_.numel());
    T* ema[2] = {nullptr, nullptr};
    T ema_d[2] = {}, ema_w[2] = {};
    int n_ema = 0;
    for (Ema<T, D>* e : emas) {
      IREPA_CHECK(e && e->values().numel() == arena.numel(), "AdamW::step: an EMA of {} values for an arena of {}",
                  e ? e->values().numel() : 0, arena.numel());
      if (!e->due(ema_step)) continue;
      IREPA_CHECK(n_ema < 2, "AdamW::step: at most 2 EMAs are fused into the step; update further ones with Ema::update");
      ema[n_ema] = e->values().data();
      ema_d[n_ema] = static_cast<T>(e->decay());
      ema_w[n_ema] = T(1) - ema_d[n_ema];
      ++n_ema;
    }
    // Checked above before anything changes, the step counter included.
    ++step_;
    const double bc1 = 1 - std::pow(opt_.beta1, static_cast<double>(step_));
    const double bc2 = 1 - std::pow(opt_.beta2, static_cast<double>(step_));
    if constexpr (!std::is_same_v<D, Cpu>) {
#if defined(__CUDACC__)
      // The same coefficients and arithmetic, one kernel per segment.
      for (const auto& s : segments_) {
        const ops::AdamWCoefficients c{.beta1 = opt_.beta1, .beta2 = opt_.beta2, .eps = opt_.eps, .step_size = lr / bc1,
                                       .bc2_sqrt = std::sqrt(bc2), .keep = s.decay ? 1 - lr * opt_.weight_decay : 1.0,
                                       .grad_scale = grad_scale < 1.0 ? grad_scale : 1.0};
        auto seg = [&](const TensorView<T, D>& t) { return TensorView<T, D>(t.data() + s.offset, Shape{s.count}); };
        ops::adamw_ema_update<T>(ctx, seg(arena.values()), seg(arena.grads()), seg(m_.view()), seg(v_.view()), c,
                                 ops::EmaTarget<T>{n_ema > 0 ? ema[0] + s.offset : nullptr, static_cast<double>(ema_d[0])},
                                 ops::EmaTarget<T>{n_ema > 1 ? ema[1] + s.offset : nullptr, static_cast<double>(ema_d[1])});
      }
#else
      static_assert(sizeof(D) == 0, "AdamW on a device arena: compile this file with nvcc");
#endif
    } else {
      const T b1 = static_cast<T>(opt_.beta1), b2 = static_cast<T>(opt_.beta2);
      const T step_size = static_cast<T>(lr / bc1), bc2_sqrt = static_cast<T>(std::sqrt(bc2)), eps = static_cast<T>(opt_.eps);
      const bool scaled = grad_scale < 1.0;
      const T gs = static_cast<T>(grad_scale);
      T* p = arena.values().data();
      const T* g = arena.grads().data();
      T* m = m_.data();
      T* v = v_.data();
      for (const auto& s : segments_) {
        const T keep = s.decay ? static_cast<T>(1 - lr * opt_.weight_decay) : T(1);
        ctx.parallel_for(s.count, 12.0, [&](std::int64_t i0, std::int64_t i1) {
          const std::int64_t b = s.offset + i0, e = s.offset + i1;
          // Eigen array expressions over short blocks: vectorised (a scalar std::sqrt loop is not,
          // for errno's sake), and each block stays in L1 between the expressions.
          using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
          using Map = Eigen::Map<Arr>;
          using CMap = Eigen::Map<const Arr>;
          Arr gbuf(scaled ? kBlock : 0);
          for (std::int64_t i = b; i < e; i += kBlock) {
            const std::int64_t n = std::min(kBlock, e - i);
            Map P(p + i, n), M(m + i, n), V(v + i, n);
            const CMap G(g + i, n);
            auto update = [&](const auto& gi) {
              M = b1 * M + (T(1) - b1) * gi;
              V = b2 * V + (T(1) - b2) * gi * gi;
              P = P * keep - step_size * M / (V.sqrt() / bc2_sqrt + eps);
            };
            if (scaled) {
              gbuf.head(n) = G * gs;
              update(gbuf.head(n));
            } else {
              update(G);
            }
            for (int k = 0; k < n_ema; ++k) Ema<T>::mix(ema[k] + i, p + i, n, ema_d[k], ema_w[k]);
          }
        });
      }
    }
  }

  static constexpr std::int64_t kBlock = 2048;  // values per block of the fused pass

  std::int64_t steps() const { return step_; }
  /// The update's segments (see adamw_segments: merged on a GPU, one per parameter on the CPU).
  std::size_t segments() const { return segments_.size(); }
  void set_steps(std::int64_t s) { step_ = s; }
  const AdamWOptions& options() const { return opt_; }
  /// First and second moments, laid out as the arena (for checkpoints).
  TensorView<T, D> exp_avg() const { return m_.view(); }
  TensorView<T, D> exp_avg_sq() const { return v_.view(); }

 private:
  using Segment = AdamWSegment;
  AdamWOptions opt_;
  Tensor<T, D> m_, v_;
  std::vector<Segment> segments_;
  std::int64_t step_ = 0;
};

/// The global L2 norm of the gradients (summed in double); the gradients are not changed.
/// A non-finite norm is an error (a NaN loss upstream).
template <class T>
double grad_norm(const CpuContext& ctx, const ParamArena<T>& arena) {
  const T* g = arena.grads().data();
  const std::int64_t n = arena.grads().numel();
  // A fixed split (not one per thread) and 8 running sums per chunk in a fixed lane order: the
  // norm, and so the clip factor, is the same bits for any thread count or memory alignment,
  // and the loop vectorises (one running sum is bound by the add latency).
  constexpr std::int64_t chunks = 16, lanes = 8;
  std::vector<double> part(static_cast<std::size_t>(chunks), 0.0);
  ctx.parallel_for(chunks, static_cast<double>(n) / chunks * 2.0 + 1e6, [&](std::int64_t c0, std::int64_t c1) {
    for (std::int64_t c = c0; c < c1; ++c) {
      const std::int64_t i0 = c * n / chunks, i1 = (c + 1) * n / chunks;
      double acc[lanes] = {};
      std::int64_t i = i0;
      for (; i + lanes <= i1; i += lanes)
        for (std::int64_t l = 0; l < lanes; ++l) acc[l] += static_cast<double>(g[i + l]) * static_cast<double>(g[i + l]);
      for (std::int64_t l = 0; i < i1; ++i, ++l) acc[l] += static_cast<double>(g[i]) * static_cast<double>(g[i]);
      double s = 0;
      for (double a : acc) s += a;
      part[static_cast<std::size_t>(c)] = s;
    }
  });
  double total = 0;
  for (double s : part) total += s;
  const double norm = std::sqrt(total);
  IREPA_CHECK(std::isfinite(norm), "clip_grad_norm: the gradient norm is {} (a NaN or infinite loss or gradient)", norm);
  return norm;
}

#if defined(__CUDACC__)
/// The same norm over a device arena (a fixed-order reduction in double; not the CPU's bits).
template <class T>
double grad_norm(const CudaContext& ctx, const ParamArena<T, Cuda>& arena) {
  const double norm = std::sqrt(ops::grad_sq_sum<T>(ctx, arena.grads()));
  IREPA_CHECK(std::isfinite(norm), "clip_grad_norm: the gradient norm is {} (a NaN or infinite loss or gradient)", norm);
  return norm;
}
#endif

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
  const double norm = grad_norm(ctx, arena);
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
    if constexpr (!std::is_same_v<D, Cpu>) {
#if defined(__CUDACC__)
      ops::ema_update<T>(ctx, values_.view(), arena.values(), decay_);
#else
      static_assert(sizeof(D) == 0, "Ema on a device arena: compile this file with nvcc");
#endif
    } else {
      const T d = static_cast<T>(decay_), w = T(1) - d;
      T* e = values_.data();
      const T* p = arena.values().data();
      ctx.parallel_for(values_.numel(), 3.0, [&](std::int64_t i0, std::int64_t i1) { mix(e + i0, p + i0, i1 - i0, d, w); });
    }
  }
  /// Whether update(.., step) changes the average.
  bool due(std::int64_t step) const { return step % every_ == 0; }
  /// e = decay e + (1 - decay) p over n values; one definition for Ema::update and the fused step.
  static void mix(T* e, const T* p, std::int64_t n, T d, T w) {
    Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> E(e, n);
    const Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> P(p, n);
    E = E * d + P * w;
  }
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
