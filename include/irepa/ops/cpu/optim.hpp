#pragma once
// The optimizer's passes over a flat arena, CPU backend (ops/cuda/optim.cuh has the same for
// CudaContext): the squared gradient norm into a device scalar, the clip factor from it, the
// fused AdamW + EMA update of one run of the arena, and a plain EMA update.
// The clip factor stays where the gradients are: the update reads it from a [1] double there,
// so a training step never brings the norm back to the host.

#include <algorithm>
#include <cmath>
#include <vector>

#include "irepa/core/context.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa::ops {

/// What AdamW::step derives once per step (torch's AdamW): step_size = lr / (1 - beta1^t),
/// bc2_sqrt = sqrt(1 - beta2^t), keep = 1 - lr * weight_decay (1 for undecayed runs).
struct AdamWCoefficients {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double step_size = 0, bc2_sqrt = 1, keep = 1;
};

/// An EMA fused into the update: e = decay e + (1 - decay) p (values null when absent).
template <class T>
struct EmaTarget {
  T* values = nullptr;
  double decay = 0;
};

/// Whether AdamW joins adjacent parameters with the same decay flag into one run on device D.
/// The GPU does (one launch per run); the CPU does not: its blocks follow the runs, and an
/// element's rounding can depend on whether it falls in a block's vector body or its scalar
/// tail (FP contraction), so merging there would change a run's bits.
template <class D>
inline constexpr bool adamw_merges_segments = !D::host_accessible;

namespace detail {
/// e = d e + w p over n values (w = 1 - d); one definition for the EMA update and the fused step.
template <class T>
void ema_mix(T* e, const T* p, std::int64_t n, T d, T w) {
  Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> E(e, n);
  const Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> P(p, n);
  E = E * d + P * w;
}
}  // namespace detail

/// out[0] = sum of g^2 in double. A fixed split (not one per thread) and 8 running sums per
/// chunk in a fixed lane order: the same bits for any thread count or memory alignment, and the
/// loop vectorises (one running sum is bound by the add latency).
template <class T>
void grad_sq_sum(const CpuContext& ctx, In<T> g, TensorView<double> out) {
  IREPA_CHECK(out.numel() == 1, "grad_sq_sum: the result goes into a [1] scalar, got shape {}", out.shape().str());
  check_contiguous("grad_sq_sum", g, out);
  const T* p = g.data();
  const std::int64_t n = g.numel();
  constexpr std::int64_t chunks = 16, lanes = 8;
  std::vector<double> part(static_cast<std::size_t>(chunks), 0.0);
  ctx.parallel_for(chunks, static_cast<double>(n) / chunks * 2.0 + 1e6, [&](std::int64_t c0, std::int64_t c1) {
    for (std::int64_t c = c0; c < c1; ++c) {
      const std::int64_t i0 = c * n / chunks, i1 = (c + 1) * n / chunks;
      double acc[lanes] = {};
      std::int64_t i = i0;
      for (; i + lanes <= i1; i += lanes)
        for (std::int64_t l = 0; l < lanes; ++l) acc[l] += static_cast<double>(p[i + l]) * static_cast<double>(p[i + l]);
      for (std::int64_t l = 0; i < i1; ++i, ++l) acc[l] += static_cast<double>(p[i]) * static_cast<double>(p[i]);
      double s = 0;
      for (double a : acc) s += a;
      part[static_cast<std::size_t>(c)] = s;
    }
  });
  double total = 0;
  for (double s : part) total += s;
  out.data()[0] = total;
}

/// From the squared norm sq[0]: norm[0] = sqrt(sq), scale[0] = max_norm / (norm + 1e-6) when that
/// is below 1, else 1 (torch's clip_grad_norm_ factor; max_norm = inf: never clipped).
inline void clip_scale(const CpuContext&, In<double> sq, double max_norm, TensorView<double> norm, TensorView<double> scale) {
  IREPA_CHECK(sq.numel() == 1 && norm.numel() == 1 && scale.numel() == 1, "clip_scale: [1] scalars expected");
  const double n = std::sqrt(sq.data()[0]);
  const double coef = max_norm / (n + 1e-6);
  norm.data()[0] = n;
  scale.data()[0] = coef < 1.0 ? coef : 1.0;
}

/// One fused AdamW step over a contiguous run of the arena (p, g, m, v of one length), the
/// gradients read as grad_scale[0] * g (when that is below 1), with up to two EMAs updated from
/// the new values in the same pass (e + i stands for the run's place in each EMA).
template <class T>
void adamw_ema_update(const CpuContext& ctx, TensorView<T> p, In<T> g, TensorView<T> m, TensorView<T> v, const AdamWCoefficients& c,
                      In<double> grad_scale, EmaTarget<T> ema0 = {}, EmaTarget<T> ema1 = {}) {
  check_shape("adamw_ema_update", "grad", g.shape(), p.shape());
  check_shape("adamw_ema_update", "exp_avg", m.shape(), p.shape());
  check_shape("adamw_ema_update", "exp_avg_sq", v.shape(), p.shape());
  IREPA_CHECK(grad_scale.numel() == 1, "adamw_ema_update: the gradient scale is a [1] scalar, got shape {}", grad_scale.shape().str());
  check_contiguous("adamw_ema_update", p, g, m, v);
  constexpr std::int64_t kBlock = 2048;  // values per block: each stays in L1 between the expressions
  const T b1 = static_cast<T>(c.beta1), b2 = static_cast<T>(c.beta2);
  const T step_size = static_cast<T>(c.step_size), bc2_sqrt = static_cast<T>(c.bc2_sqrt), eps = static_cast<T>(c.eps);
  const T keep = static_cast<T>(c.keep);
  const bool scaled = grad_scale.data()[0] < 1.0;
  const T gs = static_cast<T>(grad_scale.data()[0]);
  T* ema[2] = {ema0.values, ema1.values};
  const T ema_d[2] = {static_cast<T>(ema0.decay), static_cast<T>(ema1.decay)};
  const T ema_w[2] = {T(1) - ema_d[0], T(1) - ema_d[1]};
  T* pp = p.data();
  const T* gp = g.data();
  T* mp = m.data();
  T* vp = v.data();
  ctx.parallel_for(p.numel(), 12.0, [&](std::int64_t b, std::int64_t e) {
    // Eigen array expressions over short blocks: vectorised (a scalar std::sqrt loop is not, for
    // errno's sake).
    using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
    using Map = Eigen::Map<Arr>;
    using CMap = Eigen::Map<const Arr>;
    Arr gbuf(scaled ? kBlock : 0);
    for (std::int64_t i = b; i < e; i += kBlock) {
      const std::int64_t n = std::min(kBlock, e - i);
      Map P(pp + i, n), M(mp + i, n), V(vp + i, n);
      const CMap G(gp + i, n);
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
      for (int k = 0; k < 2; ++k)
        if (ema[k]) detail::ema_mix(ema[k] + i, pp + i, n, ema_d[k], ema_w[k]);
    }
  });
}

/// e = decay e + (1 - decay) p, elementwise (Ema::update).
template <class T>
void ema_update(const CpuContext& ctx, TensorView<T> e, In<T> p, double decay) {
  check_shape("ema_update", "parameters", p.shape(), e.shape());
  check_contiguous("ema_update", e, p);
  const T d = static_cast<T>(decay), w = T(1) - d;
  T* ep = e.data();
  const T* pp = p.data();
  ctx.parallel_for(e.numel(), 3.0, [&](std::int64_t i0, std::int64_t i1) { detail::ema_mix(ep + i0, pp + i0, i1 - i0, d, w); });
}

}  // namespace irepa::ops
